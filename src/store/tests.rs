use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pretty_assertions::assert_eq;
use rusqlite::Connection;
use tokio::task::JoinSet;

use super::migrations::{self, MIGRATIONS};
use super::sqlite::default_path_from;
use super::*;

fn mem() -> SqliteStore {
    SqliteStore::open_in_memory().unwrap()
}

/// A fresh file-backed database in its own temporary directory.
fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("state.db");
    (dir, path)
}

/// A second, raw connection: the way another program (or a bug) would see
/// and change the file.
fn raw(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn
}

fn instance(id: &str, started_at: Millis) -> Instance {
    Instance {
        id: id.into(),
        host: "devbox".into(),
        directory: "/src/project".into(),
        owner_user_id: Some("user-1".into()),
        pid: 4242,
        started_at,
        heartbeat_at: started_at,
    }
}

fn binding(root: &str, session: &str, instance: &str, created_at: Millis) -> ThreadBinding {
    ThreadBinding {
        root_post_id: root.into(),
        channel_id: "chan-1".into(),
        session_id: session.into(),
        instance_id: instance.into(),
        created_by: "user-1".into(),
        created_at,
        status: ThreadStatus::Active,
        model: None,
    }
}

fn reply(session: &str, message: &str, instance: &str, started_at: Millis) -> Reply {
    Reply {
        session_id: session.into(),
        user_message_id: message.into(),
        instance_id: instance.into(),
        channel_id: "chan-1".into(),
        root_post_id: "root-1".into(),
        post_ids: vec!["p1".into(), "p2".into()],
        started_at,
        state: ReplyState::Streaming,
    }
}

// ---- instances ------------------------------------------------------------

#[tokio::test]
async fn instances_register_upsert_and_heartbeat() {
    let store = mem();
    assert_eq!(store.instances().await.unwrap(), vec![]);

    let mut a = instance("a", 20);
    let b = Instance {
        owner_user_id: None,
        pid: u32::MAX,
        ..instance("b", 10)
    };
    store.register_instance(&a).await.unwrap();
    store.register_instance(&b).await.unwrap();
    assert_eq!(
        store.instances().await.unwrap(),
        vec![b.clone(), a.clone()],
        "ordered by start time"
    );

    // Re-registering overwrites every field.
    a.host = "other".into();
    a.directory = "/elsewhere".into();
    a.owner_user_id = None;
    a.pid = 7;
    a.started_at = 30;
    a.heartbeat_at = 31;
    store.register_instance(&a).await.unwrap();
    assert_eq!(store.instances().await.unwrap(), vec![b.clone(), a.clone()]);

    store.heartbeat("a", 99).await.unwrap();
    let got = store.instances().await.unwrap();
    assert_eq!(got[1].heartbeat_at, 99);
    assert_eq!(got[1].started_at, 30);

    let err = store.heartbeat("ghost", 1).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(ref m) if m.contains("ghost")),
        "{err}"
    );
}

// ---- threads --------------------------------------------------------------

#[tokio::test]
async fn threads_round_trip_and_filter() {
    let store = mem();
    assert_eq!(store.thread("nope").await.unwrap(), None);

    let t1 = ThreadBinding {
        model: Some("anthropic/claude-sonnet".into()),
        ..binding("r1", "s1", "i1", 300)
    };
    let t2 = binding("r2", "s1", "i2", 100);
    let t3 = ThreadBinding {
        status: ThreadStatus::Ended,
        ..binding("r3", "s2", "i1", 200)
    };
    for t in [&t1, &t2, &t3] {
        store.bind_thread(t).await.unwrap();
    }

    assert_eq!(store.thread("r1").await.unwrap(), Some(t1.clone()));
    assert_eq!(store.thread("r3").await.unwrap(), Some(t3.clone()));
    assert_eq!(
        store.threads_of_session("s1").await.unwrap(),
        vec![t2.clone(), t1.clone()],
        "oldest first"
    );
    assert_eq!(
        store.threads_of_instance("i1").await.unwrap(),
        vec![t3.clone(), t1.clone()]
    );
    assert_eq!(store.threads_of_session("none").await.unwrap(), vec![]);
}

