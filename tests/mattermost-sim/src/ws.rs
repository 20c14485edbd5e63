//! The WebSocket hub: connections, sequence numbers, resume buffers, event
//! fan-out, and the per-socket task that speaks the wire protocol.
//!
//! A *connection* (identified by `connection_id`) outlives the TCP socket it
//! was opened on when it was authenticated by header: the real server keeps
//! such an inactive connection, and the events sent to it, so that a client
//! reconnecting with `connection_id` + `sequence_number` misses nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::app::Sim;
use crate::error::ApiError;
use crate::ids::{is_valid_id, new_id, wall_ms};
use crate::model::{SERVER_VERSION, TypingBody, VERSION_ID};

/// How a test ends a user's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KillMode {
    /// Send a close frame (1001, going away), then close.
    Close,
    /// Drop the TCP connection without a close frame, as a crashed proxy would.
    Drop,
}

/// Commands from the hub (or a test) to one socket task.
#[derive(Debug)]
pub enum Control {
    /// End the socket.
    Kill(KillMode),
    /// Write nothing (events, replies, pings) until this much time has passed.
    Stall(Duration),
    /// The session behind the socket was revoked: like the real server, the
    /// socket stays open but gets no more events, and its actions are
    /// answered `401 not_authenticated`.
    Deauthenticate,
}

/// The `broadcast` object every event carries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Broadcast {
    pub omit_users: Option<BTreeMap<String, bool>>,
    pub user_id: String,
    pub channel_id: String,
    pub team_id: String,
    pub connection_id: String,
    pub omit_connection_id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub contains_sanitized_data: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub contains_sensitive_data: bool,
}

/// Event data: a sorted map, as Go writes `map[string]any`.
pub type EventData = BTreeMap<String, Value>;

/// One server event and who gets it. `posted` differs per recipient
/// (`mentions`), so data is given per user.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: &'static str,
    pub broadcast: Broadcast,
    pub deliveries: Vec<(String, Arc<EventData>)>,
}

#[derive(Serialize)]
struct Frame<'a> {
    event: &'a str,
    data: &'a EventData,
    broadcast: &'a Broadcast,
    seq: i64,
}

/// A snapshot of one connection, for tests and the control API.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub connection_id: String,
    pub user_id: String,
    /// Whether a socket is attached right now.
    pub active: bool,
    /// Whether it was authenticated by header, hence resumable.
    pub resumable: bool,
    /// The `seq` the next event will carry.
    pub next_seq: i64,
    /// Lowest `seq` still held for replay, if any.
    pub buffered_from: Option<i64>,
}

#[derive(Debug, Clone)]
struct Link {
    socket: u64,
    out: mpsc::Sender<Utf8Bytes>,
    ctl: mpsc::UnboundedSender<Control>,
}

#[derive(Debug)]
struct Conn {
    user_id: String,
    resumable: bool,
    posted_ack: bool,
    next_seq: i64,
    buffer: VecDeque<(i64, Utf8Bytes)>,
    link: Option<Link>,
    inactive_since: Option<Instant>,
    /// Its session was revoked: no events, no resume.
    revoked: bool,
}

/// Sizes and times the hub enforces.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Events kept per connection for replay (the real server keeps 128).
    pub resume_buffer: usize,
    /// Inactive connections older than this cannot be resumed (real: 5 min).
    pub reap_after: Duration,
}

/// All connections of the server.
#[derive(Debug)]
pub struct Hub {
    conns: HashMap<String, Conn>,
    next_socket: u64,
    limits: HubLimits,
}

impl Hub {
    /// An empty hub.
    pub fn new(limits: HubLimits) -> Self {
        Hub {
            conns: HashMap::new(),
            next_socket: 0,
            limits,
        }
    }

    fn reap(&mut self) {
        let reap_after = self.limits.reap_after;
        self.conns.retain(|_, c| {
            c.link.is_some() || c.inactive_since.is_none_or(|t| t.elapsed() < reap_after)
        });
    }

