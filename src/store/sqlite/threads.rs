//! The `threads` and `selections` tables: which Mattermost thread answers to
//! which OpenCode session, and which thread a channel's top-level posts go to.

use rusqlite::types::{FromSql, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, TransactionBehavior};

use super::{query_all, require_row, text_enum};
use crate::store::{Millis, StoreError, ThreadBinding, ThreadStatus};

impl ToSql for ThreadStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for ThreadStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_enum(value, "thread status", ThreadStatus::parse)
    }
}

const THREAD_COLUMNS: &str =
    "root_post_id, channel_id, session_id, instance_id, created_by, created_at, status, model";

fn thread_row(row: &Row<'_>) -> rusqlite::Result<ThreadBinding> {
    Ok(ThreadBinding {
        root_post_id: row.get(0)?,
        channel_id: row.get(1)?,
        session_id: row.get(2)?,
        instance_id: row.get(3)?,
        created_by: row.get(4)?,
        created_at: row.get(5)?,
        status: row.get(6)?,
        model: row.get(7)?,
    })
}

pub(super) fn bind_thread(conn: &mut Connection, b: &ThreadBinding) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let inserted = tx
        .prepare_cached(&format!(
            "INSERT INTO threads ({THREAD_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (root_post_id) DO NOTHING"
        ))?
        .execute((
            &b.root_post_id,
            &b.channel_id,
            &b.session_id,
            &b.instance_id,
            &b.created_by,
            b.created_at,
            b.status,
            &b.model,
        ))?;
    if inserted == 0 {
        let existing: String = tx
            .prepare_cached("SELECT session_id FROM threads WHERE root_post_id = ?1")?
            .query_row([&b.root_post_id], |row| row.get(0))?;
        if existing != b.session_id {
            return Err(StoreError::Conflict(format!(
                "thread {} is already bound to session {existing}, not {}",
                b.root_post_id, b.session_id
            )));
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn thread(conn: &Connection, root: &str) -> Result<Option<ThreadBinding>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {THREAD_COLUMNS} FROM threads WHERE root_post_id = ?1"
        ))?
        .query_row([&root], thread_row)
        .optional()?)
}

pub(super) fn threads_of_session(
    conn: &Connection,
    session: &str,
) -> Result<Vec<ThreadBinding>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {THREAD_COLUMNS} FROM threads WHERE session_id = ?1
             ORDER BY created_at, root_post_id"
        ),
        [&session],
        thread_row,
    )
}

pub(super) fn threads(conn: &Connection) -> Result<Vec<ThreadBinding>, StoreError> {
    query_all(
        conn,
        &format!("SELECT {THREAD_COLUMNS} FROM threads ORDER BY created_at, root_post_id"),
        [],
        thread_row,
    )
}

pub(super) fn threads_of_instance(
    conn: &Connection,
    instance: &str,
) -> Result<Vec<ThreadBinding>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {THREAD_COLUMNS} FROM threads WHERE instance_id = ?1
             ORDER BY created_at, root_post_id"
        ),
        [&instance],
        thread_row,
    )
}

pub(super) fn set_thread_status(
    conn: &Connection,
    root: &str,
    status: ThreadStatus,
) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached("UPDATE threads SET status = ?2 WHERE root_post_id = ?1")?
        .execute((&root, status))?;
    require_row(changed, || {
        format!("thread {root} is not bound to a session")
    })
}

pub(super) fn set_thread_model(
    conn: &Connection,
    root: &str,
    model: Option<&str>,
) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached("UPDATE threads SET model = ?2 WHERE root_post_id = ?1")?
        .execute((&root, &model))?;
    require_row(changed, || {
        format!("thread {root} is not bound to a session")
    })
}

pub(super) fn set_thread_session(
    conn: &Connection,
    root: &str,
    session: &str,
) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached("UPDATE threads SET session_id = ?2, status = ?3 WHERE root_post_id = ?1")?
        .execute((&root, &session, ThreadStatus::Active))?;
    require_row(changed, || {
        format!("thread {root} is not bound to a session")
    })
}

pub(super) fn select_thread(
    conn: &Connection,
    channel: &str,
    root: Option<&str>,
    at: Millis,
) -> Result<(), StoreError> {
    match root {
        Some(root) => conn
            .prepare_cached(
                "INSERT INTO selections (channel_id, root_post_id, updated_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (channel_id) DO UPDATE
                 SET root_post_id = excluded.root_post_id,
                     updated_at = excluded.updated_at",
            )?
            .execute((&channel, &root, at))?,
        None => conn
            .prepare_cached("DELETE FROM selections WHERE channel_id = ?1")?
            .execute([&channel])?,
    };
    Ok(())
}

pub(super) fn selection(conn: &Connection, channel: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT root_post_id FROM selections WHERE channel_id = ?1")?
        .query_row([&channel], |row| row.get(0))
        .optional()?)
}
