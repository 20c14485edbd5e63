//! `mattermost-threads.json`: thread mappings into thread bindings.
//!
//! A binding names the instance that answers the thread. The old plugin
//! kept none, only the project directory, so a thread goes to the first
//! agent of that directory on this machine (the id it will have, made now
//! if it never ran). Statuses other than `active` (ended, disconnected,
//! orphaned, merged) become Ended: their sessions answered nobody any more.

use std::collections::HashSet;
use std::path::Path;

use super::legacy::{self, Fields, Parsed, quoted};
use super::{ImportOptions, ImportReport, Outcome, SessionDirectories, THREADS_FILE, whole_file};
use crate::app::identity;
use crate::opencode::ModelRef;
use crate::store::{Store, StoreError, ThreadBinding, ThreadStatus};

/// Longest project directory accepted.
const MAX_DIRECTORY: usize = 4096;

/// Import the mappings; returns the project directory of each session seen
/// in a usable entry, for the schedules.
pub async fn import(
    store: &dyn Store,
    options: &ImportOptions,
    report: &mut ImportReport,
) -> Result<SessionDirectories, StoreError> {
    let mut directories = SessionDirectories::new();
    let entries = match legacy::read_list(&options.from.join(THREADS_FILE), "mappings") {
        Ok(Some(entries)) => entries,
        Ok(None) => {
            whole_file(report, THREADS_FILE, "not found".into());
            return Ok(directories);
        }
        Err(why) => {
            whole_file(report, THREADS_FILE, why);
            return Ok(directories);
        }
    };
    let mut seen = HashSet::new();
    for (n, entry) in entries.iter().enumerate() {
        let label = format!("entry {}", n + 1);
        let parsed = match Fields::of(entry).and_then(|f| mapping(&f, options)) {
            Ok(parsed) => parsed,
            Err(why) => {
                report.push(THREADS_FILE, label, Outcome::Skipped(why));
                continue;
            }
        };
        let binding = parsed.binding;
        directories
            .entry(binding.session_id.clone())
            .or_insert(parsed.directory);
        let what = format!(
            "{label}, thread {} (session {})",
            binding.root_post_id, binding.session_id
        );
        if !seen.insert(binding.root_post_id.clone()) {
            let why = "an earlier entry maps the same thread".to_owned();
            report.push(THREADS_FILE, what, Outcome::Skipped(why));
            continue;
        }
        let outcome = match store.thread(&binding.root_post_id).await? {
            Some(have) if have.session_id == binding.session_id => Outcome::Present,
            Some(have) => Outcome::Skipped(format!(
                "the store binds this thread to session {} already",
                have.session_id
            )),
            None => match store.bind_thread(&binding).await {
                Ok(()) => Outcome::Imported,
                // Bound meanwhile by a running agent: its binding stands.
                Err(StoreError::Conflict(why)) => Outcome::Skipped(why),
                Err(e) => return Err(e),
            },
        };
        report.push(THREADS_FILE, what, outcome);
    }
    Ok(directories)
}

/// A checked mapping and its project directory.
struct Mapping {
    binding: ThreadBinding,
    directory: String,
}

fn mapping(f: &Fields<'_>, options: &ImportOptions) -> Parsed<Mapping> {
    let session_id = f.token("sessionId")?;
    let root = f.mattermost_id("threadRootPostId")?;
    let channel_id = match f.opt_str("channelId")? {
        Some(_) => f.mattermost_id("channelId")?,
        None => match f.opt_str("dmChannelId")? {
            Some(_) => f.mattermost_id("dmChannelId")?,
            None => return Err("neither `channelId` nor `dmChannelId` is given".into()),
        },
    };
    let user = f.mattermost_id("mattermostUserId")?;
    let directory = f.str("directory")?;
    if directory.len() > MAX_DIRECTORY
        || !Path::new(directory).is_absolute()
        || directory.chars().any(char::is_control)
    {
        return Err(format!(
            "`directory` {} is not an absolute path",
            quoted(directory)
        ));
    }
    let status = match f.str("status")? {
        "active" => ThreadStatus::Active,
        "ended" | "disconnected" | "orphaned" | "merged" => ThreadStatus::Ended,
        other => {
            return Err(format!(
                "`status` {} is none of active, ended, disconnected, orphaned, merged",
                quoted(other)
            ));
        }
    };
    let created_at = f.time("createdAt")?.timestamp_millis();
    let model = model(f)?;
    let state_dir = options.state_dir.as_deref().ok_or(
        "there is no state directory for instance ids (set XDG_STATE_HOME or HOME)".to_owned(),
    )?;
    let instance_id = identity::first_slot_id(state_dir, directory)
        .map_err(|e| format!("no instance id for {}: {e}", quoted(directory)))?;
    Ok(Mapping {
        binding: ThreadBinding {
            root_post_id: root.to_owned(),
            channel_id: channel_id.to_owned(),
            session_id: session_id.to_owned(),
            instance_id,
            created_by: user.to_owned(),
            created_at,
            status,
            model,
        },
        directory: directory.to_owned(),
    })
}

/// `{providerID, modelID}` as `provider/model`; absent is the default.
fn model(f: &Fields<'_>) -> Parsed<Option<String>> {
    let Some(value) = f.0.get("model").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let part = |key: &str| value.get(key).and_then(|v| v.as_str()).unwrap_or_default();
    let (provider, model) = (part("providerID"), part("modelID"));
    let usable = legacy::is_token(provider)
        && !model.is_empty()
        && model.len() <= 200
        && !model.chars().any(|c| c.is_control() || c.is_whitespace());
    if !usable {
        return Err("`model` is not {providerID, modelID}".into());
    }
    Ok(ModelRef::parse(&format!("{provider}/{model}")).map(|m| m.to_string()))
}
