//! Wire types of the shim ⇄ agent protocol: JSON-RPC 2.0, one object per line.
//!
//! Method names are `resource/verb`; payloads are `*Params` / `*Response` with
//! camelCase fields. Unknown fields are ignored everywhere so either side can
//! grow without breaking the other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped when a change is not backwards compatible.
pub const PROTOCOL_VERSION: u32 = 1;

pub mod method {
    /// shim → agent request: handshake, answers the tool catalog.
    pub const INITIALIZE: &str = "initialize";
    /// shim → agent notification after `initialize` succeeded.
    pub const INITIALIZED: &str = "initialized";
    /// shim → agent request: the catalog again.
    pub const TOOLS_LIST: &str = "tools/list";
    /// shim → agent request: run one tool.
    pub const TOOLS_CALL: &str = "tools/call";
    /// shim → agent notification: one OpenCode bus event.
    pub const OPENCODE_EVENT: &str = "opencode/event";
    /// shim → agent notification: shut down now.
    pub const EXIT: &str = "exit";
    /// agent → shim request: an HTTP request against OpenCode's API.
    pub const OPENCODE_FETCH: &str = "opencode/fetch";
    /// agent → shim notification: a log line worth surfacing.
    pub const LOG_MESSAGE: &str = "log/message";
    /// agent → shim notification: show a toast in OpenCode's TUI.
    pub const TUI_TOAST: &str = "tui/toast";
    /// shim → agent notification: events held while the agent was not ready
    /// overflowed, and this many were dropped.
    pub const EVENTS_DROPPED: &str = "opencode/eventsDropped";
}

/// JSON-RPC and application error codes.
pub mod code {
    pub const PARSE_ERROR: i32 = -32700;
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    pub const INTERNAL_ERROR: i32 = -32603;
    /// A tool ran and failed; the message is meant for the model and user.
    pub const TOOL_FAILED: i32 = -32001;
    /// Any call but `initialize` before the handshake.
    pub const NOT_INITIALIZED: i32 = -32002;
    /// `tools/call` named a tool that is not in the catalog.
    pub const UNKNOWN_TOOL: i32 = -32003;
    /// The agent is shutting down or overloaded; retry later.
    pub const UNAVAILABLE: i32 = -32004;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InitializeParams {
    /// The OpenCode instance's working directory.
    pub directory: String,
    /// The project's worktree root (files may leave only from inside it).
    pub worktree: String,
    #[serde(rename = "projectID")]
    pub project_id: String,
    /// Where OpenCode says it serves its API; nothing may listen there in TUI
    /// and `opencode run` mode, hence `opencode/fetch`.
    pub server_url: String,
    pub opencode_version: Option<String>,
    pub shim_version: Option<String>,
    pub protocol_version: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResponse {
    pub agent_version: String,
    pub protocol_version: u32,
    pub tools: Vec<ToolSpec>,
}

/// One tool of the catalog, as registered with OpenCode and written to `tools/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema (draft 2020-12 subset, no `$ref`) of the arguments object.
    pub input_schema: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolsListResponse {
    pub tools: Vec<ToolSpec>,
}

/// Who called a tool: only OpenCode's `ToolContext` knows this.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CallContext {
    #[serde(rename = "sessionID")]
    pub session_id: Option<String>,
    #[serde(rename = "messageID")]
    pub message_id: Option<String>,
    pub agent: Option<String>,
    pub directory: Option<String>,
    pub worktree: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolsCallParams {
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
    #[serde(default)]
    pub context: CallContext,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolsCallResponse {
    /// Text the model reads.
    pub output: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpencodeEventParams {
    pub event: Value,
}

/// An HTTP request the shim performs with OpenCode's own client fetch.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FetchParams {
    pub method: String,
    /// Path below OpenCode's API root, e.g. `/session`.
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// UTF-8 request body (JSON for every API call we make).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct FetchResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// `base64` when the body was not valid UTF-8; absent for text.
    pub body_encoding: Option<String>,
}

/// A toast for the person at the TUI; `variant` is `info`, `success`,
/// `warning` or `error`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToastParams {
    pub title: String,
    pub message: String,
    pub variant: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EventsDroppedParams {
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogMessageParams {
    pub level: String,
    pub message: String,
}
