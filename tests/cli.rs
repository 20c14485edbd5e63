//! The command line as people and scripts run it: the real binary, in a
//! clean environment, against a store with rows in it. Each store test runs
//! on SQLite and, when `OPENCODE_MM_TEST_DATABASE_URL` names a server, on
//! PostgreSQL (a fresh schema per test).

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

// Only its echo of a run is used here.
#[allow(dead_code)]
mod cli_support;

// Only some of the fixture is needed here.
#[allow(dead_code)]
#[path = "bridge_support/shared_store.rs"]
mod shared_store;

use std::path::Path;
use std::process::{Command, Output};

use chrono::{DateTime, SecondsFormat, Utc};
use opencode_mattermost::scheduler::cron::When;
use opencode_mattermost::store::{
    Instance, RunState, RunTrigger, Schedule, ScheduleRun, ThreadBinding, ThreadStatus, now_millis,
};
use serde_json::{Value, json};
use shared_store::SharedStore;

const ALICE: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaa";
const BOB: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbb";
const DM: &str = "dddddddddddddddddddddddddd";

/// The binary with nothing of this machine's settings: a private HOME and
/// only the given variables.
fn run(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opencode-mattermost"));
    cmd.env_clear()
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    cli_support::echo(&args.join(" "), &out);
    out
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Stores of both kinds this run has.
async fn stores() -> Vec<SharedStore> {
    let mut all = vec![SharedStore::sqlite()];
    match SharedStore::postgres_url() {
        Some(url) => all.push(SharedStore::postgres(url).await),
        None => println!("note: no PostgreSQL for this run (OPENCODE_MM_TEST_DATABASE_URL)"),
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_lists_every_binding_with_its_instance_as_json_and_as_a_table() {
    for shared in stores().await {
        let home = tempfile::tempdir().unwrap();
        let store = &*shared.store;
        let now = now_millis();
        let live = Instance {
            id: "inst_live".into(),
            host: "devbox".into(),
            directory: "/srv/webshop".into(),
            owner_user_id: Some(ALICE.into()),
            pid: 4242,
            started_at: now - 60_000,
            heartbeat_at: now,
        };
        let gone = Instance {
            id: "inst_gone".into(),
            directory: "/srv/billing".into(),
            heartbeat_at: now - 3_600_000,
            ..live.clone()
        };
        store.register_instance(&live).await.unwrap();
        store.register_instance(&gone).await.unwrap();
        let thread = |root: &str, session: &str, instance: &str, at: i64| ThreadBinding {
            root_post_id: root.into(),
            channel_id: DM.into(),
            session_id: session.into(),
            instance_id: instance.into(),
            created_by: ALICE.into(),
            created_at: at,
            status: ThreadStatus::Active,
            model: None,
        };
        store
            .bind_thread(&thread("r1", "ses_cart", "inst_live", now - 3_000))
            .await
            .unwrap();
        store
            .bind_thread(&ThreadBinding {
                status: ThreadStatus::Ended,
                model: Some("anthropic/claude-sonnet-4".into()),
                ..thread("r2", "ses_bill", "inst_gone", now - 2_000)
            })
            .await
            .unwrap();
        store
            .bind_thread(&thread("r3", "ses_old", "inst_never_ran", now - 1_000))
            .await
            .unwrap();

        let setting = [shared.setting()];
        let listed: Value = serde_json::from_str(&stdout(&run(
            home.path(),
            &setting,
            &["sessions", "--json"],
        )))
        .unwrap();
        assert_eq!(
            listed,
            json!([
                {"session_id": "ses_cart", "status": "active", "thread": "r1", "channel_id": DM,
                 "instance_id": "inst_live", "instance": "webshop@devbox", "instance_online": true,
                 "created_by": ALICE, "created_at": iso(now - 3_000), "model": null},
                {"session_id": "ses_bill", "status": "ended", "thread": "r2", "channel_id": DM,
                 "instance_id": "inst_gone", "instance": "billing@devbox", "instance_online": false,
                 "created_by": ALICE, "created_at": iso(now - 2_000),
                 "model": "anthropic/claude-sonnet-4"},
                {"session_id": "ses_old", "status": "active", "thread": "r3", "channel_id": DM,
                 "instance_id": "inst_never_ran", "instance": null, "instance_online": false,
                 "created_by": ALICE, "created_at": iso(now - 1_000), "model": null},
            ]),
            "{}",
            shared.kind
        );

        let table = stdout(&run(home.path(), &setting, &["sessions"]));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("SESSION"), "{table}");
        assert!(lines[1].contains("webshop@devbox (online)"), "{table}");
        assert!(lines[2].contains("billing@devbox (offline)"), "{table}");
        assert!(lines[3].contains("inst_never_ran (not running)"), "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_lists_cron_zone_next_and_last_run_as_json() {
    for shared in stores().await {
        let home = tempfile::tempdir().unwrap();
        let store = &*shared.store;
        let now = now_millis();
        let schedule = |id: &str, name: &str, cron: &str, enabled: bool| Schedule {
            id: id.into(),
            name: name.into(),
            cron: cron.into(),
            timezone: "Europe/Berlin".into(),
            prompt: "Summarise the CI runs".into(),
            target_user_id: BOB.into(),
            agent: None,
            model: None,
            directory: "/srv/webshop".into(),
            enabled,
            created_by: ALICE.into(),
            created_at: now - 86_400_000,
            active_since: now - 86_400_000,
        };
        store
            .add_schedule(&schedule("sch_a", "ci-digest", "0 9 * * 1-5", true))
            .await
            .unwrap();
        store
            .add_schedule(&schedule("sch_b", "paused", "30 17 * * *", false))
            .await
            .unwrap();
        let ran_at = now - 7_200_000;
        store
            .claim_schedule_run(&ScheduleRun {
                schedule_id: "sch_a".into(),
                scheduled_at: ran_at,
                trigger: RunTrigger::Manual,
                instance_id: "inst_live".into(),
                claimed_at: ran_at,
                deadline_at: ran_at + 60_000,
                state: RunState::Done,
                session_id: None,
                finished_at: Some(ran_at + 1_000),
                detail: None,
                post_id: None,
            })
            .await
            .unwrap();

        let before = Utc::now();
        let out = stdout(&run(
            home.path(),
            &[shared.setting()],
            &["schedules", "--json"],
        ));
        let after = Utc::now();
        let listed: Value = serde_json::from_str(&out).unwrap();
        // The next run as the binary saw the clock: between the two reads.
        let when = When::parse("0 9 * * 1-5", "Europe/Berlin", before).unwrap();
        let next = |at| {
            when.next_after(at)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        };
        let shown = listed[0]["next_run"].as_str().unwrap().to_owned();
        assert!(
            shown == next(before) || shown == next(after),
            "{shown} {}",
            next(before)
        );
        assert_eq!(
            listed,
            json!([
                {"name": "ci-digest", "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin",
                 "enabled": true, "next_run": shown,
                 "last_run": {"scheduled_at": iso(ran_at), "state": "done"},
                 "target_user_id": BOB, "directory": "/srv/webshop", "id": "sch_a",
                 "created_by": ALICE},
                {"name": "paused", "cron": "30 17 * * *", "timezone": "Europe/Berlin",
                 "enabled": false, "next_run": null, "last_run": null,
                 "target_user_id": BOB, "directory": "/srv/webshop", "id": "sch_b",
                 "created_by": ALICE},
            ]),
            "{}",
            shared.kind
        );
        let table = stdout(&run(home.path(), &[shared.setting()], &["schedules"]));
        assert!(table.lines().nth(1).unwrap().contains(&shown), "{table}");
        assert!(
            table.lines().nth(2).unwrap().contains("disabled"),
            "{table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_writes_the_old_files_once_and_says_so() {
    for shared in stores().await {
        let home = tempfile::tempdir().unwrap();
        let old = tempfile::tempdir().unwrap();
        let created =
            (Utc::now() - chrono::Duration::days(2)).to_rfc3339_opts(SecondsFormat::Millis, true);
        let mapping = |root: &str, session: &str| {
            json!({"sessionId": session, "threadRootPostId": root, "mattermostUserId": ALICE,
                   "dmChannelId": DM, "directory": "/srv/webshop", "projectName": "webshop",
                   "status": "active", "createdAt": created, "lastActivityAt": created})
        };
        std::fs::write(
            old.path().join("mattermost-threads.json"),
            json!({"version": 1, "mappings": [
                mapping("r1r1r1r1r1r1r1r1r1r1r1r1r1", "ses_a"),
                mapping("r2r2r2r2r2r2r2r2r2r2r2r2r2", "ses_b"),
                {"sessionId": "ses_c"},
            ]})
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            old.path().join("mattermost-schedules.json"),
            json!({"version": 1, "schedules": [
                {"id": "sched_x1_abcdef", "name": "digest", "cron": "0 9 * * *",
                 "timezone": "UTC", "prompt": "p", "sessionId": "ses_a",
                 "targetUserId": BOB, "enabled": true, "createdAt": created},
            ]})
            .to_string(),
        )
        .unwrap();
        let from = old.path().to_str().unwrap();
        let first = stdout(&run(
            home.path(),
            &[shared.setting()],
            &["import", "--from", from],
        ));
        assert!(
            first.contains("mattermost-threads.json: 2 imported, 0 already present, 1 skipped"),
            "{first}"
        );
        assert!(
            first.contains(
                "mattermost-threads.json: entry 3: skipped: `threadRootPostId` is missing"
            ),
            "{first}"
        );
        assert!(
            first.contains("mattermost-schedules.json: 1 imported, 0 already present, 0 skipped"),
            "{first}"
        );
        assert!(
            first.contains("mattermost-team.json: the whole file: skipped: not found"),
            "{first}"
        );
        let threads = shared.store.threads().await.unwrap();
        assert_eq!(threads.len(), 2);
        let schedules = shared.store.schedules().await.unwrap();
        assert_eq!(schedules.len(), 1);

        let second = stdout(&run(
            home.path(),
            &[shared.setting()],
            &["import", "--from", from],
        ));
        assert!(
            second.contains("mattermost-threads.json: 0 imported, 2 already present, 1 skipped"),
            "{second}"
        );
        assert!(
            second.contains("mattermost-schedules.json: 0 imported, 1 already present, 0 skipped"),
            "{second}"
        );
        assert_eq!(shared.store.threads().await.unwrap(), threads);
        assert_eq!(shared.store.schedules().await.unwrap(), schedules);
        // The threads go to the agent that starts first in the project: the
        // id it finds in its state directory is the one imported.
        let slots = std::fs::read_dir(home.path().join("state/opencode-mattermost/instances"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect::<Vec<_>>();
        assert_eq!(slots, vec![threads[0].instance_id.clone()]);
    }
}

#[test]
fn bad_settings_and_arguments_fail_with_a_clear_message_and_no_password() {
    let home = tempfile::tempdir().unwrap();
    let fail = |env: &[(&str, &str)], args: &[&str]| {
        let out = run(home.path(), env, args);
        assert!(!out.status.success(), "{args:?} {env:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = fail(&[("OPENCODE_MM_DATABASE_POOL_SIZE", "0")], &["sessions"]);
    assert!(err.contains("OPENCODE_MM_DATABASE_POOL_SIZE"), "{err}");
    let err = fail(
        &[("OPENCODE_MM_DATABASE_URL", "mysql://u:p@h/db")],
        &["schedules"],
    );
    assert!(err.contains("OPENCODE_MM_DATABASE_URL"), "{err}");
    // Nothing listens on port 1: the connection fails, the password stays.
    let err = fail(
        &[
            (
                "OPENCODE_MM_DATABASE_URL",
                "postgres://omm:s3cr3t-pw@127.0.0.1:1/omm",
            ),
            ("OPENCODE_MM_DATABASE_CONNECT_TIMEOUT", "2000"),
        ],
        &["sessions", "--json"],
    );
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(!err.contains("s3cr3t-pw"), "{err}");
    let missing = home.path().join("no-such-dir");
    let err = fail(&[], &["import", "--from", missing.to_str().unwrap()]);
    assert!(err.contains("is not a directory"), "{err}");
    let err = fail(&[], &["import"]);
    assert!(err.contains("--from <DIR>"), "{err}");
    let err = fail(&[], &["sessions", "--json", "--yaml"]);
    assert!(err.contains("--yaml"), "{err}");
}

#[test]
fn help_is_there_for_every_subcommand() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["import", "--help"],
        &["sessions", "--help"],
        &["schedules", "--help"],
        &["doctor", "--help"],
        &["send", "--help"],
        &["tools", "--help"],
        &["tools", "export", "--help"],
        &["tools", "check", "--help"],
    ] {
        let text = stdout(&run(home.path(), &[], args));
        assert!(
            text.starts_with("Usage: opencode-mattermost")
                || text.contains("\nUsage: opencode-mattermost"),
            "{args:?}: {text}"
        );
    }
}