    /// Attaches an authenticated socket: resumes `resume` when the rules of
    /// the real server allow it, otherwise opens a new connection and sends
    /// `hello`. Returns the connection id in use.
    fn connect(
        &mut self,
        user_id: &str,
        resume: Option<(String, i64)>,
        resumable: bool,
        posted_ack: bool,
        link: Link,
    ) -> String {
        self.reap();
        if let Some((id, seq)) = resume.filter(|_| resumable) {
            let found = self
                .conns
                .get(&id)
                .is_some_and(|c| c.user_id == user_id && c.link.is_none() && c.resumable);
            if found {
                if let Some(conn) = self.conns.get_mut(&id) {
                    let covered = seq == conn.next_seq
                        || (seq < conn.next_seq
                            && conn.buffer.front().is_some_and(|(first, _)| *first <= seq));
                    if covered {
                        for (_, text) in conn.buffer.iter().filter(|(s, _)| *s >= seq) {
                            // The queue is sized above the buffer, so this fits.
                            let _ = link.out.try_send(text.clone());
                        }
                        conn.link = Some(link);
                        conn.inactive_since = None;
                        conn.posted_ack = posted_ack;
                        return id;
                    }
                }
                // Events were lost: the real server drops the old queue and
                // starts over with a new id and a `hello`.
                self.conns.remove(&id);
            }
        }
        let id = new_id();
        let mut conn = Conn {
            user_id: user_id.to_owned(),
            resumable,
            posted_ack,
            next_seq: 0,
            buffer: VecDeque::new(),
            link: Some(link),
            inactive_since: None,
            revoked: false,
        };
        let mut data = EventData::new();
        data.insert("connection_id".into(), json!(id));
        data.insert("server_version".into(), json!(VERSION_ID));
        let broadcast = Broadcast {
            user_id: user_id.to_owned(),
            ..Broadcast::default()
        };
        // A fresh queue cannot be full.
        let _ = conn.emit("hello", &data, &broadcast, self.limits.resume_buffer);
        self.conns.insert(id.clone(), conn);
        id
    }

    /// Marks the connection inactive when `socket` is still the one attached.
    /// Connections that cannot resume are forgotten at once.
    fn detach(&mut self, conn_id: &str, socket: u64) {
        let Some(conn) = self.conns.get_mut(conn_id) else {
            return;
        };
        if conn.link.as_ref().is_some_and(|l| l.socket == socket) {
            conn.link = None;
            conn.inactive_since = Some(Instant::now());
            if !conn.resumable {
                self.conns.remove(conn_id);
            }
        }
    }

    /// Sends an event to every connection of every recipient, active or
    /// inactive, each with its own next `seq`.
    pub fn publish(&mut self, event: &Event) {
        self.reap();
        let mut discarded = Vec::new();
        for (user_id, data) in &event.deliveries {
            for (id, conn) in self
                .conns
                .iter_mut()
                .filter(|(_, c)| &c.user_id == user_id && !c.revoked)
            {
                if event.name == "typing" && conn.half_full() {
                    continue;
                }
                let with_ack;
                let data: &EventData = if event.name == "posted" && conn.posted_ack {
                    let mut d = (**data).clone();
                    d.insert("should_ack".into(), Value::Bool(true));
                    with_ack = d;
                    &with_ack
                } else {
                    data
                };
                if !conn.emit(
                    event.name,
                    data,
                    &event.broadcast,
                    self.limits.resume_buffer,
                ) {
                    discarded.push(id.clone());
                }
            }
        }
        for id in discarded {
            if let Some(conn) = self.conns.remove(&id)
                && let Some(link) = conn.link
            {
                let _ = link.ctl.send(Control::Kill(KillMode::Drop));
            }
        }
    }

    /// Ends every socket of a user. Header-authenticated connections stay
    /// resumable; they are marked inactive before the socket closes, so a
    /// quick reconnect always finds them.
    pub fn kill_user(&mut self, user_id: &str, mode: KillMode) -> usize {
        let mut n = 0;
        let now = Instant::now();
        for conn in self.conns.values_mut().filter(|c| c.user_id == user_id) {
            if let Some(link) = conn.link.take() {
                let _ = link.ctl.send(Control::Kill(mode));
                conn.inactive_since = Some(now);
                n += 1;
            }
        }
        self.conns.retain(|_, c| c.resumable || c.link.is_some());
        n
    }

    /// Revokes the sessions of a user's connections (see
    /// [`Control::Deauthenticate`]); returns how many sockets were open.
    pub fn deauthenticate_user(&mut self, user_id: &str) -> usize {
        let mut n = 0;
        for conn in self.conns.values_mut().filter(|c| c.user_id == user_id) {
            conn.revoked = true;
            conn.resumable = false;
            if let Some(link) = &conn.link {
                let _ = link.ctl.send(Control::Deauthenticate);
                n += 1;
            }
        }
        n
    }

    /// Stops writing to every socket of a user for `duration`.
    pub fn stall_user(&mut self, user_id: &str, duration: Duration) -> usize {
        let mut n = 0;
        for conn in self.conns.values().filter(|c| c.user_id == user_id) {
            if let Some(link) = &conn.link {
                let _ = link.ctl.send(Control::Stall(duration));
                n += 1;
            }
        }
        n
    }

