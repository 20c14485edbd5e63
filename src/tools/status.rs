//! `mattermost_status`: what the agent is, what it sees of OpenCode, the state
//! of the Mattermost link and the effective configuration with its problems.

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Tool, ToolError, ToolOutput, parse_args, schema_of};
use crate::agent::{AGENT_VERSION, Agent, calling_session};
use crate::mattermost::connection::describe_link;
use crate::rpc::protocol::{CallContext, PROTOCOL_VERSION};

/// Arguments of `mattermost_status`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    /// Answer with machine-readable JSON instead of text.
    #[serde(default)]
    pub json: bool,
}

pub struct StatusTool;

#[async_trait]
impl Tool for StatusTool {
    fn name(&self) -> &'static str {
        "mattermost_status"
    }

    fn description(&self) -> &'static str {
        "Show the opencode-mattermost agent's state: agent, plugin and OpenCode versions, \
         the OpenCode directory and sessions, the Mattermost connection, the effective \
         configuration (secrets redacted) and any configuration problems with how to fix them."
    }

    fn input_schema(&self) -> Value {
        schema_of::<StatusArgs>()
    }

    async fn call(
        &self,
        agent: &Agent,
        args: Value,
        ctx: &CallContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: StatusArgs = parse_args(self.name(), args)?;
        let report = Report::gather(agent, ctx).await;
        let problems = report.problems.len();
        let link = if report.mattermost.is_some() {
            "connected"
        } else {
            "not connected"
        };
        let text = if args.json {
            serde_json::to_string_pretty(&report.to_json())
                .map_err(|e| ToolError::Failed(format!("cannot encode status: {e}")))?
        } else {
            report.to_text()
        };
        Ok(ToolOutput {
            text,
            title: Some(format!(
                "Mattermost: {link}, {problems} configuration problem{}",
                if problems == 1 { "" } else { "s" }
            )),
            metadata: None,
        })
    }
}

/// Everything the status shows, gathered once and rendered as text or JSON.
struct Report {
    uptime: Duration,
    shim_version: Option<String>,
    opencode_version: Option<String>,
    directory: Option<String>,
    worktree: Option<String>,
    project_id: Option<String>,
    /// Sessions OpenCode lists, or why they could not be listed.
    sessions: Result<Vec<SessionLine>, String>,
    calling: Option<String>,
    /// `None` when not connected; else a summary line and the link's lines.
    mattermost: Option<(String, Vec<String>)>,
    events_received: u64,
    /// The remote-control loop's counters, or why it is not running.
    bridge: String,
    events_undecodable: u64,
    events_dropped: u64,
    last_event: Option<(String, Duration)>,
    config_file: Option<String>,
    log_target: Result<String, String>,
    entries: Vec<(String, String, String)>,
    problems: Vec<(String, String)>,
}

struct SessionLine {
    id: String,
    short: String,
    title: String,
}

impl Report {
    async fn gather(agent: &Agent, ctx: &CallContext) -> Report {
        let init = agent.init_info().unwrap_or_default();
        let sessions = agent
            .opencode
            .list_sessions()
            .await
            .map(|list| {
                list.into_iter()
                    .map(|s| SessionLine {
                        short: s.short_id().to_owned(),
                        id: s.id,
                        title: s.title,
                    })
                    .collect()
            })
            .map_err(|e| e.to_string());
        let stats = agent.event_stats();
        // The shim cannot learn OpenCode's version without a request, so ask.
        let opencode_version = match init.opencode_version.clone() {
            Some(v) => Some(v),
            None => agent.opencode.health().await.ok().map(|h| h.version),
        };
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        Report {
            uptime: agent.started.elapsed(),
            shim_version: init.shim_version.clone(),
            opencode_version,
            directory: nonempty(init.directory),
            worktree: nonempty(init.worktree),
            project_id: nonempty(init.project_id),
            sessions,
            calling: calling_session(ctx).map(str::to_owned),
            mattermost: agent.connector.current().await.map(|c| {
                (
                    format!(
                        "connected as @{} to {} (server {})",
                        c.info.bot.username, c.info.site_url, c.info.server_version
                    ),
                    describe_link(&c),
                )
            }),
            events_received: stats.received,
            bridge: agent.bridge_summary(),
            events_undecodable: stats.undecodable,
            events_dropped: stats.dropped,
            last_event: stats.last.map(|(k, at)| (k, at.elapsed())),
            config_file: agent.config.file.as_ref().map(|p| p.display().to_string()),
            log_target: agent
                .log_target
                .as_ref()
                .map(|p| p.display().to_string())
                .map_err(Clone::clone),
            entries: agent
                .config
                .entries
                .iter()
                .map(|e| {
                    (
                        e.key.to_owned(),
                        e.value.clone(),
                        format!("{:?}", e.origin).to_lowercase(),
                    )
                })
                .collect(),
            problems: agent
                .config
                .problems
                .iter()
                .map(|p| (p.key.clone(), p.message.clone()))
                .collect(),
        }
    }

