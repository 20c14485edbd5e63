//! Permission requests, questions and reactions answered from chat, end to
//! end: real OpenCode asking before every `bash` command and running the
//! `question` tool, the scripted model, the simulator. One OpenCode
//! instance serves the whole file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::time::Duration;

use bridge_support::{Rig, body_of, last_user_text, wait_until};
use harness::model::{ScriptedModel, Step, tool_results};
use mattermost_sim::model::{ChannelType, Post};
use serde_json::{Value, json};

fn bash(command: &str) -> Step {
    Step::tool(
        "bash",
        json!({"command": command, "description": "a scripted command"}),
    )
}

fn question(questions: Value) -> Step {
    Step::tool("question", json!({ "questions": questions }))
}

fn colour() -> Value {
    json!({"question": "Which colour?", "header": "Colour", "multiple": false,
           "options": [{"label": "Red", "description": "warm"},
                       {"label": "Blue", "description": "cool"}]})
}

fn sizes() -> Value {
    json!({"question": "Which sizes?", "header": "Sizes", "multiple": true,
           "options": [{"label": "S", "description": "small"},
                       {"label": "M", "description": "medium"},
                       {"label": "L", "description": "large"}]})
}

/// The `n`-th bot post in a thread whose text starts with `head`.
async fn nth_post(rig: &Rig, root: &str, head: &str, n: usize) -> Post {
    let mut found = None;
    wait_until(
        Duration::from_secs(60),
        &format!("post {n} starting {head:?}"),
        || {
            found = rig
                .bot_replies(root)
                .into_iter()
                .filter(|p| p.message.starts_with(head))
                .nth(n);
            found.is_some()
        },
    )
    .await;
    found.unwrap()
}

/// Wait until a post's current text satisfies `pred`; return it.
async fn post_becomes(rig: &Rig, id: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    wait_until(Duration::from_secs(60), what, || {
        text = rig.sim.post(id).map(|p| p.message).unwrap_or_default();
        pred(&text)
    })
    .await;
    text
}

/// The newest tool result the model received in the turn of `phrase`.
fn tool_output(model: &ScriptedModel, phrase: &str) -> Vec<String> {
    model
        .requests()
        .iter()
        .rev()
        .find(|r| {
            let user = r["messages"]
                .as_array()
                .and_then(|m| m.iter().rposition(|m| m["role"] == "user"))
                .unwrap_or(0);
            last_user_text(r).contains(phrase)
                && r["messages"]
                    .as_array()
                    .is_some_and(|m| m[user..].iter().any(|m| m["role"] == "tool"))
        })
        .and_then(|r| tool_results(r).pop())
        .into_iter()
        .collect()
}

async fn wait_tool_output(model: &ScriptedModel, phrase: &str) -> String {
    let mut out = Vec::new();
    wait_until(
        Duration::from_secs(60),
        &format!("a tool result for {phrase:?}"),
        || {
            out = tool_output(model, phrase);
            !out.is_empty()
        },
    )
    .await;
    out.join("\n")
}

