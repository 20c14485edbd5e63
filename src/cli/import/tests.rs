//! The importer against real stores: each test runs on SQLite and, when
//! `OPENCODE_MM_TEST_DATABASE_URL` names a server, on PostgreSQL.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::*;
use crate::app::identity;
use crate::store::tests::{Backend, Db};
use crate::store::{Schedule, ThreadBinding, ThreadStatus};

/// A `sqlite_<name>` and a `postgres_<name>` test of `async fn name(&Db)`.
macro_rules! both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = Db::new(Backend::Sqlite).await.expect("SQLite is always there");
                    super::$name(&db).await;
                }
            )+
            use super::*;
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = Db::new(Backend::Postgres).await else { return };
                    super::$name(&db).await;
                }
            )+
            use super::*;
        }
    };
}

both!(
    threads_and_schedules_are_imported_once_and_a_second_run_changes_nothing,
    a_thread_or_name_the_store_holds_otherwise_is_left_alone,
);

const ALICE: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaa";
const BOB: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbb";
const DM: &str = "dddddddddddddddddddddddddd";
const CHANNEL: &str = "cccccccccccccccccccccccccc";
const ROOT1: &str = "r1r1r1r1r1r1r1r1r1r1r1r1r1";
const ROOT2: &str = "r2r2r2r2r2r2r2r2r2r2r2r2r2";
const PROJECT: &str = "/srv/projects/webshop";

/// A dir with the old plugin's files, and where agents keep their ids.
struct Fixture {
    from: tempfile::TempDir,
    state: tempfile::TempDir,
    now: DateTime<Utc>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            from: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
            now: Utc::now(),
        }
    }

    fn write(&self, file: &str, value: &Value) {
        std::fs::write(self.from.path().join(file), value.to_string()).unwrap();
    }

    fn write_raw(&self, file: &str, text: &str) {
        std::fs::write(self.from.path().join(file), text).unwrap();
    }

    fn options(&self) -> ImportOptions {
        ImportOptions {
            from: self.from.path().to_path_buf(),
            directory: None,
            state_dir: Some(self.state.path().to_path_buf()),
            now: self.now,
            min_interval: Duration::from_secs(300),
        }
    }

    /// `days` ago, as JavaScript's `toISOString` writes it.
    fn iso(&self, days: i64) -> String {
        (self.now - chrono::Duration::days(days)).to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    fn millis(&self, days: i64) -> i64 {
        let at = DateTime::parse_from_rfc3339(&self.iso(days)).unwrap();
        at.timestamp_millis()
    }
}

fn mapping(fx: &Fixture, root: &str, session: &str, status: &str) -> Value {
    json!({
        "sessionId": session, "threadRootPostId": root, "shortId": "webshop-a1b2c3d4e5",
        "mattermostUserId": ALICE, "dmChannelId": DM, "projectName": "webshop",
        "directory": PROJECT, "sessionTitle": "Fix the cart", "status": status,
        "createdAt": fx.iso(3), "lastActivityAt": fx.iso(1),
    })
}

fn threads_file(mappings: Vec<Value>) -> Value {
    json!({"version": 1, "mappings": mappings, "lastModified": "2020-01-01T00:00:00.000Z"})
}

fn sched(fx: &Fixture, id: &str, name: &str, cron: &str) -> Value {
    json!({
        "id": id, "name": name, "cron": cron, "timezone": "Europe/Berlin",
        "prompt": "Summarise yesterday's failed CI runs", "sessionId": "ses_cart",
        "targetUserId": BOB, "targetUsername": "bob", "enabled": true,
        "createdAt": fx.iso(10), "lastRunAt": fx.iso(1), "lastRunSuccess": true,
    })
}

fn schedules_file(schedules: Vec<Value>) -> Value {
    json!({"version": 1, "schedules": schedules, "lastModified": "2020-01-01T00:00:00.000Z"})
}

fn team_file() -> Value {
    json!({"version": 1, "team": {
        "id": "6f1c2f7e-8a51-4a43-9d3e-1c1f4f3b2a10", "name": "core", "ownerId": ALICE,
        "members": [
            {"userId": BOB, "username": "bob", "addedAt": "x", "addedBy": ALICE, "role": "member"},
            {"userId": DM, "username": "carol", "addedAt": "x", "addedBy": ALICE, "role": "admin"},
        ],
        "settings": {},
    }})
}

