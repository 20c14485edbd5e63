//! The `schedules` and `schedule_runs` tables on PostgreSQL.
//!
//! A scheduled time is claimed once through the unique key and
//! `ON CONFLICT DO NOTHING`. The overlap check needs more: two agents
//! claiming *different* times of one schedule must not both miss each
//! other's uncommitted `Running` row. So a claim first locks the schedule's
//! row (`FOR NO KEY UPDATE`), which makes claims of one schedule take turns;
//! each later statement (READ COMMITTED) then sees the previous claim.

use deadpool_postgres::{ClientWrapper, GenericClient};
use tokio_postgres::Row;

use super::{execute, get, get_enum, query, query_opt, require_row};
use crate::store::{Millis, RunClaim, RunState, RunTrigger, Schedule, ScheduleRun, StoreError};

const SCHEDULE_COLUMNS: &str = "id, name, cron, timezone, prompt, target_user_id, agent, model, \
                                directory, enabled, created_by, created_at, active_since";

fn schedule_row(row: &Row) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: get(row, 0)?,
        name: get(row, 1)?,
        cron: get(row, 2)?,
        timezone: get(row, 3)?,
        prompt: get(row, 4)?,
        target_user_id: get(row, 5)?,
        agent: get(row, 6)?,
        model: get(row, 7)?,
        directory: get(row, 8)?,
        enabled: get(row, 9)?,
        created_by: get(row, 10)?,
        created_at: get(row, 11)?,
        active_since: get(row, 12)?,
    })
}

const RUN_COLUMNS: &str = "schedule_id, scheduled_at, trigger, instance_id, claimed_at, \
                           deadline_at, state, session_id, finished_at, detail, post_id";

fn run_row(row: &Row) -> Result<ScheduleRun, StoreError> {
    Ok(ScheduleRun {
        schedule_id: get(row, 0)?,
        scheduled_at: get(row, 1)?,
        trigger: get_enum(row, 2, "run trigger", RunTrigger::parse)?,
        instance_id: get(row, 3)?,
        claimed_at: get(row, 4)?,
        deadline_at: get(row, 5)?,
        state: get_enum(row, 6, "run state", RunState::parse)?,
        session_id: get(row, 7)?,
        finished_at: get(row, 8)?,
        detail: get(row, 9)?,
        post_id: get(row, 10)?,
    })
}

pub(super) async fn add_schedule(c: &impl GenericClient, s: &Schedule) -> Result<(), StoreError> {
    let inserted = execute(
        c,
        &format!(
            "INSERT INTO schedules ({SCHEDULE_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT DO NOTHING"
        ),
        &[
            &s.id,
            &s.name,
            &s.cron,
            &s.timezone,
            &s.prompt,
            &s.target_user_id,
            &s.agent,
            &s.model,
            &s.directory,
            &s.enabled,
            &s.created_by,
            &s.created_at,
            &s.active_since,
        ],
    )
    .await?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "a schedule named {} already exists",
            s.name
        )));
    }
    Ok(())
}

pub(super) async fn schedules(c: &impl GenericClient) -> Result<Vec<Schedule>, StoreError> {
    query(
        c,
        &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"),
        &[],
    )
    .await?
    .iter()
    .map(schedule_row)
    .collect()
}

pub(super) async fn schedule_by_name(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<Schedule>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = $1"),
        &[&name],
    )
    .await?
    .as_ref()
    .map(schedule_row)
    .transpose()
}

pub(super) async fn remove_schedule(c: &impl GenericClient, id: &str) -> Result<(), StoreError> {
    // The runs go with it (ON DELETE CASCADE).
    let changed = execute(c, "DELETE FROM schedules WHERE id = $1", &[&id]).await?;
    require_row(changed, || format!("schedule {id} does not exist"))
}

pub(super) async fn set_schedule_enabled(
    c: &impl GenericClient,
    id: &str,
    enabled: bool,
    at: Millis,
) -> Result<(), StoreError> {
    // Every SET expression reads the row as it was before the update.
    let changed = execute(
        c,
        "UPDATE schedules SET
             active_since = CASE WHEN $2 AND NOT enabled THEN $3 ELSE active_since END,
             enabled = $2
         WHERE id = $1",
        &[&id, &enabled, &at],
    )
    .await?;
    require_row(changed, || format!("schedule {id} does not exist"))
}

