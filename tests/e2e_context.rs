//! Thread context, `!merge` and ended sessions, end to end: real OpenCode
//! with the plugin, the scripted model (its `small_model` is `scripted-2`),
//! the simulator. One OpenCode serves the whole file; each part below is a
//! focused check with its own assertions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::time::Duration;

use bridge_support::steps::Steps;
use bridge_support::{Rig, last_user_text, wait_until};
use harness::model::{ScriptedModel, Step};
use harness::opencode::OpenCode;
use mattermost_sim::model::{Channel, Post};
use serde_json::Value;

struct World {
    rig: Rig,
    model: ScriptedModel,
    oc: OpenCode,
    bob: mattermost_sim::Account,
    carol: mattermost_sim::Account,
    room: Channel,
    /// Where sessions started at the TUI get their thread.
    tui: Channel,
}

/// The model request answering the prompt that contains `phrase`.
async fn request_for(model: &ScriptedModel, phrase: &str) -> Value {
    model
        .wait_for_request(Duration::from_secs(60), |r| {
            last_user_text(r).contains(phrase) && r["model"] == "scripted-1"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {phrase}"))
}

/// Summariser requests: on the small model, asking for a summary.
fn summary_requests(model: &ScriptedModel, phrase: &str) -> Vec<Value> {
    model
        .requests()
        .into_iter()
        .filter(|r| r["model"] == "scripted-2")
        .filter(|r| {
            let text = last_user_text(r);
            text.starts_with("Summarise this Mattermost conversation") && text.contains(phrase)
        })
        .collect()
}

/// A thread in `room`: `texts[0]` is the root, by alternating authors.
fn thread(w: &World, texts: &[String]) -> Post {
    let authors = [&w.bob.id, &w.carol.id];
    let root = w
        .rig
        .sim
        .post_as(authors[0], &w.room.id, &texts[0], None)
        .unwrap();
    for (i, t) in texts.iter().enumerate().skip(1) {
        w.rig
            .sim
            .post_as(authors[i % 2], &w.room.id, t, Some(&root.id))
            .unwrap();
    }
    root
}

/// Alice @mentions the bot in `root`'s thread with `tag` and `rest`; the
/// prompt text the model got for it.
async fn ask_in_thread(w: &World, root: &Post, tag: &str, rest: &str) -> String {
    w.rig
        .sim
        .post_as(
            &w.rig.alice.id,
            &w.room.id,
            &format!("@opencode-bot {tag} {rest}"),
            Some(&root.id),
        )
        .unwrap();
    last_user_text(&request_for(&w.model, tag).await)
}

/// Sessions of OpenCode titled as the summariser titles its own.
async fn summary_sessions(oc: &OpenCode) -> usize {
    let sessions: Value = oc.get("/session").await.unwrap();
    sessions
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Mattermost summary: "))
        })
        .count()
}

async fn setup() -> World {
    let rig = Rig::new().await;
    let bob = rig.sim.create_user("bob").unwrap();
    let carol = rig.sim.create_user("carol").unwrap();
    for u in [&bob.id, &carol.id] {
        rig.sim.add_to_team(&rig.team.id, u).unwrap();
    }
    let room = rig.channel_with_bot("room");
    for u in [&bob.id, &carol.id] {
        rig.sim.add_member(&room.id, u).unwrap();
    }
    let tui = rig.channel_with_bot("tui");
    let model = ScriptedModel::start().await.unwrap();
    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        ("OPENCODE_MM_DEFAULT_CHANNEL_ID", &tui.id),
        ("OPENCODE_MM_CONTEXT_SUMMARY_TIMEOUT", "5000"),
    ]);
    let oc = rig.opencode(&model, env).await;
    World {
        rig,
        model,
        oc,
        bob,
        carol,
        room,
        tui,
    }
}

