//! [`Store`] on one SQLite file, shared by every agent on the machine.
//!
//! rusqlite is synchronous, so each call runs on the blocking pool with the
//! connection behind a mutex. Agents in other processes open their own
//! connections to the same file; SQLite's file locks serialise the writers
//! (WAL keeps readers from blocking them) and `busy_timeout` makes a writer
//! wait its turn instead of failing. Exactly-once claims then follow from a
//! primary key and `INSERT .. ON CONFLICT DO NOTHING`.
//!
//! This module owns the connection: opening the file, the WAL and pragma
//! settings, migrating, and running calls on the blocking pool. The SQL of
//! each table group lives in its own file (`instances`, `threads`,
//! `replies`, `schedules`, `monitors`); the one [`Store`] impl here hands
//! every call to it.

mod channels;
mod instances;
mod merged;
mod monitors;
mod replies;
mod schedules;
mod threads;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{Connection, Row};

use super::migrations;
use super::{
    Claim, GuestRequest, GuestState, Instance, MergeLock, Millis, MonitorRow, Pruned, Reply,
    RunClaim, Schedule, ScheduleRun, Store, StoreError, Teammate, ThreadBinding, ThreadGrant,
    ThreadStatus,
};
use crate::private_fs::{Existing, private_dir, private_file};

/// How long a writer waits for another connection's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store. Cheap to clone; clones share one connection.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Open (creating it and its directories if needed) and migrate the
    /// database at `path`. Blocks on file IO; it is meant for startup.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        // Threads, claims and schedules name people and prompts: a folder
        // we create is 0700, the database 0600 (SQLite gives its WAL and
        // shared-memory files the database's mode).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir, Existing::Leave).map_err(|e| StoreError::Io {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        private_file(path).map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let context =
            |e: rusqlite::Error| StoreError::Sqlite(format!("cannot open {}: {e}", path.display()));
        let conn = Connection::open(path).map_err(context)?;
        // Before anything that locks, so two agents opening at once wait.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(context)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(context)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Claims stay exactly-once in any journal mode; only concurrency
            // suffers (e.g. on file systems without shared memory).
            tracing::warn!(
                path = %path.display(),
                mode,
                "state database is not in WAL mode; readers will block writers"
            );
        }
        Self::prepare(conn).map_err(|e| match e {
            StoreError::Sqlite(reason) => {
                StoreError::Sqlite(format!("cannot open {}: {reason}", path.display()))
            }
            other => other,
        })
    }

    /// A private database that vanishes with the store, for tests.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        Self::prepare(Connection::open_in_memory()?)
    }

    /// `$XDG_DATA_HOME/opencode-mattermost/state.db`, else
    /// `$HOME/.local/share/opencode-mattermost/state.db`; `None` without
    /// either.
    pub fn default_path() -> Option<PathBuf> {
        default_path_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
    }

    /// Per-connection settings and the schema.
    fn prepare(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL makes NORMAL durable against crashes of the process (only an OS
        // crash can lose the last commits), and it saves an fsync per claim.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` with the connection on the blocking pool.
    pub(super) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave the connection
            // mid-transaction (dropping a Transaction rolls back), so the
            // connection is still good.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }
}

/// [`SqliteStore::default_path`] without reading the environment. XDG asks
/// to ignore relative values.
pub(super) fn default_path_from(
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let usable = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    let data = usable(xdg_data_home).or_else(|| usable(home).map(|h| h.join(".local/share")))?;
    Some(data.join("opencode-mattermost").join("state.db"))
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            // A stored value of the wrong type or spelling: the data is bad,
            // not the database.
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
            e => StoreError::Sqlite(e.to_string()),
        }
    }
}

/// Decode a text column through the enum's own parser.
fn text_enum<T>(value: ValueRef<'_>, what: &str, parse: fn(&str) -> Option<T>) -> FromSqlResult<T> {
    let text = value.as_str()?;
    parse(text).ok_or_else(|| FromSqlError::Other(format!("unknown {what} {text:?}").into()))
}

/// Every row `sql` returns for `params`, decoded by `map`.
fn query_all<T, P>(
    conn: &Connection,
    sql: &str,
    params: P,
    map: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError>
where
    P: rusqlite::Params,
{
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, map)?;
    Ok(rows.collect::<Result<Vec<T>, _>>()?)
}

