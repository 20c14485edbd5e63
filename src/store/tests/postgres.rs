//! Tests of PostgreSQL only: the URL and its password, TLS, the schema
//! history (same tables as SQLite, migrations raced by agents starting at
//! once, newer schemas refused), and text PostgreSQL cannot hold. All but
//! the URL tests need `OPENCODE_MM_TEST_DATABASE_URL` and return at once
//! without it.

use std::collections::BTreeMap;

use pretty_assertions::assert_eq;

use super::*;
use crate::store::migrations::{MIGRATIONS, latest_version};

// ---- the URL -------------------------------------------------------------------

#[test]
fn redaction_removes_every_password_and_keeps_the_rest() {
    for (url, shown) in [
        (
            "postgres://agent:s3cret-pw@db.example.com:5432/omm?sslmode=require",
            "postgres://agent:[redacted]@db.example.com:5432/omm?sslmode=require",
        ),
        (
            "postgresql://agent:p%40ss%2Fw0rd@db/omm",
            "postgresql://agent:[redacted]@db/omm",
        ),
        (
            "postgres://agent@db/omm?password=s3cret-pw&sslmode=require",
            "postgres://agent@db/omm?password=[redacted]&sslmode=require",
        ),
        (
            "postgres://:s3cret-pw@db/omm?PASSWORD=s3cret-pw",
            "postgres://:[redacted]@db/omm?PASSWORD=[redacted]",
        ),
        ("postgres://agent@db/omm", "postgres://agent@db/omm"),
        (
            "sqlite:/var/lib/omm/state.db",
            "sqlite:/var/lib/omm/state.db",
        ),
        // Unparsable: nothing but the scheme is shown.
        (
            "postgres://agent:s3cret-pw@[bad/omm",
            "postgres://[redacted]",
        ),
        ("s3cret-pw", "[redacted]"),
    ] {
        let got = redact_database_url(url);
        assert_eq!(got, shown, "{url}");
        assert!(!got.contains("s3cret"), "{got}");
    }
}

#[test]
fn urls_are_told_apart_and_passwords_found() {
    assert!(is_postgres_url("postgres://db/omm"));
    assert!(is_postgres_url(" PostgreSQL://db/omm"));
    assert!(!is_postgres_url("sqlite:/tmp/state.db"));
    assert!(!is_postgres_url("/tmp/state.db"));
    assert!(database_url_has_password("postgres://a:b@db/omm"));
    assert!(database_url_has_password("postgres://a@db/omm?password=b"));
    assert!(database_url_has_password("not a url, maybe a secret"));
    assert!(!database_url_has_password("postgres://a@db/omm"));
}

/// Connecting with a wrong or unreachable URL: the error names the server
/// without the password, whatever went wrong.
#[tokio::test]
async fn connection_errors_never_show_the_password() {
    let options = PgOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        ..PgOptions::default()
    };
    for url in [
        // Nothing listens on port 1.
        "postgres://agent:hunter2-secret@127.0.0.1:1/omm",
        "postgres://agent@127.0.0.1:1/omm?password=hunter2-secret",
        // Rejected by the driver's parser.
        "postgres://agent:hunter2-secret@127.0.0.1:5432/omm?sslmode=sometimes",
    ] {
        let err = PgStore::connect_with(url, options.clone())
            .await
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
    }
    let err = PgStore::connect_with(
        "postgres://a@127.0.0.1:1/omm",
        PgOptions {
            schema: Some("Robert'); DROP TABLE x;--".into()),
            ..options
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("schema"), "{err}");
}

// ---- TLS -----------------------------------------------------------------------

