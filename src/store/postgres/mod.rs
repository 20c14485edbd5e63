//! [`Store`] on a PostgreSQL database, shared by agents on any number of
//! hosts (`OPENCODE_MM_DATABASE_URL=postgres://…`).
//!
//! tokio-postgres is asynchronous, so calls run on the agent's own tasks
//! instead of a blocking pool, and deadpool keeps a bounded pool of
//! connections (each checkout waits at most [`PgOptions::wait_timeout`], each
//! connect at most [`PgOptions::connect_timeout`]): a slow or unreachable
//! server makes calls fail with a clear error, never pile up. Statements are
//! prepared once per connection.
//!
//! Exactly-once comes from the database, never from a lock in this process:
//! unique keys with `INSERT .. ON CONFLICT DO NOTHING`, conditional `UPDATE`s,
//! and a row lock where a check and a write must be one step (see
//! `schedules`). Everything runs at READ COMMITTED, the server's default.
//!
//! This module owns the pool: parsing the URL, TLS when the URL asks for it
//! (`sslmode=require`, see `tls`), migrating (`migrate`), and turning
//! driver errors into [`StoreError`]s that never hold the password (`url`).
//! The SQL of each table group lives in its own file, as for SQLite.

mod channels;
mod instances;
mod merged;
mod migrate;
mod monitors;
mod replies;
mod schedules;
mod threads;
mod tls;
mod url;

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};

pub use url::{database_url_has_password, is_postgres_url, redact_database_url};

use super::{
    Claim, GuestRequest, GuestState, Instance, MergeLock, Millis, MonitorRow, Pruned, Reply,
    RunClaim, Schedule, ScheduleRun, Store, StoreError, Teammate, ThreadBinding, ThreadGrant,
    ThreadStatus,
};

/// How the pool behaves; the defaults suit one agent.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The most connections open at once. One agent rarely needs more than
    /// a few; the bound keeps many agents within the server's own limit.
    pub max_connections: usize,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long a call waits for a free connection before it fails.
    pub wait_timeout: Duration,
    /// Use this schema (which must exist) instead of the URL's search path:
    /// tests and benchmarks give each run a fresh one. Lowercase letters,
    /// digits and `_`.
    pub schema: Option<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(10),
            schema: None,
        }
    }
}

/// The PostgreSQL store. Cheap to clone; clones share one pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The URL without its password, for messages.
    target: Arc<str>,
    /// Scrubbed from every error message, in case a driver echoes it.
    password: Option<Arc<str>>,
    wait_timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connect with the default pool settings and migrate.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        Self::connect_with(url, PgOptions::default()).await
    }

    /// Connect to the database `url` names and bring its schema up to date.
    /// TLS is used when the URL says `sslmode=require` (or libpq's
    /// `verify-ca`/`verify-full`), always verifying the server; otherwise
    /// the connection is plain.
    pub async fn connect_with(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        let target: Arc<str> = redact_database_url(url).into();
        let password: Option<Arc<str>> = url::password_of(url).map(Into::into);
        let scrub = |text: String| scrub(password.as_deref(), text);
        let mut config: tokio_postgres::Config = url::driver_url(url).parse().map_err(|e| {
            StoreError::Postgres(scrub(format!(
                "{target} is not a usable PostgreSQL URL: {e}"
            )))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("opencode-mattermost");
        }
        if let Some(schema) = &options.schema {
            if !url::valid_schema(schema) {
                return Err(StoreError::Postgres(format!(
                    "schema {schema:?} must be lowercase letters, digits and _"
                )));
            }
            let joined = match config.get_options() {
                Some(given) => format!("{given} -c search_path={schema}"),
                None => format!("-c search_path={schema}"),
            };
            config.options(joined);
        }
        let tls = config.get_ssl_mode() == SslMode::Require;
        let manager_config = ManagerConfig {
            // Checks only that the connection is open: a round trip per
            // checkout would double the cost of a claim.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if tls {
            Manager::from_config(config, tls::connector()?, manager_config)
        } else {
            Manager::from_config(config, NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Postgres(format!("cannot set up the pool: {e}")))?;
        let store = PgStore {
            pool,
            target,
            password,
            wait_timeout: options.wait_timeout,
        };
        let mut client = store.client().await?;
        migrate::migrate(&mut client)
            .await
            .map_err(|e| store.scrub_error(e))?;
        tracing::info!(
            database = %store.target,
            tls,
            max_connections = options.max_connections,
            "state database: PostgreSQL"
        );
        Ok(store)
    }

    /// The database URL without its password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A connection from the pool, or why none could be had.
    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| {
            let why = match e {
                PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => format!(
                    "no connection to {} was free within {} s (all {} in use)",
                    self.target,
                    self.wait_timeout.as_secs(),
                    self.pool.status().max_size
                ),
                PoolError::Timeout(_) => format!("connecting to {} timed out", self.target),
                PoolError::Backend(e) => {
                    format!("cannot connect to {}: {}", self.target, describe(&e))
                }
                other => format!("cannot connect to {}: {other}", self.target),
            };
            StoreError::Postgres(scrub(self.password.as_deref(), why))
        })
    }

    /// The error with the password taken out of its text.
    fn scrub_error(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Postgres(text) => {
                StoreError::Postgres(scrub(self.password.as_deref(), text))
            }
            other => other,
        }
    }
}

