//! The checks on this machine: the config file and its settings, the
//! installed OpenCode, the plugin's registration with OpenCode, and the
//! state database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Check;
use super::jsonc;
use crate::config::{CONFIG_FILE_ENV, Config};
use crate::opencode::version::{self, Support, TESTED};

const FILE: &str = "config file";
const SETTINGS: &str = "settings";
const OPENCODE: &str = "OpenCode version";
const PLUGIN: &str = "plugin registered";
const STORE: &str = "state database";
/// The plugin's package name, as `opencode.json` lists it.
const PACKAGE: &str = "opencode-mattermost";

/// Settings checked by a later, more specific check.
fn checked_elsewhere(key: &str) -> bool {
    matches!(
        key,
        CONFIG_FILE_ENV
            | "MATTERMOST_URL"
            | "MATTERMOST_WS_URL"
            | "MATTERMOST_TOKEN"
            | "MATTERMOST_OWNER_USER_ID"
    ) || is_store_key(key)
}

fn is_store_key(key: &str) -> bool {
    key == "OPENCODE_MM_STATE_DB" || key.starts_with("OPENCODE_MM_DATABASE_")
}

/// The file is there (or the environment holds the settings), and private
/// to its owner when it holds the token.
pub fn config_file(config: &Config) -> Check {
    let location = Config::file_location().map(|(path, _)| path);
    let shown = location
        .as_ref()
        .map_or_else(|| "(no HOME)".to_owned(), |p| p.display().to_string());
    if let Some(problem) = config.problems.iter().find(|p| p.key == CONFIG_FILE_ENV) {
        let mode = location.as_deref().and_then(mode_of);
        return match mode {
            Some(mode) if mode & 0o077 != 0 && problem.message.contains("chmod") => Check::fail(
                FILE,
                format!(
                    "{shown} holds a secret but group or others may read it (mode {:o}), so \
                     it was not used",
                    mode & 0o777
                ),
                format!("chmod 600 {shown}"),
            ),
            _ => Check::fail(
                FILE,
                problem.message.clone(),
                format!("fix or remove {shown} (or the file {CONFIG_FILE_ENV} names)"),
            ),
        };
    }
    match &config.file {
        Some(path) => {
            let mode = mode_of(path).unwrap_or(0) & 0o777;
            let note = if mode & 0o077 != 0 {
                "; it holds no secret, so others may read it"
            } else {
                ""
            };
            Check::pass(FILE, format!("{} (mode {mode:o}{note})", path.display()))
        }
        None if config.site_url.is_some() && config.token.is_some() => Check::pass(
            FILE,
            format!("no file at {shown}: the settings come from the environment"),
        ),
        None => Check::fail(
            FILE,
            format!(
                "no config file at {shown}, and MATTERMOST_URL and MATTERMOST_TOKEN are not \
                 both set in the environment"
            ),
            format!(
                "write {shown} with `mattermost_url = \"https://…\"` and `mattermost_token = \
                 \"…\"`, mode 600 (or set them in the environment)"
            ),
        ),
    }
}

fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode())
}

/// Every value the agent could not use, other than those the later checks
/// report with their own fix.
pub fn settings(config: &Config) -> Check {
    let problems: Vec<String> = config
        .problems
        .iter()
        .filter(|p| !checked_elsewhere(&p.key))
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    if problems.is_empty() {
        return Check::pass(
            SETTINGS,
            format!(
                "{} settings read, none with a problem",
                config.entries.len()
            ),
        );
    }
    Check::fail(
        SETTINGS,
        problems.join("; "),
        "correct these values in the config file or the environment",
    )
}

/// `opencode --version` against the release the plugin is tested with.
pub async fn opencode_version(given: Option<&Path>) -> Check {
    let Some(bin) = given.map(Path::to_path_buf).or_else(|| on_path("opencode")) else {
        return Check::skip(
            OPENCODE,
            "no `opencode` on PATH (doctor needs none); `--opencode PATH` checks one",
        );
    };
    let shown = bin.display();
    let run = tokio::process::Command::new(&bin)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let fix = format!("install the tested release: `npm install -g opencode-ai@{TESTED}`");
    let output = match tokio::time::timeout(Duration::from_secs(60), run).await {
        Err(_) => {
            return Check::fail(OPENCODE, format!("`{shown} --version` ran for 60s"), fix);
        }
        Ok(Err(e)) => {
            return Check::fail(OPENCODE, format!("cannot run {shown}: {e}"), fix);
        }
        Ok(Ok(output)) => output,
    };
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let detail = format!(
            "`{shown} --version` failed ({}): {}",
            output.status,
            err.trim().chars().take(300).collect::<String>()
        );
        return Check::fail(OPENCODE, detail, fix);
    }
    let found = version::parse(&printed).map(|(a, b, c)| format!("{a}.{b}.{c}"));
    match (version::support(&printed), found) {
        (Some(Support::Supported), Some(v)) => Check::pass(
            OPENCODE,
            format!("{shown} is OpenCode {v} (the tests run {TESTED})"),
        ),
        (Some(Support::Newer), Some(v)) => Check::warn(
            OPENCODE,
            format!("{shown} is OpenCode {v}, newer than the tested {TESTED}: untested"),
            format!("if the plugin misbehaves, {fix}"),
        ),
        (Some(Support::Unsupported), Some(v)) => Check::fail(
            OPENCODE,
            format!("{shown} is OpenCode {v}; the plugin is tested with {TESTED} only"),
            fix,
        ),
        _ => Check::fail(
            OPENCODE,
            format!(
                "`{shown} --version` printed `{}`, not a version",
                printed.chars().take(100).collect::<String>()
            ),
            fix,
        ),
    }
}

