//! The `instances` and `claims` tables on PostgreSQL. A claim is won by the
//! one `INSERT .. ON CONFLICT DO NOTHING` that inserts the row; a concurrent
//! insert of the same key waits for the first to commit, then inserts
//! nothing. Taking a missed post is one conditional `UPDATE`: the second
//! caller waits on the row lock, re-reads the row and no longer matches.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{execute, get, get_enum, query, query_opt, require_row};
use crate::store::{Claim, ClaimState, Instance, Millis, StoreError};

const INSTANCE_COLUMNS: &str = "id, host, directory, owner_user_id, pid, started_at, heartbeat_at";

fn instance_row(row: &Row) -> Result<Instance, StoreError> {
    let pid: i64 = get(row, 4)?;
    Ok(Instance {
        id: get(row, 0)?,
        host: get(row, 1)?,
        directory: get(row, 2)?,
        owner_user_id: get(row, 3)?,
        pid: u32::try_from(pid)
            .map_err(|_| StoreError::Corrupt(format!("instance pid {pid} is not a process id")))?,
        started_at: get(row, 5)?,
        heartbeat_at: get(row, 6)?,
    })
}

const CLAIM_COLUMNS: &str =
    "post_id, instance_id, claimed_at, state, session_id, message_id, root_post_id, channel_id";

fn claim_row(row: &Row) -> Result<Claim, StoreError> {
    Ok(Claim {
        post_id: get(row, 0)?,
        instance_id: get(row, 1)?,
        claimed_at: get(row, 2)?,
        state: get_enum(row, 3, "claim state", ClaimState::parse)?,
        session_id: get(row, 4)?,
        message_id: get(row, 5)?,
        root_post_id: get(row, 6)?,
        channel_id: get(row, 7)?,
    })
}

pub(super) async fn register_instance(
    c: &impl GenericClient,
    i: &Instance,
) -> Result<(), StoreError> {
    execute(
        c,
        "INSERT INTO instances
             (id, host, directory, owner_user_id, pid, started_at, heartbeat_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET
             host = EXCLUDED.host,
             directory = EXCLUDED.directory,
             owner_user_id = EXCLUDED.owner_user_id,
             pid = EXCLUDED.pid,
             started_at = EXCLUDED.started_at,
             heartbeat_at = EXCLUDED.heartbeat_at",
        &[
            &i.id,
            &i.host,
            &i.directory,
            &i.owner_user_id,
            &i64::from(i.pid),
            &i.started_at,
            &i.heartbeat_at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn heartbeat(
    c: &impl GenericClient,
    id: &str,
    at: Millis,
) -> Result<(), StoreError> {
    let changed = execute(
        c,
        "UPDATE instances SET heartbeat_at = $2 WHERE id = $1",
        &[&id, &at],
    )
    .await?;
    require_row(changed, || format!("instance {id} is not registered"))
}

pub(super) async fn prune_instances(
    c: &impl GenericClient,
    before: Millis,
) -> Result<u64, StoreError> {
    execute(
        c,
        "DELETE FROM instances WHERE heartbeat_at < $1",
        &[&before],
    )
    .await
}

pub(super) async fn instances(c: &impl GenericClient) -> Result<Vec<Instance>, StoreError> {
    query(
        c,
        &format!("SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY started_at, id"),
        &[],
    )
    .await?
    .iter()
    .map(instance_row)
    .collect()
}

pub(super) async fn claim_post(
    c: &impl GenericClient,
    post: &str,
    instance: &str,
    at: Millis,
) -> Result<bool, StoreError> {
    let inserted = execute(
        c,
        "INSERT INTO claims (post_id, instance_id, claimed_at, state)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (post_id) DO NOTHING",
        &[&post, &instance, &at, &ClaimState::Claimed.as_str()],
    )
    .await?;
    Ok(inserted == 1)
}

pub(super) async fn claim(c: &impl GenericClient, post: &str) -> Result<Option<Claim>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {CLAIM_COLUMNS} FROM claims WHERE post_id = $1"),
        &[&post],
    )
    .await?
    .as_ref()
    .map(claim_row)
    .transpose()
}

pub(super) async fn update_claim(c: &impl GenericClient, claim: &Claim) -> Result<(), StoreError> {
    let changed = execute(
        c,
        "UPDATE claims SET state = $2, session_id = $3, message_id = $4,
             root_post_id = $5, channel_id = $6
         WHERE post_id = $1",
        &[
            &claim.post_id,
            &claim.state.as_str(),
            &claim.session_id,
            &claim.message_id,
            &claim.root_post_id,
            &claim.channel_id,
        ],
    )
    .await?;
    require_row(changed, || {
        format!("post {} was never claimed", claim.post_id)
    })
}

pub(super) async fn unfinished_claims(
    c: &impl GenericClient,
    instance: &str,
) -> Result<Vec<Claim>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {CLAIM_COLUMNS} FROM claims
             WHERE instance_id = $1 AND state NOT IN ($2, $3)
             ORDER BY claimed_at, post_id"
        ),
        &[
            &instance,
            &ClaimState::Done.as_str(),
            &ClaimState::Failed.as_str(),
        ],
    )
    .await?
    .iter()
    .map(claim_row)
    .collect()
}

pub(super) async fn take_missed(
    c: &impl GenericClient,
    post: &str,
    instance: &str,
) -> Result<bool, StoreError> {
    let changed = execute(
        c,
        "UPDATE claims SET state = $3, message_id = NULL
         WHERE post_id = $1 AND instance_id = $2 AND state = $4",
        &[
            &post,
            &instance,
            &ClaimState::Claimed.as_str(),
            &ClaimState::Missed.as_str(),
        ],
    )
    .await?;
    Ok(changed == 1)
}

pub(super) async fn abandon_claim(
    c: &impl GenericClient,
    post: &str,
    instance: &str,
    offline_before: Millis,
) -> Result<bool, StoreError> {
    let changed = execute(
        c,
        "UPDATE claims SET state = $3
         WHERE post_id = $1 AND instance_id = $2 AND state IN ($4, $5)
           AND EXISTS (SELECT 1 FROM instances WHERE id = $2 AND heartbeat_at < $6)",
        &[
            &post,
            &instance,
            &ClaimState::Failed.as_str(),
            &ClaimState::Claimed.as_str(),
            &ClaimState::Prompted.as_str(),
            &offline_before,
        ],
    )
    .await?;
    Ok(changed == 1)
}

pub(super) async fn prune_claims(
    c: &impl GenericClient,
    before: Millis,
) -> Result<usize, StoreError> {
    let deleted = execute(
        c,
        "DELETE FROM claims WHERE claimed_at < $1 AND state IN ($2, $3, $4)",
        &[
            &before,
            &ClaimState::Done.as_str(),
            &ClaimState::Failed.as_str(),
            &ClaimState::Missed.as_str(),
        ],
    )
    .await?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}
