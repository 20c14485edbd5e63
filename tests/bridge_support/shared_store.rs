//! The store several agents share in a test: PostgreSQL (a fresh schema,
//! dropped afterwards) when `OPENCODE_MM_TEST_DATABASE_URL` is set, as
//! `scripts/test.sh` does; else a SQLite file in a temporary folder.

use std::sync::Arc;

use opencode_mattermost::store::{PgOptions, PgStore, SqliteStore, Store};

const PG_ENV: &str = "OPENCODE_MM_TEST_DATABASE_URL";

pub struct SharedStore {
    /// The setting that points an agent at it.
    pub env: (String, String),
    /// The test's own handle, to look at what the agents wrote.
    pub store: Arc<dyn Store>,
    /// `postgres` or `sqlite`, for messages.
    pub kind: &'static str,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl SharedStore {
    pub async fn new() -> SharedStore {
        match Self::postgres_url() {
            Some(url) => Self::postgres(url).await,
            None => Self::sqlite(),
        }
    }

    /// The PostgreSQL server tests may use, if the run has one.
    pub fn postgres_url() -> Option<String> {
        std::env::var(PG_ENV).ok().filter(|u| !u.is_empty())
    }

    pub fn sqlite() -> SharedStore {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        SharedStore {
            env: ("OPENCODE_MM_STATE_DB".into(), db.display().to_string()),
            store: Arc::new(SqliteStore::open(&db).unwrap()),
            kind: "sqlite",
            _dir: Some(dir),
            schema: None,
        }
    }

    pub async fn postgres(url: String) -> SharedStore {
        let name = format!("omm_e2e_{}_{}", std::process::id(), fastrand::u32(..));
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but the server cannot be used: {e}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let agent_url = format!("{url}{sep}options=-c%20search_path%3D{name}");
        let store = PgStore::connect_with(
            &url,
            PgOptions {
                schema: Some(name.clone()),
                ..PgOptions::default()
            },
        )
        .await
        .unwrap();
        SharedStore {
            env: ("OPENCODE_MM_DATABASE_URL".into(), agent_url),
            store: Arc::new(store),
            kind: "postgres",
            _dir: None,
            schema: Some((url, name)),
        }
    }

    /// The agent setting as the `Rig::env` extra pair.
    pub fn setting(&self) -> (&str, &str) {
        (self.env.0.as_str(), self.env.1.as_str())
    }
}

impl Drop for SharedStore {
    /// Drops the schema from a thread of its own: `Drop` cannot wait on the
    /// test's runtime.
    fn drop(&mut self) {
        let Some((url, name)) = self.schema.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}