/// Each step asserts on its own; a failing one does not keep the others
/// from running on the shared OpenCode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_context_merge_and_ended_sessions() {
    let w = setup().await;
    let mut steps = Steps::new();
    steps
        .run(
            "five messages go with a mention",
            five_messages_go_with_a_mention(&w),
        )
        .await;
    steps
        .run(
            "a long thread is summarised by the small model",
            a_long_thread_is_summarised_by_the_small_model(&w),
        )
        .await;
    steps
        .run(
            "a failing summariser leaves the newest messages",
            a_failing_summariser_leaves_the_newest_messages(&w),
        )
        .await;
    steps
        .run(
            "a hanging summariser is given up",
            a_hanging_summariser_is_given_up(&w),
        )
        .await;
    steps
        .run(
            "the summariser's sessions get no thread",
            the_summarisers_sessions_get_no_thread(&w),
        )
        .await;
    steps
        .run("merge across two threads, and its refusals", async {
            let dest = a_session_thread(&w, "DEST-1").await;
            merge_across_two_threads_locks_the_source(&w, &dest).await;
            merge_refuses_a_private_channel_the_requester_is_not_in(&w, &dest).await;
            merge_refuses_itself_other_servers_and_malformed_links(&w, &dest).await;
        })
        .await;
    steps
        .run(
            "a deleted session's thread is marked ended",
            a_deleted_sessions_thread_is_marked_ended(&w),
        )
        .await;
    steps
        .run("!end ends a DM session", end_ends_a_dm_session(&w))
        .await;
    steps.finish();
}

/// The bot's next post in thread `root` after `before` of them.
async fn next_bot_post(w: &World, root: &str, before: usize, what: &str) -> Post {
    let mut found = None;
    wait_until(Duration::from_secs(60), what, || {
        found = w.rig.bot_replies(root).into_iter().nth(before);
        found.is_some()
    })
    .await;
    found.unwrap()
}

/// Alice posts `text` in thread `root` of `channel`; the bot's answer.
/// Outside the DM a command needs the bot's @mention too.
async fn answer(w: &World, channel: &str, root: &str, text: &str) -> String {
    let text = if channel == w.room.id && text.starts_with('!') {
        format!("@opencode-bot {text}")
    } else {
        text.to_owned()
    };
    let text = text.as_str();
    let before = w.rig.bot_replies(root).len();
    w.rig
        .sim
        .post_as(&w.rig.alice.id, channel, text, Some(root))
        .unwrap();
    let reply = next_bot_post(w, root, before, &format!("an answer to {text:?}")).await;
    println!("{text} → {}\n", reply.message);
    reply.message
}

fn link(w: &World, post_id: &str) -> String {
    format!("{}/eng/pl/{post_id}", w.rig.sim.base_url())
}

/// A session started by alice's top-level mention in `room`, its first
/// turn finished: the thread root (her post).
async fn a_session_thread(w: &World, tag: &str) -> Post {
    w.model.on(tag, vec![Step::text(format!("answer {tag}"))]);
    let root = w
        .rig
        .sim
        .post_as(
            &w.rig.alice.id,
            &w.room.id,
            &format!("@opencode-bot {tag} start"),
            None,
        )
        .unwrap();
    w.rig.finished_turns(&root.id, 1).await;
    root
}

async fn merge_across_two_threads_locks_the_source(w: &World, dest: &Post) {
    w.model.on(
        "MERGE-SRC",
        vec![Step::text("MERGED-SUMMARY: postgres through sqlx")],
    );
    w.model.on("DEST-2", vec![Step::text("answer DEST-2")]);
    w.model.on("SRC-AFTER", vec![Step::text("must not run")]);
    let source = thread(
        w,
        &[
            "MERGE-SRC we chose postgres".to_owned(),
            "MERGE-SRC and sqlx for queries".to_owned(),
        ],
    );
    let said = answer(
        w,
        &w.room.id,
        &dest.id,
        &format!("!merge {}", link(w, &source.id)),
    )
    .await;
    assert!(
        said.starts_with(":twisted_rightwards_arrows: **Merged thread context**"),
        "{said}"
    );
    assert!(said.contains("2 messages"), "{said}");
    assert!(
        said.contains("MERGED-SUMMARY: postgres through sqlx"),
        "public: shown"
    );
    assert_eq!(
        summary_requests(&w.model, "MERGE-SRC we chose postgres").len(),
        1
    );
    // The source is told where the talk went on.
    let notice = next_bot_post(w, &source.id, 0, "the merge notice").await;
    assert!(
        notice.message.starts_with(":lock: **Thread merged**"),
        "{}",
        notice.message
    );
    assert!(notice.message.contains(&format!("/pl/{}", dest.id)));
    // The next turn of the destination session sees the merged context.
    w.rig
        .sim
        .post_as(
            &w.rig.alice.id,
            &w.room.id,
            "@opencode-bot DEST-2 go on",
            Some(&dest.id),
        )
        .unwrap();
    let request = request_for(&w.model, "DEST-2").await;
    let history = request["messages"].to_string();
    assert!(
        history.contains("[Merged from another Mattermost thread"),
        "{history}"
    );
    assert!(history.contains("MERGED-SUMMARY: postgres through sqlx"));
    // The source is locked: a prompt there gets the pointer, never the model.
    let said = answer(w, &w.room.id, &source.id, "@opencode-bot SRC-AFTER do it").await;
    assert!(
        said.starts_with(":lock: This thread was merged into"),
        "{said}"
    );
    assert!(said.contains(&format!("/pl/{}", dest.id)));
    assert_eq!(bridge_support::requests_for(&w.model, "SRC-AFTER"), 0);
    // Merged once only.
    let other = a_session_thread(w, "DEST-3").await;
    let said = answer(
        w,
        &w.room.id,
        &other.id,
        &format!("!merge {}", link(w, &source.id)),
    )
    .await;
    assert!(said.contains("already merged"), "{said}");
}

