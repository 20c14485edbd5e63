//! REST API v4: success shapes and every route's error paths.

mod common;

use common::{World, assert_app_error, send};
use mattermost_sim::ChannelType;
use reqwest::Method;
use serde_json::{Value, json};

const BAD_TOKEN: &str = "nosuchtokennosuchtoken1234";
const UNKNOWN_ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaa";

#[tokio::test]
async fn responses_carry_the_real_headers() {
    let w = World::new().await;
    let resp = w
        .req(Method::GET, "/users/me", &w.bot.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-request-id"].to_str().unwrap().len(), 26);
    assert!(
        h["x-version-id"]
            .to_str()
            .unwrap()
            .starts_with("9.8.1.9.8.1.")
    );
    assert!(
        h.get("x-ratelimit-limit").is_none(),
        "rate limiting is off by default"
    );
    let me: Value = resp.json().await.unwrap();
    assert_eq!(me["id"], w.bot.id.as_str());
    assert_eq!(me["is_bot"], true);

    // Error bodies carry the same request id as the header.
    let resp = w
        .req(Method::GET, "/users/me", BAD_TOKEN)
        .send()
        .await
        .unwrap();
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["request_id"], rid.as_str());
}

#[tokio::test]
async fn authentication_rules() {
    let w = World::new().await;
    let (s, b) = send(w.http.get(w.url("/users/me"))).await;
    assert_app_error(s, &b, 401, "api.context.session_expired.app_error");
    let (s, b) = w.get("/users/me", BAD_TOKEN).await;
    assert_app_error(s, &b, 401, "api.context.session_expired.app_error");
    for scheme in ["BEARER", "bearer", "Bearer", "Token", "TOKEN"] {
        let (s, _) = send(
            w.http
                .get(w.url("/users/me"))
                .header("Authorization", format!("{scheme} {}", w.bot.token)),
        )
        .await;
        assert_eq!(s, 200, "scheme {scheme}");
    }
    let (s, _) = send(
        w.http
            .get(w.url("/users/me"))
            .header("Cookie", format!("MMAUTHTOKEN={}", w.alice.token)),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = send(
        w.http
            .get(w.url(&format!("/users/me?access_token={}", w.bot.token))),
    )
    .await;
    assert_app_error(s, &b, 401, "api.context.token_provided.app_error");
}

#[tokio::test]
async fn unknown_routes_and_malformed_json() {
    let w = World::new().await;
    let (s, b) = w.get("/no/such/route", &w.bot.token).await;
    assert_app_error(s, &b, 404, "api.context.404.app_error");
    let (s, b) = send(w.http.get(format!("{}/elsewhere", w.sim.base_url()))).await;
    assert_app_error(s, &b, 404, "api.context.404.app_error");

    for path in [
        "/posts",
        "/users/usernames",
        "/users/ids",
        "/channels/direct",
        "/reactions",
    ] {
        let (s, b) = send(
            w.req(Method::POST, path, &w.bot.token)
                .header("Content-Type", "application/json")
                .body("{not json"),
        )
        .await;
        assert_app_error(s, &b, 400, "api.context.invalid_body_param.app_error");
    }
}

#[tokio::test]
async fn users_routes() {
    let w = World::new().await;
    let (s, b) = w.get(&format!("/users/{}", w.alice.id), &w.bot.token).await;
    assert_eq!((s, b["username"].as_str()), (200, Some("alice")));
    assert!(b.get("is_bot").is_none(), "is_bot is omitted for humans");
    let (s, b) = w.get(&format!("/users/{UNKNOWN_ID}"), &w.bot.token).await;
    assert_app_error(s, &b, 404, "app.user.missing_account.const");
    let (s, b) = w.get("/users/not-an-id", &w.bot.token).await;
    assert_app_error(s, &b, 400, "api.context.invalid_url_param.app_error");
    let (s, b) = w.get(&format!("/users/{}", w.alice.id), BAD_TOKEN).await;
    assert_app_error(s, &b, 401, "api.context.session_expired.app_error");

    let (s, b) = w.get("/users/username/bob", &w.bot.token).await;
    assert_eq!((s, b["id"].as_str()), (200, Some(w.bob.id.as_str())));
    let (s, b) = w.get("/users/username/nobody", &w.bot.token).await;
    assert_app_error(s, &b, 404, "app.user.missing_account.const");

    let (s, b) = w
        .post(
            "/users/usernames",
            &w.bot.token,
            json!(["alice", "nobody", "bob"]),
        )
        .await;
    assert_eq!(s, 200);
    let names: Vec<&str> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let (s, b) = w
        .post("/users/ids", &w.bot.token, json!([w.alice.id, UNKNOWN_ID]))
        .await;
    assert_eq!((s, b.as_array().unwrap().len()), (200, 1));
    let (s, b) = w.post("/users/ids", BAD_TOKEN, json!([w.alice.id])).await;
    assert_app_error(s, &b, 401, "api.context.session_expired.app_error");

    let (s, b) = w.get("/users/me/teams", &w.bot.token).await;
    assert_eq!(s, 200);
    assert_eq!(b[0]["id"], w.team.id.as_str());
    let (s, b) = w
        .get(&format!("/users/{}/teams", w.alice.id), &w.bot.token)
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
}

#[tokio::test]
async fn teams_and_channels_routes() {
    let w = World::new().await;
    let other = w.sim.create_team("other", "Other");
    let private = w
        .sim
        .create_channel(&w.team.id, "secret", "Secret", ChannelType::Private)
        .unwrap();
    w.sim.add_member(&private.id, &w.alice.id).unwrap();

    let (s, b) = w.get(&format!("/teams/{}", w.team.id), &w.bot.token).await;
    assert_eq!((s, b["name"].as_str()), (200, Some("engineering")));
    let (s, b) = w.get(&format!("/teams/{}", other.id), &w.bot.token).await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w.get(&format!("/teams/{UNKNOWN_ID}"), &w.bot.token).await;
    assert_app_error(s, &b, 404, "app.team.get.find.app_error");

    let path = format!("/teams/{}/channels/name/town-square", w.team.id);
    let (s, b) = w.get(&path, &w.bot.token).await;
    assert_eq!((s, b["id"].as_str()), (200, Some(w.town.id.as_str())));
    let (s, b) = w
        .get(
            &format!("/teams/{}/channels/name/nope", w.team.id),
            &w.bot.token,
        )
        .await;
    assert_app_error(s, &b, 404, "app.channel.get_by_name.missing.app_error");
    let (s, b) = w
        .get(
            &format!("/teams/{}/channels/name/secret", w.team.id),
            &w.bot.token,
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");

    let (s, b) = w.get(&format!("/channels/{}", w.dm.id), &w.bot.token).await;
    assert_eq!(s, 200);
    assert_eq!(b["type"], "D");
    assert_eq!(b["team_id"], "");
    let mut ids = [w.alice.id.clone(), w.bot.id.clone()];
    ids.sort();
    assert_eq!(b["name"], format!("{}__{}", ids[0], ids[1]));
    let (s, b) = w.get(&format!("/channels/{}", w.dm.id), &w.bob.token).await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .get(&format!("/channels/{UNKNOWN_ID}"), &w.bot.token)
        .await;
    assert_app_error(s, &b, 404, "app.channel.get.existing.app_error");

    let (s, b) = w
        .get(&format!("/channels/{}/members/me", w.town.id), &w.bot.token)
        .await;
    assert_eq!((s, b["user_id"].as_str()), (200, Some(w.bot.id.as_str())));
    let (s, b) = w
        .get(
            &format!("/channels/{}/members/me", private.id),
            &w.bot.token,
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .get(&format!("/channels/{}/members", w.town.id), &w.bot.token)
        .await;
    assert_eq!((s, b.as_array().unwrap().len()), (200, 3));

    // DMs: 201 on creation and again when it exists.
    let (s, b) = w
        .post(
            "/channels/direct",
            &w.bob.token,
            json!([w.bob.id, w.bot.id]),
        )
        .await;
    assert_eq!((s, b["type"].as_str()), (201, Some("D")));
    let (s2, b2) = w
        .post(
            "/channels/direct",
            &w.bob.token,
            json!([w.bot.id, w.bob.id]),
        )
        .await;
    assert_eq!((s2, &b2["id"]), (201, &b["id"]));
    let (s, b) = w
        .post("/channels/direct", &w.bob.token, json!([w.bob.id]))
        .await;
    assert_app_error(s, &b, 400, "api.context.invalid_body_param.app_error");
    let (s, b) = w
        .post(
            "/channels/direct",
            &w.bob.token,
            json!([w.bob.id, UNKNOWN_ID]),
        )
        .await;
    assert_app_error(s, &b, 404, "app.user.missing_account.const");
    let (s, b) = w
        .post(
            "/channels/direct",
            &w.bob.token,
            json!([w.alice.id, w.bot.id]),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");

    // Group DMs: the caller is added; 3–8 members.
    let (s, b) = w
        .post(
            "/channels/group",
            &w.bob.token,
            json!([w.alice.id, w.bot.id]),
        )
        .await;
    assert_eq!((s, b["type"].as_str()), (201, Some("G")));
    assert_eq!(b["display_name"], "alice, bob, mybot");
    let (s, b) = w
        .post("/channels/group", &w.bob.token, json!([w.alice.id]))
        .await;
    assert_app_error(s, &b, 400, "api.channel.create_group.bad_size.app_error");

    // Channel creation and joining.
    let (s, b) = w
        .post(
            "/channels",
            &w.bob.token,
            json!({"team_id": w.team.id, "name": "builds", "display_name": "Builds", "type": "O"}),
        )
        .await;
    assert_eq!(s, 201);
    let builds = b["id"].as_str().unwrap().to_owned();
    let (s, _) = w
        .post(
            &format!("/channels/{builds}/members"),
            &w.alice.token,
            json!({"user_id": w.alice.id}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, b) = w
        .post(
            &format!("/channels/{}/members", private.id),
            &w.bot.token,
            json!({"user_id": w.bot.id}),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
}

#[tokio::test]
async fn create_post_rules() {
    let w = World::new().await;
    let (s, p) = w
        .post(
            "/posts",
            &w.bot.token,
            json!({"channel_id": w.town.id, "message": "hi", "props": {"a": 1}}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(p["props"], json!({"a": 1, "from_bot": "true"}));
    assert_eq!(p["id"].as_str().unwrap().len(), 26);
    assert!(p.get("file_ids").is_none(), "9.8 omits empty file_ids");
    let (_, p2) = w
        .post(
            "/posts",
            &w.alice.token,
            json!({"channel_id": w.town.id, "message": "human"}),
        )
        .await;
    assert_eq!(p2["props"], json!({}));

    // Non-members and unknown channels.
    let (s, b) = w
        .post(
            "/posts",
            &w.bob.token,
            json!({"channel_id": w.dm.id, "message": "x"}),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .post(
            "/posts",
            &w.bob.token,
            json!({"channel_id": UNKNOWN_ID, "message": "x"}),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .post(
            "/posts",
            BAD_TOKEN,
            json!({"channel_id": w.town.id, "message": "x"}),
        )
        .await;
    assert_app_error(s, &b, 401, "api.context.session_expired.app_error");

    // The limit counts runes, not bytes.
    let max: String = "é".repeat(16383);
    let (s, _) = w
        .post(
            "/posts",
            &w.bot.token,
            json!({"channel_id": w.town.id, "message": max}),
        )
        .await;
    assert_eq!(s, 201);
    let over: String = "é".repeat(16384);
    let (s, b) = w
        .post(
            "/posts",
            &w.bot.token,
            json!({"channel_id": w.town.id, "message": over}),
        )
        .await;
    assert_app_error(s, &b, 400, "model.post.is_valid.message_length.app_error");

    // root_id rules.
    let root = p["id"].as_str().unwrap();
    let (s, reply) = w
        .post(
            "/posts",
            &w.alice.token,
            json!({"channel_id": w.town.id, "message": "r", "root_id": root}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, b) = w
        .post(
            "/posts",
            &w.alice.token,
            json!({"channel_id": w.town.id, "message": "rr", "root_id": reply["id"]}),
        )
        .await;
    assert_app_error(s, &b, 400, "api.post.create_post.root_id.app_error");
    let (s, b) = w
        .post(
            "/posts",
            &w.alice.token,
            json!({"channel_id": w.town.id, "message": "x", "root_id": UNKNOWN_ID}),
        )
        .await;
    assert_app_error(s, &b, 400, "api.post.create_post.root_id.app_error");
    let (s, b) = w
        .post(
            "/posts",
            &w.alice.token,
            json!({"channel_id": w.dm.id, "message": "x", "root_id": root}),
        )
        .await;
    assert_app_error(s, &b, 400, "api.post.create_post.channel_root_id.app_error");
}

#[tokio::test]
async fn pending_post_id_dedupes_within_the_window() {
    let w = World::new().await;
    let body = json!({"channel_id": w.dm.id, "message": "once", "pending_post_id": "p:1"});
    let (s1, a) = w.post("/posts", &w.bot.token, body.clone()).await;
    let (s2, b) = w.post("/posts", &w.bot.token, body.clone()).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["pending_post_id"], "p:1");
    assert_eq!(w.sim.posts().len(), 1);
    // Stored posts do not keep pending_post_id.
    let (_, got) = w
        .get(
            &format!("/posts/{}", a["id"].as_str().unwrap()),
            &w.bot.token,
        )
        .await;
    assert_eq!(got["pending_post_id"], "");

    // Past the window a repeat creates a new post.
    w.sim
        .configure(|c| c.pending_post_ttl = std::time::Duration::ZERO);
    let (_, c) = w.post("/posts", &w.bot.token, body).await;
    assert_ne!(c["id"], a["id"]);
}

#[tokio::test]
async fn get_patch_update_delete() {
    let w = World::new().await;
    let (_, p) = w
        .post(
            "/posts",
            &w.bot.token,
            json!({"channel_id": w.town.id, "message": "v1", "props": {"keep": "no"}}),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_owned();

    let (s, b) = w.get(&format!("/posts/{id}"), &w.alice.token).await;
    assert_eq!((s, b["message"].as_str()), (200, Some("v1")));
    let (s, b) = w.get(&format!("/posts/{UNKNOWN_ID}"), &w.alice.token).await;
    assert_app_error(s, &b, 404, "app.post.get.app_error");
    let (s, b) = w.get("/posts/short", &w.alice.token).await;
    assert_app_error(s, &b, 400, "api.context.invalid_url_param.app_error");

    // Patch: message edit sets edit_at, props replaced whole, history stored.
    let (s, b) = w
        .put(
            &format!("/posts/{id}/patch"),
            &w.bot.token,
            json!({"message": "v2", "props": {"new": true}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["message"], "v2");
    assert_eq!(b["props"], json!({"new": true}));
    let edit_at = b["edit_at"].as_i64().unwrap();
    assert!(edit_at > 0);
    let edits = w.sim.edits_of(&id);
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].message, "v1");
    assert_eq!(edits[0].original_id, id);
    assert!(edits[0].delete_at > 0);
    assert_ne!(edits[0].id, id);

    // A props-only patch also stores a history row but keeps edit_at.
    let (_, b) = w
        .put(
            &format!("/posts/{id}/patch"),
            &w.bot.token,
            json!({"props": {}}),
        )
        .await;
    assert_eq!(b["edit_at"].as_i64().unwrap(), edit_at);
    assert_eq!(w.sim.edits_of(&id).len(), 2);
    let (s, hist) = w
        .get(&format!("/posts/{id}/edit_history"), &w.bot.token)
        .await;
    assert_eq!((s, hist.as_array().unwrap().len()), (200, 2));

    let (s, b) = w
        .put(
            &format!("/posts/{id}/patch"),
            &w.alice.token,
            json!({"message": "hijack"}),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .put(
            &format!("/posts/{UNKNOWN_ID}/patch"),
            &w.bot.token,
            json!({"message": "x"}),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = send(
        w.req(Method::PUT, &format!("/posts/{id}/patch"), &w.bot.token)
            .body("[oops"),
    )
    .await;
    assert_app_error(s, &b, 400, "api.context.invalid_body_param.app_error");
    let (s, b) = w
        .put(
            &format!("/posts/{id}/patch"),
            &w.bot.token,
            json!({"message": "x".repeat(16384)}),
        )
        .await;
    assert_app_error(s, &b, 400, "model.post.is_valid.message_length.app_error");
    let (s, b) = w
        .put(
            &format!("/posts/{id}/patch"),
            BAD_TOKEN,
            json!({"message": "x"}),
        )
        .await;
    assert_app_error(s, &b, 401, "api.context.session_expired.app_error");

    // Update: the body id must match the path.
    let (s, b) = w
        .put(
            &format!("/posts/{id}"),
            &w.bot.token,
            json!({"id": UNKNOWN_ID, "message": "v3"}),
        )
        .await;
    assert_app_error(s, &b, 400, "api.context.invalid_body_param.app_error");
    let (s, b) = w
        .put(
            &format!("/posts/{id}"),
            &w.bot.token,
            json!({"id": id, "message": "v3"}),
        )
        .await;
    assert_eq!((s, b["message"].as_str()), (200, Some("v3")));
    assert_eq!(w.sim.edits_of(&id).len(), 3);

    // Delete: author only; the thread goes with the root.
    let (_, reply) = w
        .post(
            "/posts",
            &w.alice.token,
            json!({"channel_id": w.town.id, "message": "r", "root_id": id}),
        )
        .await;
    let (s, b) = w.delete(&format!("/posts/{id}"), &w.alice.token).await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w.delete(&format!("/posts/{id}"), &w.bot.token).await;
    assert_eq!((s, b), (200, json!({"status": "OK"})));
    let (s, _) = w.get(&format!("/posts/{id}"), &w.bot.token).await;
    assert_eq!(s, 404);
    let (s, _) = w
        .get(
            &format!("/posts/{}", reply["id"].as_str().unwrap()),
            &w.bot.token,
        )
        .await;
    assert_eq!(s, 404);
    let (s, b) = w.delete(&format!("/posts/{id}"), &w.bot.token).await;
    assert_app_error(s, &b, 404, "app.post.get.app_error");
}

#[tokio::test]
async fn post_edit_time_limit() {
    let w = World::new().await;
    let (_, p) = w
        .post(
            "/posts",
            &w.bot.token,
            json!({"channel_id": w.town.id, "message": "a"}),
        )
        .await;
    let id = p["id"].as_str().unwrap();
    w.sim.configure(|c| c.post_edit_time_limit = 0);
    // The create happened at least a millisecond ago on the simulator's clock.
    let (s, b) = w
        .put(
            &format!("/posts/{id}/patch"),
            &w.bot.token,
            json!({"message": "b"}),
        )
        .await;
    assert_app_error(
        s,
        &b,
        400,
        "api.post.update_post.permissions_time_limit.app_error",
    );
    // Props-only edits are not limited.
    let (s, _) = w
        .put(
            &format!("/posts/{id}/patch"),
            &w.bot.token,
            json!({"props": {"x": 1}}),
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn thread_paging_like_the_server() {
    let w = World::new().await;
    let root = w.sim.post_as(&w.alice.id, &w.dm.id, "root", None).unwrap();
    let mut replies = Vec::new();
    for i in 0..70 {
        let who = if i % 2 == 0 { &w.bot.id } else { &w.alice.id };
        replies.push(
            w.sim
                .post_as(who, &w.dm.id, &format!("r{i}"), Some(&root.id))
                .unwrap()
                .id,
        );
    }
    let base = format!("/posts/{}/thread", root.id);

    // Client4.getPostThread's request.
    let q = "?perPage=60&direction=down&skipFetchThreads=false&collapsedThreads=false&collapsedThreadsExtended=false";
    let (s, page) = w.get(&format!("{base}{q}"), &w.bot.token).await;
    assert_eq!(s, 200);
    let order: Vec<String> = serde_json::from_value(page["order"].clone()).unwrap();
    assert_eq!(order.len(), 60);
    assert_eq!(order[0], root.id);
    assert_eq!(order[1..], replies[..59]);
    assert_eq!(page["has_next"], true);
    assert_eq!(page["posts"].as_object().unwrap().len(), 60);
    assert_eq!(page["posts"][&root.id]["reply_count"], 70);

    let last = &page["posts"][&replies[58]];
    let (_, page2) = w
        .get(
            &format!(
                "{base}?perPage=60&direction=down&fromPost={}&fromCreateAt={}",
                replies[58], last["create_at"]
            ),
            &w.bot.token,
        )
        .await;
    let order2: Vec<String> = serde_json::from_value(page2["order"].clone()).unwrap();
    assert_eq!(order2[0], root.id, "order[0] is always the requested post");
    assert_eq!(order2[1..], replies[59..]);
    assert_eq!(page2["has_next"], false);

    // Exactly perPage rows left: has_next stays false (perPage + 1 probe).
    let last = w.sim.post(&replies[59]).unwrap();
    let (_, page3) = w
        .get(
            &format!(
                "{base}?perPage=10&direction=down&fromPost={}&fromCreateAt={}",
                last.id, last.create_at
            ),
            &w.bot.token,
        )
        .await;
    assert_eq!(page3["order"].as_array().unwrap().len(), 11);
    assert_eq!(page3["has_next"], false);

    // Up from the newest.
    let (_, up) = w
        .get(&format!("{base}?perPage=5&direction=up"), &w.bot.token)
        .await;
    let up: Vec<String> = serde_json::from_value(up["order"].clone()).unwrap();
    assert_eq!(
        up[1..],
        [
            replies[69].clone(),
            replies[68].clone(),
            replies[67].clone(),
            replies[66].clone(),
            replies[65].clone()
        ]
    );

    // Default perPage=0 returns everything; asking from a reply puts it first.
    let (_, all) = w.get(&base, &w.bot.token).await;
    assert_eq!(all["order"].as_array().unwrap().len(), 71);
    let (_, from_reply) = w
        .get(&format!("/posts/{}/thread", replies[3]), &w.bot.token)
        .await;
    assert_eq!(from_reply["order"][0], replies[3].as_str());
    assert_eq!(from_reply["order"][1], root.id.as_str());

    // Parameter errors.
    let (s, b) = w.get(&format!("{base}?perPage=201"), &w.bot.token).await;
    assert_app_error(s, &b, 400, "api.context.invalid_body_param.app_error");
    let (s, b) = w
        .get(&format!("{base}?fromPost={}", replies[1]), &w.bot.token)
        .await;
    assert_app_error(s, &b, 400, "api.context.invalid_body_param.app_error");
    let (s, b) = w
        .get(&format!("{base}?direction=sideways"), &w.bot.token)
        .await;
    assert_app_error(s, &b, 400, "api.context.invalid_body_param.app_error");
    let (s, b) = w
        .get(&format!("/posts/{UNKNOWN_ID}/thread"), &w.bot.token)
        .await;
    assert_app_error(s, &b, 404, "app.post.get.app_error");
    let (s, b) = w.get(&base, &w.bob.token).await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
}

#[tokio::test]
async fn channel_history_paging_and_since() {
    let w = World::new().await;
    let ids: Vec<String> = (0..10)
        .map(|i| {
            w.sim
                .post_as(&w.alice.id, &w.town.id, &format!("m{i}"), None)
                .unwrap()
                .id
        })
        .collect();
    let base = format!("/channels/{}/posts", w.town.id);
    let order = |v: &Value| -> Vec<String> { serde_json::from_value(v["order"].clone()).unwrap() };
    let rev = |r: std::ops::Range<usize>| -> Vec<String> { ids[r].iter().rev().cloned().collect() };

    let (s, p0) = w
        .get(&format!("{base}?page=0&per_page=4"), &w.bot.token)
        .await;
    assert_eq!(s, 200);
    assert_eq!(order(&p0), rev(6..10));
    assert_eq!(p0["next_post_id"], "");
    assert_eq!(p0["prev_post_id"], ids[5].as_str());
    let (_, p1) = w
        .get(&format!("{base}?page=1&per_page=4"), &w.bot.token)
        .await;
    assert_eq!(order(&p1), rev(2..6));
    assert_eq!(p1["next_post_id"], ids[6].as_str());

    let (_, before) = w
        .get(
            &format!("{base}?before={}&per_page=3", ids[5]),
            &w.bot.token,
        )
        .await;
    assert_eq!(order(&before), rev(2..5));
    assert_eq!(before["next_post_id"], ids[5].as_str());
    assert_eq!(before["prev_post_id"], ids[1].as_str());
    let (_, after) = w
        .get(&format!("{base}?after={}&per_page=3", ids[5]), &w.bot.token)
        .await;
    assert_eq!(order(&after), rev(6..9));
    assert_eq!(after["prev_post_id"], ids[5].as_str());
    assert_eq!(after["next_post_id"], ids[9].as_str());

    // since: updates after the time, deletions and edit-history rows included.
    let t = w.sim.post(&ids[7]).unwrap().create_at;
    w.sim.configure(|_| {});
    let (_, since) = w.get(&format!("{base}?since={t}"), &w.alice.token).await;
    assert_eq!(order(&since), rev(8..10));
    assert_eq!(
        (
            since["next_post_id"].as_str(),
            since["prev_post_id"].as_str()
        ),
        (Some(""), Some(""))
    );
    let (s, _) = w
        .put(
            &format!("/posts/{}/patch", ids[0]),
            &w.alice.token,
            json!({"message": "edited"}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, since) = w.get(&format!("{base}?since={t}"), &w.alice.token).await;
    let got = order(&since);
    assert!(got.contains(&ids[0]), "the edited post is reported");
    let history = &w.sim.edits_of(&ids[0])[0].id;
    assert!(
        got.contains(history),
        "so is its history row, as the real query returns it"
    );

    let (s, b) = w.get(&format!("{base}?since=abc"), &w.bot.token).await;
    assert_app_error(s, &b, 400, "api.context.invalid_url_param.app_error");
    let (s, b) = w
        .get(&format!("/channels/{}/posts", w.dm.id), &w.bob.token)
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
}

#[tokio::test]
async fn file_upload_download_and_attach() {
    let w = World::new().await;
    let png = {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        v.extend_from_slice(&4u32.to_be_bytes());
        v.extend_from_slice(&3u32.to_be_bytes());
        v.extend_from_slice(&[0; 16]);
        v
    };
    let form = reqwest::multipart::Form::new()
        .text("channel_id", w.dm.id.clone())
        .text("client_ids", "c1")
        .part(
            "anything",
            reqwest::multipart::Part::bytes(png.clone()).file_name("pic.png"),
        );
    let (s, b) = send(w.req(Method::POST, "/files", &w.bot.token).multipart(form)).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["client_ids"], json!(["c1"]));
    let info = &b["file_infos"][0];
    assert_eq!(info["mime_type"], "image/png");
    assert_eq!(
        (info["width"].as_i64(), info["height"].as_i64()),
        (Some(4), Some(3))
    );
    let png_id = info["id"].as_str().unwrap().to_owned();

    // Raw body upload.
    let (s, b) = send(
        w.req(
            Method::POST,
            &format!("/files?channel_id={}&filename=notes.txt", w.dm.id),
            &w.bot.token,
        )
        .body("some notes"),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let txt_id = b["file_infos"][0]["id"].as_str().unwrap().to_owned();

    // Legacy mode: a file before channel_id must be named "files".
    let form = reqwest::multipart::Form::new()
        .part(
            "other",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.txt"),
        )
        .text("channel_id", w.dm.id.clone());
    let (s, _) = send(w.req(Method::POST, "/files", &w.bot.token).multipart(form)).await;
    assert_eq!(s, 400);

    // Attach: only our own, unattached files in this channel survive.
    let (_, alice_file) = send(
        w.req(
            Method::POST,
            &format!("/files?channel_id={}&filename=a.txt", w.dm.id),
            &w.alice.token,
        )
        .body("alice's"),
    )
    .await;
    let alice_file = alice_file["file_infos"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, p) = w
        .post("/posts", &w.bot.token, json!({"channel_id": w.dm.id, "message": "files", "file_ids": [png_id, txt_id, alice_file, UNKNOWN_ID]}))
        .await;
    assert_eq!(s, 201);
    assert_eq!(p["file_ids"], json!([png_id, txt_id]));
    assert_eq!(p["metadata"]["files"].as_array().unwrap().len(), 2);
    let pid = p["id"].as_str().unwrap();
    let (s, infos) = w
        .get(&format!("/posts/{pid}/files/info"), &w.alice.token)
        .await;
    assert_eq!((s, infos.as_array().unwrap().len()), (200, 2));
    assert_eq!(infos[0]["post_id"], pid);

    // Download headers.
    let resp = w
        .req(Method::GET, &format!("/files/{txt_id}"), &w.alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;filename=\"notes.txt\"")
    );
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert_eq!(resp.text().await.unwrap(), "some notes");
    let resp = w
        .req(Method::GET, &format!("/files/{png_id}"), &w.alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-disposition"], "inline");
    let (s, b) = w
        .get(&format!("/files/{png_id}/info"), &w.alice.token)
        .await;
    assert_eq!((s, b["name"].as_str()), (200, Some("pic.png")));

    // Error paths.
    let (s, b) = w.get(&format!("/files/{UNKNOWN_ID}"), &w.bot.token).await;
    assert_app_error(s, &b, 404, "app.file_info.get.app_error");
    let (s, b) = w.get(&format!("/files/{png_id}/info"), &w.bob.token).await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = send(
        w.req(Method::POST, "/files?filename=a.txt", &w.bot.token)
            .body("x"),
    )
    .await;
    assert_app_error(s, &b, 400, "api.context.invalid_body_param.app_error");
    let (s, b) = send(
        w.req(
            Method::POST,
            &format!("/files?channel_id={}&filename=a.txt", w.dm.id),
            &w.bob.token,
        )
        .body("x"),
    )
    .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = send(
        w.req(
            Method::POST,
            &format!("/files?channel_id={}&filename=a.txt", w.dm.id),
            BAD_TOKEN,
        )
        .body("x"),
    )
    .await;
    assert_app_error(s, &b, 401, "api.context.session_expired.app_error");

    // MaxFileSize → 413, for raw and multipart bodies.
    w.sim.configure(|c| c.max_file_size = 1024);
    let (s, b) = send(
        w.req(
            Method::POST,
            &format!("/files?channel_id={}&filename=big.bin", w.dm.id),
            &w.bot.token,
        )
        .body(vec![0u8; 2048]),
    )
    .await;
    assert_app_error(
        s,
        &b,
        413,
        "api.file.upload_file.too_large_detailed.app_error",
    );
    let form = reqwest::multipart::Form::new()
        .text("channel_id", w.dm.id.clone())
        .part(
            "files",
            reqwest::multipart::Part::bytes(vec![0u8; 2048]).file_name("big.bin"),
        );
    let (s, b) = send(w.req(Method::POST, "/files", &w.bot.token).multipart(form)).await;
    assert_app_error(
        s,
        &b,
        413,
        "api.file.upload_file.too_large_detailed.app_error",
    );

    w.sim.configure(|c| c.enable_file_attachments = false);
    let (s, b) = send(
        w.req(
            Method::POST,
            &format!("/files?channel_id={}&filename=a.txt", w.dm.id),
            &w.bot.token,
        )
        .body("x"),
    )
    .await;
    assert_app_error(s, &b, 403, "api.file.attachments.disabled.app_error");
}

#[tokio::test]
async fn reactions_routes() {
    let w = World::new().await;
    let post = w
        .sim
        .post_as(&w.alice.id, &w.dm.id, "react to me", None)
        .unwrap();
    let (s, r) = w
        .post(
            "/reactions",
            &w.bot.token,
            json!({"user_id": w.bot.id, "post_id": post.id, "emoji_name": "eyes"}),
        )
        .await;
    assert_eq!(s, 200, "reactions answer 200, not 201");
    assert_eq!(r["channel_id"], w.dm.id.as_str());
    assert!(w.sim.post(&post.id).unwrap().has_reactions);
    let (s, list) = w
        .get(&format!("/posts/{}/reactions", post.id), &w.alice.token)
        .await;
    assert_eq!((s, list.as_array().unwrap().len()), (200, 1));

    let (s, b) = w
        .post(
            "/reactions",
            &w.bot.token,
            json!({"user_id": w.alice.id, "post_id": post.id, "emoji_name": "eyes"}),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .post(
            "/reactions",
            &w.bot.token,
            json!({"user_id": w.bot.id, "post_id": post.id, "emoji_name": ":no spaces:"}),
        )
        .await;
    assert_app_error(s, &b, 400, "model.reaction.is_valid.emoji_name.app_error");
    let (s, b) = w
        .post(
            "/reactions",
            &w.bob.token,
            json!({"user_id": w.bob.id, "post_id": post.id, "emoji_name": "eyes"}),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .post(
            "/reactions",
            &w.bot.token,
            json!({"user_id": w.bot.id, "post_id": UNKNOWN_ID, "emoji_name": "eyes"}),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .get(&format!("/posts/{UNKNOWN_ID}/reactions"), &w.bot.token)
        .await;
    assert_app_error(s, &b, 404, "app.post.get.app_error");

    let path = format!("/users/{}/posts/{}/reactions/eyes", w.bot.id, post.id);
    let (s, b) = w.delete(&path, &w.alice.token).await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w.delete(&path, &w.bot.token).await;
    assert_eq!((s, b), (200, json!({"status": "OK"})));
    assert!(!w.sim.post(&post.id).unwrap().has_reactions);
    let (s, b) = w
        .delete(
            &format!("/users/{}/posts/bad/reactions/eyes", w.bot.id),
            &w.bot.token,
        )
        .await;
    assert_app_error(s, &b, 400, "api.context.invalid_url_param.app_error");
}

#[tokio::test]
async fn typing_config_ping_and_request_log() {
    let w = World::new().await;
    let path = format!("/users/{}/typing", w.bot.id);
    let (s, b) = w
        .post(&path, &w.bot.token, json!({"channel_id": w.dm.id}))
        .await;
    assert_eq!((s, b), (200, json!({"status": "OK"})));
    let (s, b) = w
        .post(&path, &w.alice.token, json!({"channel_id": w.dm.id}))
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .post(
            &format!("/users/{}/typing", w.bob.id),
            &w.bob.token,
            json!({"channel_id": w.dm.id}),
        )
        .await;
    assert_app_error(s, &b, 403, "api.context.permissions.app_error");
    let (s, b) = w
        .post(&path, &w.bot.token, json!({"channel_id": "x"}))
        .await;
    assert_app_error(s, &b, 400, "api.context.invalid_body_param.app_error");

    let (s, cfg) = send(w.http.get(w.url("/config/client?format=old"))).await;
    assert_eq!(s, 200);
    for (k, v) in cfg.as_object().unwrap() {
        assert!(v.is_string(), "{k} must be a string");
    }
    assert_eq!(cfg["MaxPostSize"], "16383");
    assert_eq!(cfg["MaxFileSize"], "104857600");
    assert_eq!(cfg["EnableFileAttachments"], "true");
    assert_eq!(cfg["PostEditTimeLimit"], "-1");
    assert_eq!(cfg["Version"], "9.8.1");
    assert_eq!(cfg["SiteURL"], w.sim.base_url().as_str());
    let (s, b) = send(w.http.get(w.url("/config/client"))).await;
    assert_app_error(s, &b, 501, "api.config.client.old_format.app_error");

    let (s, b) = send(w.http.get(w.url("/system/ping"))).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("OK")));

    let log = w.sim.requests();
    let typing: Vec<_> = log
        .iter()
        .filter(|r| r.path == format!("/api/v4{path}"))
        .collect();
    let statuses: Vec<u16> = typing.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 403, 400]);
    assert_eq!(typing[0].method, "POST");
    let cfg = log
        .iter()
        .find(|r| r.path == "/api/v4/config/client")
        .unwrap();
    assert_eq!(cfg.query, "format=old");
    assert!(cfg.at > 0);
}
