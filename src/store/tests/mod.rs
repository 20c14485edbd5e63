//! Tests of the store on SQLite, one file per table group as in
//! `sqlite/`; this file holds the fixtures they share (stores, raw
//! connections, sample rows).

mod database;
mod instances;
mod monitors;
mod replies;
mod schedules;
mod threads;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

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
        pending_post_id: None,
    }
}