fn outcome_of<'r>(report: &'r ImportReport, file: &str, what: &str) -> &'r Outcome {
    // `entry 2` is the whole label, or its head before `, thread …`.
    let found = report
        .lines
        .iter()
        .find(|l| l.file == file && (l.what == what || l.what.starts_with(&format!("{what},"))));
    &found
        .unwrap_or_else(|| panic!("no line for {file} {what}:\n{}", report.render()))
        .outcome
}

fn skipped_because<'r>(report: &'r ImportReport, file: &str, what: &str) -> &'r str {
    match outcome_of(report, file, what) {
        Outcome::Skipped(why) => why,
        other => panic!("{file} {what}: {other:?}\n{}", report.render()),
    }
}

async fn threads_and_schedules_are_imported_once_and_a_second_run_changes_nothing(db: &Db) {
    let fx = Fixture::new();
    let mut merged = mapping(&fx, ROOT2, "ses_old", "merged");
    merged["channelId"] = json!(CHANNEL);
    merged["model"] =
        json!({"providerID": "anthropic", "modelID": "claude-sonnet-4", "displayName": "S4"});
    fx.write(
        THREADS_FILE,
        &threads_file(vec![mapping(&fx, ROOT1, "ses_cart", "active"), merged]),
    );
    fx.write(
        SCHEDULES_FILE,
        &schedules_file(vec![sched(
            &fx,
            "sched_m1x2y3_abc123",
            "ci-digest",
            "0 9 * * 1-5",
        )]),
    );
    fx.write(TEAM_FILE, &team_file());
    let store = db.open().await;

    let report = run(&*store, &fx.options()).await.unwrap();
    println!("{}", report.render());
    assert_eq!(report.count(THREADS_FILE, |o| *o == Outcome::Imported), 2);
    assert_eq!(report.count(SCHEDULES_FILE, |o| *o == Outcome::Imported), 1);
    let team = skipped_because(&report, TEAM_FILE, "the whole file");
    assert!(team.starts_with("2 team member(s)"), "{team}");

    // The first agent to start in the project will answer the threads.
    let instance = identity::first_slot_id(fx.state.path(), PROJECT).unwrap();
    let threads = store.threads().await.unwrap();
    assert_eq!(
        threads,
        vec![
            ThreadBinding {
                root_post_id: ROOT1.into(),
                channel_id: DM.into(),
                session_id: "ses_cart".into(),
                instance_id: instance.clone(),
                created_by: ALICE.into(),
                created_at: fx.millis(3),
                status: ThreadStatus::Active,
                model: None,
            },
            ThreadBinding {
                root_post_id: ROOT2.into(),
                channel_id: CHANNEL.into(),
                session_id: "ses_old".into(),
                instance_id: instance.clone(),
                created_by: ALICE.into(),
                created_at: fx.millis(3),
                status: ThreadStatus::Ended,
                model: Some("anthropic/claude-sonnet-4".into()),
            },
        ]
    );
    let schedules = store.schedules().await.unwrap();
    assert_eq!(
        schedules,
        vec![Schedule {
            id: "sched_m1x2y3_abc123".into(),
            name: "ci-digest".into(),
            cron: "0 9 * * 1-5".into(),
            timezone: "Europe/Berlin".into(),
            prompt: "Summarise yesterday's failed CI runs".into(),
            target_user_id: BOB.into(),
            agent: None,
            model: None,
            directory: PROJECT.into(),
            enabled: true,
            created_by: schedules::IMPORTED_BY.into(),
            created_at: fx.millis(10),
            active_since: fx.now.timestamp_millis(),
        }]
    );

    // Again, from another store handle (another run of the command).
    let again = run(&*db.open().await, &fx.options()).await.unwrap();
    println!("{}", again.render());
    for file in [THREADS_FILE, SCHEDULES_FILE] {
        assert_eq!(again.count(file, |o| *o == Outcome::Imported), 0, "{file}");
        assert_eq!(again.count(file, |o| matches!(o, Outcome::Skipped(_))), 0);
    }
    assert_eq!(again.count(THREADS_FILE, |o| *o == Outcome::Present), 2);
    assert_eq!(again.count(SCHEDULES_FILE, |o| *o == Outcome::Present), 1);
    assert_eq!(store.threads().await.unwrap(), threads);
    assert_eq!(store.schedules().await.unwrap(), schedules);
    assert!(
        again.render().contains(&format!(
            "{THREADS_FILE}: 0 imported, 2 already present, 0 skipped"
        )),
        "{}",
        again.render()
    );
}

