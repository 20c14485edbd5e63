//! The `monitors` table: who gets a DM when a session needs attention, and
//! the last state each of them was alerted about.

use rusqlite::{Connection, Row};

use super::{query_all, require_row};
use crate::store::{MonitorRow, StoreError};

const MONITOR_COLUMNS: &str = "session_id, target_user_id, persistent, created_at, last_alert";

fn monitor_row(row: &Row<'_>) -> rusqlite::Result<MonitorRow> {
    Ok(MonitorRow {
        session_id: row.get(0)?,
        target_user_id: row.get(1)?,
        persistent: row.get(2)?,
        created_at: row.get(3)?,
        last_alert: row.get(4)?,
    })
}

pub(super) fn add_monitor(conn: &Connection, m: &MonitorRow) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO monitors ({MONITOR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (session_id, target_user_id) DO UPDATE SET
             persistent = excluded.persistent,
             created_at = excluded.created_at,
             last_alert = excluded.last_alert"
    ))?
    .execute((
        &m.session_id,
        &m.target_user_id,
        m.persistent,
        m.created_at,
        &m.last_alert,
    ))?;
    Ok(())
}

pub(super) fn remove_monitors(
    conn: &Connection,
    session: &str,
    target: Option<&str>,
) -> Result<usize, StoreError> {
    Ok(match target {
        Some(target) => conn
            .prepare_cached("DELETE FROM monitors WHERE session_id = ?1 AND target_user_id = ?2")?
            .execute((&session, &target))?,
        None => conn
            .prepare_cached("DELETE FROM monitors WHERE session_id = ?1")?
            .execute([&session])?,
    })
}

pub(super) fn monitors_of(conn: &Connection, session: &str) -> Result<Vec<MonitorRow>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {MONITOR_COLUMNS} FROM monitors WHERE session_id = ?1
             ORDER BY target_user_id"
        ),
        [&session],
        monitor_row,
    )
}

pub(super) fn monitors(conn: &Connection) -> Result<Vec<MonitorRow>, StoreError> {
    query_all(
        conn,
        &format!("SELECT {MONITOR_COLUMNS} FROM monitors ORDER BY session_id, target_user_id"),
        [],
        monitor_row,
    )
}

pub(super) fn set_monitor_alert(
    conn: &Connection,
    session: &str,
    target: &str,
    key: &str,
) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE monitors SET last_alert = ?3
             WHERE session_id = ?1 AND target_user_id = ?2",
        )?
        .execute((&session, &target, &key))?;
    require_row(changed, || {
        format!("session {session} is not monitored for {target}")
    })
}
