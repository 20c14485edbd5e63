//! Outside a DM only an explicit `@botname` addresses the bot: the server
//! also lists the bot in `mentions` for every post in a group message it is
//! in and for `@here`, `@channel` and `@all`, and none of those is a prompt;
//! nor is a later reply without the name when 🔁 asks for the last prompt.

use pretty_assertions::assert_eq;

use super::{World, eventually};

#[tokio::test]
async fn only_an_explicit_name_outside_code_addresses_the_bot() {
    let w = World::new().await;
    let _agent = w.start().await;
    let gm = w
        .sim
        .group_channel(&[w.alice.id.clone(), w.bob.id.clone(), w.bot.id.clone()])
        .unwrap()
        .id;
    let quiet = [
        (gm.as_str(), "group chatter about lunch"),
        (gm.as_str(), "group chatter about `@opencode-bot` in code"),
        (gm.as_str(), "group chatter\n```\n@opencode-bot fenced\n```"),
        (w.town.as_str(), "@here town chatter"),
        (w.town.as_str(), "@channel town chatter, @all of you"),
        (w.town.as_str(), "town chatter for @opencode-bottle"),
    ];
    let mut quiet_posts = Vec::new();
    for (channel, text) in quiet {
        quiet_posts.push(w.sim.post_as(&w.alice.id, channel, text, None).unwrap());
    }
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("chatter"), 0);
    for post in &quiet_posts {
        assert_eq!(w.bot_replies(&post.id), Vec::new(), "{}", post.message);
    }

    let asked = w
        .sim
        .post_as(&w.alice.id, &gm, "@OpenCode-Bot group question", None)
        .unwrap();
    eventually("the group question is prompted", || {
        w.opencode.prompted("group question") == 1
    })
    .await;
    let card = w.reply_with(&asked.id, "OpenCode session").await;
    assert_eq!(card.channel_id, gm);
}

#[tokio::test]
async fn a_retry_in_a_channel_thread_sends_the_last_post_that_named_the_bot() {
    let w = World::new().await;
    let agent = w.start().await;
    let asked = w
        .sim
        .post_as(&w.alice.id, &w.town, "@opencode-bot first prompt", None)
        .unwrap();
    let card = w.reply_with(&asked.id, "OpenCode session").await;
    w.sim
        .post_as(&w.alice.id, &w.town, "just chatting", Some(&asked.id))
        .unwrap();
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("first prompt"), 1);
    assert_eq!(w.opencode.prompted("just chatting"), 0);

    // Restarted, the agent no longer remembers the prompt: it reads the
    // thread back, where only the first post named the bot.
    agent.stop().await;
    let _agent = w.start().await;
    w.sentinel().await;
    w.sim.react_as(&w.alice.id, &card.id, "repeat").unwrap();
    eventually("the retry", || w.opencode.prompted("first prompt") == 2).await;
    assert_eq!(w.opencode.prompted("just chatting"), 0);
}
