//! Who a `posted` event mentions, per recipient; mention counts; reading a
//! channel (`members/me/view`) and muting channel-wide mentions.

mod common;

use common::{World, assert_app_error, inner, next_event};
use serde_json::{Value, json};

/// The recipient's `mentions`, if the event has them.
fn mentions(ev: &Value) -> Option<Value> {
    ev["data"].get("mentions").map(|_| inner(ev, "mentions"))
}

#[tokio::test]
async fn mentions_follow_the_servers_rules() {
    let w = World::new().await;
    // The bot and alice are online; bob has no socket.
    let mut bot = w.ws_header(&w.bot.token, "").await;
    let mut alice = w.ws_header(&w.alice.token, "").await;
    next_event(&mut bot, "hello").await;
    next_event(&mut alice, "hello").await;
    let gm = w
        .sim
        .group_channel(&[w.alice.id.clone(), w.bob.id.clone(), w.bot.id.clone()])
        .unwrap();
    let town = &w.town.id;
    let bob_mentions = |channel: String| {
        let w = &w;
        async move {
            let (s, m) = w
                .get(&format!("/channels/{channel}/members/me"), &w.bob.token)
                .await;
            assert_eq!(s, 200, "{m}");
            m["mention_count"].as_i64().unwrap()
        }
    };

    // A group message mentions every member but its author.
    w.sim.post_as(&w.alice.id, &gm.id, "lunch?", None).unwrap();
    let ev = next_event(&mut bot, "posted").await;
    assert_eq!(ev["data"]["channel_type"], "G");
    assert_eq!(mentions(&ev), Some(json!([w.bot.id])));
    assert_eq!(mentions(&next_event(&mut alice, "posted").await), None);
    assert_eq!(bob_mentions(gm.id.clone()).await, 1);

    // @here: the online members only.
    w.sim
        .post_as(&w.alice.id, town, "@here standup", None)
        .unwrap();
    assert_eq!(
        mentions(&next_event(&mut bot, "posted").await),
        Some(json!([w.bot.id]))
    );
    assert_eq!(mentions(&next_event(&mut alice, "posted").await), None);
    assert_eq!(bob_mentions(town.clone()).await, 0);

    // @channel: everyone, online or not.
    w.sim
        .post_as(&w.alice.id, town, "@channel standup", None)
        .unwrap();
    assert_eq!(
        mentions(&next_event(&mut bot, "posted").await),
        Some(json!([w.bot.id]))
    );
    next_event(&mut alice, "posted").await;
    assert_eq!(bob_mentions(town.clone()).await, 1);

    // A member who ignores channel mentions is not mentioned by @all.
    let (s, b) = w
        .put(
            &format!("/channels/{town}/members/me/notify_props"),
            &w.bot.token,
            json!({"channel_id": town, "user_id": w.bot.id, "ignore_channel_mentions": "on"}),
        )
        .await;
    assert_eq!((s, b), (200, json!({"status": "OK"})));
    let updated = next_event(&mut bot, "channel_member_updated").await;
    assert_eq!(updated["broadcast"]["user_id"], w.bot.id.as_str());
    let member = inner(&updated, "channelMember");
    assert_eq!(member["notify_props"]["ignore_channel_mentions"], "on");
    assert_eq!(member["notify_props"]["mark_unread"], "all");
    assert!(member["notify_props"].get("channel_id").is_none());
    w.sim
        .post_as(&w.alice.id, town, "@all standup", None)
        .unwrap();
    assert_eq!(mentions(&next_event(&mut bot, "posted").await), None);
    next_event(&mut alice, "posted").await;
    assert_eq!(bob_mentions(town.clone()).await, 2);

    // Names: any case, punctuation after; not in code, not in a longer
    // name, not by oneself.
    for (text, to_bot) in [
        ("`@mybot` in code", false),
        ("```\n@mybot\n```", false),
        ("@mybotty and me@mybot", false),
        ("thanks @MyBot.", true),
        ("note to @alice", false),
    ] {
        w.sim.post_as(&w.alice.id, town, text, None).unwrap();
        let want = to_bot.then(|| json!([w.bot.id]));
        assert_eq!(
            mentions(&next_event(&mut bot, "posted").await),
            want,
            "{text}"
        );
        assert_eq!(
            mentions(&next_event(&mut alice, "posted").await),
            None,
            "{text}"
        );
    }
    let (_, bot_member) = w
        .get(&format!("/channels/{town}/members/me"), &w.bot.token)
        .await;
    assert_eq!(bot_member["mention_count"], 3, "{bot_member}");
    assert_eq!(bot_member["mention_count_root"], 3, "{bot_member}");
}

