//! The remote-control loop end to end: Mattermost posts (simulator) become
//! prompts in real OpenCode sessions (scripted model), and the replies
//! stream back into one thread per session, byte for byte.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::time::Duration;

use bridge_support::{Rig, body_of, last_user_text, long_reply, wait_until};
use harness::model::{ScriptedModel, Step, content_text};
use serde_json::{Value, json};

async fn session_count(oc: &harness::opencode::OpenCode) -> usize {
    oc.get("/session")
        .await
        .unwrap()
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

/// The conversation the model saw in the request that answered `phrase`.
fn conversation_for(model: &ScriptedModel, phrase: &str) -> String {
    let request = model
        .requests()
        .into_iter()
        .rev()
        .find(|r| last_user_text(r).contains(phrase))
        .unwrap_or_else(|| panic!("no model request for {phrase:?}"));
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(content_text)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_become_sessions_and_replies_stream_back_exactly() {
    let rig = Rig::new().await;
    let bob = rig.sim.create_user("bob").unwrap();
    let mallory = rig.sim.create_user("mallory").unwrap();
    let model = ScriptedModel::start().await.unwrap();
    model.on("ten please", vec![Step::text("0123456789")]);
    for n in ["one", "two", "three"] {
        model.on(
            &format!("follow-up {n}"),
            vec![Step::text(format!("reply {n}"))],
        );
    }
    model.on("second session", vec![Step::text("second")]);
    model.on("big reply", vec![Step::text(long_reply())]);
    model.on(
        "tool turn",
        vec![
            Step::text_then_tool(
                "Let me look.",
                "bash",
                json!({"command": "echo tool-ran", "description": "Echo a marker"}),
            ),
            Step::text("Found it: tool-ran."),
        ],
    );
    model.on("channel question", vec![Step::text("channel answer")]);
    model.on("from bob", vec![Step::text("hello bob")]);
    model.on("gm question", vec![Step::text("gm answer")]);
    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        ("OPENCODE_MM_ALLOWED_USERS", &bob.id),
    ]);
    let oc = rig.opencode(&model, env).await;
    let dm = rig.dm(&rig.alice.id);

    // A DM creates a session and a thread rooted at a card naming it.
    rig.sim
        .post_as(&rig.alice.id, &dm, "ten please", None)
        .unwrap();
    let card = rig.card_for(&dm, 0).await;
    println!("card:\n{}", card.message);
    assert!(
        card.message.contains("**Project**: project"),
        "{}",
        card.message
    );
    assert!(card.message.contains(&oc.project.display().to_string()));
    assert!(card.message.contains("**Started**: "));
    let turns = rig.finished_turns(&card.id, 1).await;
    println!("reply:\n{}", turns[0].join("\n=====\n"));
    assert_eq!(body_of(&turns[0]), "0123456789");
    assert_eq!(session_count(&oc).await, 1);

    // Three follow-ups in the thread reach the same session.
    for (i, n) in ["one", "two", "three"].iter().enumerate() {
        rig.sim
            .post_as(
                &rig.alice.id,
                &dm,
                &format!("follow-up {n}"),
                Some(&card.id),
            )
            .unwrap();
        let turns = rig.finished_turns(&card.id, i + 2).await;
        assert_eq!(body_of(&turns[i + 1]), format!("reply {n}"));
    }
    assert_eq!(session_count(&oc).await, 1);
    let seen = conversation_for(&model, "follow-up three");
    assert!(
        seen.contains("ten please") && seen.contains("reply two"),
        "{seen}"
    );
    assert!(seen.contains("[Mattermost DM from @alice]"), "{seen}");
    assert!(seen.contains(&format!("thread={}", card.id)), "{seen}");

    // A second DM is a second session with its own thread.
    rig.sim
        .post_as(&rig.alice.id, &dm, "second session please", None)
        .unwrap();
    let card2 = rig.card_for(&dm, 1).await;
    assert_ne!(card2.id, card.id);
    let turns2 = rig.finished_turns(&card2.id, 1).await;
    assert_eq!(body_of(&turns2[0]), "second");
    assert_eq!(session_count(&oc).await, 2);
    assert!(!conversation_for(&model, "second session").contains("ten please"));

    // 40,000 characters: rolled over, the fence closed and reopened, exact.
    rig.sim
        .post_as(&rig.alice.id, &dm, "big reply", Some(&card2.id))
        .unwrap();
    let turns2 = rig.finished_turns(&card2.id, 2).await;
    let big = &turns2[1];
    println!(
        "big reply: {} posts of {:?} chars",
        big.len(),
        big.iter().map(|p| p.chars().count()).collect::<Vec<_>>()
    );
    assert!(big.len() >= 3, "40,000 characters need at least 3 posts");
    assert!(big.iter().all(|p| p.chars().count() <= 15_000));
    assert!(
        big.iter()
            .any(|p| p.ends_with(&format!("```{}", bridge_support::CONTINUED))),
        "a post closes the fence it was cut in"
    );
    assert!(
        big[1..].iter().any(|p| p.starts_with("```rust\n")),
        "the next post reopens it"
    );
    assert_eq!(body_of(big), long_reply());

    // Text, a tool, more text: the earlier text is kept.
    rig.sim
        .post_as(&rig.alice.id, &dm, "tool turn", Some(&card2.id))
        .unwrap();
    let turns2 = rig.finished_turns(&card2.id, 3).await;
    let last = turns2[2].last().unwrap();
    println!("tool turn:\n{last}");
    assert_eq!(body_of(&turns2[2]), "Let me look.\n\nFound it: tool-ran.");
    assert!(
        last.contains("bash"),
        "the footer or tool line names the tool"
    );

    // Replies never cross threads.
    assert_eq!(rig.turns(&card.id).len(), 4);
    assert_eq!(rig.turns(&card2.id).len(), 3);

    // A stranger gets one notice and no session; a channel post without a
    // mention gets nothing. Posts are handled in order, so once the mention
    // below is answered, these were handled too.
    let mdm = rig.dm(&mallory.id);
    rig.sim
        .post_as(&mallory.id, &mdm, "let me in", None)
        .unwrap();
    rig.sim.post_as(&mallory.id, &mdm, "please", None).unwrap();
    let town = rig
        .sim
        .create_channel(
            &rig.team.id,
            "town",
            "Town",
            mattermost_sim::ChannelType::Open,
        )
        .unwrap();
    for u in [&rig.alice.id, &rig.bot.id] {
        rig.sim.add_member(&town.id, u).unwrap();
    }
    rig.sim
        .post_as(
            &rig.alice.id,
            &town.id,
            "channel question without a mention",
            None,
        )
        .unwrap();
    let asked = rig
        .sim
        .post_as(
            &rig.alice.id,
            &town.id,
            "@opencode-bot channel question",
            None,
        )
        .unwrap();
    // In a channel the person's post is the root; the card is its first reply.
    let turns = rig.finished_turns(&asked.id, 1).await;
    assert_eq!(body_of(&turns[0]), "channel answer");
    let in_town: Vec<_> = rig
        .live_posts()
        .into_iter()
        .filter(|p| p.channel_id == town.id && p.user_id == rig.bot.id)
        .collect();
    assert!(
        in_town.iter().all(|p| p.root_id == asked.id),
        "{in_town:#?}"
    );
    let to_mallory: Vec<_> = rig
        .live_posts()
        .into_iter()
        .filter(|p| p.channel_id == mdm && p.user_id == rig.bot.id)
        .collect();
    assert_eq!(to_mallory.len(), 1, "one notice: {to_mallory:#?}");
    assert!(to_mallory[0].message.contains("OPENCODE_MM_ALLOWED_USERS"));
    assert!(!conversation_for_any(&model, "let me in"));
    assert!(!conversation_for_any(&model, "without a mention"));

    // Outside a DM only an explicit @name is a prompt. The server lists the
    // bot in `mentions` for every post of a group message it is in, and for
    // @here: neither is one, nor is the name quoted in code. Posts are
    // handled in order, so once the sentinel is answered these were judged.
    let gm = rig
        .sim
        .group_channel(&[rig.alice.id.clone(), bob.id.clone(), rig.bot.id.clone()])
        .unwrap()
        .id;
    let quiet = [
        (gm.as_str(), "gm chatter without the name"),
        (gm.as_str(), "gm chatter about `@opencode-bot` in code"),
        (town.id.as_str(), "@here town chatter"),
    ]
    .map(|(channel, text)| rig.sim.post_as(&rig.alice.id, channel, text, None).unwrap());
    rig.sentinel(&rig.alice.id).await;
    for post in &quiet {
        assert!(rig.bot_replies(&post.id).is_empty(), "{}", post.message);
    }
    assert!(!conversation_for_any(&model, "chatter"));
    let gm_asked = rig
        .sim
        .post_as(&rig.alice.id, &gm, "@opencode-bot gm question", None)
        .unwrap();
    let turns = rig.finished_turns(&gm_asked.id, 1).await;
    assert_eq!(body_of(&turns[0]), "gm answer");
    let in_gm: Vec<_> = rig
        .live_posts()
        .into_iter()
        .filter(|p| p.channel_id == gm && p.user_id == rig.bot.id)
        .collect();
    assert!(in_gm.iter().all(|p| p.root_id == gm_asked.id), "{in_gm:#?}");

    // An allowed user other than the owner may prompt too.
    let bdm = rig.dm(&bob.id);
    rig.sim.post_as(&bob.id, &bdm, "from bob", None).unwrap();
    let bcard = rig.card_for(&bdm, 0).await;
    let bturns = rig.finished_turns(&bcard.id, 1).await;
    assert_eq!(body_of(&bturns[0]), "hello bob");

    // Our own posts (cards, replies, notices) never became sessions.
    assert_eq!(session_count(&oc).await, 5);
    oc.stop().await;
}

