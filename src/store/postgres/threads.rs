//! The `threads` and `selections` tables on PostgreSQL.

use deadpool_postgres::{ClientWrapper, GenericClient};
use tokio_postgres::Row;

use super::{execute, get, get_enum, query, query_opt, require_row};
use crate::store::{Millis, StoreError, ThreadBinding, ThreadStatus};

const THREAD_COLUMNS: &str =
    "root_post_id, channel_id, session_id, instance_id, created_by, created_at, status, model";

fn thread_row(row: &Row) -> Result<ThreadBinding, StoreError> {
    Ok(ThreadBinding {
        root_post_id: get(row, 0)?,
        channel_id: get(row, 1)?,
        session_id: get(row, 2)?,
        instance_id: get(row, 3)?,
        created_by: get(row, 4)?,
        created_at: get(row, 5)?,
        status: get_enum(row, 6, "thread status", ThreadStatus::parse)?,
        model: get(row, 7)?,
    })
}

pub(super) async fn bind_thread(
    c: &mut ClientWrapper,
    b: &ThreadBinding,
) -> Result<(), StoreError> {
    // The insert and the check of the row that beat it are one transaction,
    // so a concurrent `set_thread_session` cannot slip between them. Under
    // READ COMMITTED the check is a new statement and sees the winner's row.
    let tx = c.transaction().await?;
    let inserted = execute(
        &tx,
        &format!(
            "INSERT INTO threads ({THREAD_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (root_post_id) DO NOTHING"
        ),
        &[
            &b.root_post_id,
            &b.channel_id,
            &b.session_id,
            &b.instance_id,
            &b.created_by,
            &b.created_at,
            &b.status.as_str(),
            &b.model,
        ],
    )
    .await?;
    if inserted == 0 {
        let row = query_opt(
            &tx,
            "SELECT session_id FROM threads WHERE root_post_id = $1 FOR SHARE",
            &[&b.root_post_id],
        )
        .await?;
        let existing: Option<String> = row.as_ref().map(|r| get(r, 0)).transpose()?;
        if let Some(existing) = existing.filter(|s| *s != b.session_id) {
            return Err(StoreError::Conflict(format!(
                "thread {} is already bound to session {existing}, not {}",
                b.root_post_id, b.session_id
            )));
        }
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn thread(
    c: &impl GenericClient,
    root: &str,
) -> Result<Option<ThreadBinding>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {THREAD_COLUMNS} FROM threads WHERE root_post_id = $1"),
        &[&root],
    )
    .await?
    .as_ref()
    .map(thread_row)
    .transpose()
}

pub(super) async fn threads_of_session(
    c: &impl GenericClient,
    session: &str,
) -> Result<Vec<ThreadBinding>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {THREAD_COLUMNS} FROM threads WHERE session_id = $1
             ORDER BY created_at, root_post_id"
        ),
        &[&session],
    )
    .await?
    .iter()
    .map(thread_row)
    .collect()
}

pub(super) async fn threads(c: &impl GenericClient) -> Result<Vec<ThreadBinding>, StoreError> {
    query(
        c,
        &format!("SELECT {THREAD_COLUMNS} FROM threads ORDER BY created_at, root_post_id"),
        &[],
    )
    .await?
    .iter()
    .map(thread_row)
    .collect()
}

pub(super) async fn threads_of_instance(
    c: &impl GenericClient,
    instance: &str,
) -> Result<Vec<ThreadBinding>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {THREAD_COLUMNS} FROM threads WHERE instance_id = $1
             ORDER BY created_at, root_post_id"
        ),
        &[&instance],
    )
    .await?
    .iter()
    .map(thread_row)
    .collect()
}

fn unbound(root: &str) -> impl FnOnce() -> String + '_ {
    move || format!("thread {root} is not bound to a session")
}

pub(super) async fn set_thread_status(
    c: &impl GenericClient,
    root: &str,
    status: ThreadStatus,
) -> Result<(), StoreError> {
    let changed = execute(
        c,
        "UPDATE threads SET status = $2 WHERE root_post_id = $1",
        &[&root, &status.as_str()],
    )
    .await?;
    require_row(changed, unbound(root))
}

pub(super) async fn set_thread_model(
    c: &impl GenericClient,
    root: &str,
    model: Option<&str>,
) -> Result<(), StoreError> {
    let changed = execute(
        c,
        "UPDATE threads SET model = $2 WHERE root_post_id = $1",
        &[&root, &model],
    )
    .await?;
    require_row(changed, unbound(root))
}

pub(super) async fn set_thread_session(
    c: &impl GenericClient,
    root: &str,
    session: &str,
) -> Result<(), StoreError> {
    let changed = execute(
        c,
        "UPDATE threads SET session_id = $2, status = $3 WHERE root_post_id = $1",
        &[&root, &session, &ThreadStatus::Active.as_str()],
    )
    .await?;
    require_row(changed, unbound(root))
}

pub(super) async fn select_thread(
    c: &impl GenericClient,
    channel: &str,
    root: Option<&str>,
    at: Millis,
) -> Result<(), StoreError> {
    match root {
        Some(root) => {
            execute(
                c,
                "INSERT INTO selections (channel_id, root_post_id, updated_at)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (channel_id) DO UPDATE
                 SET root_post_id = EXCLUDED.root_post_id,
                     updated_at = EXCLUDED.updated_at",
                &[&channel, &root, &at],
            )
            .await?
        }
        None => {
            execute(
                c,
                "DELETE FROM selections WHERE channel_id = $1",
                &[&channel],
            )
            .await?
        }
    };
    Ok(())
}

pub(super) async fn selection(
    c: &impl GenericClient,
    channel: &str,
) -> Result<Option<String>, StoreError> {
    query_opt(
        c,
        "SELECT root_post_id FROM selections WHERE channel_id = $1",
        &[&channel],
    )
    .await?
    .as_ref()
    .map(|row| get(row, 0))
    .transpose()
}
