//! Tests of SQLite only: the database file itself: creation, WAL and pragmas,
//! migrations, refusing newer schemas, corrupt rows, the default path, and
//! the stored spellings of the store's enums.

use std::ffi::OsString;

use pretty_assertions::assert_eq;

use super::*;
use crate::store::migrations::{self, MIGRATIONS};
use crate::store::sqlite::default_path_from;

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

/// Values SQLite's loose typing lets in (text in an integer column, JSON
/// that does not parse, a blob): errors, not panics. The spellings and
/// shapes every backend can hold are contract tests.
#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let conn = raw(&path);
    conn.execute_batch(
        "INSERT INTO claims (post_id, instance_id, claimed_at, state)
             VALUES ('bad-time', 'i1', 'yesterday', 'claimed');
         INSERT INTO replies VALUES ('s', 'bad-json', 'i1', 'c', 'r', '[\"a\",', 1, 'streaming', NULL);
         INSERT INTO monitors VALUES ('ses_1', 'alice', 'sometimes', 1, NULL);
         INSERT INTO monitors VALUES ('ses_2', 'alice', 1, 'yesterday', NULL);
         INSERT INTO monitors VALUES ('ses_3', 'alice', 1, 1, X'00FF');",
    )
    .unwrap();

    let corrupt = |r: Result<_, StoreError>, what: &str| match r {
        Err(StoreError::Corrupt(m)) => m,
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    };
    corrupt(store.claim("bad-time").await.map(|_| ()), "claim time");
    corrupt(
        store.unfinished_claims("i1").await.map(|_| ()),
        "unfinished claims",
    );
    let m = corrupt(store.reply("s", "bad-json").await.map(|_| ()), "reply JSON");
    assert!(m.contains("post_ids"), "{m}");
    corrupt(
        store.streaming_replies("i1").await.map(|_| ()),
        "streaming replies",
    );
    for session in ["ses_1", "ses_2", "ses_3"] {
        corrupt(store.monitors_of(session).await.map(|_| ()), session);
    }
    corrupt(store.monitors().await.map(|_| ()), "monitors");
    // The bad rows can still be removed.
    assert_eq!(store.remove_monitors("ses_1", None).await.unwrap(), 1);
}

/// SQLite text holds any string, NUL included (PostgreSQL's cannot; see
/// `postgres.rs`).
#[tokio::test]
async fn sqlite_text_keeps_nul_characters() {
    let store = SqliteStore::open_in_memory().unwrap();
    let m = MonitorRow {
        session_id: "a\0b".into(),
        target_user_id: "a\0b".into(),
        persistent: true,
        created_at: 1,
        last_alert: Some("k\0".into()),
    };
    store.add_monitor(&m).await.unwrap();
    assert_eq!(store.monitors_of("a\0b").await.unwrap(), vec![m]);
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
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    assert!(store.claim_post("p", "i", 1).await.unwrap());
}
