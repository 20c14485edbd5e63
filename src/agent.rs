//! The agent process's state: what exists from start-up, before and beside
//! the bridge: configuration, the shim's handshake, the Mattermost link, the
//! OpenCode client, counters of the events the shim forwards, and the
//! running bridge (or why it is not running). Tools act through it; the
//! JSON-RPC surface ([`crate::server`]) fills it.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tracing::debug;

use crate::config::Config;
use crate::mattermost::connection::{Connector, INBOUND_QUEUE};
use crate::mattermost::ws::Inbound;
use crate::opencode::events::Event;
use crate::opencode::{Client, OpenCode, ShimFetch};
use crate::router::Router;
use crate::rpc::Peer;
use crate::rpc::protocol::{CallContext, InitializeParams};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// OpenCode events held for the bridge before new ones are dropped (and
/// requests resynced): far more than a burst of streaming deltas needs.
pub const EVENT_QUEUE: usize = 16_384;

/// Counters over the OpenCode events the shim forwarded.
#[derive(Debug, Default, Clone)]
pub struct EventStats {
    pub received: u64,
    /// Known types whose properties did not decode (kept, not fatal).
    pub undecodable: u64,
    /// Dropped because the bridge's queue was full (then resynced).
    pub dropped: u64,
    pub last: Option<(String, Instant)>,
}

pub struct Agent {
    pub config: Config,
    pub started: Instant,
    pub peer: Peer,
    pub opencode: Arc<dyn OpenCode>,
    /// Where logs go, or why they cannot be written to a file.
    pub log_target: Result<std::path::PathBuf, String>,
    /// The Mattermost connection, if any.
    pub connector: Arc<Connector>,
    /// Inbound Mattermost events, until the consumer takes them.
    inbound: Mutex<Option<tokio::sync::mpsc::Receiver<Inbound>>>,
    /// Decoded OpenCode events go to the bridge. The sender is the stdio
    /// read loop, which must never wait on a consumer (answers to our own
    /// `opencode/fetch` come the same way), so a full queue drops the event
    /// and counts it, and the caller resyncs.
    events_tx: tokio::sync::mpsc::Sender<Event>,
    events_rx: Mutex<Option<tokio::sync::mpsc::Receiver<Event>>>,
    /// Flips to true once `initialize` succeeded.
    initialized: tokio::sync::watch::Sender<bool>,
    init: RwLock<Option<InitializeParams>>,
    /// Set once the bridge runs; else why it does not.
    bridge: RwLock<Result<Arc<Router>, String>>,
    events: Mutex<EventStats>,
}

impl Agent {
    /// An agent whose OpenCode access goes through the shim.
    pub fn new(
        config: Config,
        peer: Peer,
        log_target: Result<std::path::PathBuf, String>,
    ) -> Arc<Self> {
        let opencode = Arc::new(Client::new(ShimFetch::new(
            peer.clone(),
            config.fetch_timeout,
        )));
        Self::with_opencode(config, peer, opencode, log_target)
    }

    pub fn with_opencode(
        config: Config,
        peer: Peer,
        opencode: Arc<dyn OpenCode>,
        log_target: Result<std::path::PathBuf, String>,
    ) -> Arc<Self> {
        let (inbound_tx, inbound_rx) = tokio::sync::mpsc::channel(INBOUND_QUEUE);
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        Arc::new(Self {
            config,
            started: Instant::now(),
            peer,
            opencode,
            log_target,
            connector: Arc::new(Connector::new(inbound_tx)),
            inbound: Mutex::new(Some(inbound_rx)),
            events_tx,
            events_rx: Mutex::new(Some(events_rx)),
            initialized: tokio::sync::watch::Sender::new(false),
            init: RwLock::new(None),
            bridge: RwLock::new(Err("starting".into())),
            events: Mutex::new(EventStats::default()),
        })
    }

    /// The handshake data, once `initialize` has succeeded.
    pub fn init_info(&self) -> Option<InitializeParams> {
        self.init
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Record a successful handshake.
    pub(crate) fn set_initialized(&self, params: InitializeParams) {
        *self
            .init
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(params);
        self.initialized.send_replace(true);
    }

    /// Take the inbound Mattermost event stream (once).
    pub fn take_inbound(&self) -> Option<tokio::sync::mpsc::Receiver<Inbound>> {
        self.inbound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Record the bridge's state for `mattermost_status`.
    pub(crate) fn set_bridge(&self, state: Result<Arc<Router>, String>) {
        *self
            .bridge
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    /// The running bridge, for tools that act on sessions and threads; else
    /// why it is not running.
    pub(crate) fn bridge(&self) -> Result<Arc<Router>, String> {
        self.bridge
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// One line on the remote-control loop.
    pub fn bridge_summary(&self) -> String {
        match &*self
            .bridge
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            Err(why) => format!("not running ({why})"),
            Ok(router) => router.summary(),
        }
    }

    /// Take the stream of decoded OpenCode events (once). Events sent before
    /// anyone takes it are kept.
    pub fn take_events(&self) -> Option<tokio::sync::mpsc::Receiver<Event>> {
        self.events_rx
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Wait until the shim has sent `initialize`, and return what it said.
    pub async fn wait_initialized(&self) -> InitializeParams {
        let mut rx = self.initialized.subscribe();
        loop {
            if let Some(info) = self.init_info() {
                return info;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`; keep polling slowly.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }

    pub fn event_stats(&self) -> EventStats {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Count a decoded OpenCode event and hand it to the bridge; false when
    /// the bridge's queue was full and the event was dropped.
    pub(crate) fn event(&self, event: Event) -> bool {
        {
            let mut stats = self
                .events
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            stats.received += 1;
            if let Event::Other {
                problem: Some(problem),
                kind,
            } = &event
            {
                stats.undecodable += 1;
                debug!(kind, problem, "event did not decode; kept as Other");
            }
            stats.last = Some((event.kind().to_owned(), Instant::now()));
        }
        if matches!(event, Event::Other { .. }) {
            return true;
        }
        match self.events_tx.try_send(event) {
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                self.events
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .dropped += 1;
                false
            }
            // Closed only when the bridge is gone (shutdown).
            _ => true,
        }
    }
}

/// The calling session's context, for tools that act on "this session".
pub fn calling_session(ctx: &CallContext) -> Option<&str> {
    ctx.session_id.as_deref().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(n: usize) -> Event {
        Event::from_value(&serde_json::json!({
            "type": "session.idle",
            "properties": {"sessionID": format!("ses_{n}")}
        }))
    }

    /// Nobody reads the bridge's queue: it holds `EVENT_QUEUE` events, then
    /// drops and counts the rest instead of growing.
    #[tokio::test]
    async fn a_full_event_queue_drops_and_counts_instead_of_growing() {
        let config = Config::from_sources(&|_| None, None);
        let (peer, _out) = crate::rpc::transport::channel();
        let agent = Agent::new(config, peer, Err("no log in tests".into()));
        let kept = (0..EVENT_QUEUE + 25)
            .filter(|n| agent.event(idle(*n)))
            .count();
        assert_eq!(kept, EVENT_QUEUE);
        let stats = agent.event_stats();
        assert_eq!(stats.dropped, 25);
        assert_eq!(stats.received, (EVENT_QUEUE + 25) as u64);
        // Room again once the bridge reads one.
        let mut rx = agent.take_events().into_iter().next();
        let first = rx.as_mut().and_then(|rx| rx.try_recv().ok());
        assert!(first.is_some());
        assert!(agent.event(idle(0)));
    }
}