/// `text` with every occurrence of the password replaced.
fn scrub(password: Option<&str>, text: String) -> String {
    match password {
        Some(p) if p.len() >= 4 => text.replace(p, "[redacted]"),
        _ => text,
    }
}

/// A driver error, worded for people: the server's message and code, or
/// what went wrong on the connection.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        if e.is_closed() {
            return "the connection to the database was closed; the next call reconnects".into();
        }
        // The driver's text leaves out the cause (why TLS failed, say).
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        return text;
    };
    let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if *db.code() == SqlState::CHARACTER_NOT_IN_REPERTOIRE {
        text.push_str("; PostgreSQL text cannot hold a NUL character");
    }
    if let Some(detail) = db.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    text
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(describe(&e))
    }
}

/// Run one statement, prepared once per connection; the rows it changed.
async fn execute(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}

/// Every row of one query, prepared once per connection.
async fn query(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

/// The row of a query that returns at most one.
async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&statement, params).await?)
}

/// One column of a row; a value of the wrong type or shape is bad data.
fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, StoreError> {
    row.try_get(idx).map_err(|e| corrupt(row, idx, e))
}

/// A text column decoded through the enum's own parser.
fn get_enum<T>(
    row: &Row,
    idx: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: &str = get(row, idx)?;
    parse(text).ok_or_else(|| corrupt(row, idx, format!("unknown {what} {text:?}")))
}

fn corrupt(row: &Row, idx: usize, why: impl Display) -> StoreError {
    let column = row.columns().get(idx).map_or("?", |c| c.name());
    StoreError::Corrupt(format!("column {column}: {why}"))
}

/// NotFound unless a row was changed.
fn require_row(changed: u64, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if changed == 0 {
        Err(StoreError::NotFound(what()))
    } else {
        Ok(())
    }
}

/// Each method takes a pooled connection (returned when it drops) and runs
/// the table's SQL from the module that owns the table.
#[async_trait]
impl Store for PgStore {
    async fn register_instance(&self, instance: &Instance) -> Result<(), StoreError> {
        instances::register_instance(&self.client().await?, instance).await
    }

    async fn heartbeat(&self, instance_id: &str, at: Millis) -> Result<(), StoreError> {
        instances::heartbeat(&self.client().await?, instance_id, at).await
    }

    async fn prune_instances(&self, offline_before: Millis) -> Result<u64, StoreError> {
        instances::prune_instances(&self.client().await?, offline_before).await
    }

