//! `mattermost_monitor` and `mattermost_unmonitor`: attention alerts by DM
//! for a session (see [`crate::monitor`]). Both work without a WebSocket
//! connection; Mattermost's REST API is reached when a user name must be
//! looked up and when an alert goes out.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Tool, ToolError, ToolOutput, parse_args, schema_of};
use crate::agent::{Agent, calling_session};
use crate::commands::ops as exec;
use crate::opencode::Session;
use crate::router::Router;
use crate::rpc::protocol::CallContext;

/// Arguments of `mattermost_monitor`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorArgs {
    /// The session to monitor: its id, short id, or a unique prefix.
    /// Default: the session calling the tool.
    #[serde(default)]
    pub session: Option<String>,
    /// Who gets the alerts: a Mattermost user id or `@username`, who must be
    /// the owner or an allowed user. Default: the owner.
    #[serde(default)]
    pub user: Option<String>,
    /// true (default): alert at every new state until `mattermost_unmonitor`.
    /// false: alert once, then stop.
    #[serde(default)]
    pub persistent: Option<bool>,
}

/// Arguments of `mattermost_unmonitor`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnmonitorArgs {
    /// The session: its id, short id, or a unique prefix. Default: the
    /// session calling the tool.
    #[serde(default)]
    pub session: Option<String>,
    /// Stop the alerts of this user only (user id or `@username`). Default:
    /// everyone monitoring the session.
    #[serde(default)]
    pub user: Option<String>,
}

pub struct MonitorTool;
pub struct UnmonitorTool;

fn bridge(agent: &Agent) -> Result<Arc<Router>, ToolError> {
    agent.bridge().map_err(|why| {
        ToolError::Failed(format!(
            "monitors live in the state database, which is not available: {why}"
        ))
    })
}

fn text(text: String, title: &str) -> ToolOutput {
    ToolOutput {
        text,
        title: Some(title.to_owned()),
        metadata: None,
    }
}

/// The session named by `wanted`, else the calling one.
fn wanted_session(
    tool: &'static str,
    wanted: Option<&str>,
    call: &CallContext,
) -> Result<String, ToolError> {
    match wanted.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Ok(s.to_owned()),
        None => calling_session(call)
            .map(str::to_owned)
            .ok_or_else(|| ToolError::InvalidArgs {
                tool,
                reason: "no calling session; pass `session`".into(),
            }),
    }
}

fn describe(session: &Session) -> String {
    let title = crate::render::format::one_line(&session.title, 80);
    if title.is_empty() {
        format!("`{}`", session.short_id())
    } else {
        format!("`{}` ({title})", session.short_id())
    }
}

#[async_trait]
impl Tool for MonitorTool {
    fn name(&self) -> &'static str {
        "mattermost_monitor"
    }

    fn description(&self) -> &'static str {
        "Get a Mattermost DM when a session needs attention: when it asks for a permission, \
         asks a question, finishes its work and waits for input, or fails. The alert names the \
         project, session and directory, and how to continue it from Mattermost (`!use`). Each \
         state is alerted once. Default: this session, alerts to the owner, until \
         `mattermost_unmonitor` (`persistent: false` alerts once). Needs no WebSocket \
         connection, only the Mattermost URL and token."
    }

    fn input_schema(&self) -> Value {
        schema_of::<MonitorArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        call: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: MonitorArgs = parse_args(self.name(), args)?;
        let ctx = bridge(agent)?;
        let wanted = wanted_session(self.name(), args.session.as_deref(), call)?;
        let session = exec::resolve_session(&ctx.engine, &wanted)
            .await
            .map_err(ToolError::Failed)?;
        let (target, label) =
            super::permitted_user(&ctx, args.user.as_deref(), "receive alerts").await?;
        let persistent = args.persistent.unwrap_or(true);
        let own_turn = calling_session(call) == Some(session.id.as_str());
        ctx.monitor
            .add(
                ctx.engine.app.store.as_ref(),
                &session.id,
                &target,
                persistent,
                own_turn,
            )
            .await
            .map_err(|e| ToolError::Failed(format!("could not save the monitor: {e}")))?;
        let mut out = format!(
            "Monitoring session {} for {label}: a Mattermost DM when it asks for a \
             permission, asks a question, finishes and waits for input, or fails.",
            describe(&session)
        );
        out.push_str(if persistent {
            " Each new state is alerted once, until `mattermost_unmonitor`."
        } else {
            " One-shot: the first alert ends it."
        });
        if own_turn {
            out.push_str(
                " The end of this very turn is not alerted unless it goes on working first.",
            );
        }
        // Say now, not at the first alert, if alerts cannot go out.
        if let Err(e) = ctx.monitor.rest(&ctx.engine.app).await {
            out.push_str(&format!(
                "\nWarning: alerts cannot be delivered right now ({e}); the monitor is kept and \
                 each new state tries again."
            ));
        }
        Ok(text(out, "Monitoring"))
    }
}

