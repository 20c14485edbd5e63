//! One release, one version: the agent, the plugin, its lock file and every
//! platform package agree, the plugin pins exactly the platform packages that
//! exist, and the shim speaks the agent's protocol. `scripts/version.sh` keeps
//! them in step; these tests check the tree and the script.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use opencode_mattermost::rpc::protocol::PROTOCOL_VERSION;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every version in the tree at `root`, keyed by where it lives.
fn versions(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let put = |out: &mut BTreeMap<String, String>, k: String, v: &Value| {
        out.insert(k, v.as_str().unwrap_or("(missing)").to_owned());
    };
    let cargo: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    out.insert(
        "Cargo.toml".into(),
        cargo["package"]["version"].as_str().unwrap().to_owned(),
    );
    let lock: toml::Table = std::fs::read_to_string(root.join("Cargo.lock"))
        .unwrap()
        .parse()
        .unwrap();
    let ours = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("opencode-mattermost"))
        .expect("Cargo.lock lists the agent");
    out.insert(
        "Cargo.lock".into(),
        ours["version"].as_str().unwrap().to_owned(),
    );
    let plugin = json(&root.join("opencode-plugin/package.json"));
    put(&mut out, "plugin".into(), &plugin["version"]);
    for (name, v) in plugin["optionalDependencies"].as_object().unwrap() {
        put(&mut out, format!("plugin optionalDependencies {name}"), v);
    }
    let plugin_lock = json(&root.join("opencode-plugin/package-lock.json"));
    put(&mut out, "plugin lock".into(), &plugin_lock["version"]);
    put(
        &mut out,
        "plugin lock root".into(),
        &plugin_lock["packages"][""]["version"],
    );
    for (name, v) in plugin_lock["packages"][""]["optionalDependencies"]
        .as_object()
        .unwrap()
    {
        put(
            &mut out,
            format!("plugin lock optionalDependencies {name}"),
            v,
        );
    }
    for dir in platform_dirs(root) {
        let pkg = json(&root.join("npm").join(&dir).join("package.json"));
        put(&mut out, format!("npm/{dir}"), &pkg["version"]);
    }
    out
}

fn platform_dirs(root: &Path) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(root.join("npm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs
}

fn disagreeing(root: &Path, want: &str) -> Vec<String> {
    versions(root)
        .into_iter()
        .filter(|(_, v)| v != want)
        .map(|(k, v)| format!("{k} = {v}"))
        .collect()
}

#[test]
fn every_version_in_the_tree_is_the_agents() {
    let all = versions(&repo());
    // Cargo, its lock, the plugin, its lock (twice), 4 pins in each, 4 packages.
    assert_eq!(all.len(), 2 + 1 + 2 + 4 + 4 + 4, "{all:#?}");
    assert_eq!(
        disagreeing(&repo(), env!("CARGO_PKG_VERSION")),
        Vec::<String>::new()
    );
}

#[test]
fn the_plugin_pins_exactly_the_platform_packages_and_each_names_its_platform() {
    let root = repo();
    let plugin = json(&root.join("opencode-plugin/package.json"));
    let pinned: Vec<String> = plugin["optionalDependencies"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let dirs = platform_dirs(&root);
    assert_eq!(pinned, dirs);
    assert_eq!(
        dirs,
        [
            "opencode-mattermost-darwin-arm64",
            "opencode-mattermost-darwin-x64",
            "opencode-mattermost-linux-arm64",
            "opencode-mattermost-linux-x64"
        ]
    );
    for dir in dirs {
        let pkg = json(&root.join("npm").join(&dir).join("package.json"));
        assert_eq!(pkg["name"], dir.as_str());
        let suffix = dir.trim_start_matches("opencode-mattermost-");
        let (os, cpu) = suffix.split_once('-').unwrap();
        // npm installs only the package whose os and cpu match the machine.
        assert_eq!(pkg["os"], serde_json::json!([os]), "{dir}");
        assert_eq!(pkg["cpu"], serde_json::json!([cpu]), "{dir}");
        assert_eq!(
            pkg["files"][0], "bin/opencode-mattermost",
            "{dir} ships the agent"
        );
    }
    // The shim needs zod at run time and nothing else.
    assert_eq!(
        plugin["dependencies"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["zod"]
    );
}

#[test]
fn the_shim_speaks_the_agents_protocol_version() {
    let shim = std::fs::read_to_string(repo().join("opencode-plugin/index.ts")).unwrap();
    let line = shim
        .lines()
        .find(|l| l.starts_with("const PROTOCOL_VERSION = "))
        .expect("the shim declares PROTOCOL_VERSION");
    let declared: u32 = line
        .trim_start_matches("const PROTOCOL_VERSION = ")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(declared, PROTOCOL_VERSION);
}

/// A copy of the files `scripts/version.sh` reads and writes, and the script.
fn scratch_tree() -> tempfile::TempDir {
    let root = repo();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "opencode-plugin/package.json",
        "opencode-plugin/package-lock.json",
        "scripts/version.sh",
    ] {
        std::fs::create_dir_all(t.join(f).parent().unwrap()).unwrap();
        std::fs::copy(root.join(f), t.join(f)).unwrap();
    }
    for dir in platform_dirs(&root) {
        std::fs::create_dir_all(t.join("npm").join(&dir)).unwrap();
        std::fs::copy(
            root.join("npm").join(&dir).join("package.json"),
            t.join("npm").join(&dir).join("package.json"),
        )
        .unwrap();
    }
    tmp
}

fn version_sh(root: &Path, args: &[&str]) -> Output {
    Command::new(root.join("scripts/version.sh"))
        .args(args)
        .output()
        .unwrap()
}

fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut files = vec![
        "Cargo.toml".to_owned(),
        "Cargo.lock".to_owned(),
        "opencode-plugin/package.json".to_owned(),
        "opencode-plugin/package-lock.json".to_owned(),
    ];
    files.extend(
        platform_dirs(root)
            .into_iter()
            .map(|d| format!("npm/{d}/package.json")),
    );
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(&f)).unwrap();
            (f, text)
        })
        .collect()
}

