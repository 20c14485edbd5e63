//! The databases contract tests run on: a temporary SQLite file, or a fresh
//! schema on the PostgreSQL server `OPENCODE_MM_TEST_DATABASE_URL` names.
//! Opening a [`Db`] twice gives two independent stores (two connections, or
//! two pools) on the same data, as two agents would have.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_postgres::NoTls;

use crate::store::{PgOptions, PgStore, SqliteStore, Store};

/// Names the PostgreSQL server the contract tests also run on.
pub(crate) const PG_ENV: &str = "OPENCODE_MM_TEST_DATABASE_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// One test's database.
pub(crate) enum Db {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres(PgSchema),
}

impl Db {
    /// A fresh, empty database; `None` for PostgreSQL when no server is
    /// configured. Panics when a configured server cannot be used.
    pub(crate) async fn new(backend: Backend) -> Option<Db> {
        match backend {
            Backend::Sqlite => {
                let (dir, path) = super::temp_db();
                Some(Db::Sqlite { _dir: dir, path })
            }
            Backend::Postgres => PgSchema::create().await.map(Db::Postgres),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// A new store on this database, as another agent would open it.
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        match self {
            Db::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).unwrap()),
            Db::Postgres(schema) => Arc::new(schema.open().await),
        }
    }

    /// Run raw SQL beside the store (another program, or a bug).
    pub(crate) async fn exec(&self, sql: &str) {
        match self {
            Db::Sqlite { path, .. } => super::raw(path).execute_batch(sql).unwrap(),
            Db::Postgres(schema) => schema.admin().await.batch_execute(sql).await.unwrap(),
        }
    }

    /// The first column of the first row `sql` returns, as text.
    pub(crate) async fn text(&self, sql: &str) -> String {
        match self {
            Db::Sqlite { path, .. } => super::raw(path)
                .query_row(sql, [], |row| row.get(0))
                .unwrap(),
            Db::Postgres(schema) => schema
                .admin()
                .await
                .query_one(sql, &[])
                .await
                .unwrap()
                .get(0),
        }
    }
}

/// A schema of its own on the test server, dropped with this value (also
/// when the test panics).
pub(crate) struct PgSchema {
    pub(crate) url: String,
    pub(crate) name: String,
}

impl PgSchema {
    /// Create a uniquely named schema; `None` when no server is configured.
    pub(crate) async fn create() -> Option<PgSchema> {
        let url = std::env::var(PG_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())?;
        let now = crate::store::now_millis() / 1000;
        let name = format!("omm_test_{now}_{:08x}", fastrand::u32(..));
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but the server cannot be used: {e}"));
        tokio::spawn(connection);
        // Schemas of runs killed before they could drop theirs: any over an
        // hour old.
        let stale = client
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'omm\\_test\\_%'",
                &[],
            )
            .await
            .unwrap();
        for row in stale {
            let old: String = row.get(0);
            let born = old.split('_').nth(2).and_then(|t| t.parse::<i64>().ok());
            if born.is_some_and(|born| born < now - 3600) {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {old} CASCADE"))
                    .await;
            }
        }
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        Some(PgSchema { url, name })
    }

    /// Pool settings that put a store in this schema.
    pub(crate) fn options(&self) -> PgOptions {
        PgOptions {
            schema: Some(self.name.clone()),
            ..PgOptions::default()
        }
    }

    pub(crate) async fn open(&self) -> PgStore {
        PgStore::connect_with(&self.url, self.options())
            .await
            .unwrap()
    }

    /// A plain connection whose search path is this schema.
    pub(crate) async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("SET search_path TO {}", self.name))
            .await
            .unwrap();
        client
    }
}

impl Drop for PgSchema {
    /// Drop the schema from a thread of its own: `Drop` cannot wait on the
    /// test's runtime, and a panicking test must not leave it behind.
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!(
            "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE",
            self.name
        );
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&sql).await
            })?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            let _ = writeln!(
                std::io::stderr(),
                "warning: test schema {} was not dropped: {dropped:?}",
                self.name
            );
        }
    }
}

/// The one line a plain `cargo test` shows when the PostgreSQL half of the
/// contract did not run. Written to stderr directly: the test harness
/// captures `eprintln!` of passing tests.
#[test]
fn postgres_contract_tests_run_when_the_test_database_url_is_set() {
    if std::env::var(PG_ENV).is_ok_and(|u| !u.trim().is_empty()) {
        return;
    }
    let _ = writeln!(
        std::io::stderr(),
        "note: PostgreSQL store tests did not run: set {PG_ENV}=postgres://postgres@127.0.0.1:5432/test \
         (scripts/test.sh does)"
    );
}
