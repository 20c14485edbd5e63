//! `mattermost-schedules.json`: the old plugin's schedules, checked by the
//! same rules as a schedule added in chat (name, cron expression, zone,
//! prompt, shortest interval), so nothing is imported that the agent would
//! refuse. The old id is kept: ours have the same shape, and it keeps the
//! origin visible.
//!
//! A schedule runs in a project directory; the old plugin kept its session
//! instead, so the directory is that session's (from the thread mappings),
//! or `--directory`.

use std::collections::HashSet;

use super::legacy::{Fields, Parsed, quoted};
use super::{ImportOptions, ImportReport, Outcome, SCHEDULES_FILE, SessionDirectories, whole_file};
use crate::scheduler::cron::When;
use crate::scheduler::ops::{MAX_PROMPT, check_name};
use crate::store::{Schedule, Store, StoreError};

/// Who the store says created an imported schedule (the old plugin did not
/// record it).
pub const IMPORTED_BY: &str = "import:mattermost-schedules.json";

pub async fn import(
    store: &dyn Store,
    options: &ImportOptions,
    directories: &SessionDirectories,
    report: &mut ImportReport,
) -> Result<(), StoreError> {
    let entries = match super::legacy::read_list(&options.from.join(SCHEDULES_FILE), "schedules") {
        Ok(Some(entries)) => entries,
        Ok(None) => {
            whole_file(report, SCHEDULES_FILE, "not found".into());
            return Ok(());
        }
        Err(why) => {
            whole_file(report, SCHEDULES_FILE, why);
            return Ok(());
        }
    };
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    for (n, entry) in entries.iter().enumerate() {
        let label = format!("entry {}", n + 1);
        let schedule = match Fields::of(entry).and_then(|f| schedule(&f, options, directories)) {
            Ok(schedule) => schedule,
            Err(why) => {
                report.push(SCHEDULES_FILE, label, Outcome::Skipped(why));
                continue;
            }
        };
        let what = format!("{label}, schedule `{}`", schedule.name);
        if !names.insert(schedule.name.clone()) || !ids.insert(schedule.id.clone()) {
            let why = "an earlier entry has the same name or id".to_owned();
            report.push(SCHEDULES_FILE, what, Outcome::Skipped(why));
            continue;
        }
        let outcome = match store.schedule_by_name(&schedule.name).await? {
            Some(have) if have.id == schedule.id => Outcome::Present,
            Some(have) => Outcome::Skipped(format!(
                "the store has another schedule of this name (id {})",
                have.id
            )),
            None => match store.add_schedule(&schedule).await {
                Ok(()) => Outcome::Imported,
                // The id is taken under another name, or a running agent
                // added the name meanwhile.
                Err(StoreError::Conflict(why)) => Outcome::Skipped(why),
                Err(e) => return Err(e),
            },
        };
        report.push(SCHEDULES_FILE, what, outcome);
    }
    Ok(())
}

fn schedule(
    f: &Fields<'_>,
    options: &ImportOptions,
    directories: &SessionDirectories,
) -> Parsed<Schedule> {
    let id = f.token("id")?;
    if id.len() > 64 {
        return Err(format!("`id` {} is longer than 64 characters", quoted(id)));
    }
    let name = check_name(f.str("name")?).map_err(|e| format!("`name`: {e}"))?;
    let cron = f.str("cron")?;
    let timezone = f.str("timezone")?;
    let when = When::parse(cron, timezone, options.now).map_err(|e| e.to_string())?;
    if let Some(gap) = when.shortest_gap(options.now) {
        let min = chrono::Duration::from_std(options.min_interval).unwrap_or(chrono::Duration::MAX);
        if gap < min {
            let words =
                |d: chrono::Duration| crate::render::format::duration(d.num_milliseconds() as f64);
            return Err(format!(
                "`{}` runs every {}, more often than OPENCODE_MM_SCHEDULE_MIN_INTERVAL ({}) allows",
                cron.trim(),
                words(gap),
                words(min)
            ));
        }
    }
    let prompt = f.str("prompt")?.trim();
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT {
        return Err(format!(
            "`prompt` has {chars} characters, more than {MAX_PROMPT}"
        ));
    }
    let target = f.mattermost_id("targetUserId")?;
    let enabled = f.opt_bool("enabled")?.unwrap_or(true);
    let created_at = f.time("createdAt")?.timestamp_millis();
    let directory = match f.opt_str("sessionId")?.and_then(|s| directories.get(s)) {
        Some(dir) => dir.clone(),
        None => match &options.directory {
            Some(dir) => dir.display().to_string(),
            None => {
                return Err(
                    "no project directory: its session has no thread mapping; pass \
                     --directory DIR for such schedules"
                        .into(),
                );
            }
        },
    };
    let now = options.now.timestamp_millis();
    Ok(Schedule {
        id: id.to_owned(),
        name,
        cron: cron.trim().to_owned(),
        timezone: when.zone().name().to_owned(),
        prompt: prompt.to_owned(),
        target_user_id: target.to_owned(),
        agent: None,
        model: None,
        directory,
        enabled,
        created_by: IMPORTED_BY.to_owned(),
        created_at,
        // Times before the import are not owed: the old plugin ran them.
        active_since: now,
    })
}
