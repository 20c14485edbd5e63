//! WebSocket: both auth styles, hello, seq, replies, event payloads, resume.

mod common;

use std::time::Duration;

use common::{End, World, expect_end, inner, next_event, next_json, send_action};
use futures_util::SinkExt;
use mattermost_sim::{KillMode, SimConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn header_auth_gets_hello_unprompted() {
    let w = World::new().await;
    let mut ws = w
        .ws_header(&w.bot.token, "connection_id=&sequence_number=0")
        .await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["event"], "hello");
    assert_eq!(hello["seq"], 0);
    assert_eq!(hello["broadcast"]["user_id"], w.bot.id.as_str());
    assert_eq!(hello["broadcast"]["omit_users"], Value::Null);
    let id = hello["data"]["connection_id"].as_str().unwrap();
    assert_eq!(id.len(), 26);
    let version = hello["data"]["server_version"].as_str().unwrap();
    assert!(version.starts_with("9.8.1."), "{version}");
    assert_eq!(version.split('.').count(), 8);
}

#[tokio::test]
async fn challenge_auth_sends_hello_then_ok() {
    let w = World::new().await;
    let mut ws = w.ws_plain().await;
    send_action(
        &mut ws,
        1,
        "authentication_challenge",
        json!({"token": w.alice.token}),
    )
    .await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["event"], "hello");
    assert_eq!(hello["seq"], 0);
    let ok = next_json(&mut ws).await;
    assert_eq!(ok, json!({"status": "OK", "seq_reply": 1}));
    // A second challenge on an authenticated socket is ignored: the next
    // frame is the ping's reply, not a reply to seq 2.
    send_action(
        &mut ws,
        2,
        "authentication_challenge",
        json!({"token": w.alice.token}),
    )
    .await;
    send_action(&mut ws, 3, "ping", Value::Null).await;
    let pong = next_json(&mut ws).await;
    assert_eq!(pong["seq_reply"], 3);
    assert_eq!(pong["status"], "OK");
    assert_eq!(pong["data"]["text"], "pong");
    assert_eq!(pong["data"]["version"], "9.8.1");
    assert!(pong["data"]["server_time"].as_i64().unwrap() > 0);
    assert!(pong.get("seq").is_none(), "replies carry no seq");
}

#[tokio::test]
async fn bad_challenges_close_without_reply() {
    let w = World::new().await;
    for data in [
        json!({"token": "wrongwrongwrongwrongwrong1"}),
        json!({}),
        json!({"token": 7}),
    ] {
        let mut ws = w.ws_plain().await;
        send_action(&mut ws, 1, "authentication_challenge", data).await;
        assert_eq!(expect_end(&mut ws, common::WAIT).await, End::Dropped);
    }
}

