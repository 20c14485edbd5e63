//! Chat commands, the session tools, TUI → Mattermost sync and queued
//! follow-ups, end to end: real OpenCode with the plugin, the scripted
//! model, the simulator. One OpenCode instance serves the whole file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::time::Duration;

use bridge_support::{Rig, TUI_ECHO, body_of, last_user_text, wait_until};
use harness::model::{ScriptedModel, Step, tool_results};
use mattermost_sim::model::{ChannelType, Post};
use serde_json::json;

/// The bot's answer in the thread of `post` (a command's reply).
async fn answer_to(rig: &Rig, post: &Post) -> String {
    let root = if post.root_id.is_empty() {
        post.id.clone()
    } else {
        post.root_id.clone()
    };
    let mut found = None;
    wait_until(
        Duration::from_secs(30),
        &format!("an answer to {:?}", post.message),
        || {
            found = rig.live_posts().into_iter().find(|p| {
                p.root_id == root
                    && p.user_id == rig.bot.id
                    && p.create_at >= post.create_at
                    && p.id != post.id
            });
            found.is_some()
        },
    )
    .await;
    let text = found.unwrap().message;
    println!("{} → {text}\n", post.message);
    text
}

/// Post a command as alice and return the bot's answer.
async fn command(rig: &Rig, channel: &str, text: &str, root: Option<&str>) -> String {
    let post = rig.sim.post_as(&rig.alice.id, channel, text, root).unwrap();
    match root {
        // In a thread the answer is the bot's next post there.
        Some(root) => {
            let before = rig.bot_replies(root).len();
            let mut found = None;
            wait_until(
                Duration::from_secs(30),
                &format!("an answer to {text:?}"),
                || {
                    found = rig.bot_replies(root).into_iter().nth(before);
                    found.is_some()
                },
            )
            .await;
            let _ = post;
            let found = found.unwrap();
            rig.not_turns.lock().unwrap().insert(found.id.clone());
            let answer = found.message;
            println!("{text} → {answer}\n");
            answer
        }
        None => answer_to(rig, &post).await,
    }
}

fn requests_for(model: &ScriptedModel, phrase: &str) -> Vec<serde_json::Value> {
    model
        .requests()
        .into_iter()
        .filter(|r| last_user_text(r).contains(phrase))
        .collect()
}

