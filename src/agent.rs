//! The agent's shared state and its JSON-RPC surface: the handshake, the tool
//! catalog and tool calls, and OpenCode events forwarded by the shim.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use jsonrpsee::RpcModule;
use jsonrpsee_types::{ErrorObjectOwned, Params};
use serde_json::Value;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::Config;
use crate::mattermost::connection::{Connector, INBOUND_QUEUE};
use crate::mattermost::ws::Inbound;
use crate::opencode::events::Event;
use crate::opencode::{Client, OpenCode, ShimFetch};
use crate::rpc::protocol::{
    CallContext, InitializeParams, InitializeResponse, OpencodeEventParams, PROTOCOL_VERSION,
    ToolsCallParams, ToolsCallResponse, ToolsListResponse, code, method,
};
use crate::rpc::{NotificationSink, Peer};
use crate::tools::{Tool, ToolError, catalog};

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
    pub connector: Connector,
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
    bridge: RwLock<Result<Arc<crate::bridge::Ctx>, String>>,
    events: Mutex<EventStats>,
    tools: Vec<Box<dyn Tool>>,
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
            connector: Connector::new(inbound_tx),
            inbound: Mutex::new(Some(inbound_rx)),
            events_tx,
            events_rx: Mutex::new(Some(events_rx)),
            initialized: tokio::sync::watch::Sender::new(false),
            init: RwLock::new(None),
            bridge: RwLock::new(Err("starting".into())),
            events: Mutex::new(EventStats::default()),
            tools: catalog(),
        })
    }

    /// The handshake data, once `initialize` has succeeded.
    pub fn init_info(&self) -> Option<InitializeParams> {
        self.init
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Take the inbound Mattermost event stream (once).
    pub fn take_inbound(&self) -> Option<tokio::sync::mpsc::Receiver<Inbound>> {
        self.inbound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Record the bridge's state for `mattermost_status`.
    pub(crate) fn set_bridge(&self, state: Result<Arc<crate::bridge::Ctx>, String>) {
        *self
            .bridge
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    /// The running bridge, for tools that act on sessions and threads; else
    /// why it is not running.
    pub(crate) fn bridge(&self) -> Result<Arc<crate::bridge::Ctx>, String> {
        self.bridge
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// One line on the remote-control loop.
    pub fn bridge_summary(&self) -> String {
        let state = self
            .bridge
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*state {
            Err(why) => format!("not running ({why})"),
            Ok(ctx) => format!("instance {}; {}", ctx.instance.id, ctx.stats.summary()),
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

    fn require_init(&self) -> Result<InitializeParams, ErrorObjectOwned> {
        self.init_info().ok_or_else(|| {
            ErrorObjectOwned::owned::<()>(
                code::NOT_INITIALIZED,
                "not initialized: send `initialize` first",
                None,
            )
        })
    }

    /// The JSON-RPC methods the shim may call.
    pub fn rpc_module(self: &Arc<Self>) -> RpcModule<Agent> {
        let mut module = RpcModule::from_arc(self.clone());
        // Registration only fails on duplicate names, which are constants here.
        let results = [
            module
                .register_method(method::INITIALIZE, |params, agent, _| {
                    agent.initialize(params)
                })
                .map(|_| ()),
            module
                .register_method(method::TOOLS_LIST, |_, agent, _| {
                    agent.require_init()?;
                    Ok::<_, ErrorObjectOwned>(ToolsListResponse {
                        tools: agent.tools.iter().map(|t| t.spec()).collect(),
                    })
                })
                .map(|_| ()),
            module
                .register_async_method(method::TOOLS_CALL, |params, agent, _| async move {
                    agent.tools_call(params).await
                })
                .map(|_| ()),
        ];
        for r in results {
            if let Err(e) = r {
                warn!(error = %e, "method registration failed");
            }
        }
        module
    }

    fn initialize(&self, params: Params<'_>) -> Result<InitializeResponse, ErrorObjectOwned> {
        let p: InitializeParams = params.parse()?;
        if let Some(v) = p.protocol_version
            && v != PROTOCOL_VERSION
        {
            return Err(ErrorObjectOwned::owned::<()>(
                code::INVALID_PARAMS,
                format!(
                    "shim speaks protocol {v}, this agent speaks {PROTOCOL_VERSION}: \
                     install matching versions of the plugin and the agent"
                ),
                None,
            ));
        }
        info!(
            directory = %p.directory,
            opencode = p.opencode_version.as_deref().unwrap_or("?"),
            shim = p.shim_version.as_deref().unwrap_or("?"),
            "initialized by the shim"
        );
        *self
            .init
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(p);
        self.initialized.send_replace(true);
        Ok(InitializeResponse {
            agent_version: AGENT_VERSION.to_owned(),
            protocol_version: PROTOCOL_VERSION,
            tools: self.tools.iter().map(|t| t.spec()).collect(),
        })
    }

    async fn tools_call(
        self: Arc<Self>,
        params: Params<'static>,
    ) -> Result<ToolsCallResponse, ErrorObjectOwned> {
        self.require_init()?;
        let p: ToolsCallParams = params.parse()?;
        let Some(tool) = self.tools.iter().find(|t| t.name() == p.name) else {
            let known: Vec<&str> = self.tools.iter().map(|t| t.name()).collect();
            return Err(ErrorObjectOwned::owned::<()>(
                code::UNKNOWN_TOOL,
                format!(
                    "unknown tool `{}`; this agent has: {}",
                    p.name.escape_debug(),
                    known.join(", ")
                ),
                None,
            ));
        };
        let span = info_span!(
            "tool",
            name = tool.name(),
            session = p.context.session_id.as_deref().unwrap_or("-")
        );
        let result = tool
            .call(&self, p.arguments, &p.context)
            .instrument(span)
            .await;
        match result {
            Ok(out) => Ok(ToolsCallResponse {
                output: out.text,
                title: out.title,
                metadata: out.metadata,
            }),
            Err(e @ ToolError::InvalidArgs { .. }) => Err(ErrorObjectOwned::owned::<()>(
                code::INVALID_PARAMS,
                e.to_string(),
                None,
            )),
            Err(e) => Err(ErrorObjectOwned::owned::<()>(
                code::TOOL_FAILED,
                e.to_string(),
                None,
            )),
        }
    }

    fn on_event(&self, params: Value) {
        let event = match serde_json::from_value::<OpencodeEventParams>(params) {
            Ok(p) => Event::from_value(&p.event),
            Err(e) => {
                debug!(error = %e, "opencode/event without an `event` object; ignored");
                return;
            }
        };
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

impl NotificationSink for Agent {
    fn notification(&self, name: &str, params: Value) {
        match name {
            method::OPENCODE_EVENT => self.on_event(params),
            method::INITIALIZED => debug!("shim confirmed initialization"),
            other => debug!(method = other, "unknown notification ignored"),
        }
    }
}

/// The calling session's context, for tools that act on "this session".
pub fn calling_session(ctx: &CallContext) -> Option<&str> {
    ctx.session_id.as_deref().filter(|s| !s.is_empty())
}
