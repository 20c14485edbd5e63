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

/// Counters over the OpenCode events the shim forwarded.
#[derive(Debug, Default, Clone)]
pub struct EventStats {
    pub received: u64,
    /// Known types whose properties did not decode (kept, not fatal).
    pub undecodable: u64,
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
    /// Decoded OpenCode events go to the bridge. Unbounded on purpose: the
    /// sender is the stdio read loop, which must never wait on a consumer.
    events_tx: tokio::sync::mpsc::UnboundedSender<Event>,
    events_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Event>>>,
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
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
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
    pub fn take_events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Event>> {
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

    /// Count a decoded OpenCode event and hand it to the bridge.
    pub(crate) fn event(&self, event: Event) {
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
        if !matches!(event, Event::Other { .. }) {
            // Fails only when the bridge is gone (shutdown).
            let _ = self.events_tx.send(event);
        }
    }
}

/// The calling session's context, for tools that act on "this session".
pub fn calling_session(ctx: &CallContext) -> Option<&str> {
    ctx.session_id.as_deref().filter(|s| !s.is_empty())
}