fn echoes(rig: &Rig, root: &str) -> Vec<String> {
    rig.bot_replies(root)
        .into_iter()
        .map(|p| p.message)
        .filter(|m| m.starts_with(TUI_ECHO))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_session_tools_tui_sync_and_queued_follow_ups() {
    let rig = Rig::new().await;
    let lobby = rig
        .sim
        .create_channel(&rig.team.id, "lobby", "Lobby", ChannelType::Open)
        .unwrap();
    rig.sim.add_member(&lobby.id, &rig.bot.id).unwrap();
    let model = ScriptedModel::start().await.unwrap();
    model.on("first prompt", vec![Step::text("first answer")]);
    model.on("!help\n```", vec![Step::text("code block was a prompt")]);
    model.on(
        "tui says hello",
        vec![Step::text("hello from the tui turn")],
    );
    model.on(
        "dm to the attached session",
        vec![Step::text("attached answer")],
    );
    model.on("which model", vec![Step::text("model answer")]);
    let story: String = (0..400).map(|i| format!("word{i} ")).collect();
    model.on(
        "long story",
        vec![Step::slow(story.clone(), 8, Duration::from_millis(40))],
    );
    model.on(
        "slow first",
        vec![Step::slow(
            "slow answer ".repeat(20),
            12,
            Duration::from_millis(100),
        )],
    );
    model.on("queued second", vec![Step::text("queued answer")]);
    model.on(
        "use the tools",
        vec![
            Step::tool("mattermost_list_sessions", json!({})),
            Step::tool("mattermost_current_session", json!({})),
            Step::text("tools done"),
        ],
    );
    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        ("OPENCODE_MM_DEFAULT_CHANNEL_ID", &lobby.id),
    ]);
    let oc = rig.opencode(&model, env).await;
    let dm = rig.dm(&rig.alice.id);

    // Help, an unknown command, bad arguments.
    let help = command(&rig, &dm, "!help", None).await;
    for name in [
        "!sessions",
        "!use <id>",
        "!current",
        "!new",
        "!stop",
        "!models",
        "!model",
        "!costs",
        "!status",
    ] {
        assert!(help.contains(name), "{name} missing from help");
    }
    let unknown = command(&rig, &dm, "!sesions", None).await;
    assert!(unknown.contains("Did you mean `!sessions`?"), "{unknown}");
    let bad = command(&rig, &dm, "!stop now", None).await;
    assert!(
        bad.contains("takes no arguments") && bad.contains("Usage: `!stop`"),
        "{bad}"
    );
    let no_session = command(&rig, &dm, "!costs", None).await;
    assert!(no_session.contains("No session here"), "{no_session}");
    assert!(rig.bot_roots(&dm).is_empty(), "commands start no session");

    // `!help` inside a code block is a prompt, not a command.
    rig.sim
        .post_as(&rig.alice.id, &dm, "```\n!help\n```", None)
        .unwrap();
    let code_card = rig.card_for(&dm, 0).await;
    let turns = rig.finished_turns(&code_card.id, 1).await;
    assert_eq!(body_of(&turns[0]), "code block was a prompt");

    // A chat session, then `!sessions` lists it with its thread.
    rig.sim
        .post_as(&rig.alice.id, &dm, "first prompt", None)
        .unwrap();
    let card_a = rig.card_for(&dm, 1).await;
    rig.finished_turns(&card_a.id, 1).await;
    let sessions: serde_json::Value = oc.get("/session").await.unwrap();
    let session_a = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"].as_str().unwrap_or("").contains("first prompt"))
        .unwrap()
        .clone();
    let slug_a = session_a["slug"].as_str().unwrap().to_owned();
    let listed = command(&rig, &dm, "!sessions", None).await;
    assert!(listed.contains(&format!("`{slug_a}`")), "{listed}");
    assert!(listed.contains("[thread]("), "{listed}");
    assert!(listed.contains("idle"), "{listed}");

    // A session made through OpenCode's API (as the TUI would) gets a
    // thread in the default channel at once.
    let tui_id = oc.create_session("made at the tui").await.unwrap();
    let mut lobby_card = None;
    wait_until(Duration::from_secs(30), "a default-channel thread", || {
        lobby_card = rig.bot_roots(&lobby.id).into_iter().next();
        lobby_card.is_some()
    })
    .await;
    assert!(lobby_card.unwrap().message.contains(":rocket:"));

    // `!use` with an id prefix attaches the DM to it, with a DM thread.
    let prefix: String = tui_id.chars().take(tui_id.len() - 3).collect();
    let used = command(&rig, &dm, &format!("!use {prefix}"), None).await;
    assert!(used.contains("This DM now talks to session"), "{used}");
    let card_t = rig.card_for(&dm, 2).await;
    let current = command(&rig, &dm, "!current", None).await;
    assert!(current.contains("made at the tui"), "{current}");
    let missing = command(&rig, &dm, "!use nosuchsession", None).await;
    assert!(missing.contains("No session `nosuchsession`"), "{missing}");

    // A prompt typed at the TUI shows in the thread, then its reply, once.
    let oc_prompt = {
        let url_session = tui_id.clone();
        let oc_ref = &oc;
        async move { oc_ref.prompt(&url_session, "tui says hello").await.unwrap() }
    };
    oc_prompt.await;
    let turns = rig.finished_turns(&card_t.id, 1).await;
    assert_eq!(body_of(&turns[0]), "hello from the tui turn");
    assert_eq!(
        echoes(&rig, &card_t.id),
        [format!("{TUI_ECHO}tui says hello")]
    );
    let replies = rig.bot_replies(&card_t.id);
    let echo_at = replies
        .iter()
        .position(|p| p.message.starts_with(TUI_ECHO))
        .unwrap();
    assert_eq!(echo_at, 0, "the echo comes before its reply");

    // A top-level DM now goes to the attached session, and is not echoed.
    rig.sim
        .post_as(&rig.alice.id, &dm, "dm to the attached session", None)
        .unwrap();
    let turns = rig.finished_turns(&card_t.id, 2).await;
    assert_eq!(body_of(&turns[1]), "attached answer");
    assert_eq!(
        echoes(&rig, &card_t.id).len(),
        1,
        "chat prompts are not echoed"
    );
    assert_eq!(rig.bot_roots(&dm).len(), 3, "no new session for it");
    let seen = last_user_text(&requests_for(&model, "dm to the attached session")[0]);
    assert!(seen.contains("[Mattermost DM from @alice]"), "{seen}");

    // Models: show, list, choose by number, and the provider is asked for it.
    let shown = command(&rig, &dm, "!model", Some(&card_t.id)).await;
    assert!(shown.contains("default model"), "{shown}");
    let unknown_model = command(&rig, &dm, "!model scripted/nope", Some(&card_t.id)).await;
    assert!(
        unknown_model.contains("no model `scripted/nope`"),
        "{unknown_model}"
    );
    let listed = command(&rig, &dm, "!models", Some(&card_t.id)).await;
    let number_of = |name: &str| -> usize {
        let line = listed
            .lines()
            .find(|l| l.contains(&format!("`{name}`")))
            .unwrap_or_else(|| panic!("{name} not listed: {listed}"));
        line.split('.').next().unwrap().trim().parse().unwrap()
    };
    assert!(number_of("scripted/scripted-1") < number_of("scripted/scripted-2"));
    let count = listed.lines().filter(|l| l.contains(". `")).count();
    let out_of_range = command(&rig, &dm, &(count + 1).to_string(), Some(&card_t.id)).await;
    assert!(
        out_of_range.contains(&format!("from 1 to {count}")),
        "{out_of_range}"
    );
    let chosen = command(
        &rig,
        &dm,
        &number_of("scripted/scripted-2").to_string(),
        Some(&card_t.id),
    )
    .await;
    assert!(chosen.contains("scripted/scripted-2"), "{chosen}");
    let shown = command(&rig, &dm, "!model", Some(&card_t.id)).await;
    assert!(shown.contains("`scripted/scripted-2`"), "{shown}");
    rig.sim
        .post_as(&rig.alice.id, &dm, "which model", Some(&card_t.id))
        .unwrap();
    rig.finished_turns(&card_t.id, 3).await;
    let asked = &requests_for(&model, "which model")[0];
    assert_eq!(asked["model"], "scripted-2", "{}", asked["model"]);

    // Costs and status.
    let costs = command(&rig, &dm, "!costs", Some(&card_t.id)).await;
    assert!(
        costs.contains("Costs of this session") && costs.contains("Tokens: input"),
        "{costs}"
    );
    let status = command(&rig, &dm, "!status", None).await;
    assert!(
        status.contains("WebSocket: connected") && status.contains("Queue:"),
        "{status}"
    );

    // `!stop` aborts a long reply; the thread says it stopped.
    let idle_stop = command(&rig, &dm, "!stop", Some(&card_t.id)).await;
    assert!(idle_stop.contains("Nothing is running"), "{idle_stop}");
    rig.sim
        .post_as(&rig.alice.id, &dm, "long story", Some(&card_t.id))
        .unwrap();
    wait_until(
        Duration::from_secs(60),
        "the story to start streaming",
        || {
            rig.turns(&card_t.id)
                .get(3)
                .is_some_and(|t| t[0].contains("word3 "))
        },
    )
    .await;
    rig.sim
        .post_as(&rig.alice.id, &dm, "!stop", Some(&card_t.id))
        .unwrap();
    let turns = rig.finished_turns(&card_t.id, 4).await;
    let stopped = turns[3].last().unwrap();
    assert!(stopped.contains("🛑 Stopped"), "{stopped}");
    assert!(
        !body_of(&turns[3]).contains("word399"),
        "the story was cut short"
    );

    // A follow-up sent mid-turn waits for the turn, then runs once.
    rig.sim
        .post_as(&rig.alice.id, &dm, "slow first", Some(&card_t.id))
        .unwrap();
    wait_until(Duration::from_secs(60), "the slow turn to start", || {
        !requests_for(&model, "slow first").is_empty()
    })
    .await;
    rig.sim
        .post_as(&rig.alice.id, &dm, "queued second", Some(&card_t.id))
        .unwrap();
    let turns = rig.finished_turns(&card_t.id, 6).await;
    assert_eq!(body_of(&turns[4]), "slow answer ".repeat(20));
    assert_eq!(body_of(&turns[5]), "queued answer");
    assert_eq!(requests_for(&model, "queued second").len(), 1, "run once");
    let all = model.requests();
    let slow_last = all
        .iter()
        .rposition(|r| last_user_text(r).contains("slow first"))
        .unwrap();
    let queued_first = all
        .iter()
        .position(|r| last_user_text(r).contains("queued second"))
        .unwrap();
    assert!(slow_last < queued_first, "the follow-up ran after the turn");
    let said_queued = rig
        .sim
        .posts()
        .iter()
        .any(|p| p.root_id == card_t.id && p.message.contains("this message is queued"));
    assert!(said_queued, "the thread said the follow-up was queued");

    // The session tools, called by the model.
    rig.sim
        .post_as(&rig.alice.id, &dm, "use the tools", Some(&card_t.id))
        .unwrap();
    rig.finished_turns(&card_t.id, 7).await;
    let last = requests_for(&model, "use the tools").pop().unwrap();
    let results = tool_results(&last).join("\n");
    println!("tool results:\n{results}");
    assert!(results.contains(&format!("`{slug_a}`")), "{results}");
    assert!(results.contains("← here"), "{results}");
    assert!(results.contains("made at the tui"), "{results}");

    // `!new` starts a session and attaches the DM to it; `!use none` detaches.
    let fresh = command(&rig, &dm, "!new Release checklist", None).await;
    assert!(fresh.contains("Started a new session"), "{fresh}");
    let current = command(&rig, &dm, "!current", None).await;
    assert!(current.contains("Release checklist"), "{current}");
    let detached = command(&rig, &dm, "!use none", None).await;
    assert!(detached.contains("Detached"), "{detached}");
    let current = command(&rig, &dm, "!current", None).await;
    assert!(current.contains("No session attached"), "{current}");

    // `!schedule` reaches the scheduler, bad input shows the fix.
    let bad_cron = command(
        &rig,
        &dm,
        "!schedule add nightly \"61 9 * * *\" run the tests",
        None,
    )
    .await;
    assert!(bad_cron.contains("61"), "{bad_cron}");
    let added = command(
        &rig,
        &dm,
        "!schedule add nightly \"0 3 * * *\" tz=Europe/Berlin run the tests",
        None,
    )
    .await;
    assert!(added.contains("nightly"), "{added}");
    let listed = command(&rig, &dm, "!schedule list", None).await;
    assert!(
        listed.contains("nightly") && listed.contains("Europe/Berlin"),
        "{listed}"
    );

    // Only the TUI's session got a default-channel thread.
    assert_eq!(rig.bot_roots(&lobby.id).len(), 1);
    oc.stop().await;
}
