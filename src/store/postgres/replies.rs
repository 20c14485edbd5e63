//! The `replies` and `cursors` tables on PostgreSQL. A reply's post ids are
//! a JSONB array, read back into the same `Vec<String>` SQLite's JSON text
//! gives.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::Json;

use super::{execute, get, get_enum, query, query_opt};
use crate::store::{Millis, Reply, ReplyState, StoreError};

const REPLY_COLUMNS: &str = "session_id, user_message_id, instance_id, channel_id, \
                             root_post_id, post_ids, started_at, state, pending_post_id";

fn reply_row(row: &Row) -> Result<Reply, StoreError> {
    let Json(post_ids): Json<Vec<String>> = get(row, 5)?;
    Ok(Reply {
        session_id: get(row, 0)?,
        user_message_id: get(row, 1)?,
        instance_id: get(row, 2)?,
        channel_id: get(row, 3)?,
        root_post_id: get(row, 4)?,
        post_ids,
        started_at: get(row, 6)?,
        state: get_enum(row, 7, "reply state", ReplyState::parse)?,
        pending_post_id: get(row, 8)?,
    })
}

pub(super) async fn save_reply(c: &impl GenericClient, r: &Reply) -> Result<(), StoreError> {
    execute(
        c,
        &format!(
            "INSERT INTO replies ({REPLY_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (session_id, user_message_id) DO UPDATE SET
                 instance_id = EXCLUDED.instance_id,
                 channel_id = EXCLUDED.channel_id,
                 root_post_id = EXCLUDED.root_post_id,
                 post_ids = EXCLUDED.post_ids,
                 started_at = EXCLUDED.started_at,
                 state = EXCLUDED.state,
                 pending_post_id = EXCLUDED.pending_post_id"
        ),
        &[
            &r.session_id,
            &r.user_message_id,
            &r.instance_id,
            &r.channel_id,
            &r.root_post_id,
            &Json(&r.post_ids),
            &r.started_at,
            &r.state.as_str(),
            &r.pending_post_id,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn reply(
    c: &impl GenericClient,
    session: &str,
    message: &str,
) -> Result<Option<Reply>, StoreError> {
    query_opt(
        c,
        &format!(
            "SELECT {REPLY_COLUMNS} FROM replies
             WHERE session_id = $1 AND user_message_id = $2"
        ),
        &[&session, &message],
    )
    .await?
    .as_ref()
    .map(reply_row)
    .transpose()
}

pub(super) async fn streaming_replies(
    c: &impl GenericClient,
    instance: &str,
) -> Result<Vec<Reply>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {REPLY_COLUMNS} FROM replies
             WHERE instance_id = $1 AND state = $2
             ORDER BY started_at, session_id, user_message_id"
        ),
        &[&instance, &ReplyState::Streaming.as_str()],
    )
    .await?
    .iter()
    .map(reply_row)
    .collect()
}

pub(super) async fn advance_cursor(
    c: &impl GenericClient,
    channel: &str,
    create_at: Millis,
    post: &str,
) -> Result<(), StoreError> {
    // Compare and set in one statement: a concurrent writer of the same
    // channel waits on the row and the comparison is made against its value.
    // `post_id` is COLLATE "C", so ties break bytewise as on SQLite.
    execute(
        c,
        "INSERT INTO cursors (channel_id, create_at, post_id) VALUES ($1, $2, $3)
         ON CONFLICT (channel_id) DO UPDATE SET
             create_at = EXCLUDED.create_at,
             post_id = EXCLUDED.post_id
         WHERE EXCLUDED.create_at > cursors.create_at
            OR (EXCLUDED.create_at = cursors.create_at
                AND EXCLUDED.post_id > cursors.post_id)",
        &[&channel, &create_at, &post],
    )
    .await?;
    Ok(())
}

pub(super) async fn cursors(c: &impl GenericClient) -> Result<Vec<(String, Millis)>, StoreError> {
    query(
        c,
        "SELECT channel_id, create_at FROM cursors ORDER BY channel_id",
        &[],
    )
    .await?
    .iter()
    .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
    .collect()
}

pub(super) async fn prune_replies(
    c: &impl GenericClient,
    before: Millis,
) -> Result<usize, StoreError> {
    let deleted = execute(
        c,
        "DELETE FROM replies WHERE started_at < $1 AND state = $2",
        &[&before, &ReplyState::Done.as_str()],
    )
    .await?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}
