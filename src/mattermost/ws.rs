//! The WebSocket link to Mattermost: one long-lived task that keeps a socket
//! to `/api/v4/websocket` open, survives every way a network or a server can
//! fail, and hands each event on exactly once.
//!
//! * **Connect** with `Authorization: Bearer <token>` on the upgrade (header
//!   auth, the only style that can resume). A fresh connection counts as up
//!   once `hello` arrives; its `connection_id` and the next `seq` are kept.
//! * **Resume** by reconnecting with `connection_id` + `sequence_number`. A
//!   resumed connection sends no `hello`, so the link sends a `ping` action at
//!   once: the first frame decides. An event or the ping's reply means the
//!   resume worked; a `hello` with a new id means it was refused and events may
//!   be lost, so every served channel is caught up over REST ([`CatchUp`]).
//!   A gap in `seq` on a live connection is handled the same way.
//! * **Dedupe** posts by id (the last [`DEDUPE_CAPACITY`] ids), skip replayed
//!   frames by `seq`, drop the bot's own `posted`/`post_edited`.
//! * **Keepalive**: the socket is read all the time (tungstenite answers the
//!   server's pings), a `ping` action goes out every `ping_interval`, and a
//!   link that delivers no frame at all for `dead_after` is dropped.
//! * **Reconnect forever** with capped exponential backoff and full jitter,
//!   reset once a connection is up.
//! * **Backpressure**: events go to a bounded channel; the link waits for
//!   room (and stops reading the socket meanwhile), it never drops.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument;
use url::Url;

use super::types::{Event, Post, Reaction};
use crate::config::Secret;

/// How many post ids the link remembers for deduplication.
pub const DEDUPE_CAPACITY: usize = 10_000;
/// How many `(post id, update_at)` keys of edits are remembered.
const EDIT_DEDUPE_CAPACITY: usize = 2_000;
/// Failed REST catch-ups of one channel before the link gives up on it.
const CATCH_UP_TRIES: u32 = 5;
/// Resume attempts that open a socket but never get a first frame before the
/// link stops resuming and asks for a fresh connection.
const RESUME_TRIES: u32 = 3;
/// How long a clean close may take before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where missed posts come from when a resume is refused. The REST client
/// implements it; tests implement it against the simulator.
#[async_trait::async_trait]
pub trait CatchUp: Send + Sync {
    /// Posts of `channel_id` created or updated after `since_ms` (Mattermost `GET /channels/{id}/posts?since=`), any order.
    async fn posts_since(&self, channel_id: &str, since_ms: i64) -> Result<Vec<Post>, String>;
}

/// Settings of the link. [`LinkConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `ws(s)://host[/subpath]/api/v4/websocket`.
    pub ws_url: Url,
    /// Bot access token, sent only in the `Authorization` header.
    pub token: Secret,
    /// The bot's user id: its own `posted`/`post_edited` are dropped.
    pub bot_user_id: String,
    /// Interval of the `ping` action (default 30 s).
    pub ping_interval: Duration,
    /// With no frame of any kind for this long the socket is dropped
    /// (default 2 × `ping_interval` + 10 s).
    pub dead_after: Duration,
    /// Limit on TCP + TLS + upgrade (default 10 s).
    pub connect_timeout: Duration,
    /// Limit on the first frame after the upgrade: `hello`, or for a resume
    /// any event or reply (default 10 s).
    pub hello_timeout: Duration,
    /// Limit on one REST catch-up call (default 30 s).
    pub catch_up_timeout: Duration,
    /// Catch-up starts this long before the newest post delivered in the
    /// channel, to cover clock skew between server nodes (default 1 s).
    pub catch_up_margin: Duration,
    /// First reconnect delay bound (default 1 s).
    pub backoff_initial: Duration,
    /// Largest reconnect delay bound (default 60 s).
    pub backoff_max: Duration,
}

impl LinkConfig {
    pub fn new(ws_url: Url, token: Secret, bot_user_id: impl Into<String>) -> Self {
        let ping_interval = Duration::from_secs(30);
        LinkConfig {
            ws_url,
            token,
            bot_user_id: bot_user_id.into(),
            ping_interval,
            dead_after: ping_interval * 2 + Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            catch_up_timeout: Duration::from_secs(30),
            catch_up_margin: Duration::from_secs(1),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }

    /// Sets `ping_interval` and derives `dead_after` (2 × interval + 10 s).
    pub fn with_ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self.dead_after = interval * 2 + Duration::from_secs(10);
        self
    }
}

