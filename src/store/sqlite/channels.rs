//! The channel tables on SQLite: teammates, the one-time team import,
//! thread grants and guest requests.

use rusqlite::types::{FromSql, FromSqlResult, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row};

use super::{query_all, text_enum};
use crate::store::{Grantee, GuestRequest, GuestState, Millis, StoreError, Teammate, ThreadGrant};

const TEAMMATE_COLUMNS: &str = "owner_user_id, user_id, username, added_by, added_at";
const GRANT_COLUMNS: &str = "root_post_id, grantee, granted_by, granted_at";
const REQUEST_COLUMNS: &str = "post_id, request_post_id, root_post_id, channel_id, instance_id, \
     guest_user_id, guest_username, created_at, expires_at, state, decided_by, decided_at";

impl FromSql for GuestState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_enum(value, "guest request state", GuestState::parse)
    }
}

fn teammate_row(row: &Row<'_>) -> rusqlite::Result<Teammate> {
    Ok(Teammate {
        owner_user_id: row.get(0)?,
        user_id: row.get(1)?,
        username: row.get(2)?,
        added_by: row.get(3)?,
        added_at: row.get(4)?,
    })
}

fn grant_row(row: &Row<'_>) -> rusqlite::Result<ThreadGrant> {
    Ok(ThreadGrant {
        root_post_id: row.get(0)?,
        grantee: Grantee::from_key(&row.get::<_, String>(1)?),
        granted_by: row.get(2)?,
        granted_at: row.get(3)?,
    })
}

fn request_row(row: &Row<'_>) -> rusqlite::Result<GuestRequest> {
    Ok(GuestRequest {
        post_id: row.get(0)?,
        request_post_id: row.get(1)?,
        root_post_id: row.get(2)?,
        channel_id: row.get(3)?,
        instance_id: row.get(4)?,
        guest_user_id: row.get(5)?,
        guest_username: row.get(6)?,
        created_at: row.get(7)?,
        expires_at: row.get(8)?,
        state: row.get(9)?,
        decided_by: row.get(10)?,
        decided_at: row.get(11)?,
    })
}

pub(super) fn add_teammate(conn: &Connection, t: &Teammate) -> Result<bool, StoreError> {
    let added = conn
        .prepare_cached(&format!(
            "INSERT INTO teammates ({TEAMMATE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (owner_user_id, user_id) DO NOTHING"
        ))?
        .execute((
            &t.owner_user_id,
            &t.user_id,
            &t.username,
            &t.added_by,
            t.added_at,
        ))?;
    Ok(added == 1)
}

pub(super) fn remove_teammate(
    conn: &Connection,
    owner: &str,
    user: &str,
) -> Result<bool, StoreError> {
    let removed = conn
        .prepare_cached("DELETE FROM teammates WHERE owner_user_id = ?1 AND user_id = ?2")?
        .execute((&owner, &user))?;
    Ok(removed == 1)
}

pub(super) fn teammates(conn: &Connection, owner: &str) -> Result<Vec<Teammate>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {TEAMMATE_COLUMNS} FROM teammates WHERE owner_user_id = ?1
             ORDER BY username, user_id"
        ),
        [&owner],
        teammate_row,
    )
}

pub(super) fn mark_team_imported(
    conn: &Connection,
    owner: &str,
    source: &str,
    at: Millis,
) -> Result<bool, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO team_imports (owner_user_id, source, imported_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (owner_user_id) DO NOTHING",
        )?
        .execute((&owner, &source, at))?;
    Ok(inserted == 1)
}

pub(super) fn grant_thread(conn: &Connection, g: &ThreadGrant) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO thread_grants ({GRANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (root_post_id, grantee) DO NOTHING"
    ))?
    .execute((
        &g.root_post_id,
        g.grantee.as_key(),
        &g.granted_by,
        g.granted_at,
    ))?;
    Ok(())
}

pub(super) fn thread_grants(conn: &Connection, root: &str) -> Result<Vec<ThreadGrant>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {GRANT_COLUMNS} FROM thread_grants WHERE root_post_id = ?1
             ORDER BY granted_at, grantee"
        ),
        [&root],
        grant_row,
    )
}

pub(super) fn add_guest_request(conn: &Connection, r: &GuestRequest) -> Result<(), StoreError> {
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO guest_requests ({REQUEST_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (post_id) DO NOTHING"
        ))?
        .execute(rusqlite::params![
            r.post_id,
            r.request_post_id,
            r.root_post_id,
            r.channel_id,
            r.instance_id,
            r.guest_user_id,
            r.guest_username,
            r.created_at,
            r.expires_at,
            r.state.as_str(),
            r.decided_by,
            r.decided_at,
        ])?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "post {} already has a guest request",
            r.post_id
        )));
    }
    Ok(())
}

pub(super) fn guest_request(
    conn: &Connection,
    post_id: &str,
) -> Result<Option<GuestRequest>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM guest_requests WHERE post_id = ?1"
        ))?
        .query_row([&post_id], request_row)
        .optional()?)
}

pub(super) fn pending_guest_requests(
    conn: &Connection,
    instance: &str,
) -> Result<Vec<GuestRequest>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {REQUEST_COLUMNS} FROM guest_requests
             WHERE instance_id = ?1 AND state = 'pending'
             ORDER BY created_at, post_id"
        ),
        [&instance],
        request_row,
    )
}

pub(super) fn decide_guest_request(
    conn: &Connection,
    post_id: &str,
    state: GuestState,
    by: Option<&str>,
    at: Millis,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE guest_requests SET state = ?2, decided_by = ?3, decided_at = ?4
             WHERE post_id = ?1 AND state = 'pending'",
        )?
        .execute((&post_id, state.as_str(), &by, at))?;
    Ok(changed == 1)
}
