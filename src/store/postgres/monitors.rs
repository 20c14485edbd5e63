//! The `monitors` table on PostgreSQL.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{execute, get, query, require_row};
use crate::store::{MonitorRow, StoreError};

const MONITOR_COLUMNS: &str = "session_id, target_user_id, persistent, created_at, last_alert";

fn monitor_row(row: &Row) -> Result<MonitorRow, StoreError> {
    Ok(MonitorRow {
        session_id: get(row, 0)?,
        target_user_id: get(row, 1)?,
        persistent: get(row, 2)?,
        created_at: get(row, 3)?,
        last_alert: get(row, 4)?,
    })
}

pub(super) async fn add_monitor(c: &impl GenericClient, m: &MonitorRow) -> Result<(), StoreError> {
    execute(
        c,
        &format!(
            "INSERT INTO monitors ({MONITOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (session_id, target_user_id) DO UPDATE SET
                 persistent = EXCLUDED.persistent,
                 created_at = EXCLUDED.created_at,
                 last_alert = EXCLUDED.last_alert"
        ),
        &[
            &m.session_id,
            &m.target_user_id,
            &m.persistent,
            &m.created_at,
            &m.last_alert,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn remove_monitors(
    c: &impl GenericClient,
    session: &str,
    target: Option<&str>,
) -> Result<usize, StoreError> {
    let removed = match target {
        Some(target) => {
            execute(
                c,
                "DELETE FROM monitors WHERE session_id = $1 AND target_user_id = $2",
                &[&session, &target],
            )
            .await?
        }
        None => execute(c, "DELETE FROM monitors WHERE session_id = $1", &[&session]).await?,
    };
    Ok(usize::try_from(removed).unwrap_or(usize::MAX))
}

pub(super) async fn monitors_of(
    c: &impl GenericClient,
    session: &str,
) -> Result<Vec<MonitorRow>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {MONITOR_COLUMNS} FROM monitors WHERE session_id = $1
             ORDER BY target_user_id"
        ),
        &[&session],
    )
    .await?
    .iter()
    .map(monitor_row)
    .collect()
}

pub(super) async fn monitors(c: &impl GenericClient) -> Result<Vec<MonitorRow>, StoreError> {
    query(
        c,
        &format!("SELECT {MONITOR_COLUMNS} FROM monitors ORDER BY session_id, target_user_id"),
        &[],
    )
    .await?
    .iter()
    .map(monitor_row)
    .collect()
}

pub(super) async fn set_monitor_alert(
    c: &impl GenericClient,
    session: &str,
    target: &str,
    key: &str,
) -> Result<(), StoreError> {
    let changed = execute(
        c,
        "UPDATE monitors SET last_alert = $3
         WHERE session_id = $1 AND target_user_id = $2",
        &[&session, &target, &key],
    )
    .await?;
    require_row(changed, || {
        format!("session {session} is not monitored for {target}")
    })
}