async fn merge_refuses_a_private_channel_the_requester_is_not_in(w: &World, dest: &Post) {
    let secret = w
        .rig
        .sim
        .create_channel(
            &w.rig.team.id,
            "secret",
            "Secret",
            mattermost_sim::ChannelType::Private,
        )
        .unwrap();
    for u in [&w.bob.id, &w.rig.bot.id] {
        w.rig.sim.add_member(&secret.id, u).unwrap();
    }
    let hidden = w
        .rig
        .sim
        .post_as(&w.bob.id, &secret.id, "SECRET-TEXT the launch codes", None)
        .unwrap();
    let refused = answer(
        w,
        &w.room.id,
        &dest.id,
        &format!("!merge {}", link(w, &hidden.id)),
    )
    .await;
    assert!(refused.starts_with(":lock: Cannot merge"), "{refused}");
    assert!(!refused.contains("SECRET") && !refused.contains("Secret"));
    // The same answer as for a post that does not exist: nothing leaks.
    let missing = answer(
        w,
        &w.room.id,
        &dest.id,
        &format!("!merge {}", link(w, "zzzzzzzzzzzzzzzzzzzzzzzzzz")),
    )
    .await;
    assert_eq!(refused, missing);
    let seen = serde_json::to_string(&w.model.requests()).unwrap();
    assert!(
        !seen.contains("SECRET-TEXT"),
        "the private text reached the model"
    );
    let in_secret: Vec<Post> = w
        .rig
        .live_posts()
        .into_iter()
        .filter(|p| p.channel_id == secret.id && p.user_id == w.rig.bot.id)
        .collect();
    assert!(in_secret.is_empty(), "nothing posted there: {in_secret:?}");
}

async fn merge_refuses_itself_other_servers_and_malformed_links(w: &World, dest: &Post) {
    let said = answer(
        w,
        &w.room.id,
        &dest.id,
        &format!("!merge {}", link(w, &dest.id)),
    )
    .await;
    assert!(said.contains("into itself"), "{said}");
    let said = answer(
        w,
        &w.room.id,
        &dest.id,
        &format!("!merge https://evil.example.com/eng/pl/{}", dest.id),
    )
    .await;
    assert!(said.contains("another server (evil.example.com)"), "{said}");
    let said = answer(w, &w.room.id, &dest.id, "!merge not-a-link").await;
    assert!(said.contains("not a link to a post"), "{said}");
    let said = answer(w, &w.room.id, &dest.id, "!merge").await;
    assert!(said.contains("Give its permalink"), "{said}");
}

/// The id of the OpenCode session whose title starts with `tag`.
async fn session_titled(oc: &OpenCode, tag: &str) -> String {
    let sessions: Value = oc.get("/session").await.unwrap();
    sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"].as_str().is_some_and(|t| t.starts_with(tag)))
        .and_then(|s| s["id"].as_str())
        .unwrap_or_else(|| panic!("no session {tag}: {sessions}"))
        .to_owned()
}

