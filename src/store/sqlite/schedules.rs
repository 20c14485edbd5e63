//! The `schedules` and `schedule_runs` tables: cron prompts, and each
//! scheduled time claimed exactly once with the overlap check in the same
//! IMMEDIATE transaction.

use rusqlite::types::{FromSql, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, TransactionBehavior};

use super::{query_all, require_row, text_enum};
use crate::store::{Millis, RunClaim, RunState, RunTrigger, Schedule, ScheduleRun, StoreError};

impl ToSql for RunTrigger {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for RunTrigger {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_enum(value, "run trigger", RunTrigger::parse)
    }
}

impl ToSql for RunState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for RunState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_enum(value, "run state", RunState::parse)
    }
}

const SCHEDULE_COLUMNS: &str = "id, name, cron, timezone, prompt, target_user_id, agent, model, \
                                directory, enabled, created_by, created_at, active_since";

fn schedule_row(row: &Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        id: row.get(0)?,
        name: row.get(1)?,
        cron: row.get(2)?,
        timezone: row.get(3)?,
        prompt: row.get(4)?,
        target_user_id: row.get(5)?,
        agent: row.get(6)?,
        model: row.get(7)?,
        directory: row.get(8)?,
        enabled: row.get(9)?,
        created_by: row.get(10)?,
        created_at: row.get(11)?,
        active_since: row.get(12)?,
    })
}

const RUN_COLUMNS: &str = "schedule_id, scheduled_at, trigger, instance_id, claimed_at, \
                           deadline_at, state, session_id, finished_at, detail, post_id";

fn run_row(row: &Row<'_>) -> rusqlite::Result<ScheduleRun> {
    Ok(ScheduleRun {
        schedule_id: row.get(0)?,
        scheduled_at: row.get(1)?,
        trigger: row.get(2)?,
        instance_id: row.get(3)?,
        claimed_at: row.get(4)?,
        deadline_at: row.get(5)?,
        state: row.get(6)?,
        session_id: row.get(7)?,
        finished_at: row.get(8)?,
        detail: row.get(9)?,
        post_id: row.get(10)?,
    })
}

pub(super) fn add_schedule(conn: &Connection, s: &Schedule) -> Result<(), StoreError> {
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO schedules ({SCHEDULE_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT DO NOTHING"
        ))?
        .execute(rusqlite::params![
            &s.id,
            &s.name,
            &s.cron,
            &s.timezone,
            &s.prompt,
            &s.target_user_id,
            &s.agent,
            &s.model,
            &s.directory,
            s.enabled,
            &s.created_by,
            s.created_at,
            s.active_since,
        ])?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "a schedule named {} already exists",
            s.name
        )));
    }
    Ok(())
}

pub(super) fn schedules(conn: &Connection) -> Result<Vec<Schedule>, StoreError> {
    query_all(
        conn,
        &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"),
        [],
        schedule_row,
    )
}

pub(super) fn schedule_by_name(
    conn: &Connection,
    name: &str,
) -> Result<Option<Schedule>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?1"
        ))?
        .query_row([&name], schedule_row)
        .optional()?)
}

pub(super) fn remove_schedule(conn: &Connection, id: &str) -> Result<(), StoreError> {
    // The runs go with it (ON DELETE CASCADE; foreign keys are on).
    let changed = conn
        .prepare_cached("DELETE FROM schedules WHERE id = ?1")?
        .execute([&id])?;
    require_row(changed, || format!("schedule {id} does not exist"))
}

pub(super) fn set_schedule_enabled(
    conn: &Connection,
    id: &str,
    enabled: bool,
    at: Millis,
) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE schedules SET
                 active_since = CASE WHEN ?2 AND NOT enabled THEN ?3
                                     ELSE active_since END,
                 enabled = ?2
             WHERE id = ?1",
        )?
        .execute((&id, enabled, at))?;
    require_row(changed, || format!("schedule {id} does not exist"))
}

