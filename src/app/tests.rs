//! Which store the configuration opens.

use super::*;

fn config(env: &[(&str, &str)]) -> Config {
    let env: std::collections::HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_sources(&|k| env.get(k).cloned(), None)
}

#[tokio::test]
async fn a_sqlite_url_or_path_opens_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a/state.db"), dir.path().join("b/state.db"));
    for (key, value, path) in [
        ("OPENCODE_MM_STATE_DB", a.display().to_string(), &a),
        (
            "OPENCODE_MM_DATABASE_URL",
            format!("sqlite:{}", b.display()),
            &b,
        ),
    ] {
        let store = open_store(&config(&[(key, &value)])).await.unwrap();
        assert!(store.claim_post("p1", "i1", 1).await.unwrap());
        assert!(path.exists(), "{key}");
    }
}

/// `OPENCODE_MM_DATABASE_URL=postgres://…` opens PostgreSQL, in the schema
/// the URL's `options` name; an unreachable server is an error that shows
/// no password. Needs `OPENCODE_MM_TEST_DATABASE_URL`.
#[tokio::test]
async fn a_postgres_url_opens_postgres() {
    let Some(base) = std::env::var("OPENCODE_MM_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        return;
    };
    let schema = format!("omm_app_{}_{:08x}", std::process::id(), fastrand::u32(..));
    let (admin, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.query_pairs_mut()
        .append_pair("options", &format!("-csearch_path={schema}"));
    let opened = open_store(&config(&[("OPENCODE_MM_DATABASE_URL", url.as_str())])).await;
    let claims: Result<i64, _> = admin
        .query_one(&format!("SELECT count(*) FROM {schema}.claims"), &[])
        .await
        .map(|row| row.get(0));
    if let Ok(store) = &opened {
        assert!(store.claim_post("p1", "i1", 1).await.unwrap());
    }
    let after: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {schema}.claims"), &[])
        .await
        .unwrap()
        .get(0);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    assert!(opened.is_ok(), "{:?}", opened.err());
    assert_eq!(
        (claims.unwrap(), after),
        (0, 1),
        "the tables are in {schema}"
    );

    let down = config(&[(
        "OPENCODE_MM_DATABASE_URL",
        "postgres://agent:pw-0f-agent@127.0.0.1:1/omm?connect_timeout=2",
    )]);
    let err = open_store(&down).await.err().unwrap().to_string();
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("pw-0f-agent"), "{err}");
}