    /// Every known connection.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut out: Vec<ConnectionInfo> = self
            .conns
            .iter()
            .map(|(id, c)| ConnectionInfo {
                connection_id: id.clone(),
                user_id: c.user_id.clone(),
                active: c.link.is_some(),
                resumable: c.resumable,
                next_seq: c.next_seq,
                buffered_from: c.buffer.front().map(|(s, _)| *s),
            })
            .collect();
        out.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        out
    }

    /// Whether the user has a socket attached (their status is "online").
    pub fn is_online(&self, user_id: &str) -> bool {
        self.conns
            .values()
            .any(|c| c.user_id == user_id && c.link.is_some())
    }

    fn next_socket_id(&mut self) -> u64 {
        self.next_socket += 1;
        self.next_socket
    }
}

impl Conn {
    fn half_full(&self) -> bool {
        self.link
            .as_ref()
            .is_some_and(|l| l.out.capacity() < l.out.max_capacity() / 2)
    }

    /// Numbers, records and (if attached) sends one event. Returns false
    /// when the send queue is full, which makes the real server discard the
    /// connection.
    fn emit(&mut self, name: &str, data: &EventData, broadcast: &Broadcast, keep: usize) -> bool {
        let seq = self.next_seq;
        let frame = Frame {
            event: name,
            data,
            broadcast,
            seq,
        };
        let text: Utf8Bytes = serde_json::to_string(&frame).unwrap_or_default().into();
        self.next_seq += 1;
        self.buffer.push_back((seq, text.clone()));
        while self.buffer.len() > keep {
            self.buffer.pop_front();
        }
        match &self.link {
            Some(link) => !matches!(
                link.out.try_send(text),
                Err(mpsc::error::TrySendError::Full(_))
            ),
            None => true,
        }
    }
}

/// Parameters of the upgrade request that matter after the upgrade.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// User authenticated by header or cookie, if any.
    pub user_id: Option<String>,
    /// `connection_id` query parameter (empty: new connection).
    pub connection_id: String,
    /// `sequence_number` query parameter, unparsed.
    pub sequence_number: Option<String>,
    /// `posted_ack=true`.
    pub posted_ack: bool,
}

#[derive(Serialize)]
struct Reply<'a> {
    status: &'a str,
    seq_reply: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

fn reply_ok(seq: i64, data: Option<Value>) -> Utf8Bytes {
    let r = Reply {
        status: "OK",
        seq_reply: seq,
        data,
        error: None,
    };
    serde_json::to_string(&r).unwrap_or_default().into()
}

fn reply_err(seq: i64, err: &ApiError) -> Utf8Bytes {
    let r = Reply {
        status: "FAIL",
        seq_reply: seq,
        data: None,
        error: Some(json!({
            "id": err.id,
            "message": err.message,
            "detailed_error": "",
            "status_code": err.status.as_u16(),
        })),
    };
    serde_json::to_string(&r).unwrap_or_default().into()
}

fn ws_error(status: u16, id: &str, message: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::from_u16(status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
        id,
        message,
    )
}

/// What the request loop decided about a client frame.
enum Step {
    Continue,
    /// Close the socket without a close frame (bad challenge, bad frame).
    Drop,
}

struct SocketTask {
    sim: Arc<Sim>,
    socket_id: u64,
    out_tx: mpsc::Sender<Utf8Bytes>,
    ctl_tx: mpsc::UnboundedSender<Control>,
    /// `(connection id, user id)` once authenticated.
    auth: Option<(String, String)>,
    posted_ack: bool,
}