pub(super) fn claim_schedule_run(
    conn: &mut Connection,
    r: &ScheduleRun,
) -> Result<RunClaim, StoreError> {
    // IMMEDIATE: the write lock is taken before the checks, so the
    // insert and the overlap check are one step for other agents.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let enabled: Option<bool> = tx
        .prepare_cached("SELECT enabled FROM schedules WHERE id = ?1")?
        .query_row([&r.schedule_id], |row| row.get(0))
        .optional()?;
    match enabled {
        None => return Ok(RunClaim::Inactive),
        Some(false) if r.trigger == RunTrigger::Cron => return Ok(RunClaim::Inactive),
        Some(_) => {}
    }
    let inserted = tx
        .prepare_cached(&format!(
            "INSERT INTO schedule_runs ({RUN_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (schedule_id, scheduled_at) DO NOTHING"
        ))?
        .execute(rusqlite::params![
            &r.schedule_id,
            r.scheduled_at,
            r.trigger,
            &r.instance_id,
            r.claimed_at,
            r.deadline_at,
            r.state,
            &r.session_id,
            r.finished_at,
            &r.detail,
            &r.post_id,
        ])?;
    if inserted == 0 {
        return Ok(RunClaim::Taken);
    }
    if r.state != RunState::Running {
        tx.commit()?;
        return Ok(RunClaim::Won);
    }
    let busy = tx
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM schedule_runs
             WHERE schedule_id = ?1 AND state = ?2 AND scheduled_at <> ?3
               AND deadline_at > ?4
             ORDER BY scheduled_at LIMIT 1"
        ))?
        .query_row(
            (
                &r.schedule_id,
                RunState::Running,
                r.scheduled_at,
                r.claimed_at,
            ),
            run_row,
        )
        .optional()?;
    let Some(busy) = busy else {
        tx.commit()?;
        return Ok(RunClaim::Won);
    };
    let started = chrono::DateTime::from_timestamp_millis(busy.scheduled_at)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| busy.scheduled_at.to_string());
    tx.prepare_cached(
        "UPDATE schedule_runs SET state = ?3, finished_at = ?4, detail = ?5
         WHERE schedule_id = ?1 AND scheduled_at = ?2",
    )?
    .execute((
        &r.schedule_id,
        r.scheduled_at,
        RunState::Skipped,
        r.claimed_at,
        format!("skipped: the run of {started} was still going"),
    ))?;
    tx.commit()?;
    Ok(RunClaim::Overlap(busy))
}

pub(super) fn update_schedule_run(conn: &Connection, r: &ScheduleRun) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE schedule_runs SET state = ?3, session_id = ?4, finished_at = ?5,
                 detail = ?6, post_id = ?7
             WHERE schedule_id = ?1 AND scheduled_at = ?2",
        )?
        .execute((
            &r.schedule_id,
            r.scheduled_at,
            r.state,
            &r.session_id,
            r.finished_at,
            &r.detail,
            &r.post_id,
        ))?;
    require_row(changed, || {
        format!(
            "run {} of schedule {} was never claimed",
            r.scheduled_at, r.schedule_id
        )
    })
}

pub(super) fn schedule_runs(
    conn: &Connection,
    id: &str,
    limit: i64,
) -> Result<Vec<ScheduleRun>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {RUN_COLUMNS} FROM schedule_runs WHERE schedule_id = ?1
             ORDER BY scheduled_at DESC LIMIT ?2"
        ),
        (&id, limit),
        run_row,
    )
}

pub(super) fn last_cron_run_at(conn: &Connection, id: &str) -> Result<Option<Millis>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT max(scheduled_at) FROM schedule_runs
             WHERE schedule_id = ?1 AND trigger = ?2",
        )?
        .query_row((&id, RunTrigger::Cron), |row| row.get(0))?)
}

pub(super) fn fail_running_runs(
    conn: &Connection,
    instance: &str,
    at: Millis,
    detail: &str,
) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE schedule_runs SET state = ?2, finished_at = ?3, detail = ?4
             WHERE instance_id = ?1 AND state = ?5",
        )?
        .execute((&instance, RunState::Failed, at, &detail, RunState::Running))?)
}
