//! The `merged_threads` table: threads locked by `!merge`.

use rusqlite::{Connection, OptionalExtension, Row};

use crate::store::{MergeLock, StoreError};

const LOCK_COLUMNS: &str =
    "root_post_id, channel_id, into_root_post_id, into_channel_id, merged_by, merged_at";

fn lock_row(row: &Row<'_>) -> rusqlite::Result<MergeLock> {
    Ok(MergeLock {
        root_post_id: row.get(0)?,
        channel_id: row.get(1)?,
        into_root_post_id: row.get(2)?,
        into_channel_id: row.get(3)?,
        merged_by: row.get(4)?,
        merged_at: row.get(5)?,
    })
}

pub(super) fn lock_thread(conn: &Connection, l: &MergeLock) -> Result<bool, StoreError> {
    let added = conn
        .prepare_cached(&format!(
            "INSERT INTO merged_threads ({LOCK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (root_post_id) DO NOTHING"
        ))?
        .execute((
            &l.root_post_id,
            &l.channel_id,
            &l.into_root_post_id,
            &l.into_channel_id,
            &l.merged_by,
            l.merged_at,
        ))?;
    Ok(added == 1)
}

pub(super) fn thread_lock(conn: &Connection, root: &str) -> Result<Option<MergeLock>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {LOCK_COLUMNS} FROM merged_threads WHERE root_post_id = ?1"
        ))?
        .query_row([&root], lock_row)
        .optional()?)
}