#[tokio::test]
async fn binding_a_thread_twice() {
    let store = mem();
    let first = binding("r1", "s1", "i1", 1);
    store.bind_thread(&first).await.unwrap();

    // Same session again: accepted, the first row stays.
    let again = binding("r1", "s1", "i2", 2);
    store.bind_thread(&again).await.unwrap();
    assert_eq!(store.thread("r1").await.unwrap(), Some(first.clone()));

    // Another session: refused, nothing changes.
    let err = store
        .bind_thread(&binding("r1", "s2", "i1", 3))
        .await
        .unwrap_err();
    match &err {
        StoreError::Conflict(m) => {
            assert!(m.contains("r1") && m.contains("s1") && m.contains("s2"))
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.thread("r1").await.unwrap(), Some(first));
}

#[tokio::test]
async fn thread_status_and_model() {
    let store = mem();
    store
        .bind_thread(&binding("r1", "s1", "i1", 1))
        .await
        .unwrap();

    store
        .set_thread_status("r1", ThreadStatus::Ended)
        .await
        .unwrap();
    store
        .set_thread_model("r1", Some("openai/gpt-5"))
        .await
        .unwrap();
    let t = store.thread("r1").await.unwrap().unwrap();
    assert_eq!(t.status, ThreadStatus::Ended);
    assert_eq!(t.model.as_deref(), Some("openai/gpt-5"));

    store
        .set_thread_status("r1", ThreadStatus::Active)
        .await
        .unwrap();
    store.set_thread_model("r1", None).await.unwrap();
    let t = store.thread("r1").await.unwrap().unwrap();
    assert_eq!(t.status, ThreadStatus::Active);
    assert_eq!(t.model, None);

    assert!(matches!(
        store.set_thread_status("zz", ThreadStatus::Ended).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.set_thread_model("zz", Some("a/b")).await,
        Err(StoreError::NotFound(_))
    ));
}

// ---- claims ---------------------------------------------------------------

#[tokio::test]
async fn claims_round_trip() {
    let store = mem();
    assert_eq!(store.claim("p1").await.unwrap(), None);

    assert!(store.claim_post("p1", "i1", 10).await.unwrap());
    assert!(
        !store.claim_post("p1", "i1", 11).await.unwrap(),
        "same instance again"
    );
    assert!(
        !store.claim_post("p1", "i2", 12).await.unwrap(),
        "another instance"
    );

    let fresh = Claim {
        post_id: "p1".into(),
        instance_id: "i1".into(),
        claimed_at: 10,
        state: ClaimState::Claimed,
        session_id: None,
        message_id: None,
        root_post_id: None,
        channel_id: None,
    };
    assert_eq!(store.claim("p1").await.unwrap(), Some(fresh.clone()));

    for state in [ClaimState::Prompted, ClaimState::Done, ClaimState::Failed] {
        let updated = Claim {
            state,
            session_id: Some("s1".into()),
            message_id: Some("msg_1".into()),
            root_post_id: Some("r1".into()),
            channel_id: Some("c1".into()),
            ..fresh.clone()
        };
        store.update_claim(&updated).await.unwrap();
        assert_eq!(store.claim("p1").await.unwrap(), Some(updated));
    }

    // Owner and claim time are not the caller's to rewrite.
    let hijack = Claim {
        instance_id: "i2".into(),
        claimed_at: 99,
        ..fresh.clone()
    };
    store.update_claim(&hijack).await.unwrap();
    let got = store.claim("p1").await.unwrap().unwrap();
    assert_eq!((got.instance_id.as_str(), got.claimed_at), ("i1", 10));

    let ghost = Claim {
        post_id: "never".into(),
        ..fresh
    };
    assert!(matches!(
        store.update_claim(&ghost).await,
        Err(StoreError::NotFound(ref m)) if m.contains("never")
    ));
}

#[tokio::test]
async fn unfinished_claims_filter_by_instance_and_state() {
    let store = mem();
    // Claimed out of time order to check the sorting.
    for (post, inst, at) in [
        ("p3", "i1", 30),
        ("p1", "i1", 10),
        ("p2", "i1", 20),
        ("p4", "i1", 40),
        ("p5", "i1", 50),
        ("q1", "i2", 5),
    ] {
        assert!(store.claim_post(post, inst, at).await.unwrap());
    }
    let set = |post: &str, state| {
        let store = store.clone();
        let post = post.to_owned();
        async move {
            let mut c = store.claim(&post).await.unwrap().unwrap();
            c.state = state;
            store.update_claim(&c).await.unwrap();
        }
    };
    set("p2", ClaimState::Prompted).await;
    set("p4", ClaimState::Done).await;
    set("p5", ClaimState::Failed).await;

    let got: Vec<(String, ClaimState)> = store
        .unfinished_claims("i1")
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.post_id, c.state))
        .collect();
    assert_eq!(
        got,
        vec![
            ("p1".to_owned(), ClaimState::Claimed),
            ("p2".to_owned(), ClaimState::Prompted),
            ("p3".to_owned(), ClaimState::Claimed),
        ]
    );
    assert_eq!(store.unfinished_claims("i2").await.unwrap().len(), 1);
    assert_eq!(store.unfinished_claims("i3").await.unwrap(), vec![]);
}

// ---- replies --------------------------------------------------------------

