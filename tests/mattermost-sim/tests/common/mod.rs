//! Shared fixtures for the simulator's integration tests: a seeded world, a
//! REST client, and WebSocket helpers whose every wait is bounded.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]
// Test support code: a failed setup step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mattermost_sim::{Account, Channel, ChannelType, SimConfig, Simulator, Team};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A simulator with a bot, two users, a team, a public channel with all
/// three, and the bot↔alice DM.
pub struct World {
    pub sim: Simulator,
    pub bot: Account,
    pub alice: Account,
    pub bob: Account,
    pub team: Team,
    pub town: Channel,
    pub dm: Channel,
    pub http: reqwest::Client,
}

impl World {
    pub async fn new() -> World {
        Self::with(SimConfig::default()).await
    }

    pub async fn with(config: SimConfig) -> World {
        let sim = Simulator::start_with(config).await.unwrap();
        let bot = sim.create_bot("mybot").unwrap();
        let alice = sim.create_user("alice").unwrap();
        let bob = sim.create_user("bob").unwrap();
        let team = sim.create_team("engineering", "Engineering");
        for u in [&bot, &alice, &bob] {
            sim.add_to_team(&team.id, &u.id).unwrap();
        }
        let town = sim
            .create_channel(&team.id, "town-square", "Town Square", ChannelType::Open)
            .unwrap();
        for u in [&bot, &alice, &bob] {
            sim.add_member(&town.id, &u.id).unwrap();
        }
        let dm = sim.direct_channel(&alice.id, &bot.id).unwrap();
        World {
            sim,
            bot,
            alice,
            bob,
            team,
            town,
            dm,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.api_url(), path)
    }

    /// A request with `Authorization: Bearer <token>`.
    pub fn req(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        send(self.req(reqwest::Method::POST, path, token).json(&body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        send(self.req(reqwest::Method::PUT, path, token).json(&body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::DELETE, path, token)).await
    }

    /// Opens a socket authenticated by header.
    pub async fn ws_header(&self, token: &str, query: &str) -> Ws {
        let url = if query.is_empty() {
            self.sim.ws_url()
        } else {
            format!("{}?{query}", self.sim.ws_url())
        };
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .unwrap()
            .unwrap();
        ws
    }

    /// Opens a socket with no credentials.
    pub async fn ws_plain(&self) -> Ws {
        let (ws, _) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(self.sim.ws_url()))
                .await
                .unwrap()
                .unwrap();
        ws
    }
}

/// Sends a request, returns status and JSON body (Null when not JSON).
pub async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = tokio::time::timeout(WAIT, rb.send())
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Asserts the real AppError shape and id.
pub fn assert_app_error(status: u16, body: &Value, want_status: u16, want_id: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["id"], want_id, "{body}");
    assert_eq!(body["detailed_error"], "", "{body}");
    assert_eq!(body["status_code"], want_status, "{body}");
    assert!(
        body["request_id"].as_str().is_some_and(|s| s.len() == 26),
        "{body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
}

/// The next text frame as JSON (pings skipped).
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("socket ended")
            .expect("socket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next event frame (skipping replies) whose `event` is `name`.
pub async fn next_event(ws: &mut Ws, name: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["event"] == name {
            return v;
        }
    }
}

/// The next reply frame (skipping events).
pub async fn next_reply(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws).await;
        if v.get("seq_reply").is_some() {
            return v;
        }
    }
}

/// Sends a request frame.
pub async fn send_action(ws: &mut Ws, seq: i64, action: &str, data: Value) {
    let frame = serde_json::json!({"seq": seq, "action": action, "data": data});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// How a socket ended.
#[derive(Debug, PartialEq)]
pub enum End {
    /// A close frame with this code.
    CloseFrame(u16),
    /// The connection dropped with no close frame.
    Dropped,
}

/// Waits for the socket to end, failing if a text frame arrives first.
pub async fn expect_end(ws: &mut Ws, within: Duration) -> End {
    loop {
        let item = tokio::time::timeout(within, ws.next())
            .await
            .expect("socket still open");
        match item {
            None => return End::Dropped,
            Some(Err(_)) => return End::Dropped,
            Some(Ok(Message::Close(frame))) => {
                return End::CloseFrame(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("expected the socket to end, got {other:?}"),
        }
    }
}

/// Decodes a JSON-string field of event data.
pub fn inner(v: &Value, field: &str) -> Value {
    serde_json::from_str(v["data"][field].as_str().unwrap()).unwrap()
}
