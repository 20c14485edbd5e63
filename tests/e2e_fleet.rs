//! Several agents behind one bot, sharing one store: who answers what, and
//! reaching a session on the other agent from a DM. Real OpenCode (one per
//! agent), the scripted model and the simulator.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::time::Duration;

use bridge_support::shared_store::SharedStore;
use bridge_support::{Rig, body_of, requests_for, wait_until};
use harness::model::{ScriptedModel, Step};

/// The agents share PostgreSQL when the test run has one, else SQLite.
/// Agent one takes DMs only and starts first, so the first DM's session is
/// its own; agent two also takes channels, so a channel @mention is its own.
/// Then both run: top-level DM commands are answered once, `!sessions`
/// shows both instances, and `!use` reaches a session wherever it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_one_bot_commands_once_sessions_everywhere() {
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();
    model.on("first job", vec![Step::text("one")]);
    model.on("town job", vec![Step::text("two")]);
    model.on("after use", vec![Step::text("three")]);
    let shared = SharedStore::new().await;
    println!("the agents share {}", shared.kind);
    let base = [
        ("MATTERMOST_OWNER_USER_ID", rig.alice.id.as_str()),
        shared.setting(),
    ];
    let env_one = rig.env(&[base[0], base[1], ("OPENCODE_MM_ALLOWED_CHANNEL_TYPES", "D")]);
    let env_two = rig.env(&[
        base[0],
        base[1],
        ("OPENCODE_MM_ALLOWED_CHANNEL_TYPES", "D,O"),
    ]);
    let one = rig.opencode(&model, env_one).await;
    let dm = rig.dm(&rig.alice.id);
    let first = rig
        .sim
        .post_as(&rig.alice.id, &dm, "first job", None)
        .unwrap();
    let card = rig.card_for(&dm, 0).await;
    rig.finished_turns(&card.id, 1).await;

    let two = rig.opencode(&model, env_two).await;
    let town = rig.channel_with_bot("town");
    let asked = rig
        .sim
        .post_as(
            &rig.alice.id,
            &town.id,
            &format!("@{} town job", rig.bot.username),
            None,
        )
        .unwrap();
    let turns = rig.finished_turns(&asked.id, 1).await;
    assert_eq!(body_of(&turns[0]), "two");

    let store = &shared.store;
    let i1 = store.claim(&first.id).await.unwrap().unwrap().instance_id;
    let i2 = store.claim(&asked.id).await.unwrap().unwrap().instance_id;
    assert_ne!(i1, i2, "each agent has its own id");
    let instances = store.instances().await.unwrap();
    let name_of = |id: &str| {
        instances
            .iter()
            .find(|i| i.id == id)
            .unwrap()
            .display_name()
    };
    let s1 = store.thread(&card.id).await.unwrap().unwrap().session_id;

    // `!sessions` at the top of the DM: one answer, both instances.
    let listed = rig
        .sim
        .post_as(&rig.alice.id, &dm, "!sessions", None)
        .unwrap();
    let mut answer = String::new();
    wait_until(Duration::from_secs(60), "the session list", || {
        answer = rig
            .bot_replies(&listed.id)
            .first()
            .map(|p| p.message.clone())
            .unwrap_or_default();
        !answer.is_empty()
    })
    .await;
    println!("{answer}");
    assert!(answer.contains(&name_of(&i1)), "{answer}");
    assert!(answer.contains(&name_of(&i2)), "{answer}");
    // A DM session's thread is the card's, also reached from the first post.
    assert!(
        answer.contains(&card.id) || answer.contains(&first.id),
        "S1's thread is linked: {answer}"
    );
    assert!(
        answer.contains(&asked.id),
        "S2's thread is linked: {answer}"
    );

    // `!use` of agent one's session, whichever agent answers commands.
    let used = rig
        .sim
        .post_as(&rig.alice.id, &dm, &format!("!use {}", &s1[..12]), None)
        .unwrap();
    wait_until(Duration::from_secs(60), "the use answer", || {
        rig.bot_replies(&used.id)
            .iter()
            .any(|p| p.message.contains(":link:"))
    })
    .await;
    let root = store
        .selection(&dm)
        .await
        .unwrap()
        .expect("the DM is attached");
    assert_eq!(store.thread(&root).await.unwrap().unwrap().session_id, s1);
    let follow = rig
        .sim
        .post_as(&rig.alice.id, &dm, "after use", None)
        .unwrap();
    let turns = rig
        .finished_turns(&root, if root == card.id { 2 } else { 1 })
        .await;
    assert_eq!(body_of(turns.last().unwrap()), "three");
    assert_eq!(
        store.claim(&follow.id).await.unwrap().unwrap().instance_id,
        i1,
        "agent one runs its session"
    );

    // Everything before the sentinel was handled: each command was answered
    // once, and each prompt ran once.
    let sentinel = rig.sentinel(&rig.alice.id).await;
    assert_eq!(rig.bot_replies(&sentinel.id).len(), 1, "the sentinel once");
    assert_eq!(rig.bot_replies(&listed.id).len(), 1, "!sessions once");
    assert_eq!(rig.bot_replies(&used.id).len(), 1, "!use once");
    assert_eq!(requests_for(&model, "after use"), 1);
    one.stop().await;
    two.stop().await;
}
