//! Rate limiting, injected faults, socket faults, and the HTTP control API.

mod common;

use std::time::{Duration, Instant};

use common::{End, World, assert_app_error, expect_end, next_event, next_json, send};
use mattermost_sim::{KillMode, RateLimit};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn rate_limit_headers_and_429() {
    let w = World::new().await;
    w.sim.rate_limit(Some(RateLimit {
        per_second: 1,
        burst: 2,
    }));
    for remaining in ["2", "1", "0"] {
        let resp = w
            .req(Method::GET, "/users/me", &w.bot.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["x-ratelimit-limit"], "3");
        assert_eq!(h["x-ratelimit-remaining"], remaining);
        assert!(
            h["x-ratelimit-reset"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
        assert!(h.get("retry-after").is_none());
    }
    let resp = w
        .req(Method::GET, "/users/me", &w.bot.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["x-ratelimit-limit"], "3");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(resp.text().await.unwrap(), "limit exceeded\n");
    assert_eq!(w.sim.requests().last().unwrap().status, 429);

    // Control routes are never limited, and switching off removes the headers.
    w.sim.rate_limit(None);
    let resp = w
        .req(Method::GET, "/users/me", &w.bot.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-ratelimit-limit").is_none());
}

#[tokio::test]
async fn fail_next_returns_errors_then_recovers() {
    let w = World::new().await;
    w.sim.fail_next("POST", "/posts", 503, 2);
    let body = json!({"channel_id": w.dm.id, "message": "retry me", "pending_post_id": "x:1"});
    for _ in 0..2 {
        let (s, b) = w.post("/posts", &w.bot.token, body.clone()).await;
        assert_app_error(s, &b, 503, "api.sim.injected_fault.app_error");
    }
    // Other methods and paths are untouched.
    let (s, _) = w.get("/users/me", &w.bot.token).await;
    assert_eq!(s, 200);
    let (s, _) = w.post("/posts", &w.bot.token, body).await;
    assert_eq!(s, 201);
    assert_eq!(w.sim.posts().len(), 1, "failed requests did not run");

    // Globs: `*` is one segment.
    w.sim.fail_next("*", "/api/v4/posts/*/patch", 500, 1);
    let id = w.sim.posts()[0].id.clone();
    let (s, _) = w
        .put(
            &format!("/posts/{id}/patch"),
            &w.bot.token,
            json!({"message": "x"}),
        )
        .await;
    assert_eq!(s, 500);
    let (s, _) = w
        .put(
            &format!("/posts/{id}/patch"),
            &w.bot.token,
            json!({"message": "x"}),
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn injected_429_looks_like_the_limiter() {
    let w = World::new().await;
    w.sim.fail_next("GET", "users/me", 429, 1);
    let resp = w
        .req(Method::GET, "/users/me", &w.bot.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(h["retry-after"], "1");
    assert!(h.get("x-ratelimit-limit").is_some());
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(resp.text().await.unwrap(), "limit exceeded\n");
    let (s, _) = w.get("/users/me", &w.bot.token).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn delay_next_holds_the_response() {
    let w = World::new().await;
    w.sim
        .delay_next("GET", "/users/me", Duration::from_millis(300), 1);
    let started = Instant::now();
    let (s, _) = w.get("/users/me", &w.bot.token).await;
    assert_eq!(s, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(w.sim.requests().last().unwrap().duration_ms >= 300);
}

#[tokio::test]
async fn kill_modes_and_stalls() {
    let w = World::new().await;
    let mut ws = w.ws_header(&w.bot.token, "").await;
    next_event(&mut ws, "hello").await;
    assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Close), 1);
    assert_eq!(
        expect_end(&mut ws, common::WAIT).await,
        End::CloseFrame(1001)
    );

    let mut ws = w.ws_header(&w.bot.token, "").await;
    next_event(&mut ws, "hello").await;
    assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Drop), 1);
    assert_eq!(expect_end(&mut ws, common::WAIT).await, End::Dropped);
    assert_eq!(
        w.sim.kill_sockets(&w.bot.id, KillMode::Drop),
        0,
        "nothing left attached"
    );

    // A stalled socket delivers nothing until the stall ends, then everything in order.
    let mut ws = w.ws_header(&w.bot.token, "").await;
    next_event(&mut ws, "hello").await;
    assert_eq!(
        w.sim.stall_sockets(&w.bot.id, Duration::from_millis(400)),
        1
    );
    let stalled_at = Instant::now();
    w.sim
        .post_as(&w.alice.id, &w.dm.id, "during stall", None)
        .unwrap();
    let ev = next_json(&mut ws).await;
    assert!(
        stalled_at.elapsed() >= Duration::from_millis(350),
        "delivered only after the stall"
    );
    assert_eq!(
        (ev["event"].as_str(), ev["seq"].as_i64()),
        (Some("posted"), Some(1))
    );
}

#[tokio::test]
async fn http_control_api_drives_the_simulator() {
    let w = World::new().await;
    let ctl = |path: &str| format!("{}/__sim{path}", w.sim.base_url());
    let (s, carol) = send(
        w.http
            .post(ctl("/users"))
            .json(&json!({"username": "carol"})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, helper) = send(
        w.http
            .post(ctl("/bots"))
            .json(&json!({"username": "helper"})),
    )
    .await;
    let (s, me) = send(
        w.http
            .get(w.url("/users/me"))
            .bearer_auth(helper["token"].as_str().unwrap()),
    )
    .await;
    assert_eq!((s, me["is_bot"].as_bool()), (200, Some(true)));
    let (_, team) = send(w.http.post(ctl("/teams")).json(&json!({"name": "t2"}))).await;
    let tid = team["id"].as_str().unwrap();
    let (s, _) = send(
        w.http
            .post(ctl(&format!("/teams/{tid}/members")))
            .json(&json!({"user_id": carol["id"]})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, ch) = send(
        w.http
            .post(ctl("/channels"))
            .json(&json!({"team_id": tid, "name": "c", "type": "P"})),
    )
    .await;
    assert_eq!(ch["type"], "P");
    let cid = ch["id"].as_str().unwrap();
    send(
        w.http
            .post(ctl(&format!("/channels/{cid}/members")))
            .json(&json!({"user_id": carol["id"]})),
    )
    .await;
    let (_, dm) = send(
        w.http
            .post(ctl("/direct"))
            .json(&json!({"user_ids": [carol["id"], helper["id"]]})),
    )
    .await;
    assert_eq!(dm["type"], "D");
    let (s, post) = send(
        w.http
            .post(ctl("/posts"))
            .json(&json!({"user_id": carol["id"], "channel_id": cid, "message": "via control"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, bad) = send(
        w.http
            .post(ctl("/posts"))
            .json(&json!({"user_id": helper["id"], "channel_id": cid, "message": "not a member"})),
    )
    .await;
    assert_app_error(s, &bad, 403, "api.context.permissions.app_error");
    let pid = post["id"].as_str().unwrap();
    let (_, r) = send(
        w.http
            .post(ctl("/reactions"))
            .json(&json!({"user_id": carol["id"], "post_id": pid, "emoji_name": "tada"})),
    )
    .await;
    assert_eq!(r["emoji_name"], "tada");
    let (_, one) = send(w.http.get(ctl(&format!("/posts/{pid}")))).await;
    assert_eq!(one["has_reactions"], true);
    let (_, all) = send(w.http.get(ctl("/posts"))).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    let (_, edits) = send(w.http.get(ctl(&format!("/posts/{pid}/edits")))).await;
    assert_eq!(edits, json!([]));

    // Faults, delays, rate limits and config over HTTP.
    send(
        w.http
            .post(ctl("/faults"))
            .json(&json!({"method": "GET", "path": "/users/me", "status": 502})),
    )
    .await;
    let (_, rules) = send(w.http.get(ctl("/faults"))).await;
    assert_eq!(rules.as_array().unwrap().len(), 1);
    let (s, _) = w.get("/users/me", &w.bot.token).await;
    assert_eq!(s, 502);
    send(
        w.http
            .post(ctl("/delays"))
            .json(&json!({"path": "/users/me", "millis": 10})),
    )
    .await;
    send(w.http.delete(ctl("/faults"))).await;
    let (_, rules) = send(w.http.get(ctl("/faults"))).await;
    assert_eq!(rules, json!([]));
    send(
        w.http
            .post(ctl("/rate_limit"))
            .json(&json!({"per_second": 10, "burst": 100})),
    )
    .await;
    let resp = w
        .req(Method::GET, "/users/me", &w.bot.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-ratelimit-limit"], "101");
    send(w.http.delete(ctl("/rate_limit"))).await;
    send(
        w.http
            .post(ctl("/config"))
            .json(&json!({"max_post_size": 5})),
    )
    .await;
    let (s, b) = w
        .post(
            "/posts",
            &w.bot.token,
            json!({"channel_id": w.dm.id, "message": "too long"}),
        )
        .await;
    assert_app_error(s, &b, 400, "model.post.is_valid.message_length.app_error");

    // Sockets and the request log.
    let mut ws = w.ws_header(&w.bot.token, "").await;
    next_event(&mut ws, "hello").await;
    let (_, conns) = send(w.http.get(ctl("/connections"))).await;
    assert_eq!(conns[0]["user_id"], w.bot.id.as_str());
    let (_, stalled) = send(
        w.http
            .post(ctl("/sockets/stall"))
            .json(&json!({"user_id": w.bot.id, "millis": 1})),
    )
    .await;
    assert_eq!(stalled["stalled"], 1);
    let (_, killed) = send(
        w.http
            .post(ctl("/sockets/kill"))
            .json(&json!({"user_id": w.bot.id, "mode": "drop"})),
    )
    .await;
    assert_eq!(killed["killed"], 1);
    assert_eq!(expect_end(&mut ws, common::WAIT).await, End::Dropped);
    let (_, log) = send(w.http.get(ctl("/requests"))).await;
    let log = log.as_array().unwrap();
    assert!(
        log.iter()
            .all(|r: &Value| r["path"].as_str().unwrap().starts_with("/api/v4"))
    );
    assert!(log.iter().any(|r| r["status"] == 502));
    send(w.http.delete(ctl("/requests"))).await;
    assert!(w.sim.requests().is_empty());
}

#[tokio::test]
async fn a_clock_offset_moves_the_date_header() {
    let w = World::new().await;
    let date = |resp: &reqwest::Response| {
        let text = resp.headers()["date"].to_str().unwrap().to_owned();
        httpdate::parse_http_date(&text).unwrap()
    };
    let resp = w.req(Method::GET, "/system/ping", "").send().await.unwrap();
    let now = std::time::SystemTime::now();
    let skew = |at: std::time::SystemTime| {
        at.duration_since(now)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_else(|e| -(e.duration().as_secs() as i64))
    };
    assert!(skew(date(&resp)).abs() <= 2, "{:?}", resp.headers());
    w.sim.configure(|c| c.clock_offset_ms = -600_000);
    let resp = w.req(Method::GET, "/system/ping", "").send().await.unwrap();
    assert!((skew(date(&resp)) + 600).abs() <= 2, "{:?}", resp.headers());
    assert_eq!(resp.headers().get_all("date").iter().count(), 1);
}