/// Serves one upgraded socket until it ends.
pub async fn serve_socket(sim: Arc<Sim>, mut socket: WebSocket, up: Upgrade) {
    let cfg = sim.config();
    let resume = if up.connection_id.is_empty() {
        None
    } else {
        match up
            .sequence_number
            .as_deref()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(seq) if seq >= 0 => Some((up.connection_id.clone(), seq)),
            // The real server closes at once when the number is missing or bad.
            _ => return,
        }
    };
    let queue = cfg.ws_send_queue.max(cfg.ws_resume_buffer + 16);
    let (out_tx, mut out_rx) = mpsc::channel::<Utf8Bytes>(queue);
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<Control>();
    let socket_id = sim.hub.lock().next_socket_id();
    let mut task = SocketTask {
        sim: sim.clone(),
        socket_id,
        out_tx,
        ctl_tx,
        auth: None,
        posted_ack: up.posted_ack,
    };
    if let Some(user_id) = &up.user_id {
        task.register(user_id, resume, true);
    }

    let auth_deadline = Instant::now() + cfg.ws_auth_timeout;
    let mut ping =
        tokio::time::interval_at(Instant::now() + cfg.ws_ping_interval, cfg.ws_ping_interval);
    let mut pong_deadline = Instant::now() + cfg.ws_pong_wait;
    let mut stalled_until: Option<Instant> = None;
    let mut shutdown = sim.shutdown_signal();
    // A revoked socket stays open (unlike one never authenticated); its
    // connection id, to detach at the end.
    let mut revoked: Option<String> = None;

    loop {
        let stalled = stalled_until.is_some();
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            ctl = ctl_rx.recv() => match ctl {
                Some(Control::Kill(KillMode::Close)) => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame { code: 1001, reason: "".into() })))
                        .await;
                    break;
                }
                Some(Control::Kill(KillMode::Drop)) | None => break,
                Some(Control::Stall(d)) => stalled_until = Some(Instant::now() + d),
                Some(Control::Deauthenticate) => {
                    revoked = task.auth.take().map(|(conn_id, _)| conn_id);
                }
            },
            _ = sleep_until(auth_deadline), if task.auth.is_none() && revoked.is_none() => break,
            _ = sleep_until(pong_deadline) => break,
            _ = sleep_until(stalled_until.unwrap_or_else(Instant::now)), if stalled => {
                stalled_until = None;
            }
            msg = out_rx.recv(), if !stalled => match msg {
                Some(text) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            _ = ping.tick(), if !stalled => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Step::Drop = task.handle(text.as_str()) {
                        break;
                    }
                }
                Some(Ok(Message::Pong(_))) => pong_deadline = Instant::now() + cfg.ws_pong_wait,
                // Pings are answered by the library; msgpack frames are not supported.
                Some(Ok(Message::Ping(_) | Message::Binary(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
        }
    }
    if let Some(conn_id) = task.auth.as_ref().map(|(id, _)| id).or(revoked.as_ref()) {
        sim.hub.lock().detach(conn_id, socket_id);
    }
}

impl SocketTask {
    fn register(&mut self, user_id: &str, resume: Option<(String, i64)>, resumable: bool) {
        let link = Link {
            socket: self.socket_id,
            out: self.out_tx.clone(),
            ctl: self.ctl_tx.clone(),
        };
        let conn_id =
            self.sim
                .hub
                .lock()
                .connect(user_id, resume, resumable, self.posted_ack, link);
        self.auth = Some((conn_id, user_id.to_owned()));
    }

    fn send(&self, text: Utf8Bytes) {
        let _ = self.out_tx.try_send(text);
    }

