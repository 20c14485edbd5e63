//! Where raw values come from: the process environment and the TOML config
//! file (its default location, reading it, and flattening it into
//! [`RawSettings`] keyed like the environment variables).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{CONFIG_FILE_ENV, Config, Origin, Problem};

/// Raw settings before validation: name → (value, origin).
pub(super) type RawSettings = BTreeMap<String, (String, Origin)>;

impl Config {
    /// Load from the process environment and the config file it names (or the
    /// default one under `$XDG_CONFIG_HOME/opencode-mattermost/config.toml`).
    pub fn load() -> Self {
        let env = |k: &str| std::env::var(k).ok();
        let file = Self::file_location().and_then(|(p, explicit)| read_file(p, explicit));
        Self::from_sources(&env, file)
    }

    /// The config file [`Config::load`] reads from this environment (it may
    /// not exist), and whether `OPENCODE_MM_CONFIG` named it.
    pub fn file_location() -> Option<(PathBuf, bool)> {
        let env = |k: &str| std::env::var(k).ok();
        let explicit = env(CONFIG_FILE_ENV).is_some();
        Self::file_path(&env).map(|p| (p, explicit))
    }

    /// The config file [`Config::load`] reads: the one `OPENCODE_MM_CONFIG`
    /// names, else the default one (`None` with neither a config dir nor a
    /// home to find it in).
    pub fn file_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        env(CONFIG_FILE_ENV)
            .map(PathBuf::from)
            .or_else(|| default_config_file(env))
    }
}

/// The config file's text, or why it cannot be used. A missing default file
/// is no file at all. A file holding the token must be private to its
/// owner: anyone who can read it can act as the bot.
pub(super) fn read_file(
    path: PathBuf,
    explicit: bool,
) -> Option<Result<(PathBuf, String), (PathBuf, String)>> {
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err((path, e.to_string()))),
    };
    let mode = std::fs::metadata(&path).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode()
    });
    match mode {
        Ok(mode) if mode & 0o077 != 0 && holds_secret(&text) => {
            let why = format!(
                "it holds MATTERMOST_TOKEN or a database password but others may read it (mode {:o}); run `chmod 600 {}` \
                 (the file was not used)",
                mode & 0o777,
                path.display()
            );
            Some(Err((path, why)))
        }
        _ => Some(Ok((path, text))),
    }
}

/// Whether a config file's text sets the bot token or a database URL with
/// a password (one that redacting changes).
fn holds_secret(text: &str) -> bool {
    match text.parse::<toml::Table>() {
        Ok(table) => table.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("MATTERMOST_TOKEN")
                || (k.eq_ignore_ascii_case("OPENCODE_MM_DATABASE_URL")
                    && v.as_str()
                        .is_none_or(crate::store::database_url_has_password))
        }),
        // Unreadable as TOML: judge by the text, to be safe.
        Err(_) => {
            let lower = text.to_ascii_lowercase();
            lower.contains("mattermost_token") || lower.contains("opencode_mm_database_url")
        }
    }
}

fn default_config_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("opencode-mattermost").join("config.toml"))
}

/// The file's keys are the environment variables' names in lower case; values
/// may be strings, numbers, booleans or arrays of strings (joined with commas).
pub(super) fn parse_file(
    path: &Path,
    text: &str,
    raw: &mut RawSettings,
    problems: &mut Vec<Problem>,
) {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem {
                key: CONFIG_FILE_ENV.into(),
                message: format!("{} is not valid TOML: {}", path.display(), e.message()),
            });
            return;
        }
    };
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                let mut parts = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) => parts.push(s),
                        other => parts.push(other.to_string()),
                    }
                }
                parts.join(",")
            }
            other => {
                problems.push(Problem {
                    key: name,
                    message: format!(
                        "in {}: `{key}` must be a string, number, boolean or list, not {}",
                        path.display(),
                        other.type_str()
                    ),
                });
                continue;
            }
        };
        raw.insert(name, (text, Origin::File));
    }
}