/// Something that happened in Mattermost, for the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A new post by someone else. Posts recovered over REST have
    /// `caught_up: true`, an empty `channel_type` and `sender_name`, and no
    /// `mentions` (the REST answer carries none of them).
    Posted {
        post: Post,
        channel_type: String,
        sender_name: String,
        mentions: Vec<String>,
        caught_up: bool,
    },
    PostEdited(Post),
    PostDeleted(Post),
    ReactionAdded(Reaction),
    ReactionRemoved(Reaction),
}

/// Where the link stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Attempt `attempt` (1 after a healthy connection) is under way.
    Connecting { attempt: u32 },
    /// Up: `hello` received, or a resume confirmed (then `server_version` is
    /// the one of the last `hello`).
    Connected {
        connection_id: String,
        server_version: String,
        since: Instant,
    },
    /// Waiting `retry_in` before attempt `attempt`.
    Reconnecting {
        attempt: u32,
        retry_in: Duration,
        last_error: String,
    },
    /// The task has ended.
    Stopped,
}

/// Counters of the link since it was spawned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Fresh connections (a `hello` received).
    pub connects: u64,
    /// Times the link came back after losing a connection (resumed or fresh).
    pub reconnects: u64,
    /// Resumes the server accepted (no event lost).
    pub resumes: u64,
    /// Resumes answered with a new `connection_id` (events may be lost).
    pub resumes_refused: u64,
    /// Gaps in `seq` seen on a live connection.
    pub seq_gaps: u64,
    /// REST catch-up runs.
    pub catch_ups: u64,
    /// Posts delivered by catch-up that the socket never delivered.
    pub posts_recovered: u64,
    /// Events handed to the consumer.
    pub events_delivered: u64,
    /// Posts (and edits) dropped because they had been delivered already.
    pub duplicates_dropped: u64,
    /// The bot's own posts and edits dropped.
    pub own_dropped: u64,
    /// When the last event was handed to the consumer.
    pub last_event: Option<Instant>,
}

/// Why waiting on the link ended without the wanted state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("timed out after {waited:?}; link state: {state}")]
    Timeout { waited: Duration, state: String },
    #[error("the link has stopped")]
    Stopped,
}

#[derive(Debug, Clone, Copy)]
struct ChannelMark {
    /// Newest `create_at` of a post delivered from this channel.
    newest_create_at: Option<i64>,
    /// Wall-clock ms when the channel became served.
    served_since_ms: i64,
}

#[derive(Debug, Default)]
struct Shared {
    stats: Mutex<LinkStats>,
    channels: Mutex<HashMap<String, ChannelMark>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Shared {
    fn stats(&self, f: impl FnOnce(&mut LinkStats)) {
        f(&mut lock(&self.stats));
    }

    fn serve(&self, channel_id: &str) {
        lock(&self.channels)
            .entry(channel_id.to_owned())
            .or_insert_with(|| ChannelMark {
                newest_create_at: None,
                served_since_ms: wall_ms(),
            });
    }

    fn note_post(&self, post: &Post) {
        if post.channel_id.is_empty() {
            return;
        }
        let mut channels = lock(&self.channels);
        let mark = channels
            .entry(post.channel_id.clone())
            .or_insert_with(|| ChannelMark {
                newest_create_at: None,
                served_since_ms: wall_ms(),
            });
        mark.newest_create_at = Some(
            mark.newest_create_at
                .map_or(post.create_at, |n| n.max(post.create_at)),
        );
    }
}

/// The caller's side of a running link. Dropping it stops the link.
#[derive(Debug)]
pub struct LinkHandle {
    state: watch::Receiver<LinkState>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

/// Starts the link task. Events go to `events`; when it is full the link
/// waits, when its receiver is gone the link stops.
pub fn spawn(
    config: LinkConfig,
    catch_up: Arc<dyn CatchUp>,
    events: mpsc::Sender<Inbound>,
) -> LinkHandle {
    let (state_tx, state_rx) = watch::channel(LinkState::Connecting { attempt: 1 });
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::default());
    let worker = Worker {
        cfg: config,
        catch_up,
        events,
        shared: shared.clone(),
        state: state_tx,
        stop: stop_rx,
        session: None,
        last_connection_id: None,
        resume_failures: 0,
        seen: Seen::new(DEDUPE_CAPACITY),
        seen_edits: Seen::new(EDIT_DEDUPE_CAPACITY),
        pending: BTreeMap::new(),
        action_seq: 0,
    };
    tokio::spawn(worker.run());
    LinkHandle {
        state: state_rx,
        shared,
        stop: stop_tx,
    }
}

impl LinkHandle {
    /// The current state.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// A receiver of every state change.
    pub fn subscribe(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Waits until the state satisfies `pred`. Fails on timeout, or when the
    /// link stops without satisfying it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&LinkState) -> bool,
    ) -> Result<LinkState, LinkError> {
        let mut rx = self.state.clone();
        let wait = async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if pred(&s) {
                        return Ok(s.clone());
                    }
                    if *s == LinkState::Stopped {
                        return Err(LinkError::Stopped);
                    }
                }
                if rx.changed().await.is_err() {
                    let s = rx.borrow().clone();
                    return if pred(&s) {
                        Ok(s)
                    } else {
                        Err(LinkError::Stopped)
                    };
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(LinkError::Timeout {
                waited: timeout,
                state: format!("{:?}", self.state()),
            }),
        }
    }

