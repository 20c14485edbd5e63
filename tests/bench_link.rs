//! Timings of the Mattermost WebSocket link against the simulator. Run by
//! `scripts/bench.sh` as
//! `cargo test --release --test bench_link -- --ignored --nocapture`.
//! Prints numbers only; nothing about timing is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod link_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use link_support::{WAIT, World, median, next_post, percentile};
use mattermost_sim::{KillMode, SimConfig};
use opencode_mattermost::mattermost::ws::{self, LinkConfig};

fn fast(mut cfg: LinkConfig) -> LinkConfig {
    // Backoff of at most 1 ms, so timings show the protocol, not the jitter.
    cfg.backoff_initial = Duration::from_millis(1);
    cfg.backoff_max = Duration::from_millis(5);
    cfg
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn bench_link() {
    // Connect: spawn → Connected, 20 times.
    let w = World::start(SimConfig::default()).await;
    let mut connects = Vec::new();
    // One REST client for all: building one loads TLS roots (~20 ms), which
    // is not the link's cost.
    let catch_up = w.catch_up();
    for _ in 0..20 {
        let cfg = fast(w.link_config());
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let t0 = Instant::now();
        let link = ws::spawn(cfg, catch_up.clone(), tx);
        link.wait_connected(WAIT).await.unwrap();
        connects.push(t0.elapsed());
        link.disconnect().await;
    }

    // Resume: kill → resumed Connected, 20 times.
    let (link, mut rx) = w.spawn(fast(w.link_config()), 1024);
    link.wait_connected(WAIT).await.unwrap();
    let mut resumes = Vec::new();
    for i in 0..20 {
        let mode = if i % 2 == 0 {
            KillMode::Close
        } else {
            KillMode::Drop
        };
        let t0 = Instant::now();
        assert_eq!(w.sim.kill_sockets(&w.bot.id, mode), 1);
        link.wait_connected_after(t0, WAIT).await.unwrap();
        resumes.push(t0.elapsed());
    }
    let resumed = link.stats().resumes;

    // Inbound latency: post_as → event out of the channel, 1,000 posts.
    let mut latencies = Vec::new();
    for i in 0..1000 {
        let t0 = Instant::now();
        let p = w
            .sim
            .post_as(&w.alice.id, &w.dm.id, &format!("latency {i}"), None)
            .unwrap();
        let (got, _) = next_post(&mut rx).await;
        latencies.push(t0.elapsed());
        assert_eq!(got.id, p.id);
    }
    drop(link);

    // Catch-up: kill, 30 posts (over the 16-event buffer) → all delivered.
    let w = World::start(SimConfig {
        ws_resume_buffer: 16,
        ..SimConfig::default()
    })
    .await;
    let (link, mut rx) = w.spawn(fast(w.link_config()), 1024);
    link.wait_connected(WAIT).await.unwrap();
    link.serve_channel(&w.dm.id);
    let mut catch_ups = Vec::new();
    for round in 0..10 {
        let t0 = Instant::now();
        assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Drop), 1);
        let mut want: HashSet<String> = (0..30)
            .map(|i| {
                w.sim
                    .post_as(&w.alice.id, &w.dm.id, &format!("gap {round}.{i}"), None)
                    .unwrap()
                    .id
            })
            .collect();
        while !want.is_empty() {
            let (post, _) = next_post(&mut rx).await;
            want.remove(&post.id);
        }
        catch_ups.push(t0.elapsed());
        link.wait_connected_after(t0, WAIT).await.unwrap();
    }
    let stats = link.stats();

    println!("link benchmark (debug or release as built; simulator in process)");
    println!(
        "  connect (spawn -> Connected), median of 20: {}",
        ms(median(&mut connects))
    );
    println!(
        "  resume (kill -> resumed Connected), median of 20: {} ({resumed} of 20 resumed)",
        ms(median(&mut resumes))
    );
    println!(
        "  catch-up (kill + 30 posts over a 16-event buffer -> all delivered), median of 10: {} ({} refused resumes, {} posts recovered)",
        ms(median(&mut catch_ups)),
        stats.resumes_refused,
        stats.posts_recovered
    );
    println!(
        "  inbound latency (post_as -> event received), 1000 posts: median {}, p99 {}",
        ms(median(&mut latencies)),
        ms(percentile(&mut latencies, 0.99))
    );
}
