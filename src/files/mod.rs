//! Files both ways between Mattermost and OpenCode.
//!
//! - [`inbound`]: files attached to a prompt in chat are downloaded into a
//!   per-session temporary directory and handed to OpenCode (images and
//!   PDFs as file parts the model sees, everything else by path);
//! - [`outbound`]: files leave for a session's thread only through
//!   `mattermost_send_file` (after [`safety`] checks) or as a long reply
//!   attached in place of many posts;
//! - [`refs`]: `!!path` references in a prompt, matched against the
//!   project's files and sent with it (a numbered list when several match);
//! - [`safety`]: the rules both directions share: names, extensions, sizes,
//!   and which paths may leave the machine;
//! - [`clear_session`]: the 🗑️ reaction deletes a session's temporary files.

pub mod inbound;
pub mod outbound;
pub mod refs;
pub mod safety;

use std::path::{Path, PathBuf};

/// The directory all sessions' inbound files live under: the configured
/// `OPENCODE_MM_TEMP_DIR`, else `opencode-mattermost` in the system's
/// temporary directory.
pub fn temp_root(config: &crate::config::Config) -> PathBuf {
    config
        .temp_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("opencode-mattermost"))
}

/// What `mattermost_send_file` never sends, even from inside a project (a
/// project can be the home directory): this agent's configuration file,
/// state and logs, and OpenCode's configuration and credentials
/// (`auth.json` lives in its data directory).
pub fn private_paths(config: &crate::config::Config) -> Vec<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var("HOME");
    let base =
        |xdg: &str, fallback: &str| var(xdg).or_else(|| home.as_ref().map(|h| h.join(fallback)));
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in [
        base("XDG_CONFIG_HOME", ".config"),
        base("XDG_DATA_HOME", ".local/share"),
        base("XDG_STATE_HOME", ".local/state"),
    ]
    .into_iter()
    .flatten()
    {
        out.push(dir.join("opencode"));
        out.push(dir.join("opencode-mattermost"));
    }
    out.extend(config.file.clone());
    out.extend(config.log_file.clone());
    if let Some(db) = &config.state_db {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            out.push(PathBuf::from(name));
        }
    }
    out
}

/// One session's own temporary directory (not created here). Session ids
/// are OpenCode's `ses_…` tokens; anything else is sanitised so it can
/// never name a path outside the root.
pub fn session_dir(root: &Path, session_id: &str) -> PathBuf {
    root.join(safety::sanitize_name(session_id))
}

/// Delete the session's temporary folder (files received from chat).
pub async fn clear_session(config: &crate::config::Config, session_id: &str) -> String {
    let dir = session_dir(&temp_root(config), session_id);
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
        if !dir.exists() {
            return Ok(0);
        }
        let count = walk_count(&dir);
        std::fs::remove_dir_all(&dir)?;
        Ok(count)
    })
    .await;
    match result {
        Ok(Ok(0)) => ":wastebasket: This session has no temporary files.".to_owned(),
        Ok(Ok(n)) => format!(
            ":wastebasket: Deleted {n} temporary file{} of this session.",
            if n == 1 { "" } else { "s" }
        ),
        Ok(Err(e)) => format!(":x: Could not delete the session's temporary files: {e}"),
        Err(e) => format!(":x: Could not delete the session's temporary files: {e}"),
    }
}

/// At start: session folders under the temp root untouched for longer than
/// `older_than` belong to sessions gone long ago (or to a crash); they are
/// removed, except those of `live` sessions (a thread still talks to them,
/// perhaps on another agent sharing the root). Returns how many. The root
/// itself, and anything that is not a real directory, is left alone.
pub fn remove_orphans(
    config: &crate::config::Config,
    older_than: std::time::Duration,
    live: &[String],
) -> usize {
    let root = temp_root(config);
    let live: Vec<PathBuf> = live.iter().map(|s| session_dir(&root, s)).collect();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > older_than);
        if meta.is_dir()
            && old
            && !live.contains(&entry.path())
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Regular files under a folder (symlinks are not followed).
fn walk_count(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_count(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn orphaned_session_folders_are_removed_at_start_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("ses_old/f1")).unwrap();
        std::fs::write(root.join("ses_old/f1/a.txt"), "x").unwrap();
        std::fs::create_dir_all(root.join("ses_new")).unwrap();
        std::fs::create_dir_all(root.join("ses_live")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("ses_link")).unwrap();
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 60 * 60);
        for dir in [root.join("ses_old"), root.join("ses_live"), outside.clone()] {
            std::fs::File::open(&dir)
                .unwrap()
                .set_modified(two_days_ago)
                .unwrap();
        }
        let config = crate::config::Config {
            temp_dir: Some(root.clone()),
            ..crate::config::Config::from_sources(&|_| None, None)
        };
        let live = ["ses_live".to_owned()];
        assert_eq!(
            remove_orphans(&config, Duration::from_secs(24 * 60 * 60), &live),
            1
        );
        assert!(!root.join("ses_old").exists());
        assert!(
            root.join("ses_live").exists(),
            "a live session's files stay"
        );
        assert!(root.join("ses_new").exists());
        assert!(outside.exists() && root.join("ses_link").symlink_metadata().is_ok());
    }
}