    async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        instances::instances(&self.client().await?).await
    }

    async fn bind_thread(&self, binding: &ThreadBinding) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        threads::bind_thread(&mut client, binding).await
    }

    async fn thread(&self, root_post_id: &str) -> Result<Option<ThreadBinding>, StoreError> {
        threads::thread(&self.client().await?, root_post_id).await
    }

    async fn threads_of_session(&self, session_id: &str) -> Result<Vec<ThreadBinding>, StoreError> {
        threads::threads_of_session(&self.client().await?, session_id).await
    }

    async fn threads(&self) -> Result<Vec<ThreadBinding>, StoreError> {
        threads::threads(&self.client().await?).await
    }

    async fn threads_of_instance(
        &self,
        instance_id: &str,
    ) -> Result<Vec<ThreadBinding>, StoreError> {
        threads::threads_of_instance(&self.client().await?, instance_id).await
    }

    async fn set_thread_status(
        &self,
        root_post_id: &str,
        status: ThreadStatus,
    ) -> Result<(), StoreError> {
        threads::set_thread_status(&self.client().await?, root_post_id, status).await
    }

    async fn set_thread_model(
        &self,
        root_post_id: &str,
        model: Option<&str>,
    ) -> Result<(), StoreError> {
        threads::set_thread_model(&self.client().await?, root_post_id, model).await
    }

    async fn set_thread_session(
        &self,
        root_post_id: &str,
        session_id: &str,
    ) -> Result<(), StoreError> {
        threads::set_thread_session(&self.client().await?, root_post_id, session_id).await
    }

    async fn select_thread(
        &self,
        channel_id: &str,
        root_post_id: Option<&str>,
        at: Millis,
    ) -> Result<(), StoreError> {
        threads::select_thread(&self.client().await?, channel_id, root_post_id, at).await
    }

    async fn selection(&self, channel_id: &str) -> Result<Option<String>, StoreError> {
        threads::selection(&self.client().await?, channel_id).await
    }

    async fn claim_post(
        &self,
        post_id: &str,
        instance_id: &str,
        at: Millis,
    ) -> Result<bool, StoreError> {
        instances::claim_post(&self.client().await?, post_id, instance_id, at).await
    }

    async fn claim(&self, post_id: &str) -> Result<Option<Claim>, StoreError> {
        instances::claim(&self.client().await?, post_id).await
    }

    async fn update_claim(&self, claim: &Claim) -> Result<(), StoreError> {
        instances::update_claim(&self.client().await?, claim).await
    }

    async fn unfinished_claims(&self, instance_id: &str) -> Result<Vec<Claim>, StoreError> {
        instances::unfinished_claims(&self.client().await?, instance_id).await
    }

    async fn take_missed(&self, post_id: &str, instance_id: &str) -> Result<bool, StoreError> {
        instances::take_missed(&self.client().await?, post_id, instance_id).await
    }

    async fn abandon_claim(
        &self,
        post_id: &str,
        instance_id: &str,
        offline_before: Millis,
    ) -> Result<bool, StoreError> {
        instances::abandon_claim(&self.client().await?, post_id, instance_id, offline_before).await
    }

    async fn prune(&self, before: Millis) -> Result<Pruned, StoreError> {
        let client = self.client().await?;
        Ok(Pruned {
            claims: instances::prune_claims(&client, before).await?,
            replies: replies::prune_replies(&client, before).await?,
        })
    }

    async fn save_reply(&self, reply: &Reply) -> Result<(), StoreError> {
        replies::save_reply(&self.client().await?, reply).await
    }

    async fn reply(
        &self,
        session_id: &str,
        user_message_id: &str,
    ) -> Result<Option<Reply>, StoreError> {
        replies::reply(&self.client().await?, session_id, user_message_id).await
    }

    async fn streaming_replies(&self, instance_id: &str) -> Result<Vec<Reply>, StoreError> {
        replies::streaming_replies(&self.client().await?, instance_id).await
    }

    async fn advance_cursor(
        &self,
        channel_id: &str,
        create_at: Millis,
        post_id: &str,
    ) -> Result<(), StoreError> {
        replies::advance_cursor(&self.client().await?, channel_id, create_at, post_id).await
    }

    async fn cursors(&self) -> Result<Vec<(String, Millis)>, StoreError> {
        replies::cursors(&self.client().await?).await
    }

    async fn add_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        schedules::add_schedule(&self.client().await?, schedule).await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        schedules::schedules(&self.client().await?).await
    }

    async fn schedule_by_name(&self, name: &str) -> Result<Option<Schedule>, StoreError> {
        schedules::schedule_by_name(&self.client().await?, name).await
    }

    async fn remove_schedule(&self, id: &str) -> Result<(), StoreError> {
        schedules::remove_schedule(&self.client().await?, id).await
    }

    async fn set_schedule_enabled(
        &self,
        id: &str,
        enabled: bool,
        at: Millis,
    ) -> Result<(), StoreError> {
        schedules::set_schedule_enabled(&self.client().await?, id, enabled, at).await
    }

    async fn claim_schedule_run(&self, run: &ScheduleRun) -> Result<RunClaim, StoreError> {
        let mut client = self.client().await?;
        schedules::claim_schedule_run(&mut client, run).await
    }

    async fn update_schedule_run(&self, run: &ScheduleRun) -> Result<(), StoreError> {
        schedules::update_schedule_run(&self.client().await?, run).await
    }

    async fn schedule_runs(
        &self,
        schedule_id: &str,
        limit: usize,
    ) -> Result<Vec<ScheduleRun>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        schedules::schedule_runs(&self.client().await?, schedule_id, limit).await
    }

    async fn last_cron_run_at(&self, schedule_id: &str) -> Result<Option<Millis>, StoreError> {
        schedules::last_cron_run_at(&self.client().await?, schedule_id).await
    }

    async fn fail_running_runs(
        &self,
        instance_id: &str,
        at: Millis,
        detail: &str,
    ) -> Result<usize, StoreError> {
        schedules::fail_running_runs(&self.client().await?, instance_id, at, detail).await
    }

    async fn add_monitor(&self, monitor: &MonitorRow) -> Result<(), StoreError> {
        monitors::add_monitor(&self.client().await?, monitor).await
    }

    async fn remove_monitors(
        &self,
        session_id: &str,
        target: Option<&str>,
    ) -> Result<usize, StoreError> {
        monitors::remove_monitors(&self.client().await?, session_id, target).await
    }

    async fn monitors_of(&self, session_id: &str) -> Result<Vec<MonitorRow>, StoreError> {
        monitors::monitors_of(&self.client().await?, session_id).await
    }

    async fn monitors(&self) -> Result<Vec<MonitorRow>, StoreError> {
        monitors::monitors(&self.client().await?).await
    }

    async fn lock_thread(&self, lock: &MergeLock) -> Result<bool, StoreError> {
        merged::lock_thread(&self.client().await?, lock).await
    }

    async fn thread_lock(&self, root_post_id: &str) -> Result<Option<MergeLock>, StoreError> {
        merged::thread_lock(&self.client().await?, root_post_id).await
    }

    async fn set_monitor_alert(
        &self,
        session_id: &str,
        target: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        monitors::set_monitor_alert(&self.client().await?, session_id, target, key).await
    }

    async fn add_teammate(&self, teammate: &Teammate) -> Result<bool, StoreError> {
        channels::add_teammate(&self.client().await?, teammate).await
    }

    async fn remove_teammate(
        &self,
        owner_user_id: &str,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        channels::remove_teammate(&self.client().await?, owner_user_id, user_id).await
    }

    async fn teammates(&self, owner_user_id: &str) -> Result<Vec<Teammate>, StoreError> {
        channels::teammates(&self.client().await?, owner_user_id).await
    }

    async fn mark_team_imported(
        &self,
        owner_user_id: &str,
        source: &str,
        at: Millis,
    ) -> Result<bool, StoreError> {
        channels::mark_team_imported(&self.client().await?, owner_user_id, source, at).await
    }

    async fn grant_thread(&self, grant: &ThreadGrant) -> Result<(), StoreError> {
        channels::grant_thread(&self.client().await?, grant).await
    }

    async fn thread_grants(&self, root_post_id: &str) -> Result<Vec<ThreadGrant>, StoreError> {
        channels::thread_grants(&self.client().await?, root_post_id).await
    }

    async fn add_guest_request(&self, request: &GuestRequest) -> Result<(), StoreError> {
        channels::add_guest_request(&self.client().await?, request).await
    }

    async fn guest_request(&self, post_id: &str) -> Result<Option<GuestRequest>, StoreError> {
        channels::guest_request(&self.client().await?, post_id).await
    }

    async fn pending_guest_requests(
        &self,
        instance_id: &str,
    ) -> Result<Vec<GuestRequest>, StoreError> {
        channels::pending_guest_requests(&self.client().await?, instance_id).await
    }

    async fn decide_guest_request(
        &self,
        post_id: &str,
        state: GuestState,
        by: Option<&str>,
        at: Millis,
    ) -> Result<bool, StoreError> {
        channels::decide_guest_request(&self.client().await?, post_id, state, by, at).await
    }
}
