//! The agent's JSON-RPC surface for the shim: the `initialize` handshake,
//! the tool catalog and tool calls, and OpenCode events forwarded as
//! notifications.

use std::sync::Arc;

use jsonrpsee::RpcModule;
use jsonrpsee_types::{ErrorObjectOwned, Params};
use serde_json::Value;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::agent::{AGENT_VERSION, Agent};
use crate::opencode::events::Event;
use crate::rpc::NotificationSink;
use crate::rpc::protocol::{
    EventsDroppedParams, InitializeParams, InitializeResponse, OpencodeEventParams,
    PROTOCOL_VERSION, ToolsCallParams, ToolsCallResponse, ToolsListResponse, code, method,
};
use crate::sessions::Hooks;
use crate::tools::{Tool, ToolError, catalog};

/// The agent as the shim sees it: its state and its tools.
pub struct Server {
    pub agent: Arc<Agent>,
    tools: Vec<Box<dyn Tool>>,
}

impl Server {
    pub fn new(agent: Arc<Agent>) -> Arc<Server> {
        Arc::new(Server {
            agent,
            tools: catalog(),
        })
    }

    fn require_init(&self) -> Result<InitializeParams, ErrorObjectOwned> {
        self.agent.init_info().ok_or_else(|| {
            ErrorObjectOwned::owned::<()>(
                code::NOT_INITIALIZED,
                "not initialized: send `initialize` first",
                None,
            )
        })
    }

    /// The JSON-RPC methods the shim may call.
    pub fn rpc_module(self: &Arc<Self>) -> RpcModule<Server> {
        let mut module = RpcModule::from_arc(self.clone());
        // Registration only fails on duplicate names, which are constants here.
        let results = [
            module
                .register_method(method::INITIALIZE, |params, server, _| {
                    server.initialize(params)
                })
                .map(|_| ()),
            module
                .register_method(method::TOOLS_LIST, |_, server, _| {
                    server.require_init()?;
                    Ok::<_, ErrorObjectOwned>(ToolsListResponse {
                        tools: server.tools.iter().map(|t| t.spec()).collect(),
                    })
                })
                .map(|_| ()),
            module
                .register_async_method(method::TOOLS_CALL, |params, server, _| async move {
                    server.tools_call(params).await
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
        self.agent.set_initialized(p);
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
            .call(&self.agent, p.arguments, &p.context)
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

    fn on_events_dropped(&self, params: Value) {
        let count = serde_json::from_value::<EventsDroppedParams>(params)
            .map(|p| p.count)
            .unwrap_or(0);
        warn!(
            count,
            "the shim dropped OpenCode events while the agent was not ready"
        );
        self.events_lost();
    }

    /// Requests are read again from OpenCode (turns settle from its stored
    /// messages by themselves); a bridge not yet running resyncs at start.
    fn events_lost(&self) {
        if let Ok(router) = self.agent.bridge() {
            router.events_lost();
        }
    }

    fn on_event(&self, params: Value) {
        match serde_json::from_value::<OpencodeEventParams>(params) {
            Ok(p) => {
                if !self.agent.event(Event::from_value(&p.event)) {
                    self.events_lost();
                }
            }
            Err(e) => debug!(error = %e, "opencode/event without an `event` object; ignored"),
        }
    }
}

impl NotificationSink for Server {
    fn notification(&self, name: &str, params: Value) {
        match name {
            method::OPENCODE_EVENT => self.on_event(params),
            method::INITIALIZED => debug!("shim confirmed initialization"),
            method::EVENTS_DROPPED => self.on_events_dropped(params),
            other => debug!(method = other, "unknown notification ignored"),
        }
    }
}