fn conversation_for_any(model: &ScriptedModel, phrase: &str) -> bool {
    model
        .requests()
        .iter()
        .any(|r: &Value| r.to_string().contains(phrase))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfigured_agent_refuses_and_explains_once() {
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();
    let oc = rig.opencode(&model, rig.env(&[])).await;
    let dm = rig.dm(&rig.alice.id);
    rig.sim
        .post_as(&rig.alice.id, &dm, "do something", None)
        .unwrap();
    rig.sim
        .post_as(&rig.alice.id, &dm, "anyone?", None)
        .unwrap();
    let mut notices = Vec::new();
    wait_until(Duration::from_secs(30), "the notice", || {
        notices = rig.bot_replies(
            &rig.live_posts()
                .iter()
                .find(|p| p.message == "do something")
                .unwrap()
                .id,
        );
        !notices.is_empty()
    })
    .await;
    // Once a sentinel in another DM is answered (with its own one-time
    // notice), the second post was handled: it must not have been answered.
    let bob = rig.sim.create_user("bob").unwrap();
    let sentinel = rig.sentinel(&bob.id).await;
    let all_bot: Vec<_> = rig
        .live_posts()
        .into_iter()
        .filter(|p| p.user_id == rig.bot.id && p.channel_id != sentinel.channel_id)
        .collect();
    assert_eq!(all_bot.len(), 1, "{all_bot:#?}");
    assert!(all_bot[0].message.contains("MATTERMOST_OWNER_USER_ID"));
    assert!(all_bot[0].message.contains("OPENCODE_MM_ALLOWED_USERS"));
    assert_eq!(session_count(&oc).await, 0);
    assert!(model.requests().is_empty());
    oc.stop().await;
}