    /// Handles one client request, following the real router's order of
    /// checks: action, seq, challenge, authentication, handler.
    fn handle(&mut self, text: &str) -> Step {
        let Ok(req) = serde_json::from_str::<Value>(text) else {
            return Step::Drop;
        };
        let seq = req.get("seq").and_then(Value::as_i64).unwrap_or(0);
        let action = req.get("action").and_then(Value::as_str).unwrap_or("");
        let data = req.get("data").cloned().unwrap_or(Value::Null);
        if action.is_empty() {
            self.send(reply_err(
                seq,
                &ws_error(
                    400,
                    "api.web_socket_router.no_action.app_error",
                    "No websocket action.",
                ),
            ));
            return Step::Continue;
        }
        if seq <= 0 {
            self.send(reply_err(
                seq,
                &ws_error(
                    400,
                    "api.web_socket_router.bad_seq.app_error",
                    "Invalid sequence for WebSocket message.",
                ),
            ));
            return Step::Continue;
        }
        if action == "authentication_challenge" {
            if self.auth.is_some() {
                return Step::Continue;
            }
            let Some(token) = data.get("token").and_then(Value::as_str) else {
                return Step::Drop;
            };
            let user = self
                .sim
                .store
                .lock()
                .user_for_token(token)
                .map(|u| u.id.clone());
            let Some(user_id) = user else {
                return Step::Drop;
            };
            // Challenge-authenticated connections are never resumable.
            self.register(&user_id, None, false);
            self.send(reply_ok(seq, None));
            return Step::Continue;
        }
        let Some((_, user_id)) = self.auth.clone() else {
            self.send(reply_err(
                seq,
                &ws_error(
                    401,
                    "api.web_socket_router.not_authenticated.app_error",
                    "WebSocket session not authenticated.",
                ),
            ));
            return Step::Continue;
        };
        let result: Result<Option<Value>, ApiError> = match action {
            "ping" => Ok(Some(json!({
                "text": "pong",
                "version": SERVER_VERSION,
                "server_time": wall_ms() + self.sim.config().clock_offset_ms,
                "node_id": "",
            }))),
            "user_typing" => {
                let body = TypingBody {
                    channel_id: data
                        .get("channel_id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    parent_id: data
                        .get("parent_id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                };
                if !is_valid_id(&body.channel_id) {
                    Err(ws_error(
                        400,
                        "api.websocket_handler.invalid_param.app_error",
                        "Invalid channel_id parameter.",
                    ))
                } else {
                    self.sim.user_typing(&user_id, &body).map(|()| None)
                }
            }
            "get_statuses" => Ok(Some(self.sim.statuses(None))),
            "get_statuses_by_ids" => {
                let ids: Vec<String> = data
                    .get("user_ids")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Some(self.sim.statuses(Some(&ids))))
            }
            "user_update_active_status" | "presence" | "posted_notify_ack" => Ok(None),
            a if a.starts_with("custom_") => return Step::Continue,
            _ => Err(ws_error(
                500,
                "api.web_socket_router.bad_action.app_error",
                "Unknown WebSocket action.",
            )),
        };
        match result {
            Ok(data) => self.send(reply_ok(seq, data)),
            Err(e) => self.send(reply_err(seq, &e)),
        }
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(cap: usize) -> (Link, mpsc::Receiver<Utf8Bytes>) {
        let (out, rx) = mpsc::channel(cap);
        let (ctl, _ctl_rx) = mpsc::unbounded_channel();
        (
            Link {
                socket: 1,
                out,
                ctl,
            },
            rx,
        )
    }

    fn event_for(user: &str, n: i64) -> Event {
        let mut data = EventData::new();
        data.insert("n".into(), json!(n));
        Event {
            name: "posted",
            broadcast: Broadcast::default(),
            deliveries: vec![(user.to_owned(), Arc::new(data))],
        }
    }

    fn seq_of(text: &Utf8Bytes) -> i64 {
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        v["seq"].as_i64().unwrap()
    }

    #[test]
    fn frames_have_the_real_field_order() {
        let mut hub = Hub::new(HubLimits {
            resume_buffer: 4,
            reap_after: Duration::from_secs(60),
        });
        let (l, mut rx) = link(16);
        hub.connect("u1", None, true, false, l);
        let hello = rx.try_recv().unwrap();
        let s = hello.as_str();
        assert!(s.starts_with("{\"event\":\"hello\",\"data\":{\"connection_id\":"));
        assert!(s.contains("\"broadcast\":{\"omit_users\":null,\"user_id\":\"u1\",\"channel_id\":\"\",\"team_id\":\"\",\"connection_id\":\"\",\"omit_connection_id\":\"\"},\"seq\":0}"));
    }

    #[test]
    fn resume_replays_within_the_buffer_and_refuses_beyond_it() {
        let mut hub = Hub::new(HubLimits {
            resume_buffer: 4,
            reap_after: Duration::from_secs(60),
        });
        let (l, _rx) = link(16);
        let id = hub.connect("u1", None, true, false, l);
        hub.detach(&id, 1);
        for n in 0..3 {
            hub.publish(&event_for("u1", n));
        }
        // seq 1..=3 were queued while inactive; resume from 1 replays them.
        let (l, mut rx) = link(16);
        let again = hub.connect("u1", Some((id.clone(), 1)), true, false, l);
        assert_eq!(again, id);
        let seqs: Vec<i64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|t| seq_of(&t))
            .collect();
        assert_eq!(seqs, vec![1, 2, 3]);

        hub.detach(&id, 1);
        for n in 0..6 {
            hub.publish(&event_for("u1", n));
        }
        let (l, mut rx) = link(16);
        let fresh = hub.connect("u1", Some((id.clone(), 4)), true, false, l);
        assert_ne!(fresh, id);
        assert_eq!(seq_of(&rx.try_recv().unwrap()), 0);
    }

    #[test]
    fn full_queue_discards_the_connection() {
        let mut hub = Hub::new(HubLimits {
            resume_buffer: 4,
            reap_after: Duration::from_secs(60),
        });
        let (l, _rx) = link(2);
        hub.connect("u1", None, true, false, l);
        for n in 0..3 {
            hub.publish(&event_for("u1", n));
        }
        assert!(hub.connections().is_empty());
    }
}