/// NotFound unless `changed` rows were touched.
fn require_row(changed: usize, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if changed == 0 {
        Err(StoreError::NotFound(what()))
    } else {
        Ok(())
    }
}

/// Each method copies its arguments (the blocking pool needs owned data) and
/// runs the table's SQL from the module that owns the table.
#[async_trait]
impl Store for SqliteStore {
    async fn register_instance(&self, instance: &Instance) -> Result<(), StoreError> {
        let i = instance.clone();
        self.call(move |conn| instances::register_instance(conn, &i))
            .await
    }

    async fn heartbeat(&self, instance_id: &str, at: Millis) -> Result<(), StoreError> {
        let id = instance_id.to_owned();
        self.call(move |conn| instances::heartbeat(conn, &id, at))
            .await
    }

    async fn prune_instances(&self, offline_before: Millis) -> Result<u64, StoreError> {
        self.call(move |conn| instances::prune_instances(conn, offline_before))
            .await
    }

    async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        self.call(|conn| instances::instances(conn)).await
    }

    async fn bind_thread(&self, binding: &ThreadBinding) -> Result<(), StoreError> {
        let b = binding.clone();
        self.call(move |conn| threads::bind_thread(conn, &b)).await
    }

    async fn thread(&self, root_post_id: &str) -> Result<Option<ThreadBinding>, StoreError> {
        let root = root_post_id.to_owned();
        self.call(move |conn| threads::thread(conn, &root)).await
    }

    async fn threads_of_session(&self, session_id: &str) -> Result<Vec<ThreadBinding>, StoreError> {
        let session = session_id.to_owned();
        self.call(move |conn| threads::threads_of_session(conn, &session))
            .await
    }

    async fn threads(&self) -> Result<Vec<ThreadBinding>, StoreError> {
        self.call(|conn| threads::threads(conn)).await
    }

    async fn threads_of_instance(
        &self,
        instance_id: &str,
    ) -> Result<Vec<ThreadBinding>, StoreError> {
        let instance = instance_id.to_owned();
        self.call(move |conn| threads::threads_of_instance(conn, &instance))
            .await
    }

    async fn set_thread_status(
        &self,
        root_post_id: &str,
        status: ThreadStatus,
    ) -> Result<(), StoreError> {
        let root = root_post_id.to_owned();
        self.call(move |conn| threads::set_thread_status(conn, &root, status))
            .await
    }

    async fn set_thread_model(
        &self,
        root_post_id: &str,
        model: Option<&str>,
    ) -> Result<(), StoreError> {
        let root = root_post_id.to_owned();
        let model = model.map(str::to_owned);
        self.call(move |conn| threads::set_thread_model(conn, &root, model.as_deref()))
            .await
    }

    async fn set_thread_session(
        &self,
        root_post_id: &str,
        session_id: &str,
    ) -> Result<(), StoreError> {
        let root = root_post_id.to_owned();
        let session = session_id.to_owned();
        self.call(move |conn| threads::set_thread_session(conn, &root, &session))
            .await
    }

    async fn select_thread(
        &self,
        channel_id: &str,
        root_post_id: Option<&str>,
        at: Millis,
    ) -> Result<(), StoreError> {
        let channel = channel_id.to_owned();
        let root = root_post_id.map(str::to_owned);
        self.call(move |conn| threads::select_thread(conn, &channel, root.as_deref(), at))
            .await
    }

    async fn selection(&self, channel_id: &str) -> Result<Option<String>, StoreError> {
        let channel = channel_id.to_owned();
        self.call(move |conn| threads::selection(conn, &channel))
            .await
    }

    async fn claim_post(
        &self,
        post_id: &str,
        instance_id: &str,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let post = post_id.to_owned();
        let instance = instance_id.to_owned();
        self.call(move |conn| instances::claim_post(conn, &post, &instance, at))
            .await
    }

    async fn claim(&self, post_id: &str) -> Result<Option<Claim>, StoreError> {
        let post = post_id.to_owned();
        self.call(move |conn| instances::claim(conn, &post)).await
    }

    async fn update_claim(&self, claim: &Claim) -> Result<(), StoreError> {
        let c = claim.clone();
        self.call(move |conn| instances::update_claim(conn, &c))
            .await
    }

    async fn unfinished_claims(&self, instance_id: &str) -> Result<Vec<Claim>, StoreError> {
        let instance = instance_id.to_owned();
        self.call(move |conn| instances::unfinished_claims(conn, &instance))
            .await
    }

    async fn take_missed(&self, post_id: &str, instance_id: &str) -> Result<bool, StoreError> {
        let post = post_id.to_owned();
        let instance = instance_id.to_owned();
        self.call(move |conn| instances::take_missed(conn, &post, &instance))
            .await
    }

    async fn abandon_claim(
        &self,
        post_id: &str,
        instance_id: &str,
        offline_before: Millis,
    ) -> Result<bool, StoreError> {
        let post = post_id.to_owned();
        let instance = instance_id.to_owned();
        self.call(move |conn| instances::abandon_claim(conn, &post, &instance, offline_before))
            .await
    }

    async fn prune(&self, before: Millis) -> Result<Pruned, StoreError> {
        self.call(move |conn| {
            Ok(Pruned {
                claims: instances::prune_claims(conn, before)?,
                replies: replies::prune_replies(conn, before)?,
            })
        })
        .await
    }

    async fn save_reply(&self, reply: &Reply) -> Result<(), StoreError> {
        let r = reply.clone();
        self.call(move |conn| replies::save_reply(conn, &r)).await
    }

    async fn reply(
        &self,
        session_id: &str,
        user_message_id: &str,
    ) -> Result<Option<Reply>, StoreError> {
        let session = session_id.to_owned();
        let message = user_message_id.to_owned();
        self.call(move |conn| replies::reply(conn, &session, &message))
            .await
    }

    async fn streaming_replies(&self, instance_id: &str) -> Result<Vec<Reply>, StoreError> {
        let instance = instance_id.to_owned();
        self.call(move |conn| replies::streaming_replies(conn, &instance))
            .await
    }

    async fn advance_cursor(
        &self,
        channel_id: &str,
        create_at: Millis,
        post_id: &str,
    ) -> Result<(), StoreError> {
        let channel = channel_id.to_owned();
        let post = post_id.to_owned();
        self.call(move |conn| replies::advance_cursor(conn, &channel, create_at, &post))
            .await
    }

    async fn cursors(&self) -> Result<Vec<(String, Millis)>, StoreError> {
        self.call(|conn| replies::cursors(conn)).await
    }

    async fn add_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let s = schedule.clone();
        self.call(move |conn| schedules::add_schedule(conn, &s))
            .await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.call(|conn| schedules::schedules(conn)).await
    }

    async fn schedule_by_name(&self, name: &str) -> Result<Option<Schedule>, StoreError> {
        let name = name.to_owned();
        self.call(move |conn| schedules::schedule_by_name(conn, &name))
            .await
    }

    async fn remove_schedule(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.call(move |conn| schedules::remove_schedule(conn, &id))
            .await
    }

    async fn set_schedule_enabled(
        &self,
        id: &str,
        enabled: bool,
        at: Millis,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.call(move |conn| schedules::set_schedule_enabled(conn, &id, enabled, at))
            .await
    }

    async fn claim_schedule_run(&self, run: &ScheduleRun) -> Result<RunClaim, StoreError> {
        let r = run.clone();
        self.call(move |conn| schedules::claim_schedule_run(conn, &r))
            .await
    }

    async fn update_schedule_run(&self, run: &ScheduleRun) -> Result<(), StoreError> {
        let r = run.clone();
        self.call(move |conn| schedules::update_schedule_run(conn, &r))
            .await
    }

    async fn schedule_runs(
        &self,
        schedule_id: &str,
        limit: usize,
    ) -> Result<Vec<ScheduleRun>, StoreError> {
        let id = schedule_id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |conn| schedules::schedule_runs(conn, &id, limit))
            .await
    }

    async fn last_cron_run_at(&self, schedule_id: &str) -> Result<Option<Millis>, StoreError> {
        let id = schedule_id.to_owned();
        self.call(move |conn| schedules::last_cron_run_at(conn, &id))
            .await
    }

    async fn fail_running_runs(
        &self,
        instance_id: &str,
        at: Millis,
        detail: &str,
    ) -> Result<usize, StoreError> {
        let instance = instance_id.to_owned();
        let detail = detail.to_owned();
        self.call(move |conn| schedules::fail_running_runs(conn, &instance, at, &detail))
            .await
    }

    async fn add_monitor(&self, monitor: &MonitorRow) -> Result<(), StoreError> {
        let m = monitor.clone();
        self.call(move |conn| monitors::add_monitor(conn, &m)).await
    }

    async fn remove_monitors(
        &self,
        session_id: &str,
        target: Option<&str>,
    ) -> Result<usize, StoreError> {
        let session = session_id.to_owned();
        let target = target.map(str::to_owned);
        self.call(move |conn| monitors::remove_monitors(conn, &session, target.as_deref()))
            .await
    }

    async fn monitors_of(&self, session_id: &str) -> Result<Vec<MonitorRow>, StoreError> {
        let session = session_id.to_owned();
        self.call(move |conn| monitors::monitors_of(conn, &session))
            .await
    }

    async fn monitors(&self) -> Result<Vec<MonitorRow>, StoreError> {
        self.call(|conn| monitors::monitors(conn)).await
    }

    async fn lock_thread(&self, lock: &MergeLock) -> Result<bool, StoreError> {
        let lock = lock.clone();
        self.call(move |conn| merged::lock_thread(conn, &lock))
            .await
    }

    async fn thread_lock(&self, root_post_id: &str) -> Result<Option<MergeLock>, StoreError> {
        let root = root_post_id.to_owned();
        self.call(move |conn| merged::thread_lock(conn, &root))
            .await
    }

    async fn set_monitor_alert(
        &self,
        session_id: &str,
        target: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        let session = session_id.to_owned();
        let target = target.to_owned();
        let key = key.to_owned();
        self.call(move |conn| monitors::set_monitor_alert(conn, &session, &target, &key))
            .await
    }

    async fn add_teammate(&self, teammate: &Teammate) -> Result<bool, StoreError> {
        let t = teammate.clone();
        self.call(move |conn| channels::add_teammate(conn, &t))
            .await
    }

    async fn remove_teammate(
        &self,
        owner_user_id: &str,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        let (owner, user) = (owner_user_id.to_owned(), user_id.to_owned());
        self.call(move |conn| channels::remove_teammate(conn, &owner, &user))
            .await
    }

    async fn teammates(&self, owner_user_id: &str) -> Result<Vec<Teammate>, StoreError> {
        let owner = owner_user_id.to_owned();
        self.call(move |conn| channels::teammates(conn, &owner))
            .await
    }

    async fn mark_team_imported(
        &self,
        owner_user_id: &str,
        source: &str,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let (owner, source) = (owner_user_id.to_owned(), source.to_owned());
        self.call(move |conn| channels::mark_team_imported(conn, &owner, &source, at))
            .await
    }

    async fn grant_thread(&self, grant: &ThreadGrant) -> Result<(), StoreError> {
        let g = grant.clone();
        self.call(move |conn| channels::grant_thread(conn, &g))
            .await
    }

    async fn thread_grants(&self, root_post_id: &str) -> Result<Vec<ThreadGrant>, StoreError> {
        let root = root_post_id.to_owned();
        self.call(move |conn| channels::thread_grants(conn, &root))
            .await
    }

    async fn add_guest_request(&self, request: &GuestRequest) -> Result<(), StoreError> {
        let r = request.clone();
        self.call(move |conn| channels::add_guest_request(conn, &r))
            .await
    }

    async fn guest_request(&self, post_id: &str) -> Result<Option<GuestRequest>, StoreError> {
        let post = post_id.to_owned();
        self.call(move |conn| channels::guest_request(conn, &post))
            .await
    }

    async fn pending_guest_requests(
        &self,
        instance_id: &str,
    ) -> Result<Vec<GuestRequest>, StoreError> {
        let instance = instance_id.to_owned();
        self.call(move |conn| channels::pending_guest_requests(conn, &instance))
            .await
    }

    async fn decide_guest_request(
        &self,
        post_id: &str,
        state: GuestState,
        by: Option<&str>,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let (post, by) = (post_id.to_owned(), by.map(str::to_owned));
        self.call(move |conn| channels::decide_guest_request(conn, &post, state, by.as_deref(), at))
            .await
    }
}