#[tokio::test]
async fn viewing_a_channel_reads_it() {
    let w = World::new().await;
    let mut bot = w.ws_header(&w.bot.token, "").await;
    next_event(&mut bot, "hello").await;
    let town = &w.town.id;
    let post = w
        .sim
        .post_as(&w.alice.id, town, "@mybot look", None)
        .unwrap();
    next_event(&mut bot, "posted").await;
    let (_, before) = w
        .get(&format!("/channels/{town}/members/me"), &w.bot.token)
        .await;
    assert_eq!(before["mention_count"], 1);
    assert_eq!(before["msg_count"], 0);

    let (s, b) = w
        .post(
            "/channels/members/me/view",
            &w.bot.token,
            json!({"channel_id": town, "prev_channel_id": "", "collapsed_threads_supported": true}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"status": "OK", "last_viewed_at_times": {town.as_str(): post.create_at}})
    );
    let viewed = next_event(&mut bot, "multiple_channels_viewed").await;
    assert_eq!(viewed["broadcast"]["user_id"], w.bot.id.as_str());
    assert_eq!(
        viewed["data"]["channel_times"],
        json!({town.as_str(): post.create_at})
    );
    let (_, after) = w
        .get(&format!("/channels/{town}/members/me"), &w.bot.token)
        .await;
    assert_eq!(after["mention_count"], 0);
    assert_eq!(after["mention_count_root"], 0);
    assert_eq!(after["msg_count"], 1);
    assert_eq!(after["last_viewed_at"], post.create_at);

    // Nothing new: the member's own time, no event. A channel the user is
    // not in, and a blank id, add nothing.
    let carol = w.sim.create_user("carol").unwrap();
    let gm = w
        .sim
        .group_channel(&[w.alice.id.clone(), w.bob.id.clone(), carol.id])
        .unwrap();
    let (s, b) = w
        .post(
            &format!("/channels/members/{}/view", w.bot.id),
            &w.bot.token,
            json!({"channel_id": gm.id, "prev_channel_id": town}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["last_viewed_at_times"],
        json!({town.as_str(): post.create_at})
    );
    let (s, b) = w
        .post(
            "/channels/members/me/view",
            &w.bot.token,
            json!({"channel_id": ""}),
        )
        .await;
    assert_eq!(
        (s, b),
        (200, json!({"status": "OK", "last_viewed_at_times": {}}))
    );

    // Errors, as the real handler gives them.
    let (s, b) = w
        .post(
            &format!("/channels/members/{}/view", w.alice.id),
            &w.bot.token,
            json!({"channel_id": town}),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .post(
            "/channels/members/me/view",
            &w.bot.token,
            json!({"channel_id": "nope"}),
        )
        .await;
    assert_app_error(s, &b, 400, "api.context.invalid_param.app_error");
    let (s, b) = w
        .post(
            "/channels/members/me/view",
            &w.bot.token,
            json!({"channel_id": 7}),
        )
        .await;
    assert_app_error(s, &b, 400, "api.context.invalid_body_param.app_error");
    let (s, b) = w
        .put(
            &format!("/channels/{}/members/me/notify_props", gm.id),
            &w.bot.token,
            json!({"ignore_channel_mentions": "on"}),
        )
        .await;
    assert_app_error(s, &b, 404, "app.channel.get_member.missing.app_error");
    let (s, b) = w
        .put(
            &format!("/channels/{town}/members/me/notify_props"),
            &w.bot.token,
            json!({"ignore_channel_mentions": true}),
        )
        .await;
    assert_app_error(s, &b, 400, "api.context.invalid_param.app_error");
}
