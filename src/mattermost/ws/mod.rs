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
//!
//! This file holds the public types; the worker is split by job: `handle`
//! (spawn and the caller's handle), `socket` (reconnect loop and one
//! socket's life), `frames` (decoding, sequence tracking, dispatch),
//! `resume` (hello and resume outcome), `catch_up` (REST recovery),
//! `dedupe` and `shared` (state of the worker and of both sides).

mod catch_up;
mod dedupe;
mod frames;
mod handle;
mod resume;
mod shared;
mod socket;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use url::Url;

use super::types::{Post, Reaction};
use crate::config::Secret;

pub use handle::ActionRefused;
pub use handle::{LinkHandle, spawn};

/// How many post ids the link remembers for deduplication.
pub const DEDUPE_CAPACITY: usize = 10_000;
/// How many `(post id, update_at)` keys of edits are remembered.
const EDIT_DEDUPE_CAPACITY: usize = 2_000;
/// Outgoing actions waiting for the socket. Typing is the only one and is
/// worth nothing late, so a full queue drops the newest instead of waiting.
const ACTION_QUEUE: usize = 64;

/// An action the agent sends over the socket instead of REST: it costs no
/// HTTP request, so it never competes with answers for the rate budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Mattermost's `user_typing`: "… is typing" in a channel or thread.
    Typing {
        channel_id: String,
        parent_id: String,
    },
}

/// Where missed posts come from when a resume is refused. The REST client
/// implements it; tests implement it against the simulator.
#[async_trait::async_trait]
pub trait CatchUp: Send + Sync {
    /// Posts of `channel_id` created or updated after `since_ms` (Mattermost `GET /channels/{id}/posts?since=`), any order.
    async fn posts_since(&self, channel_id: &str, since_ms: i64) -> Result<Vec<Post>, String>;

    /// Whether the server refuses the token right now (REST says 401). Asked
    /// when a connection failed to come up, so a revoked token ends the link
    /// instead of reconnecting forever; anything but a clear refusal is no.
    async fn token_rejected(&self) -> bool {
        false
    }
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
    /// Events may have been lost (a refused resume, a gap in `seq`) and the
    /// posts among them were delivered by catch-up. Nothing replays the
    /// rest, such as reactions: what still matters must be read over REST.
    CaughtUp,
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
    /// The server refused the token (confirmed over REST) at `at_ms` (Unix
    /// ms): the task has ended, and only a new connect can help.
    TokenRejected { at_ms: i64 },
}

impl LinkState {
    /// Whether the link's task is over (stopped, or given up on the token).
    pub fn is_ended(&self) -> bool {
        matches!(self, LinkState::Stopped | LinkState::TokenRejected { .. })
    }
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
