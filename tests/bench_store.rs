//! Timings of the state store on both backends: SQLite (a temporary file)
//! and PostgreSQL (a fresh schema on the server `OPENCODE_MM_TEST_DATABASE_URL`
//! names, dropped afterwards). Run as
//! `cargo test --release --test bench_store -- --ignored --nocapture`.
//! Prints numbers only; nothing about timing is asserted, but every race is
//! checked to have been won exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use opencode_mattermost::store::{
    ClaimState, PgOptions, PgStore, Reply, ReplyState, SqliteStore, Store,
};
use tokio::task::JoinSet;
use tokio_postgres::NoTls;

const SEQUENTIAL: usize = 2_000;
const RACED: usize = 2_000;
const TASKS_PER_STORE: usize = 4;
const MIXED_ROUNDS: usize = 500;

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Median and 99th percentile of `samples`.
fn spread(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn per_second(ops: usize, took: Duration) -> String {
    format!("{:.0}/s", ops as f64 / took.as_secs_f64())
}

/// One backend's figures, printed as they come.
async fn bench(name: &str, open: impl AsyncFn() -> Arc<dyn Store>) {
    // One caller claiming fresh posts one after another.
    let store = open().await;
    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    let t0 = Instant::now();
    for i in 0..SEQUENTIAL {
        let t = Instant::now();
        assert!(
            store
                .claim_post(&format!("seq-{i}"), "i1", 1)
                .await
                .unwrap()
        );
        latencies.push(t.elapsed());
    }
    let took = t0.elapsed();
    let (median, p99) = spread(&mut latencies);
    println!(
        "{name}: claim_post, one caller: {} ({SEQUENTIAL} in {}), median {}, p99 {}",
        per_second(SEQUENTIAL, took),
        ms(took),
        ms(median),
        ms(p99)
    );

    // Two stores (two agents), each with several callers, racing for the
    // same posts: every post is tried by both, won by one.
    let stores = [open().await, open().await];
    let mut tasks = JoinSet::new();
    let t0 = Instant::now();
    for (n, store) in stores.iter().enumerate() {
        for task in 0..TASKS_PER_STORE {
            let store = Arc::clone(store);
            tasks.spawn(async move {
                let mut won = 0usize;
                let mut latencies = Vec::new();
                for i in (task..RACED).step_by(TASKS_PER_STORE) {
                    let t = Instant::now();
                    let instance = format!("i{n}");
                    won += usize::from(
                        store
                            .claim_post(&format!("race-{i}"), &instance, 1)
                            .await
                            .unwrap(),
                    );
                    latencies.push(t.elapsed());
                }
                (won, latencies)
            });
        }
    }
    let (mut won, mut latencies) = (0, Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (w, l) = joined.unwrap();
        won += w;
        latencies.extend(l);
    }
    let took = t0.elapsed();
    assert_eq!(won, RACED, "each raced post won exactly once");
    let (median, p99) = spread(&mut latencies);
    println!(
        "{name}: claim_post raced, 2 stores x {TASKS_PER_STORE} callers: {} attempts \
         ({} in {}), median {}, p99 {}",
        per_second(2 * RACED, took),
        2 * RACED,
        ms(took),
        ms(median),
        ms(p99)
    );

    // A post's life as the bridge lives it: claim, mark prompted, save the
    // reply twice while it streams, read it back, advance the cursor, done.
    let t0 = Instant::now();
    for i in 0..MIXED_ROUNDS {
        let post = format!("mixed-{i}");
        store.claim_post(&post, "i1", 1).await.unwrap();
        let mut claim = store.claim(&post).await.unwrap().unwrap();
        claim.state = ClaimState::Prompted;
        store.update_claim(&claim).await.unwrap();
        let mut reply = Reply {
            session_id: "ses_bench".into(),
            user_message_id: format!("msg_{i}"),
            instance_id: "i1".into(),
            channel_id: "chan".into(),
            root_post_id: post.clone(),
            post_ids: vec![format!("reply-{i}")],
            started_at: 1,
            state: ReplyState::Streaming,
            pending_post_id: None,
        };
        store.save_reply(&reply).await.unwrap();
        reply.state = ReplyState::Done;
        store.save_reply(&reply).await.unwrap();
        store
            .reply("ses_bench", &reply.user_message_id)
            .await
            .unwrap();
        store.advance_cursor("chan", i as i64, &post).await.unwrap();
        claim.state = ClaimState::Done;
        store.update_claim(&claim).await.unwrap();
    }
    let took = t0.elapsed();
    let ops = MIXED_ROUNDS * 8;
    println!(
        "{name}: mixed operations, one caller: {} ({ops} in {})",
        per_second(ops, took),
        ms(took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn bench_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    bench("SQLite", async || {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        store
    })
    .await;

    let Some(url) = std::env::var("OPENCODE_MM_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("PostgreSQL: skipped (set OPENCODE_MM_TEST_DATABASE_URL)");
        return;
    };
    let schema = format!("omm_bench_{}", std::process::id());
    let (admin, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let options = PgOptions {
        schema: Some(schema.clone()),
        ..PgOptions::default()
    };
    bench("PostgreSQL", async || {
        let store: Arc<dyn Store> =
            Arc::new(PgStore::connect_with(&url, options.clone()).await.unwrap());
        store
    })
    .await;
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