    fn to_text(&self) -> String {
        let mut out = String::new();
        let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        let _ = writeln!(out, "## opencode-mattermost status");
        let _ = writeln!(
            out,
            "Agent: {AGENT_VERSION} (protocol {PROTOCOL_VERSION}, pid {}, up {})",
            std::process::id(),
            human(self.uptime)
        );
        let _ = writeln!(
            out,
            "Plugin shim: {}; OpenCode: {}",
            or_unknown(&self.shim_version),
            or_unknown(&self.opencode_version)
        );
        let _ = writeln!(
            out,
            "OpenCode directory: {} (worktree {}, project {})",
            or_unknown(&self.directory),
            or_unknown(&self.worktree),
            or_unknown(&self.project_id)
        );
        match &self.sessions {
            Ok(list) => {
                let _ = writeln!(out, "OpenCode sessions: {}", list.len());
                for s in list.iter().take(10) {
                    let mark = if self.calling.as_deref() == Some(s.id.as_str()) {
                        " (this session)"
                    } else {
                        ""
                    };
                    let _ = writeln!(out, "  - {} {} \"{}\"{mark}", s.short, s.id, s.title);
                }
                if list.len() > 10 {
                    let _ = writeln!(out, "  - … and {} more", list.len() - 10);
                }
            }
            Err(e) => {
                let _ = writeln!(out, "OpenCode sessions: unavailable ({e})");
            }
        }
        let last = match &self.last_event {
            Some((kind, age)) => format!(", last {kind} {} ago", human(*age)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "OpenCode events received: {}{last}{}{}",
            self.events_received,
            if self.events_undecodable > 0 {
                format!(" ({} not understood, ignored)", self.events_undecodable)
            } else {
                String::new()
            },
            if self.events_dropped > 0 {
                format!(
                    "; {} dropped by a full queue (requests resynced)",
                    self.events_dropped
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(out, "Bridge: {}", self.bridge);
        match &self.mattermost {
            Some((summary, lines)) => {
                let _ = writeln!(out, "Mattermost: {summary}");
                for line in lines {
                    let _ = writeln!(out, "  {line}");
                }
            }
            None => {
                let _ = writeln!(out, "Mattermost: not connected (use mattermost_connect)");
            }
        }
        let _ = writeln!(
            out,
            "Config file: {}",
            self.config_file.as_deref().unwrap_or(
                "none (optional: set OPENCODE_MM_CONFIG or create \
                 ~/.config/opencode-mattermost/config.toml)"
            )
        );
        match &self.log_target {
            Ok(p) => {
                let _ = writeln!(out, "Log file: {p}");
            }
            Err(e) => {
                let _ = writeln!(out, "Log file: none ({e}); logging to stderr only");
            }
        }
        let _ = writeln!(out, "\n### Configuration");
        let width = self.entries.iter().map(|e| e.0.len()).max().unwrap_or(0);
        for (key, value, origin) in &self.entries {
            let _ = writeln!(out, "  {key:width$} = {value} ({origin})");
        }
        if self.problems.is_empty() {
            let _ = writeln!(out, "\n### Problems\nnone");
        } else {
            let _ = writeln!(out, "\n### Problems ({})", self.problems.len());
            for (key, message) in &self.problems {
                let _ = writeln!(out, "- {key}: {message}");
            }
        }
        out
    }

    fn to_json(&self) -> Value {
        let sessions = match &self.sessions {
            Ok(list) => json!(
                list.iter()
                    .map(|s| json!({"id": s.id, "short": s.short, "title": s.title}))
                    .collect::<Vec<_>>()
            ),
            Err(e) => json!({"error": e}),
        };
        json!({
            "agent": {"version": AGENT_VERSION, "protocol": PROTOCOL_VERSION,
                      "pid": std::process::id(), "uptimeSeconds": self.uptime.as_secs()},
            "shim": {"version": self.shim_version},
            "opencode": {
                "version": self.opencode_version, "directory": self.directory,
                "worktree": self.worktree, "projectID": self.project_id,
                "sessions": sessions, "callingSession": self.calling,
                "events": {"received": self.events_received,
                           "undecodable": self.events_undecodable,
                           "dropped": self.events_dropped,
                           "last": self.last_event.as_ref().map(|(k, _)| k)},
            },
            "bridge": self.bridge,
            "mattermost": match &self.mattermost {
                Some((summary, lines)) => json!({"state": "connected", "summary": summary, "link": lines}),
                None => json!({"state": "not connected"}),
            },
            "config": {
                "file": self.config_file,
                "entries": self.entries.iter()
                    .map(|(k, v, o)| json!({"key": k, "value": v, "origin": o}))
                    .collect::<Vec<_>>(),
                "problems": self.problems.iter()
                    .map(|(k, m)| json!({"key": k, "message": m}))
                    .collect::<Vec<_>>(),
            },
            "log": match &self.log_target { Ok(p) => json!({"file": p}), Err(e) => json!({"error": e}) },
        })
    }
}

/// `1h 2m`, `3m 4s`, `5s`, `120ms`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {}s", s / 60, s % 60)
    } else if s >= 1 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}
