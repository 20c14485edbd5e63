//! Logging: `tracing` to stderr (the shim keeps the tail for diagnostics) and
//! to a daily-rotated file under the XDG state directory, in a directory only
//! the user can read. Never to stdout: stdout carries protocol frames only.

use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::Config;

/// The default log directory: `$XDG_STATE_HOME/opencode-mattermost`, else
/// `~/.local/state/opencode-mattermost`.
pub fn default_log_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))?;
    Some(base.join("opencode-mattermost"))
}

/// Install the global subscriber. The filter comes from `OPENCODE_MM_LOG`,
/// then `RUST_LOG`, then `MATTERMOST_DEBUG`, default `info`. Returns the file
/// writer's guard (keep it alive) and where the log goes, or why it cannot.
pub fn init(config: &Config) -> (Option<WorkerGuard>, Result<PathBuf, String>) {
    let directive = config
        .log_filter
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| if config.debug { "debug" } else { "info" }.to_owned());
    // `Targets` (`level` or `target=level,…`) rather than `EnvFilter`: the
    // same directives people write, without a regex engine in the binary.
    let filter = parse_filter(&directive);
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);

    let (file_layer, guard, where_) = match open_file(config) {
        Ok((writer, path)) => {
            let (nb, guard) = tracing_appender::non_blocking(writer);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(nb)
                .with_ansi(false);
            (Some(layer), Some(guard), Ok(path))
        }
        Err(e) => (None, None, Err(e)),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file_layer)
        .try_init();
    (guard, where_)
}

/// A filter from `info` or `target=level,…`; anything unreadable is `info`.
fn parse_filter(directive: &str) -> Targets {
    directive
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
}

type FileWriter = tracing_appender::rolling::RollingFileAppender;

fn open_file(config: &Config) -> Result<(FileWriter, PathBuf), String> {
    let (dir, prefix) = match &config.log_file {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "agent.log".into());
            (dir, name)
        }
        None => (
            default_log_dir().ok_or("neither XDG_STATE_HOME nor HOME is set")?,
            "agent.log".to_owned(),
        ),
    };
    create_private_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let writer = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(&prefix)
        .max_log_files(7)
        .build(&dir)
        .map_err(|e| format!("cannot open log in {}: {e}", dir.display()))?;
    private_logs(&dir, &prefix);
    Ok((writer, dir.join(prefix)))
}

/// Logs may name users and sessions: a directory we create is private
/// (0700), an existing one the user chose keeps its mode, and the log files
/// are made 0600 (never through a symlink).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    crate::private_fs::private_dir(dir, crate::private_fs::Existing::Leave)
}

/// Make the log files of `prefix` in `dir` private (0600).
fn private_logs(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix)
            && let Err(e) = crate::private_fs::private_file(&entry.path())
        {
            tracing::warn!(error = %e, "cannot make a log file private");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn filters_read_levels_and_targets_and_fall_back_to_info() {
        let f = parse_filter("warn");
        assert!(f.would_enable("anything", &Level::WARN));
        assert!(!f.would_enable("anything", &Level::INFO));
        let f = parse_filter("info,opencode_mattermost::router=debug");
        assert!(f.would_enable("opencode_mattermost::router::inbound", &Level::DEBUG));
        assert!(!f.would_enable("reqwest", &Level::DEBUG));
        let f = parse_filter("no such=level=at all");
        assert!(f.would_enable("x", &Level::INFO));
        assert!(!f.would_enable("x", &Level::DEBUG));
    }
}
