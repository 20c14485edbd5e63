//! Scheduled prompts end to end: the scripted model calls the
//! `mattermost_schedule_*` tools through real OpenCode, the shim and the
//! agent; the agent's scheduler runs the prompt in a fresh OpenCode session
//! when it is due (or at once for `_run`) and DMs the model's full output to
//! alice in the simulator, in a thread that continues that session.
//!
//! One OpenCode serves every step: it costs seconds and hundreds of MB.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::time::Duration;

use bridge_support::{Rig, body_of, long_reply, wait_until};
use chrono::{Datelike, Timelike, Utc};
use harness::model::{ScriptedModel, Step, tool_results};
use mattermost_sim::model::Post;
use serde_json::{Value, json};

/// The last tool result the model saw in a turn whose prompt contains
/// `phrase` and whose result contains `needle`.
async fn tool_output_for(model: &ScriptedModel, phrase: &str, needle: &str) -> String {
    let needle = needle.to_owned();
    let request = model
        .wait_for_request(Duration::from_secs(60), |r| {
            r.to_string().contains(phrase) && tool_results(r).iter().any(|t| t.contains(&needle))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:#?}", model.requests().last()));
    tool_results(&request)
        .into_iter()
        .rev()
        .find(|t| t.contains(&needle))
        .unwrap_or_default()
}

/// The result DM of a schedule: its root post and the posts after it in its
/// thread, once the last one carries the footer.
async fn result_dm(rig: &Rig, dm: &str, name: &str, timeout: Duration) -> (Post, Vec<String>) {
    let header = format!(":bell: **Scheduled: {name}**");
    let mut found = None;
    wait_until(timeout, &format!("the DM of {name}"), || {
        let Some(root) = rig
            .bot_roots(dm)
            .into_iter()
            .find(|p| p.message.starts_with(&header))
        else {
            return false;
        };
        let mut posts = vec![root.message.clone()];
        posts.extend(rig.bot_replies(&root.id).into_iter().map(|p| p.message));
        // The DM's last post ends with the footer; the thread may go on
        // with replies of a continued session, which this ignores.
        let Some(last) = posts
            .iter()
            .position(|p| !p.ends_with(bridge_support::CONTINUED))
        else {
            return false;
        };
        posts.truncate(last + 1);
        found = Some((root, posts));
        true
    })
    .await;
    found.unwrap()
}

/// The scripted output the DM must carry, byte for byte.
fn result_text(name: &str, posts: &[String]) -> String {
    let body = body_of(posts);
    body.strip_prefix(&format!(":bell: **Scheduled: {name}**\n\n"))
        .unwrap_or_else(|| panic!("no header in {body:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_and_on_demand_runs_dm_the_full_output() {
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();

    let big = long_reply();
    model.on("digest-marker-one", vec![Step::text(big.clone())]);
    model.on(
        "digest-marker-two",
        vec![Step::text(
            "Two open PRs:\n\n- #12 fix the fence\n- #15 ünïcödé titles",
        )],
    );
    model.on(
        "follow-up marker-three",
        vec![Step::text("Continued where the schedule left off.")],
    );
    model.on(
        "please add a broken one",
        vec![
            Step::tool(
                "mattermost_schedule_add",
                json!({"name": "broken", "cron": "0 9 * *", "timezone": "Mars/Base",
                       "prompt": "never"}),
            ),
            Step::text("It failed."),
        ],
    );
    model.on(
        "please run the other one now",
        vec![
            Step::tool(
                "mattermost_schedule_add",
                json!({"name": "e2e-now", "cron": "0 0 1 1 *", "timezone": "UTC",
                       "prompt": "List the digest-marker-two pull requests.",
                       "targetUser": "@alice"}),
            ),
            Step::tool("mattermost_schedule_run", json!({"name": "e2e-now"})),
            Step::text("Started."),
        ],
    );
    model.on(
        "please list the schedules",
        vec![
            Step::tool("mattermost_schedule_list", json!({})),
            Step::text("Listed."),
        ],
    );

    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        ("OPENCODE_MM_TIMEZONE", "Europe/Berlin"),
    ]);
    let oc = rig.opencode(&model, env).await;
    let dm = rig.dm(&rig.alice.id);
    let sessions_before = oc
        .get("/session")
        .await
        .unwrap()
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);

    // Add through the tool, due at the next minute in Kolkata (UTC+05:30),
    // or the one after when that is too close to make it. The answer names
    // the next run in both zones.
    let now = Utc::now();
    let lead = if now.second() >= 52 { 2 } else { 1 };
    let due = (now + chrono::Duration::minutes(lead))
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap();
    let local = due.with_timezone(&opencode_mattermost::tz::Zone::get("Asia/Kolkata").unwrap());
    let cron = format!("{} {} * * *", local.minute(), local.hour());
    println!("now {now}, due {due} = {local}, cron `{cron}`");

    model.on(
        "please schedule the digest",
        vec![
            Step::tool(
                "mattermost_schedule_add",
                json!({"name": "e2e-digest", "cron": cron, "timezone": "Asia/Kolkata",
                       "prompt": "Write the digest-marker-one report."}),
            ),
            Step::text("Scheduled."),
        ],
    );
    let s1 = oc.create_session("schedule it").await.unwrap();
    oc.prompt(&s1, "please schedule the digest").await.unwrap();
    let out = tool_output_for(&model, "please schedule the digest", "Added schedule").await;
    println!("add:\n{out}");
    assert!(out.contains("Added schedule `e2e-digest`"), "{out}");
    assert!(
        out.contains(&format!("{} IST", local.format("%Y-%m-%d %H:%M"))),
        "{out}"
    );
    assert!(
        out.contains(&format!("{} UTC", due.format("%Y-%m-%d %H:%M"))),
        "{out}"
    );
    assert!(out.contains("@alice"), "{out}");

    // Bad input comes back to the model as a tool error that shows the fix.
    let s2 = oc.create_session("broken").await.unwrap();
    oc.prompt(&s2, "please add a broken one").await.unwrap();
    let out = tool_output_for(&model, "please add a broken one", "cron expression").await;
    assert!(out.contains("`0 9 * * 1-5`"), "{out}");

    // `_run` on demand: the DM arrives without waiting for the schedule.
    let s3 = oc.create_session("run now").await.unwrap();
    oc.prompt(&s3, "please run the other one now")
        .await
        .unwrap();
    let out = tool_output_for(&model, "please run the other one now", "Running `e2e-now`").await;
    assert!(out.contains("the result goes to @alice as a DM"), "{out}");
    let (now_root, now_posts) = result_dm(&rig, &dm, "e2e-now", Duration::from_secs(60)).await;
    println!("on-demand DM:\n{}", now_posts.join("\n=====\n"));
    assert_eq!(
        result_text("e2e-now", &now_posts),
        "Two open PRs:\n\n- #12 fix the fence\n- #15 ünïcödé titles"
    );
    let footer = now_posts.last().unwrap();
    assert!(footer.contains("✅ Done in"), "{footer}");
    assert!(
        footer.contains("Reply in this thread to continue this session."),
        "{footer}"
    );
    // The run had its own session, titled after the schedule, and the
    // prompt said what it was.
    let sessions = oc.get("/session").await.unwrap();
    let titles: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["title"].as_str())
        .collect();
    assert!(titles.contains(&"Scheduled: e2e-now"), "{titles:?}");
    let prompt = model
        .requests()
        .into_iter()
        .map(|r| bridge_support::last_user_text(&r))
        .find(|t| t.contains("digest-marker-two"))
        .unwrap();
    assert!(
        prompt.starts_with("[Scheduled prompt \"e2e-now\" (0 0 1 1 * in UTC), run on demand;"),
        "{prompt}"
    );

    // Replying in the DM's thread continues the run's session.
    rig.sim
        .post_as(
            &rig.alice.id,
            &dm,
            "follow-up marker-three",
            Some(&now_root.id),
        )
        .unwrap();
    // The DM is one post, so the thread's turns are the follow-up's.
    let turns = rig.finished_turns(&now_root.id, 1).await;
    assert_eq!(body_of(&turns[0]), "Continued where the schedule left off.");
    let seen: String = model
        .requests()
        .into_iter()
        .find(|r| bridge_support::last_user_text(r).contains("follow-up marker-three"))
        .map(|r| r.to_string())
        .unwrap();
    assert!(
        seen.contains("digest-marker-two"),
        "the follow-up saw the run's conversation"
    );

    // The scheduled run: at its time, the 40,000-character output arrives
    // split across posts and rebuilds exactly.
    let wait = (due - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(90);
    let (_, posts) = result_dm(&rig, &dm, "e2e-digest", wait).await;
    let arrived = Utc::now();
    println!(
        "scheduled DM at {arrived}: {} posts of {:?} chars",
        posts.len(),
        posts.iter().map(|p| p.chars().count()).collect::<Vec<_>>()
    );
    assert!(arrived >= due, "ran early: {arrived} < {due}");
    assert!(posts.len() >= 3, "40,000 characters need at least 3 posts");
    assert!(posts.iter().all(|p| p.chars().count() <= 15_000));
    assert_eq!(result_text("e2e-digest", &posts), big);
    assert!(posts.last().unwrap().contains("`e2e-digest`"));

    // `_list` shows both with their next runs and last outcomes.
    let s4 = oc.create_session("list").await.unwrap();
    oc.prompt(&s4, "please list the schedules").await.unwrap();
    let out = tool_output_for(&model, "please list the schedules", "**Schedules** (2)").await;
    println!("list:\n{out}");
    assert!(out.contains("**e2e-digest** · 🟢 enabled"), "{out}");
    assert!(
        out.contains("**e2e-now** · 🟢 enabled · `0 0 1 1 *` · UTC · DM to @alice"),
        "{out}"
    );
    // The next 1 January, 00:00 UTC, after the list was made: always next
    // year's, printed as the product prints it (zone UTC, then UTC again).
    let new_year = format!("{}-01-01 00:00 UTC", Utc::now().year() + 1);
    assert!(
        out.contains(&format!("- Next: {new_year} ({new_year})")),
        "{out}"
    );
    assert!(out.contains("(on demand): done in"), "{out}");
    assert!(
        out.contains(&format!(
            "✅ {} IST: done in",
            local.format("%Y-%m-%d %H:%M")
        )),
        "{out}"
    );
    assert!(out.contains("[result]("), "{out}");

    // Each run made exactly one session; nothing ran twice.
    let sessions_after = oc.get("/session").await.unwrap();
    let scheduled: Vec<&Value> = sessions_after
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Scheduled: "))
        })
        .collect();
    assert_eq!(scheduled.len(), 2, "{sessions_after:#}");
    assert_eq!(
        sessions_after.as_array().unwrap().len(),
        sessions_before + 4 + 2,
        "four prompting sessions and two runs"
    );
    let digest_dms = rig
        .bot_roots(&dm)
        .iter()
        .filter(|p| p.message.starts_with(":bell: **Scheduled: e2e-digest**"))
        .count();
    assert_eq!(digest_dms, 1);
    oc.stop().await;
}
