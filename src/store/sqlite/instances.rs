//! The `instances` and `claims` tables: which agents run, and which inbound
//! post each of them took. Claims are the exactly-once part: a primary key
//! and `INSERT .. ON CONFLICT DO NOTHING` pick one winner per post.

use rusqlite::types::{FromSql, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql};

use super::{query_all, require_row, text_enum};
use crate::store::{Claim, ClaimState, Instance, Millis, StoreError};

impl ToSql for ClaimState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for ClaimState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_enum(value, "claim state", ClaimState::parse)
    }
}

const INSTANCE_COLUMNS: &str = "id, host, directory, owner_user_id, pid, started_at, heartbeat_at";

fn instance_row(row: &Row<'_>) -> rusqlite::Result<Instance> {
    Ok(Instance {
        id: row.get(0)?,
        host: row.get(1)?,
        directory: row.get(2)?,
        owner_user_id: row.get(3)?,
        pid: row.get(4)?,
        started_at: row.get(5)?,
        heartbeat_at: row.get(6)?,
    })
}

const CLAIM_COLUMNS: &str =
    "post_id, instance_id, claimed_at, state, session_id, message_id, root_post_id, channel_id";

fn claim_row(row: &Row<'_>) -> rusqlite::Result<Claim> {
    Ok(Claim {
        post_id: row.get(0)?,
        instance_id: row.get(1)?,
        claimed_at: row.get(2)?,
        state: row.get(3)?,
        session_id: row.get(4)?,
        message_id: row.get(5)?,
        root_post_id: row.get(6)?,
        channel_id: row.get(7)?,
    })
}

pub(super) fn register_instance(conn: &Connection, i: &Instance) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO instances
             (id, host, directory, owner_user_id, pid, started_at, heartbeat_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET
             host = excluded.host,
             directory = excluded.directory,
             owner_user_id = excluded.owner_user_id,
             pid = excluded.pid,
             started_at = excluded.started_at,
             heartbeat_at = excluded.heartbeat_at",
    )?
    .execute((
        &i.id,
        &i.host,
        &i.directory,
        &i.owner_user_id,
        i.pid,
        i.started_at,
        i.heartbeat_at,
    ))?;
    Ok(())
}

pub(super) fn heartbeat(conn: &Connection, id: &str, at: Millis) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached("UPDATE instances SET heartbeat_at = ?2 WHERE id = ?1")?
        .execute((&id, at))?;
    require_row(changed, || format!("instance {id} is not registered"))
}

pub(super) fn prune_instances(conn: &Connection, before: Millis) -> Result<u64, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM instances WHERE heartbeat_at < ?1")?
        .execute([before])?;
    Ok(n as u64)
}

pub(super) fn instances(conn: &Connection) -> Result<Vec<Instance>, StoreError> {
    query_all(
        conn,
        &format!("SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY started_at, id"),
        [],
        instance_row,
    )
}

pub(super) fn claim_post(
    conn: &Connection,
    post: &str,
    instance: &str,
    at: Millis,
) -> Result<bool, StoreError> {
    // One statement in autocommit: it takes the write lock up front,
    // so the primary key decides the winner under SQLite's lock.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO claims (post_id, instance_id, claimed_at, state)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (post_id) DO NOTHING",
        )?
        .execute((&post, &instance, at, ClaimState::Claimed))?;
    Ok(inserted == 1)
}

pub(super) fn claim(conn: &Connection, post: &str) -> Result<Option<Claim>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {CLAIM_COLUMNS} FROM claims WHERE post_id = ?1"
        ))?
        .query_row([&post], claim_row)
        .optional()?)
}

pub(super) fn update_claim(conn: &Connection, c: &Claim) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE claims SET state = ?2, session_id = ?3, message_id = ?4,
                 root_post_id = ?5, channel_id = ?6
             WHERE post_id = ?1",
        )?
        .execute((
            &c.post_id,
            c.state,
            &c.session_id,
            &c.message_id,
            &c.root_post_id,
            &c.channel_id,
        ))?;
    require_row(changed, || format!("post {} was never claimed", c.post_id))
}

pub(super) fn unfinished_claims(
    conn: &Connection,
    instance: &str,
) -> Result<Vec<Claim>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {CLAIM_COLUMNS} FROM claims
             WHERE instance_id = ?1 AND state NOT IN (?2, ?3)
             ORDER BY claimed_at, post_id"
        ),
        (&instance, ClaimState::Done, ClaimState::Failed),
        claim_row,
    )
}

pub(super) fn take_missed(
    conn: &Connection,
    post: &str,
    instance: &str,
) -> Result<bool, StoreError> {
    // One conditional statement: SQLite's write lock makes the state check
    // and the change one step, so only one caller sees a row change.
    let changed = conn
        .prepare_cached(
            "UPDATE claims SET state = ?3, message_id = NULL
             WHERE post_id = ?1 AND instance_id = ?2 AND state = ?4",
        )?
        .execute((&post, &instance, ClaimState::Claimed, ClaimState::Missed))?;
    Ok(changed == 1)
}

pub(super) fn abandon_claim(
    conn: &Connection,
    post: &str,
    instance: &str,
    offline_before: Millis,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE claims SET state = ?3
             WHERE post_id = ?1 AND instance_id = ?2 AND state IN (?4, ?5)
               AND EXISTS (SELECT 1 FROM instances
                           WHERE id = ?2 AND heartbeat_at < ?6)",
        )?
        .execute((
            &post,
            &instance,
            ClaimState::Failed,
            ClaimState::Claimed,
            ClaimState::Prompted,
            offline_before,
        ))?;
    Ok(changed == 1)
}

pub(super) fn prune_claims(conn: &Connection, before: Millis) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM claims WHERE claimed_at < ?1 AND state IN (?2, ?3, ?4)")?
        .execute((
            before,
            ClaimState::Done,
            ClaimState::Failed,
            ClaimState::Missed,
        ))?)
}
