//! `mattermost_list_sessions`, `mattermost_select_session` and
//! `mattermost_current_session`: the TUI side of `!sessions`, `!use` and
//! `!current`, sharing their code.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Tool, ToolError, ToolOutput, parse_args, schema_of};
use crate::agent::Agent;
use crate::commands::ops as exec;
use crate::mattermost::connection::Connection;
use crate::router::Router;
use crate::rpc::protocol::CallContext;
use crate::store::now_millis;

/// Arguments of `mattermost_list_sessions` (none).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {}

/// Arguments of `mattermost_select_session`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectArgs {
    /// The session: its id, short id, or a unique prefix. Default: the
    /// session calling the tool.
    #[serde(default)]
    pub session: Option<String>,
    /// The Mattermost user whose DM with the bot is attached: a user id or
    /// `@username`, who must be the owner or an allowed user. Default: the
    /// owner.
    #[serde(default)]
    pub user: Option<String>,
}

/// Arguments of `mattermost_current_session`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CurrentArgs {
    /// Whose DM to describe (user id or `@username`). Default: the owner.
    #[serde(default)]
    pub user: Option<String>,
}

pub struct ListSessionsTool;
pub struct SelectSessionTool;
pub struct CurrentSessionTool;

fn bridge(agent: &Agent) -> Result<Arc<Router>, ToolError> {
    agent
        .bridge()
        .map_err(|why| ToolError::Failed(format!("the Mattermost bridge is not running: {why}")))
}

async fn connection(agent: &Agent) -> Result<Arc<Connection>, ToolError> {
    agent.connector.current().await.ok_or_else(|| {
        ToolError::Failed("not connected to Mattermost; call `mattermost_connect` first".into())
    })
}

fn text(text: String) -> ToolOutput {
    ToolOutput {
        text,
        title: None,
        metadata: None,
    }
}

#[async_trait]
impl Tool for ListSessionsTool {
    fn name(&self) -> &'static str {
        "mattermost_list_sessions"
    }

    fn description(&self) -> &'static str {
        "List this OpenCode instance's sessions, newest first, with status (busy or idle), \
         age, directory and a link to each one's Mattermost thread, as `!sessions` does in chat."
    }

    fn input_schema(&self) -> Value {
        schema_of::<ListArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        call: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let _: ListArgs = parse_args(self.name(), args)?;
        let ctx = bridge(agent)?;
        let conn = agent.connector.current().await;
        exec::sessions_report(&ctx.engine, conn.as_deref(), call.session_id.as_deref())
            .await
            .map(text)
            .map_err(ToolError::Failed)
    }
}

#[async_trait]
impl Tool for SelectSessionTool {
    fn name(&self) -> &'static str {
        "mattermost_select_session"
    }

    fn description(&self) -> &'static str {
        "Attach a session to a user's DM with the bot (default: this session and the owner), as \
         `!use` does in chat: the session gets a Mattermost thread if it has none, and new \
         messages in that DM go to it. Prompts typed in the TUI then appear in the thread too."
    }

    fn input_schema(&self) -> Value {
        schema_of::<SelectArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        call: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: SelectArgs = parse_args(self.name(), args)?;
        let ctx = bridge(agent)?;
        let conn = connection(agent).await?;
        let wanted = match args
            .session
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(s) => s.to_owned(),
            None => call
                .session_id
                .clone()
                .ok_or_else(|| ToolError::InvalidArgs {
                    tool: "mattermost_select_session",
                    reason: "no calling session; pass `session`".into(),
                })?,
        };
        let session = exec::resolve_session(&ctx.engine, &wanted)
            .await
            .map_err(ToolError::Failed)?;
        let (user, _) =
            super::permitted_user(&ctx, args.user.as_deref(), "drive this agent").await?;
        let dm = exec::dm_with(&conn, &user)
            .await
            .map_err(ToolError::Failed)?;
        let thread = crate::sessions::threads::attach(
            &ctx.engine,
            &conn,
            &dm,
            &session,
            "the TUI",
            &user,
            false,
        )
        .await
        .map_err(ToolError::Failed)?;
        ctx.engine
            .app
            .store
            .select_thread(&dm, Some(&thread.root_post_id), now_millis())
            .await
            .map_err(|e| ToolError::Failed(format!("could not attach the DM: {e}")))?;
        Ok(text(format!(
            "Session `{}` is now attached to the DM with user {user}; its thread: {}",
            session.short_id(),
            conn.permalink(&thread.root_post_id, None)
        )))
    }
}

#[async_trait]
impl Tool for CurrentSessionTool {
    fn name(&self) -> &'static str {
        "mattermost_current_session"
    }

    fn description(&self) -> &'static str {
        "Show which session a user's DM with the bot is attached to (default: the owner's), and \
         the Mattermost thread of the calling session, as `!current` does in chat."
    }

    fn input_schema(&self) -> Value {
        schema_of::<CurrentArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        call: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: CurrentArgs = parse_args(self.name(), args)?;
        let ctx = bridge(agent)?;
        let conn = connection(agent).await?;
        let (user, _) =
            super::permitted_user(&ctx, args.user.as_deref(), "drive this agent").await?;
        let dm = exec::dm_with(&conn, &user)
            .await
            .map_err(ToolError::Failed)?;
        let selected = ctx
            .engine
            .app
            .store
            .selection(&dm)
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let mut out = match selected {
            Some(root) => match ctx.engine.app.store.thread(&root).await {
                Ok(Some(b)) => format!(
                    "DM with {user}: {}",
                    exec::describe_binding(&ctx.engine, &conn, &b)
                        .await
                        .map_err(ToolError::Failed)?
                ),
                _ => format!("DM with {user}: attached to a thread that no longer exists"),
            },
            None => format!(
                "DM with {user}: no session attached; each new message starts a new session"
            ),
        };
        if let Some(id) = &call.session_id {
            let threads = ctx
                .engine
                .app
                .store
                .threads_of_session(id)
                .await
                .map_err(|e| ToolError::Failed(e.to_string()))?;
            match threads.first() {
                Some(b) => out.push_str(&format!(
                    "\nThis session's thread: {}",
                    exec::describe_binding(&ctx.engine, &conn, b)
                        .await
                        .map_err(ToolError::Failed)?
                )),
                None => out.push_str("\nThis session has no Mattermost thread yet."),
            }
        }
        Ok(text(out))
    }
}
