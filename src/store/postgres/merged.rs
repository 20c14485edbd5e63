//! The `merged_threads` table on PostgreSQL.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{execute, get, query_opt};
use crate::store::{MergeLock, StoreError};

const LOCK_COLUMNS: &str =
    "root_post_id, channel_id, into_root_post_id, into_channel_id, merged_by, merged_at";

fn lock_row(row: &Row) -> Result<MergeLock, StoreError> {
    Ok(MergeLock {
        root_post_id: get(row, 0)?,
        channel_id: get(row, 1)?,
        into_root_post_id: get(row, 2)?,
        into_channel_id: get(row, 3)?,
        merged_by: get(row, 4)?,
        merged_at: get(row, 5)?,
    })
}

pub(super) async fn lock_thread(c: &impl GenericClient, l: &MergeLock) -> Result<bool, StoreError> {
    let added = execute(
        c,
        &format!(
            "INSERT INTO merged_threads ({LOCK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (root_post_id) DO NOTHING"
        ),
        &[
            &l.root_post_id,
            &l.channel_id,
            &l.into_root_post_id,
            &l.into_channel_id,
            &l.merged_by,
            &l.merged_at,
        ],
    )
    .await?;
    Ok(added == 1)
}

pub(super) async fn thread_lock(
    c: &impl GenericClient,
    root: &str,
) -> Result<Option<MergeLock>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {LOCK_COLUMNS} FROM merged_threads WHERE root_post_id = $1"),
        &[&root],
    )
    .await?
    .as_ref()
    .map(lock_row)
    .transpose()
}