#[test]
fn version_sh_sets_every_place_and_nothing_else() {
    let tmp = scratch_tree();
    let t = tmp.path();
    let before = snapshot(t);
    let out = version_sh(t, &["7.8.9-rc.1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7.8.9-rc.1");
    assert_eq!(disagreeing(t, "7.8.9-rc.1"), Vec::<String>::new());
    // Only version lines changed: in Cargo.toml one line, in Cargo.lock one line.
    let after = snapshot(t);
    for f in ["Cargo.toml", "Cargo.lock"] {
        let changed: Vec<(&str, &str)> = before[f]
            .lines()
            .zip(after[f].lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            changed,
            [(
                format!("version = \"{}\"", env!("CARGO_PKG_VERSION")).as_str(),
                "version = \"7.8.9-rc.1\""
            )],
            "{f}"
        );
        assert_eq!(before[f].lines().count(), after[f].lines().count(), "{f}");
    }
    // The plugin's real dependencies are untouched.
    let plugin = json(&t.join("opencode-plugin/package.json"));
    assert_eq!(plugin["dependencies"]["zod"], "4.1.8");
    // And the check mode agrees.
    let check = version_sh(t, &[]);
    assert!(check.status.success(), "{check:?}");
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "7.8.9-rc.1");
}

#[test]
fn version_sh_check_names_the_file_out_of_step() {
    let tmp = scratch_tree();
    let t = tmp.path();
    let f = t.join("npm/opencode-mattermost-linux-arm64/package.json");
    let mut pkg = json(&f);
    pkg["version"] = "0.0.1".into();
    std::fs::write(&f, pkg.to_string()).unwrap();
    let out = version_sh(t, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("npm/opencode-mattermost-linux-arm64/package.json has '0.0.1'"),
        "{err}"
    );
    assert!(err.contains("run scripts/version.sh"), "{err}");
}

#[test]
fn version_sh_refuses_malformed_versions_and_changes_nothing() {
    let tmp = scratch_tree();
    let t = tmp.path();
    let before = snapshot(t);
    for bad in [
        "1.2",
        "v1.2.3",
        "1.2.3.4",
        "01.2.3",
        "1.2.3-",
        "1.2.3; touch pwned",
        "1.2.3\n4.5.6",
        "$(touch pwned)",
        "1.2.3\"",
        "-1.2.3",
        "../1.2.3",
        "1.2.3 ",
        "",
    ] {
        let out = version_sh(t, &[bad]);
        if bad.is_empty() {
            // An empty argument asks for the check, which must not write.
            assert!(out.status.success(), "{out:?}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("not a version"),
                "{bad:?}: {out:?}"
            );
        }
        assert_eq!(snapshot(t), before, "{bad:?} changed the tree");
    }
    assert!(!t.join("pwned").exists());
    // Two versions at once are refused too.
    let out = version_sh(t, &["1.2.3", "4.5.6"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(snapshot(t), before);
}

#[test]
fn doctor_judges_opencode_by_the_release_the_tests_run() {
    use opencode_mattermost::opencode::version::TESTED;
    let tests = json(&repo().join("tests/opencode/package.json"));
    assert_eq!(tests["dependencies"]["opencode-ai"], TESTED);
    let plugin = json(&repo().join("opencode-plugin/package.json"));
    assert_eq!(plugin["devDependencies"]["@opencode-ai/plugin"], TESTED);
}
