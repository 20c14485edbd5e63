//! `mattermost_schedule_{add,list,remove,enable,disable,run}`: thin wrappers
//! over [`crate::scheduler::ops`], which the `!schedule` chat command uses
//! too.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Tool, ToolError, ToolOutput, parse_args, schema_of};
use crate::agent::{Agent, calling_session};
use crate::router::Router;
use crate::rpc::protocol::CallContext;
use crate::scheduler::ScheduleError;
use crate::scheduler::ops::{AddRequest, Caller};

/// Arguments of `mattermost_schedule_add`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleAddArgs {
    /// Unique name of the schedule: 1 to 64 letters, digits, `-`, `_` or `.`
    /// (e.g. `weekday-prs`).
    pub name: String,
    /// Standard 5-field cron expression: minute hour day-of-month month
    /// day-of-week, e.g. `0 9 * * 1-5` for 09:00 Monday to Friday. Weekday 0
    /// and 7 are Sunday; a restricted day-of-month and day-of-week match
    /// either. `@hourly`, `@daily`, `@weekly`, `@monthly` also work.
    pub cron: String,
    /// The prompt each run sends to a new OpenCode session.
    pub prompt: String,
    /// IANA time zone the expression is read in, e.g. `America/New_York`;
    /// default OPENCODE_MM_TIMEZONE, else UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Who receives each result as a Mattermost DM: `@username` or a user id;
    /// default the owner (MATTERMOST_OWNER_USER_ID).
    #[serde(default)]
    pub target_user: Option<String>,
    /// OpenCode agent to run the prompt with (e.g. `build`, `plan`); default
    /// OpenCode's default agent.
    #[serde(default)]
    pub agent: Option<String>,
    /// Model as `provider/model`; default OpenCode's default model.
    #[serde(default)]
    pub model: Option<String>,
    /// Whether it runs; default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Arguments of `mattermost_schedule_list` (none).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleListArgs {}

/// Arguments of the tools that act on one schedule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleNameArgs {
    /// The schedule's name, as `mattermost_schedule_list` shows it.
    pub name: String,
}

/// The running bridge (schedules live in its store).
fn bridge(agent: &Agent) -> Result<Arc<Router>, ToolError> {
    agent
        .bridge()
        .map_err(|why| ToolError::Failed(ScheduleError::Unavailable(why).to_string()))
}

fn output(result: Result<String, ScheduleError>, title: &str) -> Result<ToolOutput, ToolError> {
    match result {
        Ok(text) => Ok(ToolOutput {
            text,
            title: Some(title.to_owned()),
            metadata: None,
        }),
        Err(e) => Err(ToolError::Failed(e.to_string())),
    }
}

pub struct ScheduleAddTool;
pub struct ScheduleListTool;
pub struct ScheduleRemoveTool;
pub struct ScheduleEnableTool;
pub struct ScheduleDisableTool;
pub struct ScheduleRunTool;

#[async_trait]
impl Tool for ScheduleAddTool {
    fn name(&self) -> &'static str {
        "mattermost_schedule_add"
    }

    fn description(&self) -> &'static str {
        "Schedule a prompt with a cron expression in an IANA time zone. Each run starts a \
         fresh OpenCode session in this project, sends the prompt, and DMs the final answer \
         (or the failure or timeout) to the target user in Mattermost, in a thread that \
         continues that session. Answers with the next run time."
    }

    fn input_schema(&self) -> Value {
        schema_of::<ScheduleAddArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: ScheduleAddArgs = parse_args(self.name(), args)?;
        let bridge = bridge(agent)?;
        let req = AddRequest {
            name: args.name,
            cron: args.cron,
            prompt: args.prompt,
            timezone: args.timezone,
            user: args.target_user,
            agent: args.agent,
            model: args.model,
            enabled: args.enabled,
        };
        let caller = Caller::OpenCode {
            session: calling_session(ctx),
        };
        let result = bridge
            .schedules
            .with_ops(async |o| o.add(req, caller).await)
            .await;
        output(result, "Schedule added")
    }
}

#[async_trait]
impl Tool for ScheduleListTool {
    fn name(&self) -> &'static str {
        "mattermost_schedule_list"
    }

    fn description(&self) -> &'static str {
        "List the scheduled prompts: cron expression and time zone, enabled or not, the next \
         run in its zone and in UTC, the last run and its outcome, and who gets the DM."
    }

    fn input_schema(&self) -> Value {
        schema_of::<ScheduleListArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        _ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let _: ScheduleListArgs = parse_args(self.name(), args)?;
        let bridge = bridge(agent)?;
        let result = bridge.schedules.with_ops(async |o| o.list().await).await;
        output(result, "Schedules")
    }
}

#[async_trait]
impl Tool for ScheduleRemoveTool {
    fn name(&self) -> &'static str {
        "mattermost_schedule_remove"
    }

    fn description(&self) -> &'static str {
        "Delete a scheduled prompt and its run history."
    }

    fn input_schema(&self) -> Value {
        schema_of::<ScheduleNameArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        _ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: ScheduleNameArgs = parse_args(self.name(), args)?;
        let bridge = bridge(agent)?;
        let result = bridge
            .schedules
            .with_ops(async |o| o.remove(&args.name).await)
            .await;
        output(result, "Schedule removed")
    }
}

#[async_trait]
impl Tool for ScheduleEnableTool {
    fn name(&self) -> &'static str {
        "mattermost_schedule_enable"
    }

    fn description(&self) -> &'static str {
        "Enable a disabled scheduled prompt. Times that passed while it was disabled are not \
         made up."
    }

    fn input_schema(&self) -> Value {
        schema_of::<ScheduleNameArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        _ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: ScheduleNameArgs = parse_args(self.name(), args)?;
        let bridge = bridge(agent)?;
        let result = bridge
            .schedules
            .with_ops(async |o| o.set_enabled(&args.name, true).await)
            .await;
        output(result, "Schedule enabled")
    }
}

#[async_trait]
impl Tool for ScheduleDisableTool {
    fn name(&self) -> &'static str {
        "mattermost_schedule_disable"
    }

    fn description(&self) -> &'static str {
        "Disable a scheduled prompt without deleting it; a run still going finishes."
    }

    fn input_schema(&self) -> Value {
        schema_of::<ScheduleNameArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        _ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: ScheduleNameArgs = parse_args(self.name(), args)?;
        let bridge = bridge(agent)?;
        let result = bridge
            .schedules
            .with_ops(async |o| o.set_enabled(&args.name, false).await)
            .await;
        output(result, "Schedule disabled")
    }
}

#[async_trait]
impl Tool for ScheduleRunTool {
    fn name(&self) -> &'static str {
        "mattermost_schedule_run"
    }

    fn description(&self) -> &'static str {
        "Run a scheduled prompt now (e.g. to try it out): starts a fresh OpenCode session at \
         once and returns; the result arrives as the usual Mattermost DM. Refused while a run \
         of the same schedule is still going."
    }

    fn input_schema(&self) -> Value {
        schema_of::<ScheduleNameArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        _ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: ScheduleNameArgs = parse_args(self.name(), args)?;
        let bridge = bridge(agent)?;
        output(
            bridge.schedules.run_now(&args.name).await,
            "Schedule started",
        )
    }
}