/// An executable of that name in a `PATH` directory.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The plugin in the `plugin` list of the global or the project's
/// `opencode.json` (or `.jsonc`), or a file of it in a `plugin` folder
/// (how `scripts/install.sh` registers a source build).
pub fn plugin_registered(project: Option<&Path>) -> Check {
    let global = global_opencode_dir();
    let project = project
        .map(Path::to_path_buf)
        .or_else(|| std::env::current_dir().ok());
    let mut files = Vec::new();
    let mut folders = Vec::new();
    if let Some(dir) = &global {
        for name in ["opencode.json", "opencode.jsonc", "config.json"] {
            files.push(dir.join(name));
        }
        folders.extend([dir.join("plugin"), dir.join("plugins")]);
    }
    if let Some(dir) = &project {
        for name in ["opencode.json", "opencode.jsonc"] {
            files.push(dir.join(name));
            files.push(dir.join(".opencode").join(name));
        }
        folders.extend([dir.join(".opencode/plugin"), dir.join(".opencode/plugins")]);
    }
    let mut broken = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        match jsonc::parse(&text) {
            Ok(value) => {
                let listed = value["plugin"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str())
                    .find(|entry| names_the_plugin(entry));
                if let Some(entry) = listed {
                    return Check::pass(PLUGIN, format!("{} lists `{entry}`", file.display()));
                }
            }
            Err(e) => broken.push(format!("{} is not valid JSON: {e}", file.display())),
        }
    }
    for folder in &folders {
        let found = std::fs::read_dir(folder)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().contains(PACKAGE));
        if let Some(entry) = found {
            return Check::pass(PLUGIN, format!("{} loads it", entry.path().display()));
        }
    }
    let global_file = global.map_or_else(
        || "~/.config/opencode/opencode.json".to_owned(),
        |d| d.join("opencode.json").display().to_string(),
    );
    let fix = format!(
        "add `\"plugin\": [\"{PACKAGE}\"]` to {global_file} (every project) or to the \
         project's opencode.json"
    );
    if !broken.is_empty() {
        return Check::fail(PLUGIN, broken.join("; "), fix);
    }
    let looked: Vec<String> = files
        .iter()
        .filter(|f| f.exists())
        .map(|f| f.display().to_string())
        .collect();
    let detail = if looked.is_empty() {
        "no opencode.json names the plugin: none exists globally or in the project".to_owned()
    } else {
        format!("not in the `plugin` list of {}", looked.join(", "))
    };
    Check::fail(PLUGIN, detail, fix)
}

/// `$XDG_CONFIG_HOME/opencode`, else `~/.config/opencode`, as OpenCode reads.
fn global_opencode_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("opencode"))
}

/// `opencode-mattermost`, with a version or a scope, or a path to it.
fn names_the_plugin(entry: &str) -> bool {
    if entry.starts_with("file:") || entry.starts_with('/') || entry.starts_with('.') {
        return entry.contains(PACKAGE);
    }
    // `@scope/name@version` or `name@version`: the name ends at the `@`
    // that follows the first character.
    let name = match entry.char_indices().skip(1).find(|(_, c)| *c == '@') {
        Some((at, _)) => &entry[..at],
        None => entry,
    };
    name == PACKAGE || name.ends_with(&format!("/{PACKAGE}"))
}

/// The configured store opens and answers a read.
pub async fn state_database(config: &Config) -> Check {
    let problems: Vec<String> = config
        .problems
        .iter()
        .filter(|p| is_store_key(&p.key))
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    if !problems.is_empty() {
        return Check::fail(
            STORE,
            problems.join("; "),
            "correct the store settings (OPENCODE_MM_DATABASE_URL, OPENCODE_MM_STATE_DB)",
        );
    }
    let (what, fix) = if config.database_url.is_some() {
        (
            "PostgreSQL (OPENCODE_MM_DATABASE_URL)".to_owned(),
            "check OPENCODE_MM_DATABASE_URL, that the server runs and lets this user in",
        )
    } else {
        let Some(path) = config
            .state_db
            .clone()
            .or_else(crate::store::SqliteStore::default_path)
        else {
            return Check::fail(
                STORE,
                "no place for the SQLite state database: HOME is not set",
                "set OPENCODE_MM_STATE_DB to a file path",
            );
        };
        if !path.exists() {
            return Check::pass(
                STORE,
                format!(
                    "{} does not exist yet: the agent creates it on its first start",
                    path.display()
                ),
            );
        }
        (
            path.display().to_string(),
            "move the file aside (the agent starts a new one) or restore it from a backup; \
             check that this user may read and write it",
        )
    };
    let read = async {
        let store = crate::app::open_store(config)
            .await
            .map_err(|e| e.to_string())?;
        let threads = store.threads().await.map_err(|e| e.to_string())?;
        let schedules = store.schedules().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((threads.len(), schedules.len()))
    };
    match read.await {
        Ok((threads, schedules)) => Check::pass(
            STORE,
            format!("{what}: readable ({threads} thread bindings, {schedules} schedules)"),
        ),
        Err(e) => Check::fail(STORE, format!("{what}: {e}"), fix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_entries_are_recognised_in_every_form() {
        for yes in [
            "opencode-mattermost",
            "opencode-mattermost@0.1.0",
            "@acme/opencode-mattermost",
            "@acme/opencode-mattermost@latest",
            "file:///home/me/.local/share/opencode-mattermost/plugin/index.ts",
            "/opt/opencode-mattermost/index.ts",
        ] {
            assert!(names_the_plugin(yes), "{yes}");
        }
        for no in [
            "opencode-mattermost-linux-x64",
            "opencode-slack",
            "@opencode-mattermost/other",
            "",
            "@",
        ] {
            assert!(!names_the_plugin(no), "{no}");
        }
    }
}
