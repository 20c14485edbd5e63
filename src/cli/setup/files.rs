//! The two files `setup` writes: the agent's config file (it holds the
//! token, so it is created 0600 and never exists with wider permissions,
//! not even for a moment) and the plugin's entry in an OpenCode config.
//! Both are written whole to a new file beside the target and renamed over
//! it, so a reader never sees half a file.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::jsonc::{self, Added};

/// The settings `setup` decides; every other key of an existing file stays.
pub struct Settings {
    pub url: String,
    pub token: String,
    pub owner_user_id: String,
    pub bot_username: String,
    pub default_channel_id: Option<String>,
}

/// The keys `setup` owns, as they appear in the file.
const OWNED: [&str; 6] = [
    "mattermost_url",
    "mattermost_token",
    "mattermost_owner_user_id",
    "mattermost_bot_username",
    "mattermost_auto_connect",
    "opencode_mm_default_channel_id",
];

/// The current config file as a table: empty when there is none, an error
/// when it cannot be read or is not TOML (it is never overwritten then).
pub fn read_config(path: &Path) -> anyhow::Result<Option<toml::Table>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.parse::<toml::Table>().map(Some).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid TOML ({}); fix or move it, then run setup again",
            path.display(),
            e.message()
        )
    })
}

/// The new config text: `existing` with the owned keys replaced (keys are
/// read case-insensitively, so other spellings of them go too).
pub fn config_text(existing: Option<toml::Table>, s: &Settings) -> anyhow::Result<String> {
    let mut table = existing.unwrap_or_default();
    table.retain(|k, _| !OWNED.iter().any(|o| o.eq_ignore_ascii_case(k)));
    let mut put = |k: &str, v: toml::Value| table.insert(k.to_owned(), v);
    put("mattermost_url", s.url.clone().into());
    put("mattermost_token", s.token.clone().into());
    put("mattermost_owner_user_id", s.owner_user_id.clone().into());
    put("mattermost_bot_username", s.bot_username.clone().into());
    put("mattermost_auto_connect", true.into());
    if let Some(channel) = &s.default_channel_id {
        put("opencode_mm_default_channel_id", channel.clone().into());
    }
    let body = toml::to_string(&table).context("writing the settings as TOML")?;
    Ok(format!(
        "# Written by `opencode-mattermost setup`. Keys are the environment variables'\n\
         # names in lower case (README, Configuration). Holds the bot's token: keep it\n\
         # private (mode 600).\n{body}"
    ))
}

/// Write the config file: a new 0600 file beside it, renamed over it. A
/// directory made for it is 0700.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = parent(path);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    replace(path, text, 0o600)
}

/// Write `text` to a new file with `mode` beside `path`, then rename it
/// over `path`.
fn replace(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = parent(path).join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// What registering the plugin will do, worked out (every file read and
/// checked) before anything is written.
#[derive(Debug, PartialEq)]
pub enum Registration {
    /// Nothing: this file already loads the plugin, through this entry.
    Already(PathBuf, String),
    /// Write `text` to `path` (a new file when `mode` is `None`).
    Write {
        path: PathBuf,
        text: String,
        mode: Option<u32>,
    },
}

/// The config files OpenCode reads in a directory, in the order `setup`
/// prefers for writing; the global directory has `config.json` too.
const CONFIG_NAMES: [&str; 2] = ["opencode.json", "opencode.jsonc"];

/// The config file in `dir` whose `plugin` list already names `entry`'s
/// package, and the entry that does. A file that cannot be read as JSONC
/// is an error: it is never guessed at.
pub fn registration(
    dir: &Path,
    entry: &str,
    also_read: &[&str],
) -> anyhow::Result<Option<(PathBuf, String)>> {
    for name in CONFIG_NAMES.iter().chain(also_read) {
        let path = dir.join(name);
        let Some(text) = read_optional(&path)? else {
            continue;
        };
        let config = jsonc::parse(&text).map_err(|e| refusal(&path, entry, &e))?;
        let plugins = jsonc::plugins(&config).map_err(|e| refusal(&path, entry, &e))?;
        if let Some(found) = plugins.iter().find(|p| jsonc::names_package(p, entry)) {
            return Ok(Some((path, found.clone())));
        }
    }
    Ok(None)
}

/// How to register `entry` in the OpenCode config of `dir` (the global
/// config directory or a project): in the first of `opencode.json`,
/// `opencode.jsonc` that exists, else a new `opencode.json`. Any config
/// file OpenCode reads there that already loads the plugin counts.
pub fn plan(dir: &Path, entry: &str, also_read: &[&str]) -> anyhow::Result<Registration> {
    if let Some((path, found)) = registration(dir, entry, also_read)? {
        return Ok(Registration::Already(path, found));
    }
    let target = CONFIG_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join(CONFIG_NAMES[0]));
    let Some(text) = read_optional(&target)? else {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "$schema": "https://opencode.ai/config.json",
            "plugin": [entry],
        }))?;
        return Ok(Registration::Write {
            path: target,
            text: format!("{text}\n"),
            mode: None,
        });
    };
    let text = match jsonc::add_plugin(&text, entry).map_err(|e| refusal(&target, entry, &e))? {
        Added::Inserted(t) => t,
        Added::AlreadyThere(found) => return Ok(Registration::Already(target, found)),
    };
    // Through a symlink (dotfiles) to the real file, keeping its mode.
    let path = std::fs::canonicalize(&target)
        .with_context(|| format!("resolving {}", target.display()))?;
    let mode = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    Ok(Registration::Write {
        path,
        text,
        mode: Some(mode & 0o7777),
    })
}

/// Carry out a planned registration.
pub fn apply(plan: &Registration) -> anyhow::Result<()> {
    let Registration::Write { path, text, mode } = plan else {
        return Ok(());
    };
    if mode.is_none() {
        let dir = parent(path);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    replace(path, text, mode.unwrap_or(0o644))
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn refusal(path: &Path, entry: &str, e: &jsonc::JsoncError) -> anyhow::Error {
    anyhow::anyhow!(
        "{} {e}: it was left as it is; fix it, or add \"{entry}\" to its \"plugin\" list yourself",
        path.display()
    )
}

/// A source install (`scripts/install.sh`) loads the plugin from OpenCode's
/// global plugin folder; naming the package too would load it twice.
pub fn source_install(global_dir: &Path) -> Option<PathBuf> {
    ["plugin", "plugins"]
        .iter()
        .map(|d| global_dir.join(d).join("opencode-mattermost.ts"))
        .find(|p| p.exists())
}

/// Refuse to go on when `path` exists but is not a regular file.
pub fn check_regular(path: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => bail!("{} exists but is not a file", path.display()),
        _ => Ok(()),
    }
}
