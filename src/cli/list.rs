//! `opencode-mattermost sessions` and `schedules`: what the store holds, as
//! an aligned table for people or one JSON array (`--json`) for scripts.
//! Read-only; they work while agents run, on either backend.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::config::Config;
use crate::scheduler::cron::When;
use crate::store::{Instance, Millis, Store, StoreError};

/// Every thread binding with its instance and whether that instance is up.
pub async fn sessions(
    store: &dyn Store,
    config: &Config,
    now: DateTime<Utc>,
    json: bool,
) -> Result<String, StoreError> {
    let threads = store.threads().await?;
    let instances: HashMap<String, Instance> = store
        .instances()
        .await?
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect();
    let lease = i64::try_from(config.instance_lease.as_millis()).unwrap_or(i64::MAX);
    let now = now.timestamp_millis();
    let rows: Vec<Value> = threads
        .iter()
        .map(|t| {
            let instance = instances.get(&t.instance_id);
            json!({
                "session_id": t.session_id,
                "status": t.status.as_str(),
                "thread": t.root_post_id,
                "channel_id": t.channel_id,
                "instance_id": t.instance_id,
                "instance": instance.map(Instance::display_name),
                "instance_online": instance.is_some_and(|i| now - i.heartbeat_at <= lease),
                "created_by": t.created_by,
                "created_at": iso(t.created_at),
                "model": t.model,
            })
        })
        .collect();
    if json {
        return Ok(format!("{}\n", Value::Array(rows)));
    }
    if rows.is_empty() {
        return Ok("No thread is bound to a session.\n".into());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let instance = match (r["instance"].as_str(), r["instance_online"].as_bool()) {
                (Some(name), Some(true)) => format!("{name} (online)"),
                (Some(name), _) => format!("{name} (offline)"),
                (None, _) => format!("{} (not running)", text(&r["instance_id"])),
            };
            vec![
                text(&r["session_id"]),
                text(&r["status"]),
                text(&r["thread"]),
                instance,
                text(&r["created_at"]),
            ]
        })
        .collect();
    Ok(render(
        &["SESSION", "STATUS", "THREAD", "INSTANCE", "CREATED"],
        &table,
    ))
}

/// Every schedule with its next run (none when disabled) and last run.
pub async fn schedules(
    store: &dyn Store,
    now: DateTime<Utc>,
    json: bool,
) -> Result<String, StoreError> {
    let mut rows = Vec::new();
    for s in store.schedules().await? {
        let next = if s.enabled {
            When::parse(&s.cron, &s.timezone, now)
                .ok()
                .and_then(|w| w.next_after(now))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        } else {
            None
        };
        let last = store.schedule_runs(&s.id, 1).await?.into_iter().next();
        rows.push(json!({
            "name": s.name,
            "cron": s.cron,
            "timezone": s.timezone,
            "enabled": s.enabled,
            "next_run": next,
            "last_run": last.as_ref().map(|r| json!({
                "scheduled_at": iso(r.scheduled_at),
                "state": r.state.as_str(),
            })),
            "target_user_id": s.target_user_id,
            "directory": s.directory,
            "id": s.id,
            "created_by": s.created_by,
        }));
    }
    if json {
        return Ok(format!("{}\n", Value::Array(rows)));
    }
    if rows.is_empty() {
        return Ok("No schedules.\n".into());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let next = match (r["enabled"].as_bool(), r["next_run"].as_str()) {
                (Some(false), _) => "disabled".to_owned(),
                (_, Some(at)) => at.to_owned(),
                (_, None) => "never".to_owned(),
            };
            let last = r["last_run"]
                .as_object()
                .map(|l| format!("{} {}", text(&l["scheduled_at"]), text(&l["state"])))
                .unwrap_or_else(|| "-".into());
            vec![
                text(&r["name"]),
                text(&r["cron"]),
                text(&r["timezone"]),
                next,
                last,
                text(&r["directory"]),
            ]
        })
        .collect();
    Ok(render(
        &[
            "NAME",
            "CRON",
            "TZ",
            "NEXT RUN (UTC)",
            "LAST RUN",
            "DIRECTORY",
        ],
        &table,
    ))
}

fn iso(ms: Millis) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell; control characters (a store may
/// hold anything) shown escaped so a row stays one line.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| super::one_line(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                write!(out, "{cell:<w$}  ").ok();
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