#[async_trait]
impl Tool for UnmonitorTool {
    fn name(&self) -> &'static str {
        "mattermost_unmonitor"
    }

    fn description(&self) -> &'static str {
        "Stop the attention alerts of `mattermost_monitor` for a session (default: this \
         session), for one user or (default) for everyone."
    }

    fn input_schema(&self) -> Value {
        schema_of::<UnmonitorArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        call: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: UnmonitorArgs = parse_args(self.name(), args)?;
        let ctx = bridge(agent)?;
        let wanted = wanted_session(self.name(), args.session.as_deref(), call)?;
        let (session_id, shown) = match exec::resolve_session(&ctx.engine, &wanted).await {
            Ok(session) => (session.id.clone(), describe(&session)),
            // A session OpenCode no longer lists can still have monitors.
            Err(not_found) => match monitored_session(&ctx, &wanted).await? {
                Some(id) => (id.clone(), format!("`{id}`")),
                None => return Err(ToolError::Failed(not_found)),
            },
        };
        let target = match args
            .user
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(user) => Some(super::user_id(&ctx, user).await?),
            None => None,
        };
        let removed = ctx
            .monitor
            .remove(
                ctx.engine.app.store.as_ref(),
                &session_id,
                target.as_ref().map(|(id, _)| id.as_str()),
            )
            .await
            .map_err(|e| ToolError::Failed(format!("could not remove the monitor: {e}")))?;
        let out = match (removed, &target) {
            (0, Some((_, label))) => {
                format!("Session {shown} was not monitored for {label}; nothing changed.")
            }
            (0, None) => format!("Session {shown} was not monitored; nothing changed."),
            (_, Some((_, label))) => {
                format!("Stopped the alerts of session {shown} for {label}.")
            }
            (n, None) => format!(
                "Stopped the alerts of session {shown} ({n} monitor{}).",
                if n == 1 { "" } else { "s" }
            ),
        };
        Ok(text(out, "Monitoring stopped"))
    }
}

/// A monitored session id equal to `wanted` or, failing that, the only one
/// starting with it.
async fn monitored_session(ctx: &Router, wanted: &str) -> Result<Option<String>, ToolError> {
    let mut ids: Vec<String> = ctx
        .engine
        .app
        .store
        .monitors()
        .await
        .map_err(|e| ToolError::Failed(e.to_string()))?
        .into_iter()
        .map(|m| m.session_id)
        .collect();
    ids.dedup();
    if ids.iter().any(|id| id == wanted) {
        return Ok(Some(wanted.to_owned()));
    }
    let mut prefixed = ids.into_iter().filter(|id| id.starts_with(wanted));
    match (prefixed.next(), prefixed.next()) {
        (Some(one), None) => Ok(Some(one)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hostile_arguments_are_clear_errors() {
        for bad in [
            json!({"session": 5}),
            json!({"persistent": "yes"}),
            json!({"sesion": "ses_1"}),
            json!({"user": ["@alice"]}),
            json!([1, 2]),
            json!("ses_1"),
            json!(7),
        ] {
            let err = parse_args::<MonitorArgs>("mattermost_monitor", bad.clone())
                .expect_err("must be refused");
            assert!(
                matches!(
                    err,
                    ToolError::InvalidArgs {
                        tool: "mattermost_monitor",
                        ..
                    }
                ),
                "{bad} gave {err}"
            );
            assert!(parse_args::<UnmonitorArgs>("mattermost_unmonitor", bad).is_err());
        }
        let none = parse_args::<MonitorArgs>("mattermost_monitor", Value::Null).unwrap();
        assert!(none.session.is_none() && none.user.is_none() && none.persistent.is_none());
        let unknown =
            parse_args::<UnmonitorArgs>("mattermost_unmonitor", json!({"persistent": true}))
                .unwrap_err();
        assert!(unknown.to_string().contains("persistent"), "{unknown}");
    }

    #[test]
    fn without_a_calling_session_the_session_must_be_named() {
        let call = CallContext::default();
        assert!(matches!(
            wanted_session("mattermost_monitor", None, &call),
            Err(ToolError::InvalidArgs { .. })
        ));
        assert!(wanted_session("mattermost_monitor", Some("   "), &call).is_err());
        assert_eq!(
            wanted_session("mattermost_monitor", Some(" ses_1 "), &call).unwrap(),
            "ses_1"
        );
    }
}
