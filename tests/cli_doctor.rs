//! `opencode-mattermost doctor`, the real binary in a clean environment,
//! against the Mattermost simulator: every check passes on a good setup
//! (with the real, pinned OpenCode), and each check fails, with its fix
//! and a non-zero exit, when its fault is injected. The token never shows.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

// Only some of the fixtures are needed here.
#[allow(dead_code)]
mod cli_support;
#[allow(dead_code)]
#[path = "bridge_support/shared_store.rs"]
mod shared_store;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use cli_support::{World, text};
use mattermost_sim::Simulator;
use opencode_mattermost::store::{ThreadBinding, ThreadStatus, now_millis};
use shared_store::SharedStore;

/// A setup that passes every check OpenCode aside: the plugin listed in
/// the global opencode.json, and a state database with the schema.
async fn good_world() -> World {
    let w = World::new().await;
    let opencode = w.home.path().join("config/opencode");
    std::fs::create_dir_all(&opencode).unwrap();
    std::fs::write(
        opencode.join("opencode.json"),
        "{\n  // the Mattermost plugin\n  \"plugin\": [\"opencode-mattermost\"],\n}\n",
    )
    .unwrap();
    let db = w.home.path().join("data/opencode-mattermost/state.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    opencode_mattermost::store::SqliteStore::open(&db).unwrap();
    w
}

async fn doctor(w: &World, env: &[(&str, &str)], args: &[&str]) -> (Output, String) {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let out = w.run(env, &all, None).await;
    let report = text(&out.stdout);
    let errors = text(&out.stderr);
    for secret in [&w.bot.token, &w.alice.token] {
        assert!(!report.contains(secret.as_str()), "token in the report");
        assert!(!errors.contains(secret.as_str()), "token on stderr");
    }
    (out, report)
}

/// The line of a check, and the fix line below it when there is one.
fn check<'a>(report: &'a str, name: &str) -> (&'a str, Option<&'a str>) {
    let lines: Vec<&str> = report.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.get(7..)
                .is_some_and(|rest| rest.starts_with(&format!("{name} ")))
        })
        .unwrap_or_else(|| panic!("no `{name}` line in\n{report}"));
    let fix = lines
        .get(at + 1)
        .filter(|l| l.trim_start().starts_with("fix: "))
        .copied();
    (lines[at], fix)
}