async fn pending(oc: &harness::opencode::OpenCode, what: &str) -> Vec<Value> {
    oc.get(&format!("/{what}"))
        .await
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_questions_and_reactions_from_chat() {
    let rig = Rig::new().await;
    let mallory = rig.sim.create_user("mallory").unwrap();
    rig.sim.add_to_team(&rig.team.id, &mallory.id).unwrap();
    let lobby = rig
        .sim
        .create_channel(&rig.team.id, "lobby", "Lobby", ChannelType::Open)
        .unwrap();
    for u in [&rig.bot.id, &rig.alice.id, &mallory.id] {
        rig.sim.add_member(&lobby.id, u).unwrap();
    }
    let temp = tempfile::tempdir().unwrap();

    let model = ScriptedModel::start().await.unwrap();
    model.on(
        "run once please",
        vec![bash("echo once > once.txt"), Step::text("ran once")],
    );
    model.on(
        "run denied please",
        vec![
            bash("echo denied > denied.txt"),
            Step::text("after the denial"),
        ],
    );
    model.on(
        "run always please",
        vec![bash("echo a1 > a1.txt"), Step::text("ran a1")],
    );
    model.on(
        "run again please",
        vec![bash("echo a2 > a2.txt"), Step::text("ran a2")],
    );
    model.on(
        "ask by number",
        vec![question(json!([colour()])), Step::text("got the colour")],
    );
    model.on(
        "ask several",
        vec![question(json!([colour(), sizes()])), Step::text("got both")],
    );
    model.on(
        "ask free text",
        vec![question(json!([colour()])), Step::text("got free text")],
    );
    model.on(
        "ask then reject",
        vec![question(json!([colour()])), Step::text("never said")],
    );
    model.on(
        "ask and wait",
        vec![question(json!([colour()])), Step::text("never said")],
    );
    model.on("still there?", vec![Step::text("still here")]);
    model.on(
        "slow story",
        vec![Step::slow(
            "slow words ".repeat(200),
            8,
            Duration::from_millis(60),
        )],
    );
    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        ("OPENCODE_PERMISSION", r#"{"bash":"ask"}"#),
        ("OPENCODE_ENABLE_QUESTION_TOOL", "1"),
        ("OPENCODE_MM_QUESTION_TIMEOUT", "8000"),
        ("OPENCODE_MM_NOTIFY_COMPLETION", "true"),
        ("OPENCODE_MM_TEMP_DIR", temp.path().to_str().unwrap()),
    ]);
    let oc = rig.opencode(&model, env).await;
    let project = oc.project.clone();

    // ✅ by a stranger does nothing; ✅ by the owner runs the command.
    let root = rig
        .sim
        .post_as(
            &rig.alice.id,
            &lobby.id,
            "@opencode-bot run once please",
            None,
        )
        .unwrap();
    let ask = nth_post(&rig, &root.id, "#### :lock:", 0).await;
    println!("{}\n", ask.message);
    assert!(ask.message.contains("`bash`"), "{}", ask.message);
    assert!(
        ask.message.contains("echo once > once.txt"),
        "{}",
        ask.message
    );
    assert!(ask.message.contains(":white_check_mark:"));
    rig.sim
        .react_as(&mallory.id, &ask.id, "white_check_mark")
        .unwrap();
    rig.sentinel(&rig.alice.id).await;
    assert!(!project.join("once.txt").exists(), "a stranger approved");
    assert_eq!(pending(&oc, "permission").await.len(), 1);
    assert!(rig.sim.post(&ask.id).unwrap().message.contains("React"));
    rig.sim
        .react_as(&rig.alice.id, &ask.id, "white_check_mark")
        .unwrap();
    let answered = post_becomes(&rig, &ask.id, "the request shows its answer", |t| {
        t.contains("Allowed once** by @alice")
    })
    .await;
    assert!(!answered.contains("React"), "{answered}");
    let turns = rig.finished_turns(&root.id, 1).await;
    assert_eq!(body_of(turns.last().unwrap()), "ran once");
    assert!(project.join("once.txt").exists());
    // A new post tells people the turn ended (edits notify nobody).
    nth_post(&rig, &root.id, ":bell: :white_check_mark: **Done**", 0).await;

    // ❌ stops the command; the agent goes on with the refusal.
    rig.sim
        .post_as(
            &rig.alice.id,
            &lobby.id,
            "@opencode-bot run denied please",
            Some(&root.id),
        )
        .unwrap();
    let ask = nth_post(&rig, &root.id, "#### :lock:", 1).await;
    rig.sim.react_as(&rig.alice.id, &ask.id, "x").unwrap();
    post_becomes(&rig, &ask.id, "the denial shows", |t| {
        t.contains("Denied** by @alice")
    })
    .await;
    let turns = rig.finished_turns(&root.id, 2).await;
    println!("denied turn: {:?}\n", turns.last());
    assert!(!project.join("denied.txt").exists(), "a denied command ran");
    assert!(pending(&oc, "permission").await.is_empty());

    // `always`, typed as a reply, is remembered by OpenCode: the next
    // command it covers runs without asking.
    rig.sim
        .post_as(
            &rig.alice.id,
            &lobby.id,
            "@opencode-bot run always please",
            Some(&root.id),
        )
        .unwrap();
    let ask = nth_post(&rig, &root.id, "#### :lock:", 2).await;
    println!("{}\n", ask.message);
    rig.sim
        .post_as(
            &rig.alice.id,
            &lobby.id,
            "@opencode-bot always",
            Some(&root.id),
        )
        .unwrap();
    post_becomes(&rig, &ask.id, "always shows", |t| {
        t.contains("Always allowed** by @alice")
    })
    .await;
    rig.finished_turns(&root.id, 3).await;
    assert!(project.join("a1.txt").exists());
    rig.sim
        .post_as(
            &rig.alice.id,
            &lobby.id,
            "@opencode-bot run again please",
            Some(&root.id),
        )
        .unwrap();
    let turns = rig.finished_turns(&root.id, 4).await;
    assert_eq!(body_of(turns.last().unwrap()), "ran a2");
    assert!(project.join("a2.txt").exists());
    let asks: Vec<Post> = rig
        .bot_replies(&root.id)
        .into_iter()
        .filter(|p| p.message.starts_with("#### :lock:"))
        .collect();
    assert_eq!(asks.len(), 3, "`always` did not cover the second command");

    // Questions, in a DM thread.
    let dm = rig.dm(&rig.alice.id);
    rig.sim
        .post_as(&rig.alice.id, &dm, "ask by number", None)
        .unwrap();
    let card = rig.card_for(&dm, 0).await;
    let q = nth_post(&rig, &card.id, "#### :question:", 0).await;
    println!("{}\n", q.message);
    assert!(q.message.contains("**2.** Blue — _cool_"), "{}", q.message);
    rig.sim
        .post_as(&rig.alice.id, &dm, "2", Some(&card.id))
        .unwrap();
    post_becomes(&rig, &q.id, "the answer shows", |t| {
        t.contains("**Answer:** Blue — by @alice")
    })
    .await;
    let out = wait_tool_output(&model, "ask by number").await;
    assert!(out.contains("Blue"), "{out}");
    let turns = rig.finished_turns(&card.id, 1).await;
    assert_eq!(body_of(turns.last().unwrap()), "got the colour");

    // Several questions, one after another; several numbers for the
    // multi-select one. A bad number is explained and the question stays.
    rig.sim
        .post_as(&rig.alice.id, &dm, "ask several", Some(&card.id))
        .unwrap();
    let q1 = nth_post(&rig, &card.id, "#### :question:", 1).await;
    assert!(q1.message.contains("Question 1/2"), "{}", q1.message);
    rig.sim
        .post_as(&rig.alice.id, &dm, "7", Some(&card.id))
        .unwrap();
    let mut complaint = None;
    wait_until(Duration::from_secs(30), "a complaint about 7", || {
        complaint = rig
            .bot_replies(&card.id)
            .into_iter()
            .find(|p| p.message.contains("no option 7"));
        complaint.is_some()
    })
    .await;
    rig.not_turns.lock().unwrap().insert(complaint.unwrap().id);
    rig.sim
        .post_as(&rig.alice.id, &dm, "1", Some(&card.id))
        .unwrap();
    let q2 = nth_post(&rig, &card.id, "#### :question:", 2).await;
    assert!(q2.message.contains("Question 2/2: Sizes"), "{}", q2.message);
    rig.sim
        .post_as(&rig.alice.id, &dm, "1, 3", Some(&card.id))
        .unwrap();
    let out = wait_tool_output(&model, "ask several").await;
    println!("several → {out}\n");
    assert!(out.contains("Red"), "{out}");
    assert!(out.contains("S, L") || out.contains("S\", \"L"), "{out}");
    assert!(!out.contains("Blue"), "{out}");
    let turns = rig.finished_turns(&card.id, 2).await;
    assert_eq!(body_of(turns.last().unwrap()), "got both");

    // Free text, when the question allows it.
    rig.sim
        .post_as(&rig.alice.id, &dm, "ask free text", Some(&card.id))
        .unwrap();
    nth_post(&rig, &card.id, "#### :question:", 3).await;
    rig.sim
        .post_as(&rig.alice.id, &dm, "a nice shade of teal", Some(&card.id))
        .unwrap();
    let out = wait_tool_output(&model, "ask free text").await;
    assert!(out.contains("a nice shade of teal"), "{out}");
    rig.finished_turns(&card.id, 3).await;

    // `!reject` declines through OpenCode; the agent goes on.
    rig.sim
        .post_as(&rig.alice.id, &dm, "ask then reject", Some(&card.id))
        .unwrap();
    let q = nth_post(&rig, &card.id, "#### :question:", 4).await;
    rig.sim
        .post_as(&rig.alice.id, &dm, "!reject", Some(&card.id))
        .unwrap();
    post_becomes(&rig, &q.id, "the question shows it was declined", |t| {
        t.contains("Declined** by @alice")
    })
    .await;
    // A declined question ends the turn; the session takes the next prompt.
    rig.finished_turns(&card.id, 4).await;
    assert!(pending(&oc, "question").await.is_empty());
    rig.sim
        .post_as(&rig.alice.id, &dm, "still there?", Some(&card.id))
        .unwrap();
    let turns = rig.finished_turns(&card.id, 5).await;
    assert_eq!(body_of(turns.last().unwrap()), "still here");

    // Nobody answers: the question expires, is declined, and the thread says so.
    rig.sim
        .post_as(&rig.alice.id, &dm, "ask and wait", Some(&card.id))
        .unwrap();
    let q = nth_post(&rig, &card.id, "#### :question:", 5).await;
    nth_post(&rig, &card.id, ":hourglass: Nobody answered", 0).await;
    post_becomes(&rig, &q.id, "the question shows it expired", |t| {
        t.contains("**Expired**")
    })
    .await;
    rig.finished_turns(&card.id, 6).await;
    assert!(pending(&oc, "question").await.is_empty());

    // 🛑 on the reply post aborts the turn; 🔁 sends the prompt again.
    rig.sim
        .post_as(&rig.alice.id, &dm, "slow story", Some(&card.id))
        .unwrap();
    let mut live = None;
    wait_until(Duration::from_secs(60), "the slow reply streaming", || {
        live = rig.turns(&card.id).get(6).and_then(|t| t.first().cloned());
        live.as_ref().is_some_and(|t| t.contains("slow words"))
    })
    .await;
    let reply_post = rig
        .bot_replies(&card.id)
        .into_iter()
        .rev()
        .find(|p| p.message.contains("slow words"))
        .unwrap();
    rig.sim
        .react_as(&rig.alice.id, &reply_post.id, "octagonal_sign")
        .unwrap();
    let turns = rig.finished_turns(&card.id, 7).await;
    let stopped = turns.last().unwrap().last().unwrap().clone();
    assert!(stopped.contains("🛑 Stopped"), "{stopped}");
    let runs_before = model
        .requests()
        .iter()
        .filter(|r| last_user_text(r).contains("slow story"))
        .count();
    rig.sim
        .react_as(&rig.alice.id, &reply_post.id, "repeat")
        .unwrap();
    let turns = rig.finished_turns(&card.id, 8).await;
    assert!(
        body_of(turns.last().unwrap()).starts_with("slow words"),
        "{:?}",
        turns.last()
    );
    let runs_after = model
        .requests()
        .iter()
        .filter(|r| last_user_text(r).contains("slow story"))
        .count();
    assert!(runs_after > runs_before, "🔁 did not send the prompt again");

    // 🗑️ deletes the session's temporary files.
    let sessions = oc.get("/session").await.unwrap();
    let session_id = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"].as_str().unwrap_or("").contains("ask by number"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = temp.path().join(&session_id);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.txt"), "a").unwrap();
    std::fs::write(dir.join("sub/b.txt"), "b").unwrap();
    rig.sim
        .react_as(&rig.alice.id, &reply_post.id, "wastebasket")
        .unwrap();
    let cleared = nth_post(&rig, &card.id, ":wastebasket:", 0).await;
    assert!(
        cleared.message.contains("Deleted 2 temporary files"),
        "{}",
        cleared.message
    );
    assert!(!dir.exists());
    // A stranger's reactions on a bot post in a shared channel do nothing.
    let lobby_reply = rig
        .bot_replies(&root.id)
        .into_iter()
        .rev()
        .find(|p| p.message.contains("ran a2"))
        .unwrap();
    rig.sim
        .react_as(&mallory.id, &lobby_reply.id, "repeat")
        .unwrap();
    rig.sentinel(&rig.alice.id).await;
    assert_eq!(rig.turns(&root.id).len(), 4, "a stranger re-ran a prompt");

    oc.stop().await;
}
