//! Timings of the remote-control loop with real OpenCode, the scripted model
//! and the simulator. Run by `scripts/bench.sh` as
//! `cargo test --release --test bench_bridge -- --ignored --nocapture`.
//! Prints numbers only; nothing about timing is asserted (the final texts
//! are, since a fast but short reply is no result).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_support::bench::{pct, rss_kib};
use bridge_support::{Rig, body_of, is_final};
use harness::model::{ScriptedModel, Step, tool_results};
use opencode_mattermost::store::{SqliteStore, Store};
use serde_json::json;

fn reply_text(tag: &str) -> String {
    (1..=40)
        .map(|i| format!("{tag} line {i}: streaming text at a model's pace.\n"))
        .collect()
}

/// Watches the simulator and notes when each reply post first shows text.
/// New posts are found every 50 ms; known ones are read every millisecond
/// one by one, so the watcher itself does not load the machine.
fn watch_first_text(rig: &Arc<Rig>) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (rig, out) = (rig.clone(), seen.clone());
    tokio::spawn(async move {
        let mut watching: Vec<String> = Vec::new();
        let mut last_scan = Instant::now() - Duration::from_secs(1);
        loop {
            if last_scan.elapsed() >= Duration::from_millis(50) {
                last_scan = Instant::now();
                for p in rig.sim.posts() {
                    if p.user_id == rig.bot.id
                        && !p.root_id.is_empty()
                        && p.original_id.is_empty()
                        && !watching.contains(&p.id)
                        && !out.lock().unwrap().contains_key(&p.id)
                    {
                        watching.push(p.id);
                    }
                }
            }
            let now = Instant::now();
            watching.retain(|id| {
                let Some(p) = rig.sim.post(id) else {
                    return false;
                };
                let body = p.message.split("\n\n---\n").next().unwrap_or("");
                if p.message.contains("\n\n---\n") && !body.is_empty() {
                    out.lock().unwrap().insert(id.clone(), now);
                    return false;
                }
                !p.message.starts_with(":rocket:")
            });
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    seen
}

/// The agent's own line from `mattermost_status`, asked through the model.
async fn bridge_line(
    oc: &harness::opencode::OpenCode,
    model: &ScriptedModel,
    phrase: &str,
) -> String {
    let session = oc.create_session("bench").await.unwrap();
    oc.prompt(&session, phrase).await.unwrap();
    let status = model
        .wait_for_request(Duration::from_secs(30), |r| {
            r.to_string().contains(phrase) && tool_results(r).iter().any(|t| t.contains("Bridge:"))
        })
        .await
        .map(|r| {
            tool_results(&r)
                .into_iter()
                .find(|t| t.contains("Bridge:"))
                .unwrap()
        })
        .unwrap();
    status
        .lines()
        .find(|l| l.starts_with("Bridge:"))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn bench_bridge() {
    let rig = Arc::new(Rig::new().await);
    let model = ScriptedModel::start().await.unwrap();
    // ~40 characters every 25 ms: about 1,600 characters a second.
    for i in 0..40 {
        let tag = format!("t{i:02}");
        model.on(
            &format!("stream {tag}"),
            vec![Step::slow(reply_text(&tag), 40, Duration::from_millis(25))],
        );
    }
    for phrase in ["status after one", "status after twenty"] {
        model.on(
            phrase,
            vec![Step::tool("mattermost_status", json!({})), Step::text("ok")],
        );
    }
    let env = rig.env(&[("MATTERMOST_OWNER_USER_ID", &rig.alice.id)]);
    let oc = rig.opencode(&model, env).await;
    let db = oc
        .home
        .path()
        .join(".local/share/opencode-mattermost/state.db");
    let dm = rig.dm(&rig.alice.id);
    let first_text = watch_first_text(&rig);

    // One session: a first prompt, then follow-ups one at a time.
    rig.sim
        .post_as(&rig.alice.id, &dm, "stream t00", None)
        .unwrap();
    let card = rig.card_for(&dm, 0).await;
    // One at a time: a prompt sent mid-turn would wait in the queue, which
    // is not the bridge's overhead.
    rig.finished_turns(&card.id, 1).await;
    let pid = SqliteStore::open(&db).unwrap().instances().await.unwrap()[0].pid;
    let mut rss_one = 0;
    for i in 1..8 {
        rig.sim
            .post_as(
                &rig.alice.id,
                &dm,
                &format!("stream t{i:02}"),
                Some(&card.id),
            )
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while rig.turns(&card.id).len() < i + 1
            || !rig
                .turns(&card.id)
                .iter()
                .all(|t| is_final(t.last().unwrap()))
        {
            rss_one = rss_one.max(rss_kib(pid));
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let idle_rss = rss_kib(pid);
    let line_one = bridge_line(&oc, &model, "status after one").await;

    // Twenty sessions streaming at once.
    let t20 = Instant::now();
    for i in 8..28 {
        rig.sim
            .post_as(&rig.alice.id, &dm, &format!("stream t{i:02}"), None)
            .unwrap();
    }
    let mut rss_twenty = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        rss_twenty = rss_twenty.max(rss_kib(pid));
        let cards = rig.bot_roots(&dm);
        let done = cards.len() == 21
            && cards.iter().all(|c| {
                rig.turns(&c.id)
                    .last()
                    .is_some_and(|t| is_final(t.last().unwrap()))
            });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "20 sessions did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let twenty_wall = t20.elapsed();

    // Every final text is complete; edits per reply and their pace.
    let mut edits_per_reply = Vec::new();
    let mut edits_per_second = Vec::new();
    let mut max_in_any_second = 0;
    // First visible text, apart for the one-session phase (t00–t07) and the
    // twenty-session burst, where OpenCode and the shared rate budget are
    // loaded by everyone at once.
    let mut first_edit_ms = Vec::new();
    let mut first_edit_burst_ms = Vec::new();
    let tokens: HashMap<String, Instant> = model
        .first_tokens()
        .into_iter()
        .filter_map(|(prompt, at)| {
            let i = prompt.find("stream t")?;
            Some((prompt[i + 7..i + 10].to_owned(), at))
        })
        .collect();
    let seen = first_text.lock().unwrap().clone();
    for c in rig.bot_roots(&dm) {
        for (turn, tag) in rig.turns(&c.id).iter().zip(turn_tags(&rig, &c.id)) {
            if body_of(turn) != reply_text(&tag) {
                for (i, t) in rig.turns(&c.id).iter().enumerate() {
                    println!(
                        "turn {i}: {:?}",
                        t.iter()
                            .map(|p| p.chars().take(80).collect::<String>())
                            .collect::<Vec<_>>()
                    );
                }
                println!("tags {:?}", turn_tags(&rig, &c.id));
            }
            assert_eq!(body_of(turn), reply_text(&tag), "{tag} complete");
        }
        for p in rig.bot_replies(&c.id) {
            let history = rig.sim.edits_of(&p.id);
            let stamps: Vec<i64> = history.iter().map(|h| h.update_at).collect();
            edits_per_reply.push(history.len() as f64);
            if let (Some(first), Some(last)) = (stamps.first(), stamps.last())
                && last > first
            {
                edits_per_second.push(history.len() as f64 / ((last - first) as f64 / 1000.0));
            }
            for (i, s) in stamps.iter().enumerate() {
                let n = stamps[i..].iter().take_while(|t| **t < s + 1000).count();
                max_in_any_second = max_in_any_second.max(n);
            }
            let tag = tag_of(&rig, &p.root_id, &p.id);
            if let (Some(tok), Some(vis)) =
                (tag.as_ref().and_then(|t| tokens.get(t)), seen.get(&p.id))
                && let Some(d) = vis.checked_duration_since(*tok)
            {
                let one_session = tag.as_deref().is_some_and(|t| t < "t08");
                if one_session {
                    first_edit_ms.push(d.as_secs_f64() * 1000.0);
                } else {
                    first_edit_burst_ms.push(d.as_secs_f64() * 1000.0);
                }
            }
        }
    }

    let line_twenty = bridge_line(&oc, &model, "status after twenty").await;

    println!(
        "\n== bridge benchmark (loopback; real OpenCode, scripted model at ~1,600 chars/s) =="
    );
    println!("after 8 prompts in one thread, one at a time:\n  {line_one}");
    println!("after 20 more new-session DMs posted at once:\n  {line_twenty}");
    println!(
        "first model token -> first visible text, one session: median {:.0} ms, p99 {:.0} ms ({} replies)",
        pct(first_edit_ms.clone(), 0.5),
        pct(first_edit_ms.clone(), 0.99),
        first_edit_ms.len()
    );
    println!(
        "first model token -> first visible text, 20 new sessions at once: median {:.0} ms, p99 {:.0} ms ({} replies)",
        pct(first_edit_burst_ms.clone(), 0.5),
        pct(first_edit_burst_ms.clone(), 0.99),
        first_edit_burst_ms.len()
    );
    println!(
        "edits per reply post: median {:.0}, max {:.0}; edits per second while streaming: median {:.1}, max {:.1}; most edits of one post in any 1 s window: {max_in_any_second} (default limit 2/s)",
        pct(edits_per_reply.clone(), 0.5),
        pct(edits_per_reply.clone(), 1.0),
        pct(edits_per_second.clone(), 0.5),
        pct(edits_per_second.clone(), 1.0),
    );
    println!(
        "agent RSS: {:.1} MiB streaming 1 session, {:.1} MiB idle after, {:.1} MiB streaming 20 sessions (20 replies done in {:.1} s)",
        rss_one as f64 / 1024.0,
        idle_rss as f64 / 1024.0,
        rss_twenty as f64 / 1024.0,
        twenty_wall.as_secs_f64()
    );
    println!("final texts: all {} complete", rig.bot_roots(&dm).len());
    let log = oc
        .home
        .path()
        .join(".local/state/opencode-mattermost/agent.log");
    let logged = std::fs::read_dir(log.parent().unwrap())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect::<String>();
    for line in logged
        .lines()
        .filter(|l| l.contains("waited before it was sent") || l.contains("session task was busy"))
    {
        println!("agent log: {line}");
    }
    oc.stop().await;
}

/// The tags of a thread's turns, from the prompts posted in it.
fn turn_tags(rig: &Rig, root: &str) -> Vec<String> {
    let card = rig.sim.post(root).unwrap();
    let mut tags: Vec<String> = Vec::new();
    if let Some(first) = card
        .message
        .lines()
        .find_map(|l| l.strip_prefix("> stream "))
    {
        tags.push(first.trim().to_owned());
    }
    for p in rig.live_posts() {
        if p.root_id == root && p.user_id == rig.alice.id {
            tags.push(p.message.trim_start_matches("stream ").to_owned());
        }
    }
    tags
}

/// The tag of the turn a reply post belongs to.
fn tag_of(rig: &Rig, root: &str, post_id: &str) -> Option<String> {
    let turns = rig.turns(root);
    let post = rig.sim.post(post_id)?;
    let index = turns.iter().position(|t| t.contains(&post.message))?;
    turn_tags(rig, root).get(index).cloned()
}