#[tokio::test]
async fn replies_round_trip_and_upsert() {
    let store = mem();
    assert_eq!(store.reply("s1", "m1").await.unwrap(), None);

    let mut r = reply("s1", "m1", "i1", 5);
    r.post_ids = vec![
        "a".into(),
        "with \"quotes\" and \\ and ünïcode".into(),
        "c".into(),
    ];
    store.save_reply(&r).await.unwrap();
    assert_eq!(store.reply("s1", "m1").await.unwrap(), Some(r.clone()));

    // Same key: every other field is replaced.
    r.post_ids.push("d".into());
    r.state = ReplyState::Done;
    r.instance_id = "i2".into();
    r.channel_id = "chan-2".into();
    r.root_post_id = "root-2".into();
    r.started_at = 6;
    store.save_reply(&r).await.unwrap();
    assert_eq!(store.reply("s1", "m1").await.unwrap(), Some(r.clone()));

    // The key is the pair: other halves do not match.
    assert_eq!(store.reply("s1", "m2").await.unwrap(), None);
    assert_eq!(store.reply("s2", "m1").await.unwrap(), None);

    let empty = Reply {
        post_ids: vec![],
        ..reply("s1", "m2", "i1", 1)
    };
    store.save_reply(&empty).await.unwrap();
    assert_eq!(store.reply("s1", "m2").await.unwrap(), Some(empty));
}

#[tokio::test]
async fn streaming_replies_filter_by_instance_and_state() {
    let store = mem();
    store
        .save_reply(&reply("s1", "m3", "i1", 30))
        .await
        .unwrap();
    store
        .save_reply(&reply("s1", "m1", "i1", 10))
        .await
        .unwrap();
    store
        .save_reply(&Reply {
            state: ReplyState::Done,
            ..reply("s1", "m2", "i1", 20)
        })
        .await
        .unwrap();
    store.save_reply(&reply("s2", "m1", "i2", 1)).await.unwrap();

    let keys: Vec<(String, String)> = store
        .streaming_replies("i1")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.session_id, r.user_message_id))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("s1".to_owned(), "m1".to_owned()),
            ("s1".to_owned(), "m3".to_owned())
        ]
    );
    assert_eq!(store.streaming_replies("i2").await.unwrap().len(), 1);
    assert_eq!(store.streaming_replies("i9").await.unwrap(), vec![]);
}

// ---- cursors --------------------------------------------------------------

#[tokio::test]
async fn cursor_never_moves_backwards() {
    let store = mem();
    assert_eq!(store.cursors().await.unwrap(), vec![]);

    store.advance_cursor("c1", 100, "mmm").await.unwrap();
    store.advance_cursor("c1", 50, "zzz").await.unwrap(); // older
    store.advance_cursor("c1", 100, "aaa").await.unwrap(); // same time, smaller id
    assert_eq!(store.cursors().await.unwrap(), vec![("c1".to_owned(), 100)]);
    assert_eq!(cursor_post(&store, "c1").await, "mmm");

    store.advance_cursor("c1", 100, "mmm").await.unwrap(); // same post: no-op
    store.advance_cursor("c1", 100, "nnn").await.unwrap(); // same time, larger id
    assert_eq!(cursor_post(&store, "c1").await, "nnn");

    store.advance_cursor("c1", 101, "aaa").await.unwrap(); // newer
    store.advance_cursor("c0", 7, "x").await.unwrap();
    assert_eq!(
        store.cursors().await.unwrap(),
        vec![("c0".to_owned(), 7), ("c1".to_owned(), 101)]
    );
    assert_eq!(cursor_post(&store, "c1").await, "aaa");
}

/// The post id half of a cursor, which the trait does not expose.
async fn cursor_post(store: &SqliteStore, channel: &str) -> String {
    let channel = channel.to_owned();
    store
        .call(move |conn| {
            Ok(conn.query_row(
                "SELECT post_id FROM cursors WHERE channel_id = ?1",
                [&channel],
                |row| row.get(0),
            )?)
        })
        .await
        .unwrap()
}

// ---- files, migrations, pragmas ---------------------------------------------

#[tokio::test]
async fn file_is_created_in_wal_mode_and_reopens_with_its_data() {
    let (_dir, path) = temp_db();
    {
        let store = SqliteStore::open(&path).unwrap();
        store.claim_post("p1", "i1", 1).await.unwrap();
        store
            .bind_thread(&binding("r1", "s1", "i1", 1))
            .await
            .unwrap();
    }
    assert!(path.exists(), "parent directories were created");

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.claim("p1").await.unwrap().unwrap().instance_id, "i1");
    assert!(store.thread("r1").await.unwrap().is_some());
    drop(store);
    let store = SqliteStore::open(&path).unwrap();

    let conn = raw(&path);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let known: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        versions, known,
        "each migration recorded once after three opens"
    );

    // The per-connection settings of the store's own connection.
    let (sync, fk, busy): (i64, i64, i64) = store
        .call(|conn| {
            Ok((
                conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
                conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?,
                conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?,
            ))
        })
        .await
        .unwrap();
    assert_eq!((sync, fk, busy), (1, 1, 5000), "NORMAL, ON, 5 s");
}