#[tokio::test]
async fn unauthenticated_sockets_time_out_and_get_errors() {
    let w = World::with(SimConfig {
        ws_auth_timeout: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    // A bad header token still upgrades; the socket stays unauthenticated.
    let mut ws = w.ws_header("wrongwrongwrongwrongwrong1", "").await;
    send_action(&mut ws, 1, "ping", Value::Null).await;
    let err = next_json(&mut ws).await;
    assert_eq!(err["status"], "FAIL");
    assert_eq!(err["seq_reply"], 1);
    assert_eq!(
        err["error"]["id"],
        "api.web_socket_router.not_authenticated.app_error"
    );
    assert_eq!(err["error"]["status_code"], 401);
    assert_eq!(expect_end(&mut ws, common::WAIT).await, End::Dropped);

    // ?access_token= is refused for non-OAuth tokens.
    let (s, b) = common::send(w.http.get(format!(
        "{}?access_token={}",
        w.url("/websocket"),
        w.bot.token
    )))
    .await;
    common::assert_app_error(s, &b, 401, "api.context.token_provided.app_error");
}

#[tokio::test]
async fn router_errors_and_replies() {
    let w = World::new().await;
    let mut ws = w.ws_header(&w.bot.token, "").await;
    next_event(&mut ws, "hello").await;
    send_action(&mut ws, 5, "", Value::Null).await;
    let r = next_json(&mut ws).await;
    assert_eq!(
        r["error"]["id"],
        "api.web_socket_router.no_action.app_error"
    );
    send_action(&mut ws, 0, "ping", Value::Null).await;
    let r = next_json(&mut ws).await;
    assert_eq!(r["error"]["id"], "api.web_socket_router.bad_seq.app_error");
    send_action(&mut ws, 6, "no_such_action", Value::Null).await;
    let r = next_json(&mut ws).await;
    assert_eq!(
        (r["status"].as_str(), r["seq_reply"].as_i64()),
        (Some("FAIL"), Some(6))
    );
    assert_eq!(
        r["error"]["id"],
        "api.web_socket_router.bad_action.app_error"
    );
    assert_eq!(r["error"]["status_code"], 500);
    send_action(&mut ws, 7, "custom_plugin_thing", Value::Null).await;
    send_action(
        &mut ws,
        8,
        "get_statuses_by_ids",
        json!({"user_ids": [w.bot.id, w.alice.id]}),
    )
    .await;
    let r = next_json(&mut ws).await;
    assert_eq!(r["seq_reply"], 8, "custom_* actions get no reply");
    assert_eq!(r["data"][&w.bot.id], "online");
    assert_eq!(r["data"][&w.alice.id], "offline");
    send_action(&mut ws, 9, "user_typing", json!({"channel_id": "bad"})).await;
    let r = next_json(&mut ws).await;
    assert_eq!(
        r["error"]["id"],
        "api.websocket_handler.invalid_param.app_error"
    );
}

#[tokio::test]
async fn events_reach_every_member_with_gap_free_seq() {
    let w = World::new().await;
    let mut bot = w.ws_header(&w.bot.token, "").await;
    let mut alice = w.ws_header(&w.alice.token, "").await;
    let mut bob = w.ws_header(&w.bob.token, "").await;
    for ws in [&mut bot, &mut alice, &mut bob] {
        next_event(ws, "hello").await;
    }

    // A mention in a public channel: only the mentioned user gets `mentions`.
    let post = w
        .sim
        .post_as(&w.alice.id, &w.town.id, "@mybot look", None)
        .unwrap();
    let to_bot = next_json(&mut bot).await;
    assert_eq!(to_bot["event"], "posted");
    assert_eq!(to_bot["seq"], 1);
    let d = &to_bot["data"];
    assert_eq!(d["channel_type"], "O");
    assert_eq!(d["channel_name"], "town-square");
    assert_eq!(d["channel_display_name"], "Town Square");
    assert_eq!(d["sender_name"], "@alice");
    assert_eq!(d["team_id"], w.team.id.as_str());
    assert_eq!(d["set_online"], true);
    assert_eq!(inner(&to_bot, "mentions"), json!([w.bot.id]));
    assert_eq!(inner(&to_bot, "post")["id"], post.id.as_str());
    assert_eq!(to_bot["broadcast"]["channel_id"], w.town.id.as_str());
    let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "data keys are sorted like Go's map encoding");
    let to_alice = next_json(&mut alice).await;
    assert_eq!(to_alice["event"], "posted", "the author gets its own post");
    assert!(to_alice["data"].get("mentions").is_none());
    let to_bob = next_json(&mut bob).await;
    assert!(to_bob["data"].get("mentions").is_none());

    // A DM: the other party is always mentioned, and bob sees nothing.
    w.sim
        .post_as(&w.alice.id, &w.dm.id, "no at-mention", None)
        .unwrap();
    let dm = next_json(&mut bot).await;
    assert_eq!(dm["seq"], 2);
    assert_eq!(dm["data"]["channel_type"], "D");
    assert_eq!(dm["data"]["channel_display_name"], "@alice");
    assert_eq!(dm["data"]["team_id"], "");
    assert_eq!(inner(&dm, "mentions"), json!([w.bot.id]));
    assert!(inner(&dm, "post")["metadata"].is_object());

    // The bot's own post, edit and reaction all come back to it.
    let (s, mine) = w
        .post(
            "/posts",
            &w.bot.token,
            json!({"channel_id": w.dm.id, "message": "answer", "root_id": dm_post_id(&dm)}),
        )
        .await;
    assert_eq!(s, 201);
    let own = next_json(&mut bot).await;
    assert_eq!(
        (own["event"].as_str(), own["seq"].as_i64()),
        (Some("posted"), Some(3))
    );
    assert_eq!(inner(&own, "post")["props"]["from_bot"], "true");
    assert_eq!(inner(&own, "post")["root_id"], dm_post_id(&dm).as_str());
    let id = mine["id"].as_str().unwrap();
    w.put(
        &format!("/posts/{id}/patch"),
        &w.bot.token,
        json!({"message": "answer v2"}),
    )
    .await;
    let edited = next_json(&mut bot).await;
    assert_eq!(
        (edited["event"].as_str(), edited["seq"].as_i64()),
        (Some("post_edited"), Some(4))
    );
    assert_eq!(inner(&edited, "post")["message"], "answer v2");
    w.sim.react_as(&w.alice.id, id, "eyes").unwrap();
    let reacted = next_json(&mut bot).await;
    assert_eq!(
        (reacted["event"].as_str(), reacted["seq"].as_i64()),
        (Some("reaction_added"), Some(5))
    );
    let r = inner(&reacted, "reaction");
    assert_eq!(
        (r["emoji_name"].as_str(), r["user_id"].as_str()),
        (Some("eyes"), Some(w.alice.id.as_str()))
    );
    w.delete(
        &format!("/users/{}/posts/{id}/reactions/eyes", w.alice.id),
        &w.alice.token,
    )
    .await;
    assert_eq!(next_json(&mut bot).await["event"], "reaction_removed");
    w.delete(&format!("/posts/{id}"), &w.bot.token).await;
    let deleted = next_json(&mut bot).await;
    assert_eq!(
        (deleted["event"].as_str(), deleted["seq"].as_i64()),
        (Some("post_deleted"), Some(7))
    );
    assert_eq!(deleted["broadcast"]["contains_sanitized_data"], true);

    // Typing skips the typist.
    send_action(
        &mut alice,
        1,
        "user_typing",
        json!({"channel_id": w.dm.id, "parent_id": ""}),
    )
    .await;
    let ok = common::next_reply(&mut alice).await;
    assert_eq!(
        (ok["seq_reply"].as_i64(), ok["status"].as_str()),
        (Some(1), Some("OK"))
    );
    let typing = next_json(&mut bot).await;
    assert_eq!(typing["event"], "typing");
    assert_eq!(
        typing["data"],
        json!({"parent_id": "", "user_id": w.alice.id})
    );
    assert_eq!(
        typing["broadcast"]["omit_users"],
        json!({(w.alice.id.clone()): true})
    );
    // Alice's next frame is her own next event, not a typing echo.
    w.sim
        .post_as(&w.bot.id, &w.dm.id, "after typing", None)
        .unwrap();
    assert_eq!(next_json(&mut alice).await["event"], "posted");
}

// Test helper: a missing id should fail the test.
#[allow(clippy::unwrap_used)]
fn dm_post_id(ev: &Value) -> String {
    inner(ev, "post")["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn file_posts_flag_images_and_other_files() {
    let w = World::new().await;
    let mut ws = w.ws_header(&w.alice.token, "").await;
    next_event(&mut ws, "hello").await;
    let (_, up) = common::send(
        w.req(
            reqwest::Method::POST,
            &format!("/files?channel_id={}&filename=a.txt", w.dm.id),
            &w.bot.token,
        )
        .body("text"),
    )
    .await;
    let fid = up["file_infos"][0]["id"].clone();
    w.post(
        "/posts",
        &w.bot.token,
        json!({"channel_id": w.dm.id, "message": "", "file_ids": [fid]}),
    )
    .await;
    let ev = next_event(&mut ws, "posted").await;
    assert_eq!(ev["data"]["otherFile"], "true");
    assert!(ev["data"].get("image").is_none());
}

#[tokio::test]
async fn posted_ack_adds_should_ack() {
    let w = World::new().await;
    let mut ws = w.ws_header(&w.bot.token, "posted_ack=true").await;
    next_event(&mut ws, "hello").await;
    w.sim
        .post_as(&w.alice.id, &w.dm.id, "ack me", None)
        .unwrap();
    let ev = next_event(&mut ws, "posted").await;
    assert_eq!(ev["data"]["should_ack"], true);
}

/// Opens a header-auth socket and returns it with its connection id.
// Test helper: a malformed hello should fail the test.
#[allow(clippy::unwrap_used)]
async fn connect(w: &World, token: &str, query: &str) -> (common::Ws, String) {
    let mut ws = w.ws_header(token, query).await;
    let hello = next_event(&mut ws, "hello").await;
    let id = hello["data"]["connection_id"].as_str().unwrap().to_owned();
    (ws, id)
}

#[tokio::test]
async fn resume_replays_events_sent_while_disconnected() {
    let w = World::new().await;
    let (mut ws, id) = connect(&w, &w.bot.token, "").await;
    w.sim.post_as(&w.alice.id, &w.dm.id, "one", None).unwrap();
    assert_eq!(next_json(&mut ws).await["seq"], 1);

    assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Close), 1);
    assert_eq!(
        expect_end(&mut ws, common::WAIT).await,
        End::CloseFrame(1001)
    );
    for m in ["two", "three"] {
        w.sim.post_as(&w.alice.id, &w.dm.id, m, None).unwrap();
    }
    let conn = w
        .sim
        .connections()
        .into_iter()
        .find(|c| c.connection_id == id)
        .unwrap();
    assert!(!conn.active && conn.resumable);
    assert_eq!(conn.next_seq, 4);

    // Resume from seq 2: replay 2 and 3, no hello, then live events at 4.
    let mut ws = w
        .ws_header(
            &w.bot.token,
            &format!("connection_id={id}&sequence_number=2"),
        )
        .await;
    let two = next_json(&mut ws).await;
    assert_eq!(
        (two["event"].as_str(), two["seq"].as_i64()),
        (Some("posted"), Some(2))
    );
    assert_eq!(inner(&two, "post")["message"], "two");
    let three = next_json(&mut ws).await;
    assert_eq!(three["seq"], 3);
    w.sim.post_as(&w.alice.id, &w.dm.id, "four", None).unwrap();
    assert_eq!(next_json(&mut ws).await["seq"], 4);

    // Resuming with nothing missed: no replay and no hello.
    assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Drop), 1);
    assert_eq!(expect_end(&mut ws, common::WAIT).await, End::Dropped);
    let mut ws = w
        .ws_header(
            &w.bot.token,
            &format!("connection_id={id}&sequence_number=5"),
        )
        .await;
    w.sim.post_as(&w.alice.id, &w.dm.id, "five", None).unwrap();
    let five = next_json(&mut ws).await;
    assert_eq!(
        (five["event"].as_str(), five["seq"].as_i64()),
        (Some("posted"), Some(5))
    );
}