/// The session card among the bot's posts of thread `root` (the root itself
/// in a DM), as it is now.
fn card_of(w: &World, root: &str) -> Post {
    w.rig
        .live_posts()
        .into_iter()
        .find(|p| {
            (p.id == root || p.root_id == root)
                && p.user_id == w.rig.bot.id
                && p.message.starts_with(":rocket: **OpenCode session")
        })
        .expect("a card")
}

async fn a_deleted_sessions_thread_is_marked_ended(w: &World) {
    w.model.on("END-1-AFTER", vec![Step::text("must not run")]);
    let root = a_session_thread(w, "END-1").await;
    let id = session_titled(&w.oc, "END-1").await;
    let before = w.rig.bot_replies(&root.id).len();
    w.oc.delete(&format!("/session/{id}")).await.unwrap();
    let notice = next_bot_post(w, &root.id, before, "the ended notice").await;
    assert!(
        notice
            .message
            .starts_with(":no_entry: **Session ended**: it was deleted in OpenCode"),
        "{}",
        notice.message
    );
    wait_until(Duration::from_secs(30), "the card marked ended", || {
        card_of(w, &root.id)
            .message
            .contains(":no_entry: **Ended**")
    })
    .await;
    assert!(
        card_of(w, &root.id)
            .message
            .ends_with("deleted in OpenCode.")
    );
    let said = answer(w, &w.room.id, &root.id, "@opencode-bot END-1-AFTER more").await;
    assert!(
        said.starts_with(":no_entry: This thread's session has ended"),
        "{said}"
    );
    assert!(said.contains("`!use <id>`"));
    assert_eq!(bridge_support::requests_for(&w.model, "END-1-AFTER"), 0);
}

async fn end_ends_a_dm_session(w: &World) {
    w.model.on("END-2", vec![Step::text("answer END-2")]);
    w.model.on("END-2-AFTER", vec![Step::text("must not run")]);
    let dm = w.rig.dm(&w.rig.alice.id);
    let before = w.rig.bot_roots(&dm).len();
    w.rig
        .sim
        .post_as(&w.rig.alice.id, &dm, "END-2 hello", None)
        .unwrap();
    let card = w.rig.card_for(&dm, before).await;
    w.rig.finished_turns(&card.id, 1).await;
    let said = answer(w, &dm, &card.id, "!end").await;
    assert!(
        said.starts_with(":no_entry: **Session ended**: @alice ended it with `!end`"),
        "{said}"
    );
    wait_until(Duration::from_secs(30), "the card marked ended", || {
        card_of(w, &card.id)
            .message
            .contains(":no_entry: **Ended**")
    })
    .await;
    let edited = card_of(w, &card.id).message;
    assert!(
        edited.contains(":no_entry: **Ended**") && edited.ends_with("by @alice."),
        "{edited}"
    );
    let said = answer(w, &dm, &card.id, "END-2-AFTER more").await;
    assert!(
        said.starts_with(":no_entry: This thread's session has ended"),
        "{said}"
    );
    assert_eq!(bridge_support::requests_for(&w.model, "END-2-AFTER"), 0);
    // The session is still in OpenCode: `!use` could attach it again.
    session_titled(&w.oc, "END-2").await;
}

async fn five_messages_go_with_a_mention(w: &World) {
    w.model.on("REQ-A", vec![Step::text("answer A")]);
    let texts: Vec<String> = (1..=6)
        .map(|i| format!("A-{i} line one of message {i}\nline two of {i}"))
        .collect();
    let root = thread(w, &texts);
    let prompt = ask_in_thread(w, &root, "REQ-A", "fix what they said").await;
    println!("{prompt}");
    assert!(prompt.contains("[Thread context: the 5 earlier messages before this request"));
    assert!(!prompt.contains("A-1 "), "only the last five: {prompt}");
    // Oldest first, each with its author and time, quoted line by line.
    let mut last = 0;
    for i in 2..=6 {
        let author = if i % 2 == 0 { "carol" } else { "bob" };
        let body = format!("\n> A-{i} line one of message {i}\n> line two of {i}\n");
        let at = prompt
            .find(&body)
            .unwrap_or_else(|| panic!("message {i}: {prompt}"));
        assert!(at > last, "message {i} in order");
        let header = prompt[..at].rsplit('\n').next().unwrap();
        assert!(
            header.starts_with(&format!("@{author} at ")) && header.ends_with(" UTC:"),
            "author and time of {i}: {header}"
        );
        last = at;
    }
    let end = prompt.find("[End of thread context]").unwrap();
    let request_at = prompt.find("REQ-A fix what they said").unwrap();
    assert!(
        last < end && end < request_at,
        "the request follows the context"
    );
    assert!(
        !prompt.contains("@opencode-bot REQ-A"),
        "the mention is not context"
    );
}