#[test]
fn migrations_are_numbered_in_order() {
    let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    let expected: Vec<i64> = (1..=MIGRATIONS.len() as i64).collect();
    assert_eq!(versions, expected);
    assert_eq!(migrations::latest_version(), MIGRATIONS.len() as i64);
}

#[test]
fn migrating_twice_is_a_no_op() {
    let mut conn = Connection::open_in_memory().unwrap();
    migrations::migrate(&mut conn).unwrap();
    conn.execute("INSERT INTO cursors VALUES ('c', 1, 'p')", [])
        .unwrap();
    migrations::migrate(&mut conn).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, MIGRATIONS.len() as i64);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM cursors", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn newer_schema_is_refused_untouched() {
    let (_dir, path) = temp_db();
    drop(SqliteStore::open(&path).unwrap());
    let future = migrations::latest_version() + 1;
    raw(&path)
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, 'from the future')",
            [future],
        )
        .unwrap();

    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(
        err,
        StoreError::NewerSchema {
            found: future,
            known: migrations::latest_version()
        }
    );
    let message = err.to_string();
    assert!(message.contains("newer opencode-mattermost"), "{message}");
    assert!(message.contains("OPENCODE_MM_STATE_DB"), "{message}");

    // Still there, still newer: the refusal wrote nothing.
    let max: i64 = raw(&path)
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(max, future);
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let conn = raw(&path);
    conn.execute_batch(
        "INSERT INTO claims (post_id, instance_id, claimed_at, state)
             VALUES ('bad-state', 'i1', 1, 'bogus');
         INSERT INTO claims (post_id, instance_id, claimed_at, state)
             VALUES ('bad-time', 'i1', 'yesterday', 'claimed');
         INSERT INTO threads VALUES ('bad-status', 'c', 's', 'i1', 'u', 1, 'paused', NULL);
         INSERT INTO replies VALUES ('s', 'bad-json', 'i1', 'c', 'r', '[\"a\",', 1, 'streaming');
         INSERT INTO replies VALUES ('s', 'bad-ids', 'i2', 'c', 'r', '[1, 2]', 1, 'streaming');
         INSERT INTO replies VALUES ('s', 'bad-state', 'i3', 'c', 'r', '[]', 1, 'STREAMING');
         INSERT INTO instances VALUES ('bad-pid', 'h', '/d', NULL, -1, 1, 1);",
    )
    .unwrap();

    let corrupt = |r: Result<_, StoreError>, what: &str| match r {
        Err(StoreError::Corrupt(m)) => m,
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    };
    let m = corrupt(store.claim("bad-state").await.map(|_| ()), "claim state");
    assert!(m.contains("bogus"), "{m}");
    corrupt(store.claim("bad-time").await.map(|_| ()), "claim time");
    corrupt(
        store.unfinished_claims("i1").await.map(|_| ()),
        "unfinished claims",
    );
    let m = corrupt(
        store.thread("bad-status").await.map(|_| ()),
        "thread status",
    );
    assert!(m.contains("paused"), "{m}");
    corrupt(
        store.threads_of_instance("i1").await.map(|_| ()),
        "threads of instance",
    );
    let m = corrupt(store.reply("s", "bad-json").await.map(|_| ()), "reply JSON");
    assert!(m.contains("post_ids"), "{m}");
    corrupt(store.reply("s", "bad-ids").await.map(|_| ()), "reply ids");
    corrupt(
        store.streaming_replies("i1").await.map(|_| ()),
        "streaming replies",
    );
    corrupt(
        store.reply("s", "bad-state").await.map(|_| ()),
        "reply state",
    );
    corrupt(store.instances().await.map(|_| ()), "instance pid");

    // The message tells the user what to do.
    let err = store.claim("bad-state").await.unwrap_err().to_string();
    assert!(err.contains("restore a backup"), "{err}");
}

#[test]
fn open_reports_an_unusable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let err = SqliteStore::open(&blocker.join("sub").join("state.db")).unwrap_err();
    assert!(
        matches!(err, StoreError::Io { ref path, .. } if path.ends_with("sub")),
        "{err:?}"
    );
    assert!(err.to_string().contains("OPENCODE_MM_STATE_DB"), "{err}");

    // A file that is not a database.
    std::fs::write(dir.path().join("junk.db"), vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&dir.path().join("junk.db")).unwrap_err();
    assert!(
        matches!(err, StoreError::Sqlite(ref m) if m.contains("junk.db")),
        "{err:?}"
    );
}

#[test]
fn default_path_prefers_xdg_data_home() {
    let os = |s: &str| Some(OsString::from(s));
    assert_eq!(
        default_path_from(os("/xdg"), os("/home/me")),
        Some(PathBuf::from("/xdg/opencode-mattermost/state.db"))
    );
    assert_eq!(
        default_path_from(None, os("/home/me")),
        Some(PathBuf::from(
            "/home/me/.local/share/opencode-mattermost/state.db"
        ))
    );
    // Empty or relative XDG values are ignored, as the spec asks.
    for ignored in ["", "relative/dir"] {
        assert_eq!(
            default_path_from(os(ignored), os("/home/me")),
            Some(PathBuf::from(
                "/home/me/.local/share/opencode-mattermost/state.db"
            ))
        );
    }
    assert_eq!(default_path_from(None, None), None);
    assert_eq!(default_path_from(os(""), os("")), None);
}

