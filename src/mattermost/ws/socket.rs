//! The worker task's outer life: the reconnect loop with jittered backoff,
//! and one socket from upgrade (header auth, resume URL) through the read
//! loop (keepalive pings, dead-link and handshake timers) to a clean close.
//! What a frame means is decided in [`frames`](super::frames).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
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

use super::catch_up::Pending;
use super::dedupe::Seen;
use super::resume::Session;
use super::shared::Shared;
use super::{Action, CatchUp, Inbound, LinkConfig, LinkState};

/// How long a clean close may take before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum End {
    /// Stop requested, handle dropped, or consumer gone.
    Stop,
    /// The connection failed or was lost; `healthy` when it had been up.
    Lost { error: String, healthy: bool },
}

/// Per-connection handshake state.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) established: bool,
    pub(super) resuming: bool,
}

/// Resolves once the link must stop (flag set or handle dropped).
pub(super) async fn stop_requested(rx: &mut watch::Receiver<bool>) {
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
pub(super) fn backoff(failures: u32, initial: Duration, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(31);
    let bound = initial.saturating_mul(1u32 << exp).min(max);
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// The socket URL, with resume parameters when resuming.
pub(super) fn connect_url(base: &Url, resume: Option<(&str, i64)>) -> Url {
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

pub(super) struct Worker {
    pub(super) cfg: LinkConfig,
    pub(super) catch_up: Arc<dyn CatchUp>,
    pub(super) events: mpsc::Sender<Inbound>,
    pub(super) shared: Arc<Shared>,
    pub(super) state: watch::Sender<LinkState>,
    pub(super) stop: watch::Receiver<bool>,
    /// Resume parameters, when a connection can be resumed.
    pub(super) session: Option<Session>,
    /// Id of the last connection that was up (kept when `session` is given
    /// up), to tell a refused resume from a first connect.
    pub(super) last_connection_id: Option<String>,
    pub(super) resume_failures: u32,
    pub(super) seen: Seen,
    pub(super) seen_edits: Seen,
    /// Channels awaiting a REST catch-up, with the time to catch up from.
    pub(super) pending: BTreeMap<String, Pending>,
    /// Events may have been lost since the last [`Inbound::CaughtUp`].
    pub(super) events_lost: bool,
    pub(super) action_seq: i64,
    /// Actions from the handle, sent while a connection is established.
    pub(super) actions: mpsc::Receiver<Action>,
}

impl Worker {
    pub(super) async fn run(mut self) {
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
            } else if self.token_refused().await {
                tracing::error!(
                    error = %error,
                    "Mattermost refuses the token; the link stops until mattermost_connect is run with a valid one"
                );
                self.state.send_replace(LinkState::TokenRejected {
                    at_ms: chrono::Utc::now().timestamp_millis(),
                });
                return;
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

    /// One REST confirmation that the token is refused, bounded by the
    /// connect timeout and a stop.
    async fn token_refused(&self) -> bool {
        let mut stop = self.stop.clone();
        let check = tokio::time::timeout(self.cfg.connect_timeout, self.catch_up.token_rejected());
        tokio::select! {
            _ = stop_requested(&mut stop) => false,
            r = check => r.unwrap_or(false),
        }
    }

    pub(super) fn scrub(&self, text: &str) -> String {
        self.cfg.token.scrub(text)
    }

    pub(super) fn lost(&self, error: impl AsRef<str>, healthy: bool) -> End {
        End::Lost {
            error: self.scrub(error.as_ref()),
            healthy,
        }
    }

    pub(super) fn request(
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

    async fn send_ping(&mut self, ws: &mut Socket) -> Result<(), String> {
        self.send_action(ws, "ping", serde_json::json!({})).await
    }

    /// Sends one action frame with the next `seq`. The reply (`seq_reply`)
    /// is only read as a sign of life: a failed typing changes nothing.
    async fn send_action(
        &mut self,
        ws: &mut Socket,
        action: &str,
        data: serde_json::Value,
    ) -> Result<(), String> {
        self.action_seq += 1;
        let mut frame = serde_json::json!({"seq": self.action_seq, "action": action});
        if data.as_object().is_some_and(|d| !d.is_empty()) {
            frame["data"] = data;
        }
        let frame = frame.to_string();
        match tokio::time::timeout(self.cfg.connect_timeout, ws.send(Message::text(frame))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.scrub(&format!("sending {action} failed: {e}"))),
            Err(_) => Err(format!("sending {action} timed out")),
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
                Some(action) = self.actions.recv(), if conn.established => {
                    let Action::Typing { channel_id, parent_id } = action;
                    let data = serde_json::json!({"channel_id": channel_id, "parent_id": parent_id});
                    if let Err(e) = self.send_action(ws, "user_typing", data).await {
                        return self.lost(e, conn.established);
                    }
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
