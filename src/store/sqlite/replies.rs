//! The `replies` and `cursors` tables: the reply posts of each assistant turn
//! (so a restart finishes what was streaming), and how far each channel has
//! been read.

use rusqlite::types::{FromSql, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql};

use super::{query_all, text_enum};
use crate::store::{Millis, Reply, ReplyState, StoreError};

impl ToSql for ReplyState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for ReplyState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_enum(value, "reply state", ReplyState::parse)
    }
}

const REPLY_COLUMNS: &str = "session_id, user_message_id, instance_id, channel_id, \
                             root_post_id, post_ids, started_at, state, pending_post_id";

fn reply_row(row: &Row<'_>) -> rusqlite::Result<Reply> {
    let post_ids: String = row.get(5)?;
    let post_ids = serde_json::from_str(&post_ids).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            5,
            rusqlite::types::Type::Text,
            format!("post_ids is not a JSON list of strings: {e}").into(),
        )
    })?;
    Ok(Reply {
        session_id: row.get(0)?,
        user_message_id: row.get(1)?,
        instance_id: row.get(2)?,
        channel_id: row.get(3)?,
        root_post_id: row.get(4)?,
        post_ids,
        started_at: row.get(6)?,
        state: row.get(7)?,
        pending_post_id: row.get(8)?,
    })
}

pub(super) fn save_reply(conn: &Connection, r: &Reply) -> Result<(), StoreError> {
    let post_ids = serde_json::to_string(&r.post_ids)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode post ids: {e}")))?;
    conn.prepare_cached(&format!(
        "INSERT INTO replies ({REPLY_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (session_id, user_message_id) DO UPDATE SET
             instance_id = excluded.instance_id,
             channel_id = excluded.channel_id,
             root_post_id = excluded.root_post_id,
             post_ids = excluded.post_ids,
             started_at = excluded.started_at,
             state = excluded.state,
             pending_post_id = excluded.pending_post_id"
    ))?
    .execute((
        &r.session_id,
        &r.user_message_id,
        &r.instance_id,
        &r.channel_id,
        &r.root_post_id,
        &post_ids,
        r.started_at,
        r.state,
        &r.pending_post_id,
    ))?;
    Ok(())
}

pub(super) fn reply(
    conn: &Connection,
    session: &str,
    message: &str,
) -> Result<Option<Reply>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {REPLY_COLUMNS} FROM replies
             WHERE session_id = ?1 AND user_message_id = ?2"
        ))?
        .query_row([&session, &message], reply_row)
        .optional()?)
}

pub(super) fn streaming_replies(
    conn: &Connection,
    instance: &str,
) -> Result<Vec<Reply>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {REPLY_COLUMNS} FROM replies
             WHERE instance_id = ?1 AND state = ?2
             ORDER BY started_at, session_id, user_message_id"
        ),
        (&instance, ReplyState::Streaming),
        reply_row,
    )
}

pub(super) fn advance_cursor(
    conn: &Connection,
    channel: &str,
    create_at: Millis,
    post: &str,
) -> Result<(), StoreError> {
    // Compare and set in one statement, so concurrent writers cannot
    // interleave between reading the old cursor and writing the new.
    conn.prepare_cached(
        "INSERT INTO cursors (channel_id, create_at, post_id) VALUES (?1, ?2, ?3)
         ON CONFLICT (channel_id) DO UPDATE SET
             create_at = excluded.create_at,
             post_id = excluded.post_id
         WHERE excluded.create_at > cursors.create_at
            OR (excluded.create_at = cursors.create_at
                AND excluded.post_id > cursors.post_id)",
    )?
    .execute((&channel, create_at, &post))?;
    Ok(())
}

pub(super) fn cursors(conn: &Connection) -> Result<Vec<(String, Millis)>, StoreError> {
    query_all(
        conn,
        "SELECT channel_id, create_at FROM cursors ORDER BY channel_id",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

pub(super) fn prune_replies(conn: &Connection, before: Millis) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM replies WHERE started_at < ?1 AND state = ?2")?
        .execute((before, ReplyState::Done))?)
}
