//! Bursts of new sessions and one long reply, with Mattermost's rate limiter
//! off and at its defaults (10/s, burst 100), against one real OpenCode, the
//! scripted model and the simulator. Run by `scripts/bench.sh` as
//! `cargo test --release --test bench_burst -- --ignored --nocapture`.
//! Prints numbers only; nothing about timing is asserted, but every reply
//! must be complete and byte-exact, since a fast but short reply is no result.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::time::{Duration, Instant};

use bridge_support::Rig;
use bridge_support::bench::{Burst, Clock};
use harness::model::{ScriptedModel, Step};
use mattermost_sim::RateLimit;

/// About 1.8 KB, streamed at ~1,600 characters a second.
fn reply_text(tag: &str) -> String {
    (1..=40)
        .map(|i| format!("{tag} line {i}: streaming text at a model's pace.\n"))
        .collect()
}

/// Exactly 25,000 bytes, streamed over 10 s (40 bytes every 16 ms).
fn long_text() -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < 25_000 {
        i += 1;
        s.push_str(&format!(
            "long reply line {i:04}: a model writing at length.\n"
        ));
    }
    s.truncate(25_000);
    s
}

fn expected(tag: &str) -> String {
    if tag == "long" {
        long_text()
    } else {
        reply_text(tag)
    }
}

const MATTERMOST_DEFAULT_LIMIT: RateLimit = RateLimit {
    per_second: 10,
    burst: 100,
};

/// Posts `stream <tag>` for every tag at once as new DMs and waits until
/// each has its card and a finished turn; returns the measures.
async fn burst(rig: &Rig, model: &ScriptedModel, clock: Clock, tags: &[String]) -> Burst {
    let dm = rig.dm(&rig.alice.id);
    let before = rig.bot_roots(&dm).len();
    let since = clock.ms(Instant::now());
    for tag in tags {
        rig.sim
            .post_as(&rig.alice.id, &dm, &format!("stream {tag}"), None)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let cards = loop {
        let cards: Vec<_> = rig.bot_roots(&dm).into_iter().skip(before).collect();
        let done = cards.len() == tags.len()
            && cards.iter().all(|c| {
                rig.turns(&c.id)
                    .last()
                    .and_then(|t| t.last())
                    .is_some_and(|p| bridge_support::is_final(p))
            });
        if done {
            break cards;
        }
        assert!(
            Instant::now() < deadline,
            "{} sessions did not finish",
            tags.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let b = Burst::measure(rig, model, clock, &cards, since, expected);
    assert_eq!(
        b.complete,
        tags.len(),
        "every reply complete and byte-exact"
    );
    b
}

fn tags(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn bench_burst() {
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();
    let all: Vec<String> = ["a", "c", "d"]
        .iter()
        .zip([20, 20, 100])
        .flat_map(|(p, n)| tags(p, n))
        .chain(["w000".to_owned()])
        .collect();
    for tag in &all {
        model.on(
            &format!("stream {tag}"),
            vec![Step::slow(reply_text(tag), 40, Duration::from_millis(25))],
        );
    }
    model.on(
        "stream long",
        vec![Step::slow(long_text(), 40, Duration::from_millis(16))],
    );
    let env = rig.env(&[("MATTERMOST_OWNER_USER_ID", &rig.alice.id)]);
    let oc = rig.opencode(&model, env).await;
    let clock = Clock::now();
    // Warm up: OpenCode's first session pays for loading the provider.
    burst(&rig, &model, clock, &["w000".to_owned()]).await;

    println!("\n== burst benchmark (loopback; real OpenCode, scripted model, simulator) ==");
    rig.sim.rate_limit(None);
    burst(&rig, &model, clock, &tags("a", 20))
        .await
        .print("20 new sessions at once, server rate limiter off");
    burst(&rig, &model, clock, &["long".to_owned()])
        .await
        .print("one 25,000-byte reply streamed over 10 s, limiter off");

    rig.sim.rate_limit(Some(MATTERMOST_DEFAULT_LIMIT));
    burst(&rig, &model, clock, &tags("c", 20))
        .await
        .print("20 new sessions at once, limiter at Mattermost's defaults (10/s, burst 100)");
    // A fresh server bucket for the next burst.
    rig.sim.rate_limit(Some(MATTERMOST_DEFAULT_LIMIT));
    burst(&rig, &model, clock, &tags("d", 100)).await.print(
        "100 new sessions at once, limiter at 10/s, burst 100 (allows at most 111 in any 1 s)",
    );
    rig.sim.rate_limit(None);
    oc.stop().await;
}