async fn a_thread_or_name_the_store_holds_otherwise_is_left_alone(db: &Db) {
    let fx = Fixture::new();
    let store = db.open().await;
    let theirs = ThreadBinding {
        root_post_id: ROOT1.into(),
        channel_id: DM.into(),
        session_id: "ses_live".into(),
        instance_id: "inst_live".into(),
        created_by: ALICE.into(),
        created_at: fx.millis(0),
        status: ThreadStatus::Active,
        model: None,
    };
    store.bind_thread(&theirs).await.unwrap();
    let mine = Schedule {
        id: "sch_live_000001".into(),
        name: "ci-digest".into(),
        cron: "0 8 * * *".into(),
        timezone: "UTC".into(),
        prompt: "p".into(),
        target_user_id: BOB.into(),
        agent: None,
        model: None,
        directory: "/x".into(),
        enabled: true,
        created_by: ALICE.into(),
        created_at: 1,
        active_since: 1,
    };
    store.add_schedule(&mine).await.unwrap();
    fx.write(
        THREADS_FILE,
        &threads_file(vec![mapping(&fx, ROOT1, "ses_cart", "active")]),
    );
    // Same id as the live schedule under another name: refused by the
    // store's key, reported, not a failure of the whole import.
    fx.write(
        SCHEDULES_FILE,
        &schedules_file(vec![
            sched(&fx, "sched_a_1", "ci-digest", "0 9 * * *"),
            sched(&fx, "sch_live_000001", "other-name", "0 9 * * *"),
        ]),
    );
    let report = run(&*store, &fx.options()).await.unwrap();
    println!("{}", report.render());
    let why = skipped_because(&report, THREADS_FILE, "entry 1");
    assert!(why.contains("ses_live"), "{why}");
    let why = skipped_because(&report, SCHEDULES_FILE, "entry 1");
    assert!(why.contains("sch_live_000001"), "{why}");
    skipped_because(&report, SCHEDULES_FILE, "entry 2");
    assert_eq!(store.threads().await.unwrap(), vec![theirs]);
    assert_eq!(store.schedules().await.unwrap(), vec![mine]);
}

// ---- hostile and broken files (the store is SQLite: the checks come
// before any store call) ----------------------------------------------------

async fn sqlite_run(fx: &Fixture) -> (ImportReport, Arc<dyn Store>, Db) {
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let store = db.open().await;
    let report = run(&*store, &fx.options()).await.unwrap();
    println!("{}", report.render());
    (report, store, db)
}

use std::sync::Arc;

#[tokio::test]
async fn malformed_json_skips_that_file_and_the_others_still_import() {
    let fx = Fixture::new();
    fx.write_raw(
        THREADS_FILE,
        "{\"version\": 1, \"mappings\": [ {\"sessionId\": ",
    );
    fx.write(
        SCHEDULES_FILE,
        &schedules_file(vec![sched(&fx, "sched_1", "ok", "0 9 * * *")]),
    );
    fx.write_raw(TEAM_FILE, "\u{0}\u{1}binary");
    let mut options = fx.options();
    options.directory = Some("/srv/elsewhere".into());
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let store = db.open().await;
    let report = run(&*store, &options).await.unwrap();
    let why = skipped_because(&report, THREADS_FILE, "the whole file");
    assert!(why.contains("not valid JSON"), "{why}");
    let why = skipped_because(&report, TEAM_FILE, "the whole file");
    assert!(why.contains("not valid JSON"), "{why}");
    assert_eq!(
        outcome_of(&report, SCHEDULES_FILE, "entry 1"),
        &Outcome::Imported
    );
    assert_eq!(
        store.schedules().await.unwrap()[0].directory,
        "/srv/elsewhere"
    );
}