/// The check failed with a fix that mentions `fix_hint`, and so did the run.
fn assert_fails(out: &Output, report: &str, name: &str, detail: &str, fix_hint: &str) {
    assert!(!out.status.success(), "exit 0 despite a failure:\n{report}");
    assert!(
        text(&out.stderr).contains("checks failed"),
        "{}",
        text(&out.stderr)
    );
    let (line, fix) = check(report, name);
    assert!(line.starts_with("[FAIL]"), "{line}");
    assert!(line.contains(detail), "`{detail}` not in: {line}");
    let fix = fix.unwrap_or_else(|| panic!("no fix under: {line}"));
    assert!(fix.contains(fix_hint), "`{fix_hint}` not in: {fix}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_setup_passes_every_check_with_the_real_opencode() {
    let w = good_world().await;
    let opencode = harness::opencode::opencode_bin().unwrap();
    let (out, report) = doctor(&w, &[], &["--opencode", opencode.to_str().unwrap()]).await;
    assert!(out.status.success(), "{report}");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    for line in report.lines().take_while(|l| !l.is_empty()) {
        assert!(line.starts_with("[pass]"), "{line}");
    }
    for (name, found) in [
        ("config file", "(mode 600)"),
        ("URL reachable", &w.sim.base_url()),
        ("TLS", "loopback"),
        ("token valid", "@opencode"),
        ("bot account", "@opencode is a bot account"),
        ("team membership", "member of eng"),
        ("owner exists", "is @alice"),
        ("DM possible", "@opencode and @alice"),
        ("WebSocket", "upgraded and authenticated"),
        ("OpenCode version", "is OpenCode 1.18.33"),
        ("plugin registered", "lists `opencode-mattermost`"),
        (
            "state database",
            "readable (0 thread bindings, 0 schedules)",
        ),
        ("clock skew", "within 30s"),
    ] {
        let (line, fix) = check(&report, name);
        assert!(line.contains(found), "`{found}` not in: {line}");
        assert_eq!(fix, None);
    }
    assert!(report.ends_with("14 checks: 14 passed, 0 failed, 0 warnings, 0 skipped\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_opencode_the_check_is_skipped_and_the_rest_still_pass() {
    let w = good_world().await;
    let (out, report) = doctor(&w, &[], &[]).await;
    assert!(out.status.success(), "{report}");
    let (line, _) = check(&report, "OpenCode version");
    assert!(line.starts_with("[skip]"), "{line}");
    assert!(line.contains("no `opencode` on PATH"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_others_may_read_fails_and_is_not_used() {
    let w = good_world().await;
    std::fs::set_permissions(w.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, report) = doctor(&w, &[], &[]).await;
    assert_fails(&out, &report, "config file", "mode 644", "chmod 600");
    // Unused, the file's URL and token are missing to the other checks.
    let (line, _) = check(&report, "URL reachable");
    assert!(line.contains("MATTERMOST_URL"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_config_at_all_fails_and_says_what_to_write() {
    let w = good_world().await;
    std::fs::remove_file(w.config_path()).unwrap();
    let (out, report) = doctor(&w, &[], &[]).await;
    assert_fails(
        &out,
        &report,
        "config file",
        "no config file",
        "mattermost_token",
    );
    let (line, _) = check(&report, "token valid");
    assert!(line.starts_with("[skip]"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setting_fails_the_settings_check() {
    let w = good_world().await;
    let (out, report) = doctor(&w, &[("OPENCODE_MM_API_RATE", "0")], &[]).await;
    assert_fails(&out, &report, "settings", "OPENCODE_MM_API_RATE", "correct");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_and_skips_what_needs_it() {
    let w = good_world().await;
    // A port that was just listening and is closed now.
    let gone = Simulator::start().await.unwrap();
    let url = gone.base_url();
    gone.shutdown().await;
    let (out, report) = doctor(&w, &[("MATTERMOST_URL", &url)], &[]).await;
    assert_fails(
        &out,
        &report,
        "URL reachable",
        "cannot open a connection",
        "MATTERMOST_URL",
    );
    for name in ["TLS", "token valid", "WebSocket", "clock skew"] {
        let (line, _) = check(&report, name);
        assert!(line.starts_with("[skip]"), "{line}");
        assert!(line.contains("needs URL reachable"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_port_without_tls_fails_the_tls_check() {
    let w = good_world().await;
    let url = format!("https://{}", w.sim.addr());
    let (out, report) = doctor(&w, &[("MATTERMOST_URL", &url)], &[]).await;
    let (line, _) = check(&report, "URL reachable");
    assert!(line.starts_with("[pass]"), "{line}");
    assert_fails(&out, &report, "TLS", "no HTTPS answer", "speak TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_fails() {
    let w = good_world().await;
    let revoked = w.sim.issue_token(&w.bot.id);
    w.write_config(&w.config_text(&revoked, &w.alice.id), 0o600);
    w.sim.revoke_tokens(&w.bot.id);
    let (out, report) = doctor(&w, &[], &[]).await;
    assert!(!report.contains(&revoked));
    assert_fails(&out, &report, "token valid", "HTTP 401", "Create New Token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_personal_token_fails_the_bot_check() {
    let w = good_world().await;
    let bob = w.sim.create_user("bob").unwrap();
    w.sim.add_to_team(&w.team.id, &bob.id).unwrap();
    w.write_config(&w.config_text(&bob.token, &w.alice.id), 0o600);
    let (out, report) = doctor(&w, &[], &[]).await;
    assert!(!report.contains(&bob.token));
    assert_fails(
        &out,
        &report,
        "bot account",
        "@bob is a person's account",
        "Bot Accounts",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_in_no_team_fails() {
    let w = good_world().await;
    let lonely = w.sim.create_bot("lonely").unwrap();
    w.write_config(&w.config_text(&lonely.token, &w.alice.id), 0o600);
    let (out, report) = doctor(&w, &[], &[]).await;
    assert_fails(
        &out,
        &report,
        "team membership",
        "@lonely is in no team",
        "/invite @lonely",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_id_nobody_has_fails() {
    let w = good_world().await;
    let nobody = "zzzzzzzzzzzzzzzzzzzzzzzzzz";
    w.write_config(&w.config_text(&w.bot.token, nobody), 0o600);
    let (out, report) = doctor(&w, &[], &[]).await;
    assert_fails(
        &out,
        &report,
        "owner exists",
        "no user has the id",
        "Copy user ID",
    );
    let (line, _) = check(&report, "DM possible");
    assert!(line.starts_with("[skip]"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dm_fails() {
    let w = good_world().await;
    w.sim.fail_next("POST", "channels/direct", 403, 1);
    let (out, report) = doctor(&w, &[], &[]).await;
    assert_fails(
        &out,
        &report,
        "DM possible",
        "cannot open a DM with @alice",
        "Direct Message",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_websocket_upgrade_fails() {
    let w = good_world().await;
    w.sim.fail_next("GET", "websocket", 502, 1);
    let (out, report) = doctor(&w, &[], &[]).await;
    assert_fails(
        &out,
        &report,
        "WebSocket",
        "HTTP 502",
        "proxy_set_header Upgrade",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_opencode_fails() {
    let w = good_world().await;
    // An old release, as far as its version goes: OpenCode prints its
    // version alone on stdout.
    let old = w.home.path().join("old-opencode");
    std::fs::write(&old, "#!/bin/sh\necho 0.15.8\n").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (out, report) = doctor(&w, &[], &["--opencode", old.to_str().unwrap()]).await;
    assert_fails(
        &out,
        &report,
        "OpenCode version",
        "is OpenCode 0.15.8",
        "opencode-ai@1.18.33",
    );
    // One that prints no version, and one that is not there.
    std::fs::write(&old, "#!/bin/sh\necho 'OpenCode (dev build)'\n").unwrap();
    let (out, report) = doctor(&w, &[], &["--opencode", old.to_str().unwrap()]).await;
    assert_fails(
        &out,
        &report,
        "OpenCode version",
        "not a version",
        "opencode-ai@1.18.33",
    );
    let missing = w.home.path().join("no-opencode");
    let (out, report) = doctor(&w, &[], &["--opencode", missing.to_str().unwrap()]).await;
    assert_fails(
        &out,
        &report,
        "OpenCode version",
        "cannot run",
        "opencode-ai@1.18.33",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_plugin_fails_and_a_broken_opencode_json_is_named() {
    let w = good_world().await;
    let global = w.home.path().join("config/opencode/opencode.json");
    std::fs::write(&global, "{\"plugin\": [\"opencode-slack\"]}").unwrap();
    let (out, report) = doctor(&w, &[], &[]).await;
    assert_fails(
        &out,
        &report,
        "plugin registered",
        "not in the `plugin` list",
        "\"plugin\": [\"opencode-mattermost\"]",
    );
    std::fs::write(&global, "{\"plugin\": [\"opencode-mattermost\"").unwrap();
    let (out, report) = doctor(&w, &[], &[]).await;
    assert_fails(
        &out,
        &report,
        "plugin registered",
        "is not valid JSON",
        "opencode.json",
    );
    // The project's file counts as well.
    std::fs::write(
        w.home.path().join("opencode.json"),
        "{\"plugin\": [\"opencode-mattermost@0.1.0\"]}",
    )
    .unwrap();
    let (out, report) = doctor(&w, &[], &[]).await;
    assert!(out.status.success(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_state_database_fails() {
    let w = good_world().await;
    let junk = w.home.path().join("junk.db");
    std::fs::write(&junk, vec![0x5au8; 8192]).unwrap();
    let (out, report) = doctor(&w, &[("OPENCODE_MM_STATE_DB", junk.to_str().unwrap())], &[]).await;
    assert_fails(
        &out,
        &report,
        "state database",
        "junk.db",
        "move the file aside",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgresql_fails_without_its_password() {
    let w = good_world().await;
    let url = "postgres://omm:s3cr3t-pw@127.0.0.1:1/omm";
    let env = [
        ("OPENCODE_MM_DATABASE_URL", url),
        ("OPENCODE_MM_DATABASE_CONNECT_TIMEOUT", "2000"),
    ];
    let (out, report) = doctor(&w, &env, &[]).await;
    assert!(!report.contains("s3cr3t-pw"), "{report}");
    assert_fails(
        &out,
        &report,
        "state database",
        "PostgreSQL",
        "OPENCODE_MM_DATABASE_URL",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_clock_far_off_fails() {
    let w = good_world().await;
    w.sim
        .configure(|c| c.clock_offset_ms = -(Duration::from_secs(300).as_millis() as i64));
    let (out, report) = doctor(&w, &[], &[]).await;
    assert_fails(&out, &report, "clock skew", "behind this machine's", "NTP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_store_is_read_on_either_backend() {
    let mut stores = vec![SharedStore::sqlite()];
    match SharedStore::postgres_url() {
        Some(url) => stores.push(SharedStore::postgres(url).await),
        None => println!("note: no PostgreSQL for this run (OPENCODE_MM_TEST_DATABASE_URL)"),
    }
    let w = good_world().await;
    for shared in stores {
        let binding = ThreadBinding {
            root_post_id: "r1".into(),
            channel_id: "c1".into(),
            session_id: "ses_1".into(),
            instance_id: "inst_1".into(),
            created_by: w.alice.id.clone(),
            created_at: now_millis(),
            status: ThreadStatus::Active,
            model: None,
        };
        shared.store.bind_thread(&binding).await.unwrap();
        let (out, report) = doctor(&w, &[shared.setting()], &[]).await;
        assert!(out.status.success(), "{}: {report}", shared.kind);
        let (line, _) = check(&report, "state database");
        assert!(
            line.contains("readable (1 thread bindings, 0 schedules)"),
            "{}: {line}",
            shared.kind
        );
    }
}