#[test]
fn now_millis_is_after_2020() {
    assert!(now_millis() > 1_577_836_800_000);
}

#[test]
fn enum_spellings_round_trip() {
    for s in [ThreadStatus::Active, ThreadStatus::Ended] {
        assert_eq!(ThreadStatus::parse(s.as_str()), Some(s));
    }
    for s in [
        ClaimState::Claimed,
        ClaimState::Prompted,
        ClaimState::Done,
        ClaimState::Failed,
    ] {
        assert_eq!(ClaimState::parse(s.as_str()), Some(s));
    }
    for s in [ReplyState::Streaming, ReplyState::Done] {
        assert_eq!(ReplyState::parse(s.as_str()), Some(s));
    }
    for s in [
        RunState::Running,
        RunState::Done,
        RunState::Failed,
        RunState::TimedOut,
        RunState::Skipped,
        RunState::Missed,
    ] {
        assert_eq!(RunState::parse(s.as_str()), Some(s));
    }
    for t in [RunTrigger::Cron, RunTrigger::Manual] {
        assert_eq!(RunTrigger::parse(t.as_str()), Some(t));
    }
    assert_eq!(ClaimState::parse("Claimed"), None, "spellings are exact");
}

#[tokio::test]
async fn the_trait_is_object_safe() {
    let store: Arc<dyn Store> = Arc::new(mem());
    assert!(store.claim_post("p", "i", 1).await.unwrap());
}

// ---- exactly-once under contention -------------------------------------------

const POSTS: usize = 500;

