//! The tool catalog: every tool the shim registers with OpenCode.
//!
//! Each tool's arguments are a Rust type whose doc comments become the JSON
//! Schema the model sees; [`export`] writes the same catalog to `tools/`.

mod connect;
pub mod export;
mod monitor;
mod schedule;
mod send_file;
mod sessions;
mod status;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::agent::Agent;
use crate::rpc::protocol::{CallContext, ToolSpec};

/// What a tool returns to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub title: Option<String>,
    pub metadata: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("invalid arguments for `{tool}`: {reason}")]
    InvalidArgs { tool: &'static str, reason: String },
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait Tool: Send + Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn input_schema(&self) -> Value;
    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError>;

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().to_owned(),
            description: self.description().to_owned(),
            input_schema: self.input_schema(),
        }
    }
}

/// Every tool that works end to end, in catalog order.
pub fn catalog() -> Vec<Box<dyn Tool>> {
    vec![
        Box::new(connect::ConnectTool),
        Box::new(connect::DisconnectTool),
        Box::new(status::StatusTool),
        Box::new(sessions::ListSessionsTool),
        Box::new(sessions::SelectSessionTool),
        Box::new(sessions::CurrentSessionTool),
        Box::new(monitor::MonitorTool),
        Box::new(monitor::UnmonitorTool),
        Box::new(send_file::SendFileTool),
        Box::new(schedule::ScheduleAddTool),
        Box::new(schedule::ScheduleListTool),
        Box::new(schedule::ScheduleRemoveTool),
        Box::new(schedule::ScheduleEnableTool),
        Box::new(schedule::ScheduleDisableTool),
        Box::new(schedule::ScheduleRunTool),
    ]
}

/// The JSON Schema of an arguments type: inlined (no `$ref`, which the shim's
/// converter does not follow), without the draft and title noise.
pub fn schema_of<A: JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
    });
    let schema = settings.into_generator().into_root_schema_for::<A>();
    let mut value = schema.to_value();
    if let Some(obj) = value.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
        obj.entry("properties")
            .or_insert_with(|| Value::Object(Default::default()));
    }
    value
}

/// Decode a tool's arguments; `null` (no arguments) counts as `{}`.
pub fn parse_args<A: DeserializeOwned>(tool: &'static str, args: Value) -> Result<A, ToolError> {
    let args = if args.is_null() {
        Value::Object(Default::default())
    } else {
        args
    };
    if !args.is_object() {
        return Err(ToolError::InvalidArgs {
            tool,
            reason: "arguments must be a JSON object".into(),
        });
    }
    serde_json::from_value(args).map_err(|e| ToolError::InvalidArgs {
        tool,
        reason: e.to_string(),
    })
}