async fn a_long_thread_is_summarised_by_the_small_model(w: &World) {
    w.model.on(
        "BIG-B",
        vec![Step::text(
            "SUMMARY-OF-B: they agreed to refactor the parser",
        )],
    );
    w.model.on("REQ-B", vec![Step::text("answer B")]);
    let texts: Vec<String> = (1..=4)
        .map(|i| format!("BIG-B part {i} {}", "lorem ipsum ".repeat(420)))
        .collect();
    let total: usize = texts.iter().map(|t| t.chars().count()).sum();
    assert!(total > 20_000, "{total}");
    let root = thread(w, &texts);
    let prompt = ask_in_thread(w, &root, "REQ-B", "go").await;
    let asked = summary_requests(&w.model, "BIG-B");
    assert_eq!(asked.len(), 1, "one summary, on the small model");
    let asked = last_user_text(&asked[0]);
    for i in 1..=4 {
        assert!(
            asked.contains(&format!("> BIG-B part {i} ")),
            "part {i} summarised"
        );
    }
    assert!(prompt.contains("a summary, made by OpenCode, of the 4 earlier messages"));
    assert!(prompt.contains("> SUMMARY-OF-B: they agreed to refactor the parser"));
    assert!(
        !prompt.contains("lorem ipsum"),
        "the summary replaces the text"
    );
}

async fn a_failing_summariser_leaves_the_newest_messages(w: &World) {
    w.model
        .on("BIG-C", vec![Step::error(400, "quota exceeded for small")]);
    w.model.on("REQ-C", vec![Step::text("answer C")]);
    let texts: Vec<String> = (1..=3)
        .map(|i| format!("BIG-C part {i} {}", "dolor sit ".repeat(400)))
        .collect();
    let root = thread(w, &texts);
    let prompt = ask_in_thread(w, &root, "REQ-C", "go").await;
    assert_eq!(summary_requests(&w.model, "BIG-C").len(), 1);
    // Each part is about 4,000 characters: only the newest fits in 8,000.
    assert!(
        prompt.contains("the newest 1 of the 3 earlier messages"),
        "{prompt}"
    );
    assert!(prompt.contains("2 older ones were left out"));
    assert!(prompt.contains("summarising failed"));
    assert!(prompt.contains("> BIG-C part 3 ") && !prompt.contains("BIG-C part 1 "));
}

async fn a_hanging_summariser_is_given_up(w: &World) {
    w.model.on("BIG-D", vec![Step::Hang]);
    w.model.on("REQ-D", vec![Step::text("answer D")]);
    let texts: Vec<String> = (1..=3)
        .map(|i| format!("BIG-D part {i} {}", "amet elit ".repeat(400)))
        .collect();
    let root = thread(w, &texts);
    let prompt = ask_in_thread(w, &root, "REQ-D", "go").await;
    assert!(prompt.contains("no summary within 5 s"), "{prompt}");
    assert!(prompt.contains("> BIG-D part 3 ") && !prompt.contains("BIG-D part 1 "));
    // The stuck summariser's session is aborted and deleted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while summary_sessions(&w.oc).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "summary sessions left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn the_summarisers_sessions_get_no_thread(w: &World) {
    // A session started at the TUI gets its thread in the default channel
    // after the same grace the summariser's sessions would have had.
    let made: Value =
        w.oc.post("/session", serde_json::json!({"title": "from the tui"}))
            .await
            .unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    let mut cards = Vec::new();
    wait_until(Duration::from_secs(60), "the TUI session's card", || {
        cards = w.rig.bot_roots(&w.tui.id);
        cards.iter().any(|c| c.message.contains("from the tui"))
    })
    .await;
    assert_eq!(
        cards.len(),
        1,
        "only the TUI session has a thread: {cards:?}"
    );
    let _ = id;
}
