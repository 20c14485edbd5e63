//! The channel tables on PostgreSQL.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{execute, get, get_enum, query, query_opt};
use crate::store::{Grantee, GuestRequest, GuestState, Millis, StoreError, Teammate, ThreadGrant};

const TEAMMATE_COLUMNS: &str = "owner_user_id, user_id, username, added_by, added_at";
const GRANT_COLUMNS: &str = "root_post_id, grantee, granted_by, granted_at";
const REQUEST_COLUMNS: &str = "post_id, request_post_id, root_post_id, channel_id, instance_id, \
     guest_user_id, guest_username, created_at, expires_at, state, decided_by, decided_at";

fn teammate_row(row: &Row) -> Result<Teammate, StoreError> {
    Ok(Teammate {
        owner_user_id: get(row, 0)?,
        user_id: get(row, 1)?,
        username: get(row, 2)?,
        added_by: get(row, 3)?,
        added_at: get(row, 4)?,
    })
}

fn grant_row(row: &Row) -> Result<ThreadGrant, StoreError> {
    Ok(ThreadGrant {
        root_post_id: get(row, 0)?,
        grantee: Grantee::from_key(get(row, 1)?),
        granted_by: get(row, 2)?,
        granted_at: get(row, 3)?,
    })
}

fn request_row(row: &Row) -> Result<GuestRequest, StoreError> {
    Ok(GuestRequest {
        post_id: get(row, 0)?,
        request_post_id: get(row, 1)?,
        root_post_id: get(row, 2)?,
        channel_id: get(row, 3)?,
        instance_id: get(row, 4)?,
        guest_user_id: get(row, 5)?,
        guest_username: get(row, 6)?,
        created_at: get(row, 7)?,
        expires_at: get(row, 8)?,
        state: get_enum(row, 9, "guest request state", GuestState::parse)?,
        decided_by: get(row, 10)?,
        decided_at: get(row, 11)?,
    })
}

pub(super) async fn add_teammate(c: &impl GenericClient, t: &Teammate) -> Result<bool, StoreError> {
    let added = execute(
        c,
        &format!(
            "INSERT INTO teammates ({TEAMMATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (owner_user_id, user_id) DO NOTHING"
        ),
        &[
            &t.owner_user_id,
            &t.user_id,
            &t.username,
            &t.added_by,
            &t.added_at,
        ],
    )
    .await?;
    Ok(added == 1)
}

pub(super) async fn remove_teammate(
    c: &impl GenericClient,
    owner: &str,
    user: &str,
) -> Result<bool, StoreError> {
    let removed = execute(
        c,
        "DELETE FROM teammates WHERE owner_user_id = $1 AND user_id = $2",
        &[&owner, &user],
    )
    .await?;
    Ok(removed == 1)
}

pub(super) async fn teammates(
    c: &impl GenericClient,
    owner: &str,
) -> Result<Vec<Teammate>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {TEAMMATE_COLUMNS} FROM teammates WHERE owner_user_id = $1
             ORDER BY username, user_id"
        ),
        &[&owner],
    )
    .await?
    .iter()
    .map(teammate_row)
    .collect()
}

pub(super) async fn mark_team_imported(
    c: &impl GenericClient,
    owner: &str,
    source: &str,
    at: Millis,
) -> Result<bool, StoreError> {
    let inserted = execute(
        c,
        "INSERT INTO team_imports (owner_user_id, source, imported_at) VALUES ($1, $2, $3)
         ON CONFLICT (owner_user_id) DO NOTHING",
        &[&owner, &source, &at],
    )
    .await?;
    Ok(inserted == 1)
}

pub(super) async fn grant_thread(
    c: &impl GenericClient,
    g: &ThreadGrant,
) -> Result<(), StoreError> {
    execute(
        c,
        &format!(
            "INSERT INTO thread_grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4)
             ON CONFLICT (root_post_id, grantee) DO NOTHING"
        ),
        &[
            &g.root_post_id,
            &g.grantee.as_key(),
            &g.granted_by,
            &g.granted_at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn thread_grants(
    c: &impl GenericClient,
    root: &str,
) -> Result<Vec<ThreadGrant>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {GRANT_COLUMNS} FROM thread_grants WHERE root_post_id = $1
             ORDER BY granted_at, grantee"
        ),
        &[&root],
    )
    .await?
    .iter()
    .map(grant_row)
    .collect()
}

pub(super) async fn add_guest_request(
    c: &impl GenericClient,
    r: &GuestRequest,
) -> Result<(), StoreError> {
    let inserted = execute(
        c,
        &format!(
            "INSERT INTO guest_requests ({REQUEST_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (post_id) DO NOTHING"
        ),
        &[
            &r.post_id,
            &r.request_post_id,
            &r.root_post_id,
            &r.channel_id,
            &r.instance_id,
            &r.guest_user_id,
            &r.guest_username,
            &r.created_at,
            &r.expires_at,
            &r.state.as_str(),
            &r.decided_by,
            &r.decided_at,
        ],
    )
    .await?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "post {} already has a guest request",
            r.post_id
        )));
    }
    Ok(())
}

pub(super) async fn guest_request(
    c: &impl GenericClient,
    post_id: &str,
) -> Result<Option<GuestRequest>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {REQUEST_COLUMNS} FROM guest_requests WHERE post_id = $1"),
        &[&post_id],
    )
    .await?
    .as_ref()
    .map(request_row)
    .transpose()
}

pub(super) async fn pending_guest_requests(
    c: &impl GenericClient,
    instance: &str,
) -> Result<Vec<GuestRequest>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {REQUEST_COLUMNS} FROM guest_requests
             WHERE instance_id = $1 AND state = 'pending'
             ORDER BY created_at, post_id"
        ),
        &[&instance],
    )
    .await?
    .iter()
    .map(request_row)
    .collect()
}

pub(super) async fn decide_guest_request(
    c: &impl GenericClient,
    post_id: &str,
    state: GuestState,
    by: Option<&str>,
    at: Millis,
) -> Result<bool, StoreError> {
    let changed = execute(
        c,
        "UPDATE guest_requests SET state = $2, decided_by = $3, decided_at = $4
         WHERE post_id = $1 AND state = 'pending'",
        &[&post_id, &state.as_str(), &by, &at],
    )
    .await?;
    Ok(changed == 1)
}