#[tokio::test]
async fn a_file_of_another_version_or_shape_is_skipped_whole() {
    let cases: [(Value, &str); 6] = [
        (json!({"version": 2, "mappings": []}), "version is 2"),
        (json!({"version": "1", "mappings": []}), "version is \"1\""),
        (json!({"mappings": []}), "no `version`"),
        (json!({"version": 1}), "no `mappings` list"),
        (
            json!({"version": 1, "mappings": {"a": 1}}),
            "`mappings` is not a list",
        ),
        (json!([1, 2, 3]), "not a JSON object"),
    ];
    for (file, expected) in cases {
        let fx = Fixture::new();
        fx.write(THREADS_FILE, &file);
        let (report, store, _db) = sqlite_run(&fx).await;
        let why = skipped_because(&report, THREADS_FILE, "the whole file");
        assert!(why.contains(expected), "{file}: {why}");
        assert!(store.threads().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn each_bad_mapping_is_skipped_naming_its_field_and_the_good_ones_import() {
    let fx = Fixture::new();
    let good = mapping(&fx, ROOT1, "ses_cart", "active");
    let with = |key: &str, value: Value| {
        let mut m = mapping(&fx, ROOT2, "ses_x", "active");
        if value.is_null() {
            m.as_object_mut().unwrap().remove(key);
        } else {
            m[key] = value;
        }
        m
    };
    let bad: Vec<(Value, &str)> = vec![
        (with("sessionId", Value::Null), "`sessionId` is missing"),
        (with("sessionId", json!("ses x; rm -rf /")), "`sessionId`"),
        (with("sessionId", json!(42)), "`sessionId` is not a string"),
        (
            with("threadRootPostId", json!("../../etc/passwd")),
            "`threadRootPostId`",
        ),
        (
            with("mattermostUserId", Value::Null),
            "`mattermostUserId` is missing",
        ),
        (
            with("dmChannelId", Value::Null),
            "neither `channelId` nor `dmChannelId`",
        ),
        (with("channelId", json!("NOT-AN-ID")), "`channelId`"),
        (with("directory", json!("relative/dir")), "`directory`"),
        (with("directory", json!("/tmp/a\u{7}b")), "`directory`"),
        (with("status", json!("paused")), "`status` \"paused\""),
        (
            with("createdAt", json!("yesterday")),
            "`createdAt` \"yesterday\"",
        ),
        (with("model", json!({"providerID": "a b"})), "`model`"),
        (json!(null), "not a JSON object"),
        (json!("a string"), "not a JSON object"),
    ];
    let mut mappings = vec![good];
    mappings.extend(bad.iter().map(|(m, _)| m.clone()));
    fx.write(THREADS_FILE, &threads_file(mappings));
    let (report, store, _db) = sqlite_run(&fx).await;
    assert_eq!(
        outcome_of(&report, THREADS_FILE, "entry 1"),
        &Outcome::Imported
    );
    for (i, (_, expected)) in bad.iter().enumerate() {
        let why = skipped_because(&report, THREADS_FILE, &format!("entry {}", i + 2));
        assert!(why.contains(expected), "entry {}: {why}", i + 2);
    }
    let threads = store.threads().await.unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].root_post_id, ROOT1);
    // A value from the file never breaks a line of the report.
    assert!(!report.render().contains('\u{7}'));
}

#[tokio::test]
async fn duplicate_entries_import_once() {
    let fx = Fixture::new();
    fx.write(
        THREADS_FILE,
        &threads_file(vec![
            mapping(&fx, ROOT1, "ses_cart", "active"),
            mapping(&fx, ROOT1, "ses_cart", "active"),
            mapping(&fx, ROOT1, "ses_other", "active"),
        ]),
    );
    fx.write(
        SCHEDULES_FILE,
        &schedules_file(vec![
            sched(&fx, "sched_1", "digest", "0 9 * * *"),
            sched(&fx, "sched_2", "digest", "0 10 * * *"),
            sched(&fx, "sched_1", "digest-two", "0 10 * * *"),
        ]),
    );
    let (report, store, _db) = sqlite_run(&fx).await;
    assert_eq!(report.count(THREADS_FILE, |o| *o == Outcome::Imported), 1);
    assert_eq!(report.count(SCHEDULES_FILE, |o| *o == Outcome::Imported), 1);
    for file in [THREADS_FILE, SCHEDULES_FILE] {
        for entry in ["entry 2", "entry 3"] {
            let why = skipped_because(&report, file, entry);
            assert!(why.contains("an earlier entry"), "{file} {entry}: {why}");
        }
    }
    assert_eq!(store.threads().await.unwrap()[0].session_id, "ses_cart");
    assert_eq!(store.schedules().await.unwrap()[0].cron, "0 9 * * *");
}

#[tokio::test]
async fn bad_cron_expressions_zones_and_prompts_are_skipped_with_the_reason() {
    let fx = Fixture::new();
    fx.write(
        THREADS_FILE,
        &threads_file(vec![mapping(&fx, ROOT1, "ses_cart", "active")]),
    );
    let mut zone = sched(&fx, "sched_z", "zone", "0 9 * * *");
    zone["timezone"] = json!("Mars/Olympus");
    let mut long = sched(&fx, "sched_p", "long", "0 9 * * *");
    long["prompt"] = json!("x".repeat(20_001));
    let mut blank = sched(&fx, "sched_b", "blank", "0 9 * * *");
    blank["prompt"] = json!("   ");
    let mut orphan = sched(&fx, "sched_o", "orphan", "0 9 * * *");
    orphan["sessionId"] = json!("ses_unknown");
    let cases: Vec<(Value, &str)> = vec![
        (sched(&fx, "sched_1", "four", "* * * *"), "4 fields, not 5"),
        (sched(&fx, "sched_2", "seconds", "0 0 9 * * *"), "6 fields"),
        (sched(&fx, "sched_3", "reboot", "@reboot"), "@ forms"),
        (
            sched(&fx, "sched_4", "range", "61 9 * * *"),
            "not a valid cron",
        ),
        (sched(&fx, "sched_5", "never", "0 0 30 2 *"), "0 0 30 2 *"),
        (
            sched(&fx, "sched_6", "often", "* * * * *"),
            "OPENCODE_MM_SCHEDULE_MIN_INTERVAL",
        ),
        (sched(&fx, "sched_7", "bad name!", "0 9 * * *"), "`name`"),
        (sched(&fx, "sched 8", "spaced-id", "0 9 * * *"), "`id`"),
        (zone, "Mars/Olympus"),
        (long, "20001 characters"),
        (blank, "`prompt` is missing"),
        (orphan, "--directory"),
    ];
    fx.write(
        SCHEDULES_FILE,
        &schedules_file(cases.iter().map(|(s, _)| s.clone()).collect()),
    );
    let (report, store, _db) = sqlite_run(&fx).await;
    for (i, (_, expected)) in cases.iter().enumerate() {
        let why = skipped_because(&report, SCHEDULES_FILE, &format!("entry {}", i + 1));
        assert!(why.contains(expected), "entry {}: {why}", i + 1);
    }
    assert!(store.schedules().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_huge_file_is_refused_unread() {
    let fx = Fixture::new();
    let path = fx.from.path().join(THREADS_FILE);
    // Sparse: the size is real, the disk use is not.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(legacy::MAX_FILE_BYTES + 1).unwrap();
    let (report, _store, _db) = sqlite_run(&fx).await;
    let why = skipped_because(&report, THREADS_FILE, "the whole file");
    assert!(
        why.contains(&format!("{} bytes", legacy::MAX_FILE_BYTES + 1)),
        "{why}"
    );
}

#[tokio::test]
async fn missing_files_are_reported_and_a_missing_directory_is_an_error() {
    let fx = Fixture::new();
    let (report, _store, _db) = sqlite_run(&fx).await;
    for file in [THREADS_FILE, SCHEDULES_FILE, TEAM_FILE] {
        assert_eq!(
            skipped_because(&report, file, "the whole file"),
            "not found"
        );
    }
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let mut options = fx.options();
    options.from = Path::new(&fx.from.path().join("nope")).to_path_buf();
    let err = run(&*db.open().await, &options).await.unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

#[tokio::test]
async fn without_a_state_directory_threads_are_skipped_saying_why() {
    let fx = Fixture::new();
    fx.write(
        THREADS_FILE,
        &threads_file(vec![mapping(&fx, ROOT1, "ses_cart", "active")]),
    );
    let mut options = fx.options();
    options.state_dir = None;
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let report = run(&*db.open().await, &options).await.unwrap();
    let why = skipped_because(&report, THREADS_FILE, "entry 1");
    assert!(why.contains("no state directory"), "{why}");
}

#[tokio::test]
async fn deep_nesting_and_endless_files_are_refused_not_followed() {
    let fx = Fixture::new();
    // Deeper than the JSON parser's recursion limit.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    fx.write_raw(THREADS_FILE, &deep);
    // Reports a size of 0 but never ends: the read stops at the limit.
    std::os::unix::fs::symlink("/dev/zero", fx.from.path().join(SCHEDULES_FILE)).unwrap();
    let (report, store, _db) = sqlite_run(&fx).await;
    let why = skipped_because(&report, THREADS_FILE, "the whole file");
    assert!(why.contains("not valid JSON"), "{why}");
    let why = skipped_because(&report, SCHEDULES_FILE, "the whole file");
    assert!(why.contains("limit"), "{why}");
    assert!(store.threads().await.unwrap().is_empty());
    assert!(store.schedules().await.unwrap().is_empty());
}