pub(super) async fn claim_schedule_run(
    c: &mut ClientWrapper,
    r: &ScheduleRun,
) -> Result<RunClaim, StoreError> {
    let tx = c.transaction().await?;
    let enabled: Option<bool> = query_opt(
        &tx,
        "SELECT enabled FROM schedules WHERE id = $1 FOR NO KEY UPDATE",
        &[&r.schedule_id],
    )
    .await?
    .as_ref()
    .map(|row| get(row, 0))
    .transpose()?;
    match enabled {
        None => return Ok(RunClaim::Inactive),
        Some(false) if r.trigger == RunTrigger::Cron => return Ok(RunClaim::Inactive),
        Some(_) => {}
    }
    let inserted = execute(
        &tx,
        &format!(
            "INSERT INTO schedule_runs ({RUN_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (schedule_id, scheduled_at) DO NOTHING"
        ),
        &[
            &r.schedule_id,
            &r.scheduled_at,
            &r.trigger.as_str(),
            &r.instance_id,
            &r.claimed_at,
            &r.deadline_at,
            &r.state.as_str(),
            &r.session_id,
            &r.finished_at,
            &r.detail,
            &r.post_id,
        ],
    )
    .await?;
    if inserted == 0 {
        return Ok(RunClaim::Taken);
    }
    if r.state != RunState::Running {
        tx.commit().await?;
        return Ok(RunClaim::Won);
    }
    let busy = query_opt(
        &tx,
        &format!(
            "SELECT {RUN_COLUMNS} FROM schedule_runs
             WHERE schedule_id = $1 AND state = $2 AND scheduled_at <> $3
               AND deadline_at > $4
             ORDER BY scheduled_at LIMIT 1"
        ),
        &[
            &r.schedule_id,
            &RunState::Running.as_str(),
            &r.scheduled_at,
            &r.claimed_at,
        ],
    )
    .await?
    .as_ref()
    .map(run_row)
    .transpose()?;
    let Some(busy) = busy else {
        tx.commit().await?;
        return Ok(RunClaim::Won);
    };
    let started = chrono::DateTime::from_timestamp_millis(busy.scheduled_at)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| busy.scheduled_at.to_string());
    execute(
        &tx,
        "UPDATE schedule_runs SET state = $3, finished_at = $4, detail = $5
         WHERE schedule_id = $1 AND scheduled_at = $2",
        &[
            &r.schedule_id,
            &r.scheduled_at,
            &RunState::Skipped.as_str(),
            &r.claimed_at,
            &format!("skipped: the run of {started} was still going"),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(RunClaim::Overlap(busy))
}

pub(super) async fn update_schedule_run(
    c: &impl GenericClient,
    r: &ScheduleRun,
) -> Result<(), StoreError> {
    let changed = execute(
        c,
        "UPDATE schedule_runs SET state = $3, session_id = $4, finished_at = $5,
             detail = $6, post_id = $7
         WHERE schedule_id = $1 AND scheduled_at = $2",
        &[
            &r.schedule_id,
            &r.scheduled_at,
            &r.state.as_str(),
            &r.session_id,
            &r.finished_at,
            &r.detail,
            &r.post_id,
        ],
    )
    .await?;
    require_row(changed, || {
        format!(
            "run {} of schedule {} was never claimed",
            r.scheduled_at, r.schedule_id
        )
    })
}

pub(super) async fn schedule_runs(
    c: &impl GenericClient,
    id: &str,
    limit: i64,
) -> Result<Vec<ScheduleRun>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {RUN_COLUMNS} FROM schedule_runs WHERE schedule_id = $1
             ORDER BY scheduled_at DESC LIMIT $2"
        ),
        &[&id, &limit],
    )
    .await?
    .iter()
    .map(run_row)
    .collect()
}

pub(super) async fn last_cron_run_at(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<Millis>, StoreError> {
    let row = query_opt(
        c,
        "SELECT max(scheduled_at) FROM schedule_runs
         WHERE schedule_id = $1 AND trigger = $2",
        &[&id, &RunTrigger::Cron.as_str()],
    )
    .await?;
    Ok(row.as_ref().map(|row| get(row, 0)).transpose()?.flatten())
}

pub(super) async fn fail_running_runs(
    c: &impl GenericClient,
    instance: &str,
    at: Millis,
    detail: &str,
) -> Result<usize, StoreError> {
    let changed = execute(
        c,
        "UPDATE schedule_runs SET state = $2, finished_at = $3, detail = $4
         WHERE instance_id = $1 AND state = $5",
        &[
            &instance,
            &RunState::Failed.as_str(),
            &at,
            &detail,
            &RunState::Running.as_str(),
        ],
    )
    .await?;
    Ok(usize::try_from(changed).unwrap_or(usize::MAX))
}
