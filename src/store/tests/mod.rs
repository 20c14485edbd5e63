//! Tests of the store. The behaviour of [`Store`] is one contract, tested
//! once and run on both backends: each contract test is an
//! `async fn(&Db)` in the file of its table group, and [`contract!`] makes
//! a `sqlite::<name>` and a `postgres::<name>` test of it. SQLite always
//! runs; PostgreSQL runs when `OPENCODE_MM_TEST_DATABASE_URL` names a
//! server (`scripts/test.sh` sets it), each test in a schema of its own that
//! is dropped when the test ends. What only one backend has (files, WAL,
//! pragmas, URLs, TLS) is tested in `database.rs` and `postgres.rs`.

/// Makes a SQLite and a PostgreSQL test of each named contract test.
macro_rules! contract {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::store::tests::Db::new(crate::store::tests::Backend::Sqlite)
                        .await
                        .expect("SQLite is always there");
                    super::$name(&db).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) =
                        crate::store::tests::Db::new(crate::store::tests::Backend::Postgres).await
                    else {
                        return;
                    };
                    super::$name(&db).await;
                }
            )+
        }
    };
}

mod backends;
mod channels;
mod database;
mod instances;
mod merged;
mod monitors;
mod postgres;
mod replies;
mod schedules;
mod threads;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;

pub(crate) use backends::{Backend, Db, PgSchema};

use super::*;

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
        pending_post_id: None,
    }
}
