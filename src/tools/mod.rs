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
use crate::config::is_mattermost_id;
use crate::router::Router;
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

/// A user named by id or `@username`: the id and how to call them. Names
/// are looked up over REST, which needs no WebSocket.
pub(crate) async fn user_id(ctx: &Router, user: &str) -> Result<(String, String), ToolError> {
    let name = user.trim().trim_start_matches('@');
    if is_mattermost_id(name) && !user.trim().starts_with('@') {
        return Ok((name.to_owned(), format!("user {name}")));
    }
    if name.is_empty() {
        return Err(ToolError::Failed(
            "`user` is empty: give a user id or @username".into(),
        ));
    }
    let link = ctx
        .monitor
        .rest(&ctx.engine.app)
        .await
        .map_err(|e| ToolError::Failed(format!("cannot look up @{name}: {e}")))?;
    let found = link
        .rest
        .user_by_username(name)
        .await
        .map_err(|e| ToolError::Failed(format!("no Mattermost user @{name}: {e}")))?;
    Ok((found.id, format!("@{}", found.username)))
}

/// The person a tool acts for: a user id or `@username`, the owner by
/// default, who must be the owner or an allowed user (`role` says for what).
pub(crate) async fn permitted_user(
    ctx: &Router,
    user: Option<&str>,
    role: &str,
) -> Result<(String, String), ToolError> {
    let (id, label) = match user.map(str::trim).filter(|u| !u.is_empty()) {
        None => {
            let owner = ctx.engine.app.access.owner().ok_or_else(|| {
                ToolError::Failed(
                    "no owner is configured: pass `user`, or set MATTERMOST_OWNER_USER_ID".into(),
                )
            })?;
            (owner.to_owned(), format!("the owner ({owner})"))
        }
        Some(user) => user_id(ctx, user).await?,
    };
    if !ctx.engine.app.access.permitted_users().contains(&id) {
        return Err(ToolError::Failed(format!(
            "{label} may not {role}; only the owner (MATTERMOST_OWNER_USER_ID) and \
             OPENCODE_MM_ALLOWED_USERS may"
        )));
    }
    Ok((id, label))
}