#[tokio::test]
async fn resume_is_refused_beyond_the_buffer_or_for_unknown_ids() {
    let w = World::with(SimConfig {
        ws_resume_buffer: 4,
        ..SimConfig::default()
    })
    .await;
    let (_ws, id) = connect(&w, &w.bot.token, "").await;
    // The hub marks the connection inactive before the socket closes.
    assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Drop), 1);
    for i in 0..6 {
        w.sim
            .post_as(&w.alice.id, &w.dm.id, &format!("m{i}"), None)
            .unwrap();
    }
    // seq 1 has left the 4-event buffer: new id and hello at seq 0.
    let mut ws = w
        .ws_header(
            &w.bot.token,
            &format!("connection_id={id}&sequence_number=1"),
        )
        .await;
    let hello = next_json(&mut ws).await;
    assert_eq!(
        (hello["event"].as_str(), hello["seq"].as_i64()),
        (Some("hello"), Some(0))
    );
    assert_ne!(hello["data"]["connection_id"], id.as_str());
    assert!(
        !w.sim.connections().iter().any(|c| c.connection_id == id),
        "old queue dropped"
    );

    // Unknown id: a fresh connection too.
    let mut ws2 = w
        .ws_header(
            &w.alice.token,
            "connection_id=aaaaaaaaaaaaaaaaaaaaaaaaaa&sequence_number=3",
        )
        .await;
    let hello = next_json(&mut ws2).await;
    assert_eq!(
        (hello["event"].as_str(), hello["seq"].as_i64()),
        (Some("hello"), Some(0))
    );

    // Another user's connection id is not found either.
    let new_id = {
        let h: Value = hello;
        h["data"]["connection_id"].as_str().unwrap().to_owned()
    };
    drop(ws2);
    let mut ws3 = w
        .ws_header(
            &w.bot.token,
            &format!("connection_id={new_id}&sequence_number=1"),
        )
        .await;
    let hello = next_json(&mut ws3).await;
    assert_eq!(hello["event"], "hello");
    assert_ne!(hello["data"]["connection_id"], new_id.as_str());

    // A missing or negative sequence_number closes at once.
    let mut bad = w
        .ws_header(&w.bot.token, &format!("connection_id={id}"))
        .await;
    assert_eq!(expect_end(&mut bad, common::WAIT).await, End::Dropped);
    let mut bad = w
        .ws_header(
            &w.bot.token,
            &format!("connection_id={id}&sequence_number=-1"),
        )
        .await;
    assert_eq!(expect_end(&mut bad, common::WAIT).await, End::Dropped);
}

