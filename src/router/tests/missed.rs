//! Posts caught up past `OPENCODE_MM_CATCH_UP_MAX_AGE` are offered, not
//! run; ▶️ runs them once; reactions made while the agent was away count.

use std::time::Duration;

use mattermost_sim::KillMode;
use pretty_assertions::assert_eq;

use super::{World, eventually};
use crate::opencode::PermissionReply;
use crate::opencode::events::PermissionAsked;
use crate::store::{ClaimState, Store, ThreadBinding, ThreadStatus, now_millis};

const HOUR: Duration = Duration::from_secs(3600);
const NOTICE: &str = "I was offline when you sent this";

async fn claim_state(world: &World, post_id: &str) -> Option<ClaimState> {
    world.store.claim(post_id).await.unwrap().map(|c| c.state)
}

#[tokio::test]
async fn a_post_caught_up_after_an_outage_is_offered_and_runs_once_on_request() {
    let w = World::new().await;
    let agent = w.start().await;
    // A post the bot ignores makes the link follow the channel.
    w.sim.post_as(&w.alice.id, &w.town, "hi all", None).unwrap();
    w.sentinel().await;

    // The link drops; alice writes; the agent only learns of it two hours
    // later, from the link's catch-up (the resume is refused).
    assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Drop), 1);
    let old = w
        .sim
        .post_as(
            &w.alice.id,
            &w.town,
            "@opencode-bot hello from the past",
            None,
        )
        .unwrap();
    w.clock.advance(2 * HOUR);

    let notice = w.reply_with(&old.id, NOTICE).await;
    assert!(
        notice.message.contains(":arrow_forward:"),
        "{}",
        notice.message
    );
    assert_eq!(claim_state(&w, &old.id).await, Some(ClaimState::Missed));
    assert_eq!(w.opencode.prompted("hello from the past"), 0);
    assert_eq!(w.bot_replies(&old.id).len(), 1, "one notice");

    // Bob may prompt, but it is not his post; a reaction of the bot's own is
    // the button, not a request.
    w.sim
        .react_as(&w.bob.id, &notice.id, "arrow_forward")
        .unwrap();
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("hello from the past"), 0);

    w.sim
        .react_as(&w.alice.id, &notice.id, "arrow_forward")
        .unwrap();
    eventually("the missed post runs", || {
        w.opencode.prompted("hello from the past") == 1
    })
    .await;
    eventually("the notice says it ran", || {
        w.sim
            .post(&notice.id)
            .is_some_and(|p| p.message.contains("Running it now, as @alice asked"))
    })
    .await;

    // Once only, whoever asks again.
    w.sim
        .react_as(&w.owner.id, &notice.id, "arrow_forward")
        .unwrap();
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("hello from the past"), 1);
    assert_ne!(claim_state(&w, &old.id).await, Some(ClaimState::Missed));
    agent.stop().await;
}

#[tokio::test]
async fn a_post_caught_up_within_the_age_limit_runs_as_before() {
    let w = World::new().await;
    let _agent = w.start().await;
    w.sentinel().await;
    assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Drop), 1);
    w.sim
        .post_as(&w.alice.id, &w.dm, "just a moment ago", None)
        .unwrap();
    w.clock.advance(HOUR / 2);
    eventually("the caught-up post runs", || {
        w.opencode.prompted("just a moment ago") == 1
    })
    .await;
}

#[tokio::test]
async fn an_offer_outlives_a_restart_and_a_reaction_made_while_down_runs_it() {
    let w = World::new().await;
    // The agent last read alice's DM before she wrote.
    let key = format!("{}|{}", w.instance_id(), w.dm);
    w.store
        .advance_cursor(&key, now_millis() - 1000, "seen")
        .await
        .unwrap();
    let old = w
        .sim
        .post_as(&w.alice.id, &w.dm, "summarise the logs", None)
        .unwrap();
    w.clock.advance(3 * HOUR);

    let first = w.start().await;
    let notice = w.reply_with(&old.id, NOTICE).await;
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("summarise the logs"), 0);
    first.stop().await;

    // Nobody listens while alice asks for it.
    w.sim
        .react_as(&w.alice.id, &notice.id, "arrow_forward")
        .unwrap();
    let _second = w.start().await;
    eventually("the missed post runs after the restart", || {
        w.opencode.prompted("summarise the logs") == 1
    })
    .await;
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("summarise the logs"), 1);
    assert_eq!(w.bot_replies(&old.id).len(), 1, "no second notice");
}

#[tokio::test]
async fn an_answer_given_while_the_link_was_down_is_read_back() {
    let w = World::new().await;
    // A thread of this agent whose session waits on a permission request.
    let root = w.sim.post_as(&w.bot.id, &w.dm, "card", None).unwrap();
    w.store
        .bind_thread(&ThreadBinding {
            root_post_id: root.id.clone(),
            channel_id: w.dm.clone(),
            session_id: "ses_wait".into(),
            instance_id: w.instance_id(),
            created_by: w.alice.id.clone(),
            created_at: now_millis(),
            status: ThreadStatus::Active,
            model: None,
        })
        .await
        .unwrap();
    w.opencode.pending.lock().unwrap().push(PermissionAsked {
        id: "per_1".into(),
        session_id: "ses_wait".into(),
        permission: "bash".into(),
        patterns: vec!["ls".into()],
        ..PermissionAsked::default()
    });
    let _agent = w.start().await;
    let request = w.reply_with(&root.id, ":lock:").await;
    // Recovery (which posted it and its ✅/❌ buttons) is over.
    w.sentinel().await;

    // Alice answers while the bot's socket is down; the event is lost.
    assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Drop), 1);
    w.sim
        .react_as(&w.alice.id, &request.id, "white_check_mark")
        .unwrap();
    eventually("the lost answer reaches OpenCode", || {
        !w.opencode.answers.lock().unwrap().is_empty()
    })
    .await;
    w.sentinel().await;
    assert_eq!(
        *w.opencode.answers.lock().unwrap(),
        vec![("per_1".to_owned(), PermissionReply::Once)]
    );
}
