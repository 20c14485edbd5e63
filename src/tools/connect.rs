//! `mattermost_connect` and `mattermost_disconnect`.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Tool, ToolError, ToolOutput, parse_args, schema_of};
use crate::agent::Agent;
use crate::mattermost::connection::{audience, describe_link};
use crate::rpc::protocol::CallContext;

/// Arguments of `mattermost_connect` (none).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectArgs {}

/// Arguments of `mattermost_disconnect` (none).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectArgs {}

pub struct ConnectTool;
pub struct DisconnectTool;

#[async_trait]
impl Tool for ConnectTool {
    fn name(&self) -> &'static str {
        "mattermost_connect"
    }

    fn description(&self) -> &'static str {
        "Connect this OpenCode instance to Mattermost (idempotent). Checks the bot token, \
         opens the live event stream and answers with the bot's name, the server URL and \
         version, its teams, and who it will respond to."
    }

    fn input_schema(&self) -> Value {
        schema_of::<ConnectArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        _ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let _: ConnectArgs = parse_args(self.name(), args)?;
        let (conn, fresh) = agent
            .connector
            .connect(&agent.config)
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let info = &conn.info;
        let teams: Vec<String> = info
            .teams
            .iter()
            .map(|t| format!("{} ({})", t.display_name, t.name))
            .collect();
        let mut text = format!(
            "{} Mattermost as @{}\nServer: {} (version {})\nTeams: {}\nResponds to: {}\n",
            if fresh {
                "Connected to"
            } else {
                "Already connected to"
            },
            info.bot.username,
            info.site_url,
            info.server_version,
            teams.join(", "),
            audience(&agent.config, &info.bot),
        );
        for line in describe_link(&conn) {
            text.push_str(&line);
            text.push('\n');
        }
        Ok(ToolOutput {
            text,
            title: Some(format!(
                "Mattermost: @{} on {}",
                info.bot.username, info.site_url
            )),
            metadata: Some(json!({"bot": info.bot.username, "server": info.site_url})),
        })
    }
}

#[async_trait]
impl Tool for DisconnectTool {
    fn name(&self) -> &'static str {
        "mattermost_disconnect"
    }

    fn description(&self) -> &'static str {
        "Disconnect this OpenCode instance from Mattermost: closes the live event stream. \
         Sessions and threads are kept; mattermost_connect resumes."
    }

    fn input_schema(&self) -> Value {
        schema_of::<DisconnectArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        _ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let _: DisconnectArgs = parse_args(self.name(), args)?;
        let text = if agent.connector.disconnect().await {
            "Disconnected from Mattermost."
        } else {
            "Not connected to Mattermost; nothing to do."
        };
        Ok(ToolOutput {
            text: text.into(),
            title: None,
            metadata: None,
        })
    }
}