/// `sslmode=require` makes the connection TLS and the server's certificate
/// is verified: the test server's certificate names `localhost`, so a
/// connection to 127.0.0.1 is refused, and one to `localhost` is encrypted
/// (where the system trusts that certificate, as Debian's snake-oil one is
/// on the CI machines). A URL without `sslmode` stays plain.
#[tokio::test]
async fn sslmode_require_uses_tls_and_verifies_the_server() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let tls_url = with_param(&schema.url, "sslmode", "require");
    let err = PgStore::connect_with(&tls_url, schema.options())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("certificate"), "{text}");

    // libpq's verify-full is accepted and means the same here.
    let mut by_name = url::Url::parse(&with_param(&schema.url, "sslmode", "verify-full")).unwrap();
    if by_name.host_str() == Some("127.0.0.1") {
        by_name.set_host(Some("localhost")).unwrap();
        let tls_name = format!("tls_{}", schema.name);
        let url = with_param(by_name.as_str(), "application_name", &tls_name);
        match PgStore::connect_with(&url, schema.options()).await {
            Ok(store) => {
                assert_eq!(ssl_of(&schema, &tls_name).await, vec![true]);
                drop(store);
            }
            Err(e) => assert!(e.to_string().contains("certificate"), "{e}"),
        }
    }

    let plain_name = format!("plain_{}", schema.name);
    let plain_url = with_param(&schema.url, "application_name", &plain_name);
    let plain = PgStore::connect_with(&plain_url, schema.options())
        .await
        .unwrap();
    assert_eq!(ssl_of(&schema, &plain_name).await, vec![false]);
    drop(plain);
}

/// Whether each connection of the named application is encrypted.
async fn ssl_of(schema: &PgSchema, application: &str) -> Vec<bool> {
    schema
        .admin()
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&application],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn with_param(url: &str, key: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.query_pairs_mut().append_pair(key, value);
    parsed.to_string()
}

// ---- the schema history --------------------------------------------------------

/// Both dialects create the same tables with the same columns, in the same
/// order, with the same nullability, and the same indexes.
#[tokio::test]
async fn both_dialects_build_the_same_schema() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    drop(schema.open().await);
    let admin = schema.admin().await;
    let mut pg: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for row in admin
        .query(
            "SELECT table_name::text, column_name::text, is_nullable = 'NO'
             FROM information_schema.columns WHERE table_schema = $1
             ORDER BY table_name, ordinal_position",
            &[&schema.name],
        )
        .await
        .unwrap()
    {
        pg.entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2)));
    }
    let pg_indexes: Vec<String> = admin
        .query(
            "SELECT indexname::text FROM pg_indexes
             WHERE schemaname = $1 AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'
             ORDER BY indexname",
            &[&schema.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    let mut conn = Connection::open_in_memory().unwrap();
    crate::store::migrations::migrate(&mut conn).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut sqlite: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for table in tables {
        let columns = conn
            .prepare(&format!(
                "SELECT name, \"notnull\" OR pk FROM pragma_table_info('{table}') ORDER BY cid"
            ))
            .unwrap()
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        sqlite.insert(table, columns);
    }
    let sqlite_indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index'
             AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sqlite, pg);
    assert_eq!(sqlite_indexes, pg_indexes);
}

/// Agents starting at once on an empty database: every one of them
/// migrates (or finds the work done) and each step is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_starting_at_once_migrate_once() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let opened = futures::future::join_all((0..6).map(|_| schema.open())).await;
    assert_eq!(opened.len(), 6);
    let admin = schema.admin().await;
    let versions: Vec<i64> = admin
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(versions, known);
    // And again on a migrated database: nothing changes, data stays.
    assert!(opened[0].claim_post("p1", "i1", 1).await.unwrap());
    let again = schema.open().await;
    assert!(!again.claim_post("p1", "i2", 2).await.unwrap());
    let count: i64 = admin
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn newer_schema_is_refused_untouched() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    drop(schema.open().await);
    let future = latest_version() + 1;
    let admin = schema.admin().await;
    admin
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')",
            &[&future],
        )
        .await
        .unwrap();
    let err = PgStore::connect_with(&schema.url, schema.options())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NewerSchema {
            found: future,
            known: latest_version()
        }
    );
    let message = err.to_string();
    assert!(message.contains("newer opencode-mattermost"), "{message}");
    assert!(message.contains("OPENCODE_MM_DATABASE_URL"), "{message}");
    let max: i64 = admin
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(max, future, "the refusal wrote nothing");
}

/// PostgreSQL text cannot hold NUL: such a value is refused with an error
/// that says so (SQLite keeps it; see `database.rs`), nothing is written.
#[tokio::test]
async fn text_with_nul_is_a_clear_error() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let store = schema.open().await;
    let m = MonitorRow {
        session_id: "a\0b".into(),
        target_user_id: "t".into(),
        persistent: true,
        created_at: 1,
        last_alert: None,
    };
    let err = store.add_monitor(&m).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Postgres(ref t) if t.contains("NUL")),
        "{err:?}"
    );
    assert!(store.monitors().await.unwrap().is_empty());
}