/// `stores` separate connections to one file, as separate agent processes
/// would have, race to claim the same posts; each post must be won once.
async fn claims_race(stores: usize) {
    let (_dir, path) = temp_db();
    let stores: Vec<SqliteStore> = (0..stores)
        .map(|_| SqliteStore::open(&path).unwrap())
        .collect();
    let posts: Vec<String> = (0..POSTS).map(|i| format!("post-{i:04}")).collect();

    let mut tasks = JoinSet::new();
    // Interleave the stores post by post so they collide on every id.
    for post in &posts {
        for (n, store) in stores.iter().enumerate() {
            let store = store.clone();
            let post = post.clone();
            tasks.spawn(async move {
                let instance = format!("instance-{n}");
                let won = store.claim_post(&post, &instance, 1).await.unwrap();
                (post, instance, won)
            });
        }
    }

    let mut winners: HashMap<String, Vec<String>> = HashMap::new();
    let mut attempts = 0;
    while let Some(joined) = tasks.join_next().await {
        let (post, instance, won) = joined.unwrap();
        attempts += 1;
        if won {
            winners.entry(post).or_default().push(instance);
        }
    }
    assert_eq!(attempts, POSTS * stores.len());
    assert_eq!(winners.len(), POSTS, "every post was won");
    for post in &posts {
        let won_by = &winners[post];
        assert_eq!(won_by.len(), 1, "{post} won by {won_by:?}");
        // Every connection sees the same single owner.
        for store in &stores {
            let claim = store.claim(post).await.unwrap().unwrap();
            assert_eq!(&claim.instance_id, &won_by[0]);
        }
    }
    let spread: std::collections::BTreeSet<&String> = winners.values().flatten().collect();
    eprintln!("{} stores: winners spread over {spread:?}", stores.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_are_exactly_once_across_two_connections() {
    claims_race(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_are_exactly_once_across_four_connections() {
    claims_race(4).await;
}

// ---- schedules and their runs -------------------------------------------------

fn schedule(id: &str, name: &str) -> Schedule {
    Schedule {
        id: id.into(),
        name: name.into(),
        cron: "0 9 * * 1-5".into(),
        timezone: "America/New_York".into(),
        prompt: "Summarise the open PRs".into(),
        target_user_id: "user-1".into(),
        agent: Some("plan".into()),
        model: None,
        directory: "/src/project".into(),
        enabled: true,
        created_by: "user-1".into(),
        created_at: 10,
        active_since: 10,
    }
}

fn run(schedule_id: &str, at: Millis, instance: &str, state: RunState) -> ScheduleRun {
    ScheduleRun {
        schedule_id: schedule_id.into(),
        scheduled_at: at,
        trigger: RunTrigger::Cron,
        instance_id: instance.into(),
        claimed_at: at,
        deadline_at: at + 100_000,
        state,
        session_id: None,
        finished_at: None,
        detail: None,
        post_id: None,
    }
}

#[tokio::test]
async fn schedules_round_trip_and_names_are_unique() {
    let store = mem();
    assert_eq!(store.schedules().await.unwrap(), vec![]);
    let b = schedule("s-b", "beta");
    let a = Schedule {
        model: Some("p/m".into()),
        agent: None,
        ..schedule("s-a", "alpha")
    };
    store.add_schedule(&b).await.unwrap();
    store.add_schedule(&a).await.unwrap();
    assert_eq!(store.schedules().await.unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(
        store.schedule_by_name("beta").await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(store.schedule_by_name("gamma").await.unwrap(), None);

    let err = store
        .add_schedule(&schedule("s-c", "alpha"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("alpha")),
        "{err:?}"
    );

    // Disabling keeps `active_since`; enabling a disabled one moves it.
    store.set_schedule_enabled("s-a", false, 50).await.unwrap();
    let got = store.schedule_by_name("alpha").await.unwrap().unwrap();
    assert_eq!((got.enabled, got.active_since), (false, 10));
    store.set_schedule_enabled("s-a", true, 60).await.unwrap();
    store.set_schedule_enabled("s-a", true, 70).await.unwrap();
    let got = store.schedule_by_name("alpha").await.unwrap().unwrap();
    assert_eq!((got.enabled, got.active_since), (true, 60));
    assert!(matches!(
        store.set_schedule_enabled("nope", true, 1).await,
        Err(StoreError::NotFound(_))
    ));

    // Removing a schedule removes its runs.
    assert_eq!(
        store
            .claim_schedule_run(&run("s-a", 60_000, "i1", RunState::Done))
            .await
            .unwrap(),
        RunClaim::Won
    );
    assert_eq!(store.last_cron_run_at("s-a").await.unwrap(), Some(60_000));
    store.remove_schedule("s-a").await.unwrap();
    assert_eq!(store.schedule_runs("s-a", 10).await.unwrap(), vec![]);
    assert_eq!(store.last_cron_run_at("s-a").await.unwrap(), None);
    assert!(matches!(
        store.remove_schedule("s-a").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn schedule_runs_claim_update_and_overlap() {
    let store = mem();
    store.add_schedule(&schedule("s1", "one")).await.unwrap();

    let first = run("s1", 60_000, "i1", RunState::Running);
    assert_eq!(
        store.claim_schedule_run(&first).await.unwrap(),
        RunClaim::Won
    );
    assert_eq!(
        store.claim_schedule_run(&first).await.unwrap(),
        RunClaim::Taken
    );
    // The next time while the first still runs: recorded as skipped.
    let second = run("s1", 120_000, "i2", RunState::Running);
    let claim = store.claim_schedule_run(&second).await.unwrap();
    assert_eq!(claim, RunClaim::Overlap(first.clone()));
    let runs = store.schedule_runs("s1", 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].state, RunState::Skipped);
    assert!(runs[0].detail.as_deref().unwrap().contains("still going"));
    assert_eq!(runs[0].finished_at, Some(120_000));

    // Past its deadline a running row no longer blocks.
    let late = ScheduleRun {
        claimed_at: 160_001,
        ..run("s1", 180_000, "i2", RunState::Running)
    };
    assert_eq!(
        store.claim_schedule_run(&late).await.unwrap(),
        RunClaim::Won
    );

    // Manual runs do not move the cron cursor.
    let manual = ScheduleRun {
        trigger: RunTrigger::Manual,
        ..run("s1", 200_001, "i1", RunState::Done)
    };
    store.claim_schedule_run(&manual).await.unwrap();
    assert_eq!(store.last_cron_run_at("s1").await.unwrap(), Some(180_000));

    let mut done = late.clone();
    done.state = RunState::Done;
    done.session_id = Some("ses_1".into());
    done.post_id = Some("post_1".into());
    done.finished_at = Some(190_000);
    store.update_schedule_run(&done).await.unwrap();
    let got = store.schedule_runs("s1", 2).await.unwrap();
    assert_eq!(
        got,
        vec![manual.clone(), done.clone()],
        "newest first, limited"
    );
    assert!(matches!(
        store
            .update_schedule_run(&run("s1", 1, "i1", RunState::Done))
            .await,
        Err(StoreError::NotFound(_))
    ));

    // A restarted instance fails only its own running rows.
    store
        .claim_schedule_run(&run("s1", 240_000, "i1", RunState::Running))
        .await
        .unwrap();
    assert_eq!(store.fail_running_runs("i2", 9, "gone").await.unwrap(), 0);
    assert_eq!(store.fail_running_runs("i1", 9, "gone").await.unwrap(), 2);
    let states: Vec<RunState> = store
        .schedule_runs("s1", 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.state)
        .collect();
    assert!(!states.contains(&RunState::Running), "{states:?}");

    // Disabled or removed schedules take no cron runs; disabled ones still
    // take manual runs.
    store.set_schedule_enabled("s1", false, 1).await.unwrap();
    assert_eq!(
        store
            .claim_schedule_run(&run("s1", 300_000, "i1", RunState::Running))
            .await
            .unwrap(),
        RunClaim::Inactive
    );
    let manual = ScheduleRun {
        trigger: RunTrigger::Manual,
        ..run("s1", 300_001, "i1", RunState::Running)
    };
    assert_eq!(
        store.claim_schedule_run(&manual).await.unwrap(),
        RunClaim::Won
    );
    assert_eq!(
        store
            .claim_schedule_run(&run("ghost", 1, "i1", RunState::Running))
            .await
            .unwrap(),
        RunClaim::Inactive
    );
}

#[tokio::test]
async fn corrupt_schedule_rows_are_errors_not_panics() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    store.add_schedule(&schedule("s1", "one")).await.unwrap();
    raw(&path)
        .execute_batch(
            "INSERT INTO schedule_runs VALUES ('s1', 1, 'sometimes', 'i', 1, 2, 'done', NULL, NULL, NULL, NULL);
             INSERT INTO schedule_runs VALUES ('s1', 2, 'cron', 'i', 1, 2, 'exploded', NULL, NULL, NULL, NULL);",
        )
        .unwrap();
    match store.schedule_runs("s1", 10).await {
        Err(StoreError::Corrupt(m)) => {
            assert!(m.contains("exploded") || m.contains("sometimes"), "{m}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Agents on separate connections race to claim the same scheduled times;
/// each time must be won exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedule_runs_are_exactly_once_across_connections() {
    let (_dir, path) = temp_db();
    let stores: Vec<SqliteStore> = (0..3).map(|_| SqliteStore::open(&path).unwrap()).collect();
    stores[0]
        .add_schedule(&schedule("s1", "one"))
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    for minute in 0..200i64 {
        for (n, store) in stores.iter().enumerate() {
            let store = store.clone();
            tasks.spawn(async move {
                let r = run("s1", minute * 60_000, &format!("i{n}"), RunState::Done);
                (minute, store.claim_schedule_run(&r).await.unwrap())
            });
        }
    }
    let mut won: HashMap<i64, usize> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (minute, claim) = joined.unwrap();
        if claim == RunClaim::Won {
            *won.entry(minute).or_default() += 1;
        } else {
            assert_eq!(claim, RunClaim::Taken);
        }
    }
    assert_eq!(won.len(), 200);
    assert!(won.values().all(|&n| n == 1), "{won:?}");
}

#[tokio::test]
async fn a_thread_can_be_pointed_at_another_session() {
    let store = mem();
    store
        .bind_thread(&binding("r1", "s1", "i1", 1))
        .await
        .unwrap();
    store
        .set_thread_status("r1", ThreadStatus::Ended)
        .await
        .unwrap();
    store.set_thread_session("r1", "s2").await.unwrap();
    let thread = store.thread("r1").await.unwrap().unwrap();
    assert_eq!(thread.session_id, "s2");
    assert_eq!(thread.status, ThreadStatus::Active);
    assert!(store.threads_of_session("s1").await.unwrap().is_empty());
    assert!(matches!(
        store.set_thread_session("nope", "s2").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn channel_selection_set_replace_and_clear() {
    let store = mem();
    assert_eq!(store.selection("dm").await.unwrap(), None);
    store.select_thread("dm", Some("r1"), 1).await.unwrap();
    store.select_thread("dm", Some("r2"), 2).await.unwrap();
    store.select_thread("other", Some("r9"), 2).await.unwrap();
    assert_eq!(store.selection("dm").await.unwrap().as_deref(), Some("r2"));
    store.select_thread("dm", None, 3).await.unwrap();
    assert_eq!(store.selection("dm").await.unwrap(), None);
    assert_eq!(
        store.selection("other").await.unwrap().as_deref(),
        Some("r9")
    );
    // Clearing what is not set is fine.
    store.select_thread("dm", None, 4).await.unwrap();
}

// ---- monitors -------------------------------------------------------------

fn monitor(session: &str, target: &str, persistent: bool, created_at: Millis) -> MonitorRow {
    MonitorRow {
        session_id: session.into(),
        target_user_id: target.into(),
        persistent,
        created_at,
        last_alert: None,
    }
}

#[tokio::test]
async fn monitors_round_trip_upsert_and_remove() {
    let store = mem();
    assert!(store.monitors().await.unwrap().is_empty());
    assert!(store.monitors_of("ses_1").await.unwrap().is_empty());

    store
        .add_monitor(&monitor("ses_1", "bob", true, 1))
        .await
        .unwrap();
    store
        .add_monitor(&monitor("ses_1", "alice", false, 2))
        .await
        .unwrap();
    store
        .add_monitor(&monitor("ses_2", "alice", true, 3))
        .await
        .unwrap();
    let of_1 = store.monitors_of("ses_1").await.unwrap();
    assert_eq!(
        of_1,
        vec![
            monitor("ses_1", "alice", false, 2),
            monitor("ses_1", "bob", true, 1)
        ],
        "by target"
    );
    let all: Vec<(String, String)> = store
        .monitors()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.session_id, m.target_user_id))
        .collect();
    assert_eq!(
        all,
        vec![
            ("ses_1".to_owned(), "alice".to_owned()),
            ("ses_1".to_owned(), "bob".to_owned()),
            ("ses_2".to_owned(), "alice".to_owned()),
        ]
    );

    // The alert key is recorded per target.
    store
        .set_monitor_alert("ses_1", "alice", "permission:per_1")
        .await
        .unwrap();
    let of_1 = store.monitors_of("ses_1").await.unwrap();
    assert_eq!(of_1[0].last_alert.as_deref(), Some("permission:per_1"));
    assert_eq!(of_1[1].last_alert, None);

    // Adding again replaces the kind and forgets what was alerted.
    store
        .add_monitor(&monitor("ses_1", "alice", true, 9))
        .await
        .unwrap();
    let of_1 = store.monitors_of("ses_1").await.unwrap();
    assert_eq!(of_1[0], monitor("ses_1", "alice", true, 9));
    assert_eq!(store.monitors().await.unwrap().len(), 3, "no duplicate row");

    // Remove one target, then all of a session; counts say what went.
    assert_eq!(
        store.remove_monitors("ses_1", Some("bob")).await.unwrap(),
        1
    );
    assert_eq!(
        store.remove_monitors("ses_1", Some("bob")).await.unwrap(),
        0
    );
    store
        .add_monitor(&monitor("ses_1", "carol", true, 10))
        .await
        .unwrap();
    assert_eq!(store.remove_monitors("ses_1", None).await.unwrap(), 2);
    assert!(store.monitors_of("ses_1").await.unwrap().is_empty());
    assert_eq!(store.remove_monitors("ses_1", None).await.unwrap(), 0);
    assert_eq!(store.monitors().await.unwrap().len(), 1, "ses_2 stays");

    // Recording an alert for a monitor that is gone says so.
    assert!(matches!(
        store.set_monitor_alert("ses_1", "alice", "idle:1").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn monitors_keep_odd_input_as_data() {
    let store = mem();
    let odd = [
        "",
        "'; DROP TABLE monitors; --",
        "ses_%",
        "ünïcödé 🔔",
        "a\0b",
        "line\nbreak",
    ];
    for (i, text) in odd.iter().enumerate() {
        let mut m = monitor(text, text, i % 2 == 0, i as Millis);
        m.last_alert = Some((*text).to_owned());
        store.add_monitor(&m).await.unwrap();
        let back = store.monitors_of(text).await.unwrap();
        assert_eq!(back, vec![m], "{text:?}");
    }
    assert_eq!(store.monitors().await.unwrap().len(), odd.len());
    // A LIKE-style pattern matches only itself.
    assert_eq!(store.remove_monitors("ses_%", None).await.unwrap(), 1);
    assert_eq!(
        store
            .remove_monitors("'; DROP TABLE monitors; --", Some("x"))
            .await
            .unwrap(),
        0
    );
    store
        .set_monitor_alert("a\0b", "a\0b", &"k".repeat(100_000))
        .await
        .unwrap();
    let long = store.monitors_of("a\0b").await.unwrap();
    assert_eq!(long[0].last_alert.as_ref().map(String::len), Some(100_000));
    assert_eq!(store.monitors().await.unwrap().len(), odd.len() - 1);
}

#[tokio::test]
async fn corrupt_monitor_rows_are_errors_not_panics() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    raw(&path)
        .execute_batch(
            "INSERT INTO monitors VALUES ('ses_1', 'alice', 'sometimes', 1, NULL);
             INSERT INTO monitors VALUES ('ses_2', 'alice', 1, 'yesterday', NULL);
             INSERT INTO monitors VALUES ('ses_3', 'alice', 1, 1, X'00FF');",
        )
        .unwrap();
    for session in ["ses_1", "ses_2", "ses_3"] {
        assert!(
            matches!(
                store.monitors_of(session).await,
                Err(StoreError::Corrupt(_))
            ),
            "{session}"
        );
    }
    assert!(matches!(
        store.monitors().await,
        Err(StoreError::Corrupt(_))
    ));
    // The bad rows can still be removed.
    assert_eq!(store.remove_monitors("ses_1", None).await.unwrap(), 1);
}

#[tokio::test]
async fn monitors_survive_reopening_the_file() {
    let (_dir, path) = temp_db();
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .add_monitor(&monitor("ses_1", "alice", true, 5))
            .await
            .unwrap();
        store
            .set_monitor_alert("ses_1", "alice", "question:que_1")
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let back = store.monitors_of("ses_1").await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].last_alert.as_deref(), Some("question:que_1"));
    assert!(back[0].persistent);
}