    /// Waits until the link is connected; returns the connection id.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<String, LinkError> {
        match self
            .wait_for(timeout, |s| matches!(s, LinkState::Connected { .. }))
            .await?
        {
            LinkState::Connected { connection_id, .. } => Ok(connection_id),
            _ => Err(LinkError::Stopped),
        }
    }

    /// Waits until the link is connected by a connection made after `after`.
    pub async fn wait_connected_after(
        &self,
        after: Instant,
        timeout: Duration,
    ) -> Result<String, LinkError> {
        match self
            .wait_for(
                timeout,
                |s| matches!(s, LinkState::Connected { since, .. } if *since > after),
            )
            .await?
        {
            LinkState::Connected { connection_id, .. } => Ok(connection_id),
            _ => Err(LinkError::Stopped),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LinkStats {
        lock(&self.shared.stats).clone()
    }

    /// Adds a channel to those caught up after a refused resume. Channels the
    /// link delivered a post from are served already.
    pub fn serve_channel(&self, channel_id: &str) {
        self.shared.serve(channel_id);
    }

    /// The served channels, sorted.
    pub fn served_channels(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.shared.channels).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Stops the link: closes the socket cleanly and ends the task. The state
    /// is `Stopped` afterwards.
    pub async fn disconnect(&self) {
        let _ = self.stop.send(true);
        // The task closes the socket (waiting up to 1 s for the close) and
        // then reports Stopped; shared handles cannot join it, so wait for that.
        let _ = self
            .wait_for(Duration::from_secs(5), |s| *s == LinkState::Stopped)
            .await;
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Remembers the last `cap` keys.
#[derive(Debug)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl Seen {
    fn new(cap: usize) -> Self {
        Seen {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    /// False when the key was there already.
    fn insert(&mut self, key: String) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        self.set.insert(key.clone());
        self.order.push_back(key);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// What the server gave us for a connection.
#[derive(Debug, Clone)]
struct Session {
    connection_id: String,
    next_seq: i64,
    server_version: String,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    since_ms: i64,
    failures: u32,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// Stop requested, handle dropped, or consumer gone.
    Stop,
    /// The connection failed or was lost; `healthy` when it had been up.
    Lost { error: String, healthy: bool },
}

/// Per-connection handshake state.
#[derive(Debug)]
struct Conn {
    established: bool,
    resuming: bool,
}

/// Resolves once the link must stop (flag set or handle dropped).
async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Full jitter: a random delay in `[0, min(max, initial × 2^(n-1))]`.
fn backoff(failures: u32, initial: Duration, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(31);
    let bound = initial.saturating_mul(1u32 << exp).min(max);
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// The socket URL, with resume parameters when resuming.
fn connect_url(base: &Url, resume: Option<(&str, i64)>) -> Url {
    let mut url = base.clone();
    let kept: Vec<(String, String)> = base
        .query_pairs()
        .filter(|(k, _)| k != "connection_id" && k != "sequence_number")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    if !kept.is_empty() || resume.is_some() {
        let mut q = url.query_pairs_mut();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        if let Some((id, seq)) = resume {
            q.append_pair("connection_id", id);
            q.append_pair("sequence_number", &seq.to_string());
        }
    }
    url
}

struct Worker {
    cfg: LinkConfig,
    catch_up: Arc<dyn CatchUp>,
    events: mpsc::Sender<Inbound>,
    shared: Arc<Shared>,
    state: watch::Sender<LinkState>,
    stop: watch::Receiver<bool>,
    /// Resume parameters, when a connection can be resumed.
    session: Option<Session>,
    /// Id of the last connection that was up (kept when `session` is given
    /// up), to tell a refused resume from a first connect.
    last_connection_id: Option<String>,
    resume_failures: u32,
    seen: Seen,
    seen_edits: Seen,
    /// Channels awaiting a REST catch-up, with the time to catch up from.
    pending: BTreeMap<String, Pending>,
    action_seq: i64,
}

impl Worker {
    async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            let attempt = failures + 1;
            self.state.send_replace(LinkState::Connecting { attempt });
            let span = tracing::info_span!(
                "mm_ws_connection",
                attempt,
                connection_id = tracing::field::Empty
            );
            let end = self.connection().instrument(span).await;
            let (error, healthy) = match end {
                End::Stop => break,
                End::Lost { error, healthy } => (error, healthy),
            };
            if healthy {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            let delay = backoff(failures, self.cfg.backoff_initial, self.cfg.backoff_max);
            tracing::warn!(
                error = %error,
                retry_in_ms = delay.as_millis(),
                attempt = failures + 1,
                "mattermost websocket lost; reconnecting"
            );
            self.state.send_replace(LinkState::Reconnecting {
                attempt: failures + 1,
                retry_in: delay,
                last_error: error,
            });
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = stop_requested(&mut stop) => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        tracing::info!("mattermost websocket link stopped");
        self.state.send_replace(LinkState::Stopped);
    }

    fn scrub(&self, text: &str) -> String {
        self.cfg.token.scrub(text)
    }

    fn lost(&self, error: impl AsRef<str>, healthy: bool) -> End {
        End::Lost {
            error: self.scrub(error.as_ref()),
            healthy,
        }
    }

    fn request(
        &self,
        url: &Url,
    ) -> Result<tungstenite::handshake::client::Request, tungstenite::Error> {
        let mut request = url.as_str().into_client_request()?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.cfg.token.expose()))
            .map_err(|_| {
                tungstenite::Error::Url(tungstenite::error::UrlError::UnableToConnect(
                    "the token is not a valid header value".to_owned(),
                ))
            })?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
        Ok(request)
    }

    /// One connection, from the upgrade until it ends.
    async fn connection(&mut self) -> End {
        let resume = self
            .session
            .as_ref()
            .map(|s| (s.connection_id.clone(), s.next_seq));
        let url = connect_url(
            &self.cfg.ws_url,
            resume.as_ref().map(|(id, seq)| (id.as_str(), *seq)),
        );
        if let Some((id, seq)) = &resume {
            tracing::Span::current().record("connection_id", id.as_str());
            tracing::debug!(next_seq = seq, "resuming");
        }
        let request = match self.request(&url) {
            Ok(r) => r,
            Err(e) => return self.lost(format!("bad websocket request: {e}"), false),
        };
        let mut stop = self.stop.clone();
        let connect = tokio::time::timeout(
            self.cfg.connect_timeout,
            // Small frames (pings) must not wait for Nagle.
            tokio_tungstenite::connect_async_with_config(request, None, true),
        );
        let mut ws = tokio::select! {
            _ = stop_requested(&mut stop) => return End::Stop,
            r = connect => match r {
                Err(_) => return self.lost(
                    format!("connect timed out after {:?}", self.cfg.connect_timeout),
                    false,
                ),
                Ok(Err(e)) => return self.lost(format!("connect failed: {e}"), false),
                Ok(Ok((ws, _response))) => ws,
            },
        };
        tracing::debug!("socket upgraded");
        let mut conn = Conn {
            established: false,
            resuming: resume.is_some(),
        };
        // A resumed connection sends no hello: probe at once so the first
        // frame (replayed event, hello, or this ping's reply) tells the
        // outcome. On a fresh connection the probe costs nothing (its reply
        // follows the hello) and its packet acknowledges the upgrade answer,
        // so a server-side Nagle delay does not hold the hello back.
        if let Err(e) = self.send_ping(&mut ws).await {
            if conn.resuming {
                self.resume_failed();
            }
            return self.lost(e, false);
        }
        let end = self.read_loop(&mut ws, &mut conn).await;
        if !conn.established && conn.resuming {
            self.resume_failed();
        }
        if matches!(end, End::Stop) {
            close_gracefully(&mut ws).await;
        }
        end
    }

    fn resume_failed(&mut self) {
        self.resume_failures += 1;
        if self.resume_failures >= RESUME_TRIES {
            tracing::warn!("resume keeps failing; asking for a fresh connection");
            self.session = None;
            self.resume_failures = 0;
        }
    }

    async fn send_ping(&mut self, ws: &mut Socket) -> Result<(), String> {
        self.action_seq += 1;
        let frame = serde_json::json!({"seq": self.action_seq, "action": "ping"}).to_string();
        match tokio::time::timeout(self.cfg.connect_timeout, ws.send(Message::text(frame))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.scrub(&format!("sending ping failed: {e}"))),
            Err(_) => Err("sending ping timed out".to_owned()),
        }
    }

    async fn read_loop(&mut self, ws: &mut Socket, conn: &mut Conn) -> End {
        let mut stop = self.stop.clone();
        let start = tokio::time::Instant::now();
        let handshake_deadline = start + self.cfg.hello_timeout;
        let mut last_frame = start;
        let mut ping = tokio::time::interval_at(
            start + self.cfg.ping_interval,
            self.cfg.ping_interval.max(Duration::from_millis(1)),
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop_requested(&mut stop) => return End::Stop,
                frame = ws.next() => {
                    last_frame = tokio::time::Instant::now();
                    let text = match frame {
                        None => return self.lost("the server ended the stream", conn.established),
                        Some(Err(e)) => {
                            return self.lost(format!("websocket error: {e}"), conn.established);
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let why = frame.map_or_else(
                                || "no close frame".to_owned(),
                                |f| format!("code {} {}", u16::from(f.code), f.reason),
                            );
                            return self.lost(
                                format!("the server closed the socket ({why})"),
                                conn.established,
                            );
                        }
                        Some(Ok(Message::Text(text))) => text,
                        // Pings are answered by tungstenite; pongs and binary
                        // frames only prove the link is alive.
                        Some(Ok(_)) => continue,
                    };
                    if let Err(end) = self.on_text(text.as_str(), conn).await {
                        return end;
                    }
                    // Time spent waiting on the consumer or on REST is not
                    // the server's silence.
                    last_frame = tokio::time::Instant::now();
                }
                _ = ping.tick() => {
                    if let Err(e) = self.send_ping(ws).await {
                        return self.lost(e, conn.established);
                    }
                    if conn.established && !self.pending.is_empty() {
                        if let Err(end) = self.run_catch_up().await {
                            return end;
                        }
                        last_frame = tokio::time::Instant::now();
                    }
                }
                _ = tokio::time::sleep_until(last_frame + self.cfg.dead_after) => {
                    return self.lost(
                        format!("no frame for {:?}; the link is presumed dead", self.cfg.dead_after),
                        conn.established,
                    );
                }
                _ = tokio::time::sleep_until(handshake_deadline), if !conn.established => {
                    let what = if conn.resuming { "no answer to the resume" } else { "no hello" };
                    return self.lost(
                        format!("{what} within {:?}", self.cfg.hello_timeout),
                        false,
                    );
                }
            }
        }
    }

    /// Marks the connection up and publishes the state.
    fn established(&mut self, conn: &mut Conn) {
        conn.established = true;
        self.resume_failures = 0;
        let (connection_id, server_version) = self
            .session
            .as_ref()
            .map(|s| (s.connection_id.clone(), s.server_version.clone()))
            .unwrap_or_default();
        self.last_connection_id = Some(connection_id.clone());
        self.state.send_replace(LinkState::Connected {
            connection_id,
            server_version,
            since: Instant::now(),
        });
    }

    /// Confirms a resume on its first frame.
    fn resumed(&mut self, conn: &mut Conn) {
        tracing::info!("resumed; no event lost");
        self.shared.stats(|s| {
            s.resumes += 1;
            s.reconnects += 1;
        });
        self.established(conn);
    }

    async fn on_text(&mut self, text: &str, conn: &mut Conn) -> Result<(), End> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable websocket frame ignored");
                return Ok(());
            }
        };
        if value.get("seq_reply").is_some() && value.get("event").is_none() {
            // A reply to one of our actions; hello always precedes it, so on
            // a resume it means nothing was missed.
            if !conn.established && conn.resuming {
                self.resumed(conn);
            }
            if value.get("status").and_then(Value::as_str) == Some("FAIL") {
                tracing::debug!(reply = %value, "action failed");
            }
            return Ok(());
        }
        // Every current server numbers events; one that does not is taken
        // as it comes rather than mistaken for a replay of seq 0.
        let numbered = value.get("seq").and_then(Value::as_i64).is_some();
        let event: Event = match serde_json::from_value(value) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "malformed websocket event ignored");
                return Ok(());
            }
        };
        if event.event == "hello" {
            return self.on_hello(&event, conn).await;
        }
        if !conn.established && conn.resuming {
            self.resumed(conn);
        }
        if let Some(session) = self.session.as_mut().filter(|_| numbered) {
            if event.seq < session.next_seq {
                tracing::debug!(seq = event.seq, "replayed event skipped");
                return Ok(());
            }
            if event.seq > session.next_seq {
                tracing::warn!(
                    expected = session.next_seq,
                    got = event.seq,
                    "gap in event sequence; catching up"
                );
                session.next_seq = event.seq + 1;
                self.shared.stats(|s| s.seq_gaps += 1);
                self.schedule_catch_up();
                self.run_catch_up().await?;
            } else {
                session.next_seq = event.seq + 1;
            }
        }
        self.dispatch(&event).await
    }

    async fn on_hello(&mut self, event: &Event, conn: &mut Conn) -> Result<(), End> {
        let connection_id = event.str_field("connection_id").unwrap_or("").to_owned();
        let server_version = event.str_field("server_version").unwrap_or("").to_owned();
        let lost = self
            .last_connection_id
            .as_ref()
            .is_some_and(|old| *old != connection_id);
        let had_connection = self.last_connection_id.is_some();
        tracing::Span::current().record("connection_id", connection_id.as_str());
        tracing::info!(
            server_version = %server_version,
            resumed_refused = conn.resuming && lost,
            "connected"
        );
        self.session = Some(Session {
            connection_id,
            next_seq: event.seq + 1,
            server_version,
        });
        self.shared.stats(|s| {
            s.connects += 1;
            if had_connection && !conn.established {
                s.reconnects += 1;
            }
            if conn.resuming && !conn.established {
                if lost {
                    s.resumes_refused += 1;
                } else {
                    s.resumes += 1;
                }
            }
        });
        if lost {
            self.schedule_catch_up();
        }
        self.established(conn);
        self.run_catch_up().await
    }

    /// Records, for every served channel, where a catch-up must start.
    fn schedule_catch_up(&mut self) {
        let margin = millis(self.cfg.catch_up_margin);
        let channels = lock(&self.shared.channels).clone();
        for (id, mark) in channels {
            let since = mark
                .newest_create_at
                .unwrap_or(mark.served_since_ms)
                .saturating_sub(margin);
            self.pending
                .entry(id)
                .and_modify(|p| p.since_ms = p.since_ms.min(since))
                .or_insert(Pending {
                    since_ms: since,
                    failures: 0,
                });
        }
    }

    /// Fetches missed posts of every pending channel and delivers the new
    /// ones. Channels that fail stay pending and are retried.
    async fn run_catch_up(&mut self) -> Result<(), End> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.shared.stats(|s| s.catch_ups += 1);
        let channels: Vec<(String, Pending)> =
            self.pending.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (channel_id, pending) in channels {
            let mut stop = self.stop.clone();
            let call = tokio::time::timeout(
                self.cfg.catch_up_timeout,
                self.catch_up.posts_since(&channel_id, pending.since_ms),
            );
            let result = tokio::select! {
                _ = stop_requested(&mut stop) => return Err(End::Stop),
                r = call => r,
            };
            let error = match result {
                Ok(Ok(posts)) => {
                    let n = self
                        .deliver_caught_up(&channel_id, pending.since_ms, posts)
                        .await?;
                    tracing::info!(channel_id = %channel_id, recovered = n, "caught up");
                    self.pending.remove(&channel_id);
                    continue;
                }
                Ok(Err(e)) => self.scrub(&e),
                Err(_) => format!("timed out after {:?}", self.cfg.catch_up_timeout),
            };
            let failures = pending.failures + 1;
            if failures >= CATCH_UP_TRIES {
                tracing::error!(channel_id = %channel_id, error = %error, "catch-up failed; giving up, posts may be lost");
                self.pending.remove(&channel_id);
            } else {
                tracing::warn!(channel_id = %channel_id, error = %error, "catch-up failed; will retry");
                if let Some(p) = self.pending.get_mut(&channel_id) {
                    p.failures = failures;
                }
            }
        }
        Ok(())
    }

    async fn deliver_caught_up(
        &mut self,
        channel_id: &str,
        since_ms: i64,
        mut posts: Vec<Post>,
    ) -> Result<u64, End> {
        posts.retain(|p| {
            !p.id.is_empty()
                && p.delete_at == 0
                && p.original_id.is_empty()
                && p.create_at >= since_ms
                && p.user_id != self.cfg.bot_user_id
        });
        posts.sort_by(|a, b| (a.create_at, &a.id).cmp(&(b.create_at, &b.id)));
        let mut n = 0;
        for mut post in posts {
            if self.seen.contains(&post.id) {
                continue;
            }
            if post.channel_id.is_empty() {
                channel_id.clone_into(&mut post.channel_id);
            }
            self.seen.insert(post.id.clone());
            self.shared.note_post(&post);
            self.deliver(Inbound::Posted {
                post,
                channel_type: String::new(),
                sender_name: String::new(),
                mentions: Vec::new(),
                caught_up: true,
            })
            .await?;
            self.shared.stats(|s| s.posts_recovered += 1);
            n += 1;
        }
        Ok(n)
    }

    async fn dispatch(&mut self, event: &Event) -> Result<(), End> {
        match event.event.as_str() {
            "posted" => {
                let Some(post) = event.post() else {
                    tracing::warn!("posted event without a readable post ignored");
                    return Ok(());
                };
                if post.user_id == self.cfg.bot_user_id {
                    self.shared.stats(|s| s.own_dropped += 1);
                    return Ok(());
                }
                if !post.id.is_empty() && !self.seen.insert(post.id.clone()) {
                    self.shared.stats(|s| s.duplicates_dropped += 1);
                    return Ok(());
                }
                self.shared.note_post(&post);
                self.deliver(Inbound::Posted {
                    post,
                    channel_type: event.str_field("channel_type").unwrap_or("").to_owned(),
                    sender_name: event.str_field("sender_name").unwrap_or("").to_owned(),
                    mentions: event.mentions(),
                    caught_up: false,
                })
                .await
            }
            "post_edited" => {
                let Some(post) = event.post() else {
                    tracing::warn!("post_edited event without a readable post ignored");
                    return Ok(());
                };
                if post.user_id == self.cfg.bot_user_id {
                    self.shared.stats(|s| s.own_dropped += 1);
                    return Ok(());
                }
                if !self
                    .seen_edits
                    .insert(format!("{}@{}", post.id, post.update_at))
                {
                    self.shared.stats(|s| s.duplicates_dropped += 1);
                    return Ok(());
                }
                self.deliver(Inbound::PostEdited(post)).await
            }
            "post_deleted" => match event.post() {
                Some(post) => self.deliver(Inbound::PostDeleted(post)).await,
                None => Ok(()),
            },
            "reaction_added" => match event.reaction() {
                Some(r) => self.deliver(Inbound::ReactionAdded(r)).await,
                None => Ok(()),
            },
            "reaction_removed" => match event.reaction() {
                Some(r) => self.deliver(Inbound::ReactionRemoved(r)).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Hands one event to the consumer, waiting for room.
    async fn deliver(&mut self, inbound: Inbound) -> Result<(), End> {
        let mut stop = self.stop.clone();
        tokio::select! {
            biased;
            _ = stop_requested(&mut stop) => Err(End::Stop),
            sent = self.events.send(inbound) => match sent {
                Ok(()) => {
                    self.shared.stats(|s| {
                        s.events_delivered += 1;
                        s.last_event = Some(Instant::now());
                    });
                    Ok(())
                }
                Err(_) => {
                    tracing::info!("event consumer gone; stopping the link");
                    Err(End::Stop)
                }
            },
        }
    }
}

/// Sends a normal close and waits briefly for the server's answer.
async fn close_gracefully(ws: &mut Socket) {
    let close = async {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, close).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_url_replaces_old_parameters() {
        let base =
            Url::parse("wss://mm.example/sub/api/v4/websocket?connection_id=old&x=1").unwrap();
        let fresh = connect_url(&base, None);
        assert_eq!(fresh.as_str(), "wss://mm.example/sub/api/v4/websocket?x=1");
        let resume = connect_url(&base, Some(("abc", 7)));
        assert_eq!(
            resume.as_str(),
            "wss://mm.example/sub/api/v4/websocket?x=1&connection_id=abc&sequence_number=7"
        );
        let plain = Url::parse("ws://h/api/v4/websocket").unwrap();
        assert_eq!(
            connect_url(&plain, None).as_str(),
            "ws://h/api/v4/websocket"
        );
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for n in 1..40 {
            let d = backoff(n, initial, max);
            let bound = initial.saturating_mul(1u32 << (n - 1).min(31)).min(max);
            assert!(d <= bound, "{n}: {d:?} > {bound:?}");
        }
        // Large attempt numbers never overflow.
        assert!(backoff(u32::MAX, initial, max) <= max);
    }

    #[test]
    fn seen_ids_forget_the_oldest() {
        let mut seen = Seen::new(3);
        for id in ["a", "b", "c"] {
            assert!(seen.insert(id.to_owned()));
        }
        assert!(!seen.insert("a".to_owned()));
        assert!(seen.insert("d".to_owned()));
        assert!(!seen.contains("a"));
        assert!(seen.contains("b") && seen.contains("d"));
        assert_eq!(seen.order.len(), 3);
    }

    struct Never;

    #[async_trait::async_trait]
    impl CatchUp for Never {
        async fn posts_since(&self, _: &str, _: i64) -> Result<Vec<Post>, String> {
            Ok(Vec::new())
        }
    }

    /// A worker that is never run, for its pure parts; keeps the stop sender
    /// alive with it.
    fn worker(events: mpsc::Sender<Inbound>) -> (Worker, watch::Sender<bool>) {
        let (state, _) = watch::channel(LinkState::Stopped);
        let (stop_tx, stop) = watch::channel(false);
        let worker = Worker {
            cfg: LinkConfig::new(
                Url::parse("ws://h/api/v4/websocket").unwrap(),
                Secret::new("tok-secret-123"),
                "bot",
            ),
            catch_up: Arc::new(Never),
            events,
            shared: Arc::new(Shared::default()),
            state,
            stop,
            session: None,
            last_connection_id: None,
            resume_failures: 0,
            seen: Seen::new(10),
            seen_edits: Seen::new(10),
            pending: BTreeMap::new(),
            action_seq: 0,
        };
        (worker, stop_tx)
    }

    #[test]
    fn request_carries_the_token_only_in_the_header() {
        let (events, _rx) = mpsc::channel(1);
        let (worker, _stop) = worker(events);
        let url = connect_url(&worker.cfg.ws_url, Some(("c", 3)));
        let req = worker.request(&url).unwrap();
        assert!(!req.uri().to_string().contains("tok-secret-123"));
        let auth = req.headers().get(AUTHORIZATION).unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(auth.to_str().unwrap(), "Bearer tok-secret-123");
        assert!(!format!("{:?}", worker.cfg).contains("tok-secret-123"));
        match worker.lost("failed near tok-secret-123", false) {
            End::Lost { error, .. } => assert!(!error.contains("tok-secret-123")),
            End::Stop => panic!("expected Lost"),
        }
    }

    fn post(id: &str, create_at: i64) -> Post {
        Post {
            id: id.to_owned(),
            create_at,
            update_at: create_at,
            user_id: "alice".to_owned(),
            channel_id: "c1".to_owned(),
            ..Post::default()
        }
    }

    #[tokio::test]
    async fn catch_up_skips_history_deleted_own_old_and_seen_posts() {
        let (events, mut rx) = mpsc::channel(16);
        let (mut worker, _stop) = worker(events);
        worker.seen.insert("seen".to_owned());
        let history = Post {
            original_id: "p2".to_owned(),
            delete_at: 1_500,
            ..post("hist", 1_400)
        };
        let deleted = Post {
            delete_at: 1_600,
            ..post("gone", 1_300)
        };
        let own = Post {
            user_id: "bot".to_owned(),
            ..post("mine", 1_200)
        };
        // An old root bumped by a reply: updated after `since`, created before.
        let old_root = Post {
            update_at: 1_900,
            ..post("root", 500)
        };
        let posts = vec![
            post("p2", 1_800),
            history,
            deleted,
            own,
            old_root,
            post("seen", 1_100),
            post("p1", 1_700),
        ];
        let n = worker.deliver_caught_up("c1", 1_000, posts).await.unwrap();
        assert_eq!(n, 2);
        let mut got = Vec::new();
        while let Ok(Inbound::Posted {
            post, caught_up, ..
        }) = rx.try_recv()
        {
            assert!(caught_up);
            got.push(post.id);
        }
        assert_eq!(got, vec!["p1", "p2"], "oldest first, each once");
        let marks = lock(&worker.shared.channels).clone();
        assert_eq!(
            marks.get("c1").and_then(|m| m.newest_create_at),
            Some(1_800)
        );
        // A second catch-up over the same window delivers nothing new.
        let again = worker
            .deliver_caught_up("c1", 1_000, vec![post("p1", 1_700), post("p2", 1_800)])
            .await
            .unwrap();
        assert_eq!(again, 0);
    }

    #[test]
    fn catch_up_starts_before_the_newest_delivered_post() {
        let (events, _rx) = mpsc::channel(1);
        let (mut worker, _stop) = worker(events);
        worker.shared.note_post(&post("a", 50_000));
        worker.shared.note_post(&post("b", 40_000));
        worker.schedule_catch_up();
        assert_eq!(worker.pending.get("c1").map(|p| p.since_ms), Some(49_000));
        // A later gap never moves an outstanding start forward.
        worker.shared.note_post(&post("c", 90_000));
        worker.schedule_catch_up();
        assert_eq!(worker.pending.get("c1").map(|p| p.since_ms), Some(49_000));
    }
}