#[tokio::test]
async fn challenge_connections_never_resume() {
    let w = World::new().await;
    let mut ws = w.ws_plain().await;
    send_action(
        &mut ws,
        1,
        "authentication_challenge",
        json!({"token": w.bot.token}),
    )
    .await;
    let hello = next_event(&mut ws, "hello").await;
    let id = hello["data"]["connection_id"].as_str().unwrap().to_owned();
    assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Drop), 1);
    assert!(
        w.sim.connections().is_empty(),
        "non-resumable connections are forgotten"
    );

    let url = format!("{}?connection_id={id}&sequence_number=1", w.sim.ws_url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(
        json!({"seq": 1, "action": "authentication_challenge", "data": {"token": w.bot.token}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let hello = next_event(&mut ws, "hello").await;
    assert_ne!(hello["data"]["connection_id"], id.as_str());
}

#[tokio::test]
async fn server_pings_at_the_configured_interval() {
    let w = World::with(SimConfig {
        ws_ping_interval: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let mut ws = w.ws_header(&w.bot.token, "").await;
    next_event(&mut ws, "hello").await;
    let ping = tokio::time::timeout(common::WAIT, async {
        use futures_util::StreamExt;
        loop {
            if let Some(Ok(Message::Ping(_))) = ws.next().await {
                return;
            }
        }
    })
    .await;
    assert!(ping.is_ok(), "a server ping arrived");
}
