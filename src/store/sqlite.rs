//! [`Store`] on one SQLite file, shared by every agent on the machine.
//!
//! rusqlite is synchronous, so each call runs on the blocking pool with the
//! connection behind a mutex. Agents in other processes open their own
//! connections to the same file; SQLite's file locks serialise the writers
//! (WAL keeps readers from blocking them) and `busy_timeout` makes a writer
//! wait its turn instead of failing. Exactly-once claims then follow from a
//! primary key and `INSERT .. ON CONFLICT DO NOTHING`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, TransactionBehavior};

use super::migrations;
use super::{
    Claim, ClaimState, Instance, Millis, MonitorRow, Reply, ReplyState, RunClaim, RunState,
    RunTrigger, Schedule, ScheduleRun, Store, StoreError, ThreadBinding, ThreadStatus,
};

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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
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

impl ToSql for ThreadStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for ThreadStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_enum(value, "thread status", ThreadStatus::parse)
    }
}

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

impl ToSql for ReplyState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for ReplyState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_enum(value, "reply state", ReplyState::parse)
    }
}

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

const THREAD_COLUMNS: &str =
    "root_post_id, channel_id, session_id, instance_id, created_by, created_at, status, model";

fn thread_row(row: &Row<'_>) -> rusqlite::Result<ThreadBinding> {
    Ok(ThreadBinding {
        root_post_id: row.get(0)?,
        channel_id: row.get(1)?,
        session_id: row.get(2)?,
        instance_id: row.get(3)?,
        created_by: row.get(4)?,
        created_at: row.get(5)?,
        status: row.get(6)?,
        model: row.get(7)?,
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

const REPLY_COLUMNS: &str = "session_id, user_message_id, instance_id, channel_id, \
                             root_post_id, post_ids, started_at, state";

fn reply_row(row: &Row<'_>) -> rusqlite::Result<Reply> {
    let post_ids: String = row.get(5)?;
    let post_ids = serde_json::from_str(&post_ids).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            5,
            rusqlite::types::Type::Text,
            format!("post_ids is not a JSON list of strings: {e}").into(),
        )
    })?;
    Ok(Reply {
        session_id: row.get(0)?,
        user_message_id: row.get(1)?,
        instance_id: row.get(2)?,
        channel_id: row.get(3)?,
        root_post_id: row.get(4)?,
        post_ids,
        started_at: row.get(6)?,
        state: row.get(7)?,
    })
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

#[async_trait]
impl Store for SqliteStore {
    async fn register_instance(&self, instance: &Instance) -> Result<(), StoreError> {
        let i = instance.clone();
        self.call(move |conn| {
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
        })
        .await
    }

    async fn heartbeat(&self, instance_id: &str, at: Millis) -> Result<(), StoreError> {
        let id = instance_id.to_owned();
        self.call(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE instances SET heartbeat_at = ?2 WHERE id = ?1")?
                .execute((&id, at))?;
            require_row(changed, || format!("instance {id} is not registered"))
        })
        .await
    }

    async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        self.call(|conn| {
            query_all(
                conn,
                &format!("SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY started_at, id"),
                [],
                instance_row,
            )
        })
        .await
    }

    async fn bind_thread(&self, binding: &ThreadBinding) -> Result<(), StoreError> {
        let b = binding.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let inserted = tx
                .prepare_cached(&format!(
                    "INSERT INTO threads ({THREAD_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (root_post_id) DO NOTHING"
                ))?
                .execute((
                    &b.root_post_id,
                    &b.channel_id,
                    &b.session_id,
                    &b.instance_id,
                    &b.created_by,
                    b.created_at,
                    b.status,
                    &b.model,
                ))?;
            if inserted == 0 {
                let existing: String = tx
                    .prepare_cached("SELECT session_id FROM threads WHERE root_post_id = ?1")?
                    .query_row([&b.root_post_id], |row| row.get(0))?;
                if existing != b.session_id {
                    return Err(StoreError::Conflict(format!(
                        "thread {} is already bound to session {existing}, not {}",
                        b.root_post_id, b.session_id
                    )));
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn thread(&self, root_post_id: &str) -> Result<Option<ThreadBinding>, StoreError> {
        let root = root_post_id.to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {THREAD_COLUMNS} FROM threads WHERE root_post_id = ?1"
                ))?
                .query_row([&root], thread_row)
                .optional()?)
        })
        .await
    }

    async fn threads_of_session(&self, session_id: &str) -> Result<Vec<ThreadBinding>, StoreError> {
        let session = session_id.to_owned();
        self.call(move |conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {THREAD_COLUMNS} FROM threads WHERE session_id = ?1
                     ORDER BY created_at, root_post_id"
                ),
                [&session],
                thread_row,
            )
        })
        .await
    }

    async fn threads_of_instance(
        &self,
        instance_id: &str,
    ) -> Result<Vec<ThreadBinding>, StoreError> {
        let instance = instance_id.to_owned();
        self.call(move |conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {THREAD_COLUMNS} FROM threads WHERE instance_id = ?1
                     ORDER BY created_at, root_post_id"
                ),
                [&instance],
                thread_row,
            )
        })
        .await
    }

    async fn set_thread_status(
        &self,
        root_post_id: &str,
        status: ThreadStatus,
    ) -> Result<(), StoreError> {
        let root = root_post_id.to_owned();
        self.call(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE threads SET status = ?2 WHERE root_post_id = ?1")?
                .execute((&root, status))?;
            require_row(changed, || {
                format!("thread {root} is not bound to a session")
            })
        })
        .await
    }

    async fn set_thread_model(
        &self,
        root_post_id: &str,
        model: Option<&str>,
    ) -> Result<(), StoreError> {
        let root = root_post_id.to_owned();
        let model = model.map(str::to_owned);
        self.call(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE threads SET model = ?2 WHERE root_post_id = ?1")?
                .execute((&root, &model))?;
            require_row(changed, || {
                format!("thread {root} is not bound to a session")
            })
        })
        .await
    }

    async fn set_thread_session(
        &self,
        root_post_id: &str,
        session_id: &str,
    ) -> Result<(), StoreError> {
        let root = root_post_id.to_owned();
        let session = session_id.to_owned();
        self.call(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE threads SET session_id = ?2, status = ?3 WHERE root_post_id = ?1",
                )?
                .execute((&root, &session, ThreadStatus::Active))?;
            require_row(changed, || {
                format!("thread {root} is not bound to a session")
            })
        })
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
        self.call(move |conn| {
            match root {
                Some(root) => conn
                    .prepare_cached(
                        "INSERT INTO selections (channel_id, root_post_id, updated_at)
                         VALUES (?1, ?2, ?3)
                         ON CONFLICT (channel_id) DO UPDATE
                         SET root_post_id = excluded.root_post_id,
                             updated_at = excluded.updated_at",
                    )?
                    .execute((&channel, &root, at))?,
                None => conn
                    .prepare_cached("DELETE FROM selections WHERE channel_id = ?1")?
                    .execute([&channel])?,
            };
            Ok(())
        })
        .await
    }

    async fn selection(&self, channel_id: &str) -> Result<Option<String>, StoreError> {
        let channel = channel_id.to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached("SELECT root_post_id FROM selections WHERE channel_id = ?1")?
                .query_row([&channel], |row| row.get(0))
                .optional()?)
        })
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
        self.call(move |conn| {
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
        })
        .await
    }

    async fn claim(&self, post_id: &str) -> Result<Option<Claim>, StoreError> {
        let post = post_id.to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {CLAIM_COLUMNS} FROM claims WHERE post_id = ?1"
                ))?
                .query_row([&post], claim_row)
                .optional()?)
        })
        .await
    }

    async fn update_claim(&self, claim: &Claim) -> Result<(), StoreError> {
        let c = claim.clone();
        self.call(move |conn| {
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
        })
        .await
    }

    async fn unfinished_claims(&self, instance_id: &str) -> Result<Vec<Claim>, StoreError> {
        let instance = instance_id.to_owned();
        self.call(move |conn| {
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
        })
        .await
    }

    async fn save_reply(&self, reply: &Reply) -> Result<(), StoreError> {
        let r = reply.clone();
        self.call(move |conn| {
            let post_ids = serde_json::to_string(&r.post_ids)
                .map_err(|e| StoreError::Corrupt(format!("cannot encode post ids: {e}")))?;
            conn.prepare_cached(&format!(
                "INSERT INTO replies ({REPLY_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (session_id, user_message_id) DO UPDATE SET
                     instance_id = excluded.instance_id,
                     channel_id = excluded.channel_id,
                     root_post_id = excluded.root_post_id,
                     post_ids = excluded.post_ids,
                     started_at = excluded.started_at,
                     state = excluded.state"
            ))?
            .execute((
                &r.session_id,
                &r.user_message_id,
                &r.instance_id,
                &r.channel_id,
                &r.root_post_id,
                &post_ids,
                r.started_at,
                r.state,
            ))?;
            Ok(())
        })
        .await
    }

    async fn reply(
        &self,
        session_id: &str,
        user_message_id: &str,
    ) -> Result<Option<Reply>, StoreError> {
        let session = session_id.to_owned();
        let message = user_message_id.to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {REPLY_COLUMNS} FROM replies
                     WHERE session_id = ?1 AND user_message_id = ?2"
                ))?
                .query_row([&session, &message], reply_row)
                .optional()?)
        })
        .await
    }

    async fn streaming_replies(&self, instance_id: &str) -> Result<Vec<Reply>, StoreError> {
        let instance = instance_id.to_owned();
        self.call(move |conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {REPLY_COLUMNS} FROM replies
                     WHERE instance_id = ?1 AND state = ?2
                     ORDER BY started_at, session_id, user_message_id"
                ),
                (&instance, ReplyState::Streaming),
                reply_row,
            )
        })
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
        self.call(move |conn| {
            // Compare and set in one statement, so concurrent writers cannot
            // interleave between reading the old cursor and writing the new.
            conn.prepare_cached(
                "INSERT INTO cursors (channel_id, create_at, post_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (channel_id) DO UPDATE SET
                     create_at = excluded.create_at,
                     post_id = excluded.post_id
                 WHERE excluded.create_at > cursors.create_at
                    OR (excluded.create_at = cursors.create_at
                        AND excluded.post_id > cursors.post_id)",
            )?
            .execute((&channel, create_at, &post))?;
            Ok(())
        })
        .await
    }

    async fn cursors(&self) -> Result<Vec<(String, Millis)>, StoreError> {
        self.call(|conn| {
            query_all(
                conn,
                "SELECT channel_id, create_at FROM cursors ORDER BY channel_id",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        })
        .await
    }

    async fn add_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let s = schedule.clone();
        self.call(move |conn| {
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
        })
        .await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.call(|conn| {
            query_all(
                conn,
                &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"),
                [],
                schedule_row,
            )
        })
        .await
    }

    async fn schedule_by_name(&self, name: &str) -> Result<Option<Schedule>, StoreError> {
        let name = name.to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?1"
                ))?
                .query_row([&name], schedule_row)
                .optional()?)
        })
        .await
    }

    async fn remove_schedule(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            // The runs go with it (ON DELETE CASCADE; foreign keys are on).
            let changed = conn
                .prepare_cached("DELETE FROM schedules WHERE id = ?1")?
                .execute([&id])?;
            require_row(changed, || format!("schedule {id} does not exist"))
        })
        .await
    }

    async fn set_schedule_enabled(
        &self,
        id: &str,
        enabled: bool,
        at: Millis,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
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
        })
        .await
    }

    async fn claim_schedule_run(&self, run: &ScheduleRun) -> Result<RunClaim, StoreError> {
        let r = run.clone();
        self.call(move |conn| {
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
        })
        .await
    }

    async fn update_schedule_run(&self, run: &ScheduleRun) -> Result<(), StoreError> {
        let r = run.clone();
        self.call(move |conn| {
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
        })
        .await
    }

    async fn schedule_runs(
        &self,
        schedule_id: &str,
        limit: usize,
    ) -> Result<Vec<ScheduleRun>, StoreError> {
        let id = schedule_id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM schedule_runs WHERE schedule_id = ?1
                     ORDER BY scheduled_at DESC LIMIT ?2"
                ),
                (&id, limit),
                run_row,
            )
        })
        .await
    }

    async fn last_cron_run_at(&self, schedule_id: &str) -> Result<Option<Millis>, StoreError> {
        let id = schedule_id.to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT max(scheduled_at) FROM schedule_runs
                     WHERE schedule_id = ?1 AND trigger = ?2",
                )?
                .query_row((&id, RunTrigger::Cron), |row| row.get(0))?)
        })
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
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE schedule_runs SET state = ?2, finished_at = ?3, detail = ?4
                     WHERE instance_id = ?1 AND state = ?5",
                )?
                .execute((&instance, RunState::Failed, at, &detail, RunState::Running))?)
        })
        .await
    }

    async fn add_monitor(&self, monitor: &MonitorRow) -> Result<(), StoreError> {
        let m = monitor.clone();
        self.call(move |conn| {
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
        })
        .await
    }

    async fn remove_monitors(
        &self,
        session_id: &str,
        target: Option<&str>,
    ) -> Result<usize, StoreError> {
        let session = session_id.to_owned();
        let target = target.map(str::to_owned);
        self.call(move |conn| {
            Ok(match target {
                Some(target) => conn
                    .prepare_cached(
                        "DELETE FROM monitors WHERE session_id = ?1 AND target_user_id = ?2",
                    )?
                    .execute((&session, &target))?,
                None => conn
                    .prepare_cached("DELETE FROM monitors WHERE session_id = ?1")?
                    .execute([&session])?,
            })
        })
        .await
    }

    async fn monitors_of(&self, session_id: &str) -> Result<Vec<MonitorRow>, StoreError> {
        let session = session_id.to_owned();
        self.call(move |conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {MONITOR_COLUMNS} FROM monitors WHERE session_id = ?1
                     ORDER BY target_user_id"
                ),
                [&session],
                monitor_row,
            )
        })
        .await
    }

    async fn monitors(&self) -> Result<Vec<MonitorRow>, StoreError> {
        self.call(|conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {MONITOR_COLUMNS} FROM monitors ORDER BY session_id, target_user_id"
                ),
                [],
                monitor_row,
            )
        })
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
        self.call(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE monitors SET last_alert = ?3
                     WHERE session_id = ?1 AND target_user_id = ?2",
                )?
                .execute((&session, &target, &key))?;
            require_row(changed, || {
                format!("session {session} is not monitored for {target}")
            })
        })
        .await
    }
}
