//! The tool contract in `tools/`: one `<name>.json` per tool, generated from
//! the catalog so reviewers read exactly what the shim receives.

use std::collections::BTreeMap;
use std::path::Path;

use super::catalog;

/// File name → pretty JSON (with a trailing newline) for every tool.
pub fn render() -> BTreeMap<String, String> {
    catalog()
        .iter()
        .map(|tool| {
            let json = serde_json::to_string_pretty(&tool.spec())
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            (format!("{}.json", tool.name()), json + "\n")
        })
        .collect()
}

/// Write the contract into `dir`, removing stale `*.json` files.
pub fn write(dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let files = render();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".json") && !files.contains_key(&name) {
            std::fs::remove_file(&path)?;
        }
    }
    for (name, text) in &files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(files.into_keys().collect())
}

/// Differences between `dir` and the catalog; empty when up to date.
pub fn check(dir: &Path) -> std::io::Result<Vec<String>> {
    let files = render();
    let mut problems = Vec::new();
    for (name, text) in &files {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(found) if &found == text => {}
            Ok(_) => problems.push(format!("{name} is stale")),
            Err(_) => problems.push(format!("{name} is missing")),
        }
    }
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !files.contains_key(&name) {
                problems.push(format!("{name} names no tool in the catalog"));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when `tools/` no longer matches the Rust arg types.
    #[test]
    fn checked_in_contract_is_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
        let problems = check(&dir).unwrap();
        assert!(
            problems.is_empty(),
            "tools/ is out of date ({}); run `cargo run -- tools export tools`",
            problems.join(", ")
        );
    }

    #[test]
    fn write_then_check_round_trips_and_removes_strays() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mattermost_gone.json"), "{}").unwrap();
        assert!(!check(dir.path()).unwrap().is_empty());
        write(dir.path()).unwrap();
        assert_eq!(check(dir.path()).unwrap(), Vec::<String>::new());
        assert!(!dir.path().join("mattermost_gone.json").exists());
    }
}
