//! `opencode-mattermost import --from DIR`: the old plugin's state files
//! (`mattermost-threads.json`, `mattermost-schedules.json`,
//! `mattermost-team.json`) into the configured store.
//!
//! Idempotent by construction: an entry whose key (thread root, schedule
//! name) is already in the store is reported and left as it is, so a
//! second run changes nothing. Every entry gets one line saying what
//! became of it and why; nothing is dropped silently.

mod legacy;
mod schedules;
mod threads;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{Store, StoreError};

pub const THREADS_FILE: &str = "mattermost-threads.json";
pub const SCHEDULES_FILE: &str = "mattermost-schedules.json";
pub const TEAM_FILE: &str = "mattermost-team.json";

/// What the importer needs besides the store.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The old plugin's state directory.
    pub from: PathBuf,
    /// The project directory of schedules whose session has no mapping.
    pub directory: Option<PathBuf>,
    /// Where agents keep their instance ids (imported threads are given to
    /// the first agent of their project directory).
    pub state_dir: Option<PathBuf>,
    pub now: DateTime<Utc>,
    /// `OPENCODE_MM_SCHEDULE_MIN_INTERVAL`: the agent refuses more frequent
    /// schedules, so the importer does too.
    pub min_interval: Duration,
}

/// What became of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Imported,
    /// The same thing is in the store already (an earlier import).
    Present,
    Skipped(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The state file it came from.
    pub file: &'static str,
    /// What the entry is, e.g. `thread abc…` or `entry 3`.
    pub what: String,
    pub outcome: Outcome,
}

/// Everything an import did, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub lines: Vec<Line>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0} is not a directory")]
    NotADirectory(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportReport {
    fn push(&mut self, file: &'static str, what: impl Into<String>, outcome: Outcome) {
        self.lines.push(Line {
            file,
            what: what.into(),
            outcome,
        });
    }

    /// How many lines of `file` have this kind of outcome.
    pub fn count(&self, file: &str, kind: fn(&Outcome) -> bool) -> usize {
        self.lines
            .iter()
            .filter(|l| l.file == file && kind(&l.outcome))
            .count()
    }

    /// The text people read: one line per entry, then a summary per file.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let outcome = match &line.outcome {
                Outcome::Imported => "imported".to_owned(),
                Outcome::Present => "already in the store, left as it is".to_owned(),
                Outcome::Skipped(why) => format!("skipped: {why}"),
            };
            writeln!(out, "{}: {}: {outcome}", line.file, line.what).ok();
        }
        for file in [THREADS_FILE, SCHEDULES_FILE, TEAM_FILE] {
            writeln!(
                out,
                "{file}: {} imported, {} already present, {} skipped",
                self.count(file, |o| *o == Outcome::Imported),
                self.count(file, |o| *o == Outcome::Present),
                self.count(file, |o| matches!(o, Outcome::Skipped(_))),
            )
            .ok();
        }
        out
    }
}

/// Import every state file found in `options.from`.
pub async fn run(store: &dyn Store, options: &ImportOptions) -> Result<ImportReport, ImportError> {
    if !options.from.is_dir() {
        return Err(ImportError::NotADirectory(
            options.from.display().to_string(),
        ));
    }
    let mut report = ImportReport::default();
    let mappings = threads::import(store, options, &mut report).await?;
    schedules::import(store, options, &mappings, &mut report).await?;
    team(options, &mut report);
    Ok(report)
}

/// A file's own problem (missing, unreadable, wrong version) as a line.
fn whole_file(report: &mut ImportReport, file: &'static str, why: String) {
    report.push(file, "the whole file", Outcome::Skipped(why));
}

/// The team file is read and checked, but its members are not written:
/// teammates live in their own table, filled by the agent itself.
fn team(options: &ImportOptions, report: &mut ImportReport) {
    let path = options.from.join(TEAM_FILE);
    let value = match legacy::read_json(&path) {
        Ok(Some(value)) => value,
        Ok(None) => return whole_file(report, TEAM_FILE, "not found".into()),
        Err(why) => return whole_file(report, TEAM_FILE, why),
    };
    let members = value
        .as_object()
        .ok_or_else(|| "it is not a JSON object".to_owned())
        .and_then(|top| legacy::check_version(top).map(|()| top))
        .map(|top| {
            top.get("team")
                .and_then(|t| t.get("members"))
                .and_then(|m| m.as_array())
                .map_or(0, Vec::len)
        });
    match members {
        Ok(n) => whole_file(
            report,
            TEAM_FILE,
            format!(
                "{n} team member(s) are not imported by this command; the agent imports \
                 teammates itself on start from the file OPENCODE_MM_TEAM_FILE names"
            ),
        ),
        Err(why) => whole_file(report, TEAM_FILE, why),
    }
}

/// Session id → project directory, from the thread mappings: where a
/// schedule of that session belongs.
pub type SessionDirectories = HashMap<String, String>;

#[cfg(test)]
mod tests;
