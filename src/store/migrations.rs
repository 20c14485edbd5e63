//! The schema history: one ordered list of numbered migrations, each
//! written for SQLite and for PostgreSQL with the same meaning (same tables,
//! columns, keys and indexes; integers are BIGINT milliseconds, the reply's
//! post id list JSONB, flags BOOLEAN on PostgreSQL).
//!
//! Each migration runs once, inside the same transaction that records it in
//! `schema_migrations`, so a crash never leaves half a schema behind. Two
//! agents starting at once take turns instead of both creating the tables:
//! on SQLite the transaction is IMMEDIATE (this file's [`migrate`]), on
//! PostgreSQL it holds an advisory lock (`postgres::migrate`). A database
//! that already records a version this build does not know was written by a
//! newer release; it is refused untouched rather than used with a schema we
//! cannot read.
//!
//! Released migrations are never edited, only appended.
//!
//! Enum columns hold plain text without CHECK constraints: adding a value
//! later would otherwise need a table rebuild in SQLite. Reading validates
//! every value instead (see `StoreError::Corrupt`).

use std::collections::BTreeSet;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// One step of the schema history, in both dialects: a version exists for
/// both backends or for neither, so a database moved between them (and the
/// code reading it) always means the same thing by "version N".
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sqlite: "
        CREATE TABLE instances (
            id            TEXT    NOT NULL PRIMARY KEY,
            host          TEXT    NOT NULL,
            directory     TEXT    NOT NULL,
            owner_user_id TEXT,
            pid           INTEGER NOT NULL,
            started_at    INTEGER NOT NULL,
            heartbeat_at  INTEGER NOT NULL
        );

        -- No foreign keys to instances: claims and threads outlive the
        -- instance rows that created them, which may be pruned.
        CREATE TABLE threads (
            root_post_id TEXT    NOT NULL PRIMARY KEY,
            channel_id   TEXT    NOT NULL,
            session_id   TEXT    NOT NULL,
            instance_id  TEXT    NOT NULL,
            created_by   TEXT    NOT NULL,
            created_at   INTEGER NOT NULL,
            status       TEXT    NOT NULL,
            model        TEXT
        );
        CREATE INDEX threads_by_session ON threads (session_id, created_at);
        CREATE INDEX threads_by_instance ON threads (instance_id, created_at);

        -- The primary key is what makes a claim exactly-once.
        CREATE TABLE claims (
            post_id      TEXT    NOT NULL PRIMARY KEY,
            instance_id  TEXT    NOT NULL,
            claimed_at   INTEGER NOT NULL,
            state        TEXT    NOT NULL,
            session_id   TEXT,
            message_id   TEXT,
            root_post_id TEXT,
            channel_id   TEXT
        );
        CREATE INDEX claims_by_instance ON claims (instance_id, state, claimed_at);

        CREATE TABLE replies (
            session_id      TEXT    NOT NULL,
            user_message_id TEXT    NOT NULL,
            instance_id     TEXT    NOT NULL,
            channel_id      TEXT    NOT NULL,
            root_post_id    TEXT    NOT NULL,
            post_ids        TEXT    NOT NULL,  -- JSON array of post ids, in order
            started_at      INTEGER NOT NULL,
            state           TEXT    NOT NULL,
            PRIMARY KEY (session_id, user_message_id)
        );
        CREATE INDEX replies_by_instance ON replies (instance_id, state, started_at);

        CREATE TABLE cursors (
            channel_id TEXT    NOT NULL PRIMARY KEY,
            create_at  INTEGER NOT NULL,
            post_id    TEXT    NOT NULL
        );
    ",
        postgres: r#"
        -- Ids and names compare bytewise (COLLATE "C"), as SQLite compares
        -- them, whatever the database's locale: ordering and the cursor's
        -- tie-break must not depend on where the server runs.
        CREATE TABLE instances (
            id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            host          TEXT   NOT NULL,
            directory     TEXT   NOT NULL,
            owner_user_id TEXT,
            pid           BIGINT NOT NULL,
            started_at    BIGINT NOT NULL,
            heartbeat_at  BIGINT NOT NULL
        );

        CREATE TABLE threads (
            root_post_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            channel_id   TEXT COLLATE "C" NOT NULL,
            session_id   TEXT COLLATE "C" NOT NULL,
            instance_id  TEXT COLLATE "C" NOT NULL,
            created_by   TEXT   NOT NULL,
            created_at   BIGINT NOT NULL,
            status       TEXT   NOT NULL,
            model        TEXT
        );
        CREATE INDEX threads_by_session ON threads (session_id, created_at);
        CREATE INDEX threads_by_instance ON threads (instance_id, created_at);

        CREATE TABLE claims (
            post_id      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            instance_id  TEXT COLLATE "C" NOT NULL,
            claimed_at   BIGINT NOT NULL,
            state        TEXT   NOT NULL,
            session_id   TEXT,
            message_id   TEXT,
            root_post_id TEXT,
            channel_id   TEXT
        );
        CREATE INDEX claims_by_instance ON claims (instance_id, state, claimed_at);

        CREATE TABLE replies (
            session_id      TEXT COLLATE "C" NOT NULL,
            user_message_id TEXT COLLATE "C" NOT NULL,
            instance_id     TEXT COLLATE "C" NOT NULL,
            channel_id      TEXT   NOT NULL,
            root_post_id    TEXT   NOT NULL,
            post_ids        JSONB  NOT NULL,  -- array of post ids, in order
            started_at      BIGINT NOT NULL,
            state           TEXT   NOT NULL,
            PRIMARY KEY (session_id, user_message_id)
        );
        CREATE INDEX replies_by_instance ON replies (instance_id, state, started_at);

        CREATE TABLE cursors (
            channel_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            create_at  BIGINT NOT NULL,
            post_id    TEXT COLLATE "C" NOT NULL
        );
    "#,
    },
    Migration {
        version: 2,
        name: "schedules",
        sqlite: "
        -- The expression is kept exactly as typed and the zone by its IANA
        -- name: next runs are always computed, never stored as local times.
        CREATE TABLE schedules (
            id             TEXT    NOT NULL PRIMARY KEY,
            name           TEXT    NOT NULL UNIQUE,
            cron           TEXT    NOT NULL,
            timezone       TEXT    NOT NULL,
            prompt         TEXT    NOT NULL,
            target_user_id TEXT    NOT NULL,
            agent          TEXT,
            model          TEXT,
            -- The project whose OpenCode runs it: only agents serving this
            -- directory take its runs.
            directory      TEXT    NOT NULL,
            enabled        INTEGER NOT NULL,
            created_by     TEXT    NOT NULL,
            created_at     INTEGER NOT NULL,
            -- Scheduled times at or before this are not owed (creation, or
            -- the last time it was enabled).
            active_since   INTEGER NOT NULL
        );

        -- One row per scheduled time that was run, skipped or missed, and
        -- per manual run. The unique key is what makes a scheduled time run
        -- once across agents sharing the file. Scheduled times are whole
        -- minutes; manual runs never are, so the two cannot collide.
        CREATE TABLE schedule_runs (
            schedule_id  TEXT    NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
            scheduled_at INTEGER NOT NULL,
            trigger      TEXT    NOT NULL,
            instance_id  TEXT    NOT NULL,
            claimed_at   INTEGER NOT NULL,
            deadline_at  INTEGER NOT NULL,
            state        TEXT    NOT NULL,
            session_id   TEXT,
            finished_at  INTEGER,
            detail       TEXT,
            post_id      TEXT,
            UNIQUE (schedule_id, scheduled_at)
        );
        CREATE INDEX schedule_runs_by_state ON schedule_runs (schedule_id, state);
        CREATE INDEX schedule_runs_by_instance ON schedule_runs (instance_id, state);
    ",
        postgres: r#"
        CREATE TABLE schedules (
            id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            name           TEXT COLLATE "C" NOT NULL UNIQUE,
            cron           TEXT    NOT NULL,
            timezone       TEXT    NOT NULL,
            prompt         TEXT    NOT NULL,
            target_user_id TEXT    NOT NULL,
            agent          TEXT,
            model          TEXT,
            directory      TEXT    NOT NULL,
            enabled        BOOLEAN NOT NULL,
            created_by     TEXT    NOT NULL,
            created_at     BIGINT  NOT NULL,
            active_since   BIGINT  NOT NULL
        );

        CREATE TABLE schedule_runs (
            schedule_id  TEXT COLLATE "C" NOT NULL
                         REFERENCES schedules (id) ON DELETE CASCADE,
            scheduled_at BIGINT NOT NULL,
            trigger      TEXT   NOT NULL,
            instance_id  TEXT COLLATE "C" NOT NULL,
            claimed_at   BIGINT NOT NULL,
            deadline_at  BIGINT NOT NULL,
            state        TEXT   NOT NULL,
            session_id   TEXT,
            finished_at  BIGINT,
            detail       TEXT,
            post_id      TEXT,
            UNIQUE (schedule_id, scheduled_at)
        );
        CREATE INDEX schedule_runs_by_state ON schedule_runs (schedule_id, state);
        CREATE INDEX schedule_runs_by_instance ON schedule_runs (instance_id, state);
    "#,
    },
    Migration {
        version: 3,
        name: "selections",
        sqlite: "
        -- The session a DM is attached to with `!use`: top-level posts in
        -- the channel go to this thread instead of starting a new session.
        CREATE TABLE selections (
            channel_id   TEXT    NOT NULL PRIMARY KEY,
            root_post_id TEXT    NOT NULL,
            updated_at   INTEGER NOT NULL
        );
    ",
        postgres: r#"
        CREATE TABLE selections (
            channel_id   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            root_post_id TEXT   NOT NULL,
            updated_at   BIGINT NOT NULL
        );
    "#,
    },
    Migration {
        version: 4,
        name: "monitors",
        sqlite: "
        -- Attention alerts: who is told when a session needs someone. One
        -- row per (session, person); `last_alert` is the key of the last
        -- state that person was told about, so an alert is not repeated,
        -- not even after a restart.
        CREATE TABLE monitors (
            session_id     TEXT    NOT NULL,
            target_user_id TEXT    NOT NULL,
            persistent     INTEGER NOT NULL,
            created_at     INTEGER NOT NULL,
            last_alert     TEXT,
            PRIMARY KEY (session_id, target_user_id)
        );
    ",
        postgres: r#"
        CREATE TABLE monitors (
            session_id     TEXT COLLATE "C" NOT NULL,
            target_user_id TEXT COLLATE "C" NOT NULL,
            persistent     BOOLEAN NOT NULL,
            created_at     BIGINT  NOT NULL,
            last_alert     TEXT,
            PRIMARY KEY (session_id, target_user_id)
        );
    "#,
    },
    Migration {
        version: 5,
        name: "reply_pending_post",
        sqlite: "
        -- The `pending_post_id` of the reply post being created, written
        -- before the create call: after a crash the post it made is found
        -- (by that id in its props) instead of being posted twice.
        ALTER TABLE replies ADD COLUMN pending_post_id TEXT;
    ",
        postgres: r#"
        ALTER TABLE replies ADD COLUMN pending_post_id TEXT;
    "#,
    },
    Migration {
        version: 6,
        name: "channels",
        sqlite: "
        -- Each owner's teammates (several owners may share one bot and one
        -- database).
        CREATE TABLE teammates (
            owner_user_id TEXT    NOT NULL,
            user_id       TEXT    NOT NULL,
            username      TEXT    NOT NULL,
            added_by      TEXT    NOT NULL,
            added_at      INTEGER NOT NULL,
            PRIMARY KEY (owner_user_id, user_id)
        );
        -- The old plugin's team file was imported for this owner: never again.
        CREATE TABLE team_imports (
            owner_user_id TEXT    NOT NULL PRIMARY KEY,
            source        TEXT    NOT NULL,
            imported_at   INTEGER NOT NULL
        );
        -- Standing approvals in a thread: a user id, or `*` for everyone.
        CREATE TABLE thread_grants (
            root_post_id TEXT    NOT NULL,
            grantee      TEXT    NOT NULL,
            granted_by   TEXT    NOT NULL,
            granted_at   INTEGER NOT NULL,
            PRIMARY KEY (root_post_id, grantee)
        );
        -- A guest's post held for approval; kept after the decision, so a
        -- late answer finds it decided.
        CREATE TABLE guest_requests (
            post_id         TEXT    NOT NULL PRIMARY KEY,
            request_post_id TEXT    NOT NULL,
            root_post_id    TEXT    NOT NULL,
            channel_id      TEXT    NOT NULL,
            instance_id     TEXT    NOT NULL,
            guest_user_id   TEXT    NOT NULL,
            guest_username  TEXT    NOT NULL,
            created_at      INTEGER NOT NULL,
            expires_at      INTEGER NOT NULL,
            state           TEXT    NOT NULL,
            decided_by      TEXT,
            decided_at      INTEGER
        );
        CREATE INDEX guest_requests_pending ON guest_requests (instance_id, state);
    ",
        postgres: r#"
        CREATE TABLE teammates (
            owner_user_id TEXT COLLATE "C" NOT NULL,
            user_id       TEXT COLLATE "C" NOT NULL,
            username      TEXT COLLATE "C" NOT NULL,
            added_by      TEXT NOT NULL,
            added_at      BIGINT NOT NULL,
            PRIMARY KEY (owner_user_id, user_id)
        );
        CREATE TABLE team_imports (
            owner_user_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            source        TEXT NOT NULL,
            imported_at   BIGINT NOT NULL
        );
        CREATE TABLE thread_grants (
            root_post_id TEXT COLLATE "C" NOT NULL,
            grantee      TEXT COLLATE "C" NOT NULL,
            granted_by   TEXT NOT NULL,
            granted_at   BIGINT NOT NULL,
            PRIMARY KEY (root_post_id, grantee)
        );
        CREATE TABLE guest_requests (
            post_id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            request_post_id TEXT NOT NULL,
            root_post_id    TEXT COLLATE "C" NOT NULL,
            channel_id      TEXT NOT NULL,
            instance_id     TEXT COLLATE "C" NOT NULL,
            guest_user_id   TEXT NOT NULL,
            guest_username  TEXT NOT NULL,
            created_at      BIGINT NOT NULL,
            expires_at      BIGINT NOT NULL,
            state           TEXT NOT NULL,
            decided_by      TEXT,
            decided_at      BIGINT
        );
        CREATE INDEX guest_requests_pending ON guest_requests (instance_id, state);
    "#,
    },
    Migration {
        version: 7,
        name: "merged_threads",
        sqlite: "
        -- Threads merged into another with `!merge`: locked, and prompts
        -- there are answered with a pointer to where the talk went on.
        CREATE TABLE merged_threads (
            root_post_id      TEXT    NOT NULL PRIMARY KEY,
            channel_id        TEXT    NOT NULL,
            into_root_post_id TEXT    NOT NULL,
            into_channel_id   TEXT    NOT NULL,
            merged_by         TEXT    NOT NULL,
            merged_at         INTEGER NOT NULL
        );
    ",
        postgres: r#"
        CREATE TABLE merged_threads (
            root_post_id      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            channel_id        TEXT   NOT NULL,
            into_root_post_id TEXT   NOT NULL,
            into_channel_id   TEXT   NOT NULL,
            merged_by         TEXT   NOT NULL,
            merged_at         BIGINT NOT NULL
        );
    "#,
    },
];

/// The newest schema version this build knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Bring a SQLite schema up to [`latest_version`]; a no-op when it already
/// is.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER NOT NULL PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
         );",
    )?;
    let applied = {
        let mut stmt = tx.prepare("SELECT version FROM schema_migrations")?;
        let rows = stmt.query_map([], |row| row.get::<_, i64>(0))?;
        rows.collect::<Result<BTreeSet<i64>, _>>()?
    };
    let known = latest_version();
    if let Some(&found) = applied.last()
        && found > known
    {
        // Dropping the transaction rolls back; the file stays as it was.
        return Err(StoreError::NewerSchema { found, known });
    }
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.execute_batch(migration.sqlite).map_err(|e| {
            StoreError::Sqlite(format!(
                "migration {} ({}) failed: {e}",
                migration.version, migration.name
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            (migration.version, migration.name),
        )?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied state database migration"
        );
    }
    tx.commit()?;
    Ok(())
}
