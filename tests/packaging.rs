//! `scripts/package.sh`'s arguments: each malformed or hostile one is refused
//! before anything is built or packed. (Packing itself runs in
//! `tests/e2e_install.rs`, whose registry install needs the tarballs.)

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn package_sh(out: &Path, args: &[&str]) -> Output {
    Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/package.sh"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn script(dir: &Path, name: &str, body: &str, mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

#[test]
fn malformed_agent_arguments_are_refused_and_nothing_is_packed() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let out = t.join("out");
    let runnable = script(t, "agent", "echo opencode-mattermost 0.0.0", 0o755);
    let not_executable = script(t, "plain", "exit 0", 0o644);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--agent".into()], "--agent needs PLATFORM=PATH"),
        (
            vec!["--agent".into(), "linux-x64".into()],
            "--agent needs PLATFORM=PATH",
        ),
        (
            vec!["--agent".into(), "linux-x64=".into()],
            "--agent needs PLATFORM=PATH",
        ),
        (
            vec!["--agent".into(), format!("windows-x64={runnable}")],
            "unknown platform 'windows-x64'",
        ),
        (
            vec!["--agent".into(), format!("../../etc={runnable}")],
            "unknown platform '../../etc'",
        ),
        (
            vec![
                "--agent".into(),
                format!("linux-x64/../linux-x64={runnable}"),
            ],
            "unknown platform",
        ),
        (
            vec!["--agent".into(), format!("$(touch pwned)={runnable}")],
            "unknown platform",
        ),
        (
            vec!["--agent".into(), "linux-x64=/nonexistent/agent".into()],
            "not an executable file",
        ),
        (
            vec!["--agent".into(), format!("linux-x64={not_executable}")],
            "not an executable file",
        ),
        (
            vec!["--agent".into(), format!("linux-x64={}", t.display())],
            "not an executable file",
        ),
        (vec!["--bogus".into()], "unknown option: --bogus"),
    ];
    for (args, said) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = package_sh(&out, &args);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    assert!(!t.join("pwned").exists());
    assert!(
        !PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("pwned")
            .exists()
    );
}

#[test]
fn a_release_missing_a_platform_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let agent = script(tmp.path(), "agent", "echo unused", 0o755);
    let run = package_sh(
        &out,
        &["--all", "--agent", &format!("darwin-arm64={agent}")],
    );
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("--all: no agent for darwin-x64"), "{err}");
    assert!(
        !out.join("opencode-mattermost-darwin-arm64-0.1.0.tgz")
            .exists()
    );
}

#[test]
fn an_agent_of_another_version_is_not_packed() {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return; // the check runs agents this machine can run; this case names linux-x64
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let agent = script(
        tmp.path(),
        "agent",
        "echo opencode-mattermost 0.0.0-other",
        0o755,
    );
    let run = package_sh(&out, &["--agent", &format!("linux-x64={agent}")]);
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(&format!(
            "says 'opencode-mattermost 0.0.0-other', not version {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{err}"
    );
    let packed: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(packed.is_empty(), "{packed:?}");
}
