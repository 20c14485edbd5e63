//! Calls for the command line (`opencode-mattermost doctor` and `send`)
//! that the agent itself does not make: the server's ping with its clock,
//! a team's channel by name, an upload that reports its progress, and a
//! one-shot WebSocket handshake that says how far it got.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, DATE, HeaderMap};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::{self, Message};
use url::Url;

use super::budget::Priority;
use super::error::MattermostError;
use super::rest::{Body, RestClient, check_id, check_name};
use super::types::{Channel, FileInfo};
use crate::config::Secret;

/// Told how many bytes of an upload have left so far (from 0 on a retry).
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Bytes handed to the connection at a time, and so between two reports.
const CHUNK: usize = 64 * 1024;

/// What `GET /system/ping` told.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    /// The body's `status` (`OK` on a healthy server).
    pub status: String,
    /// The server's clock, from the `Date` header.
    pub server_time: Option<DateTime<Utc>>,
    /// `X-Version-Id`: build number, version, hash and edition.
    pub version_id: Option<String>,
}

impl RestClient {
    /// `GET /system/ping`: the one route any Mattermost server answers
    /// without a session.
    pub async fn ping(&self) -> Result<Ping, MattermostError> {
        let action = "GET /system/ping";
        let (_, headers, bytes) = self
            .call(
                Method::GET,
                "/system/ping",
                &[],
                Body::None,
                Priority::Normal,
            )
            .await?;
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|e| MattermostError::BadResponse {
                action: action.into(),
                reason: format!("not JSON, so not a Mattermost server: {e}"),
            })?;
        Ok(Ping {
            status: body["status"].as_str().unwrap_or_default().to_owned(),
            server_time: server_time(&headers),
            version_id: header(&headers, "x-version-id"),
        })
    }

    /// A channel of a team by its name (the part of its URL after `/channels/`).
    pub async fn team_channel(
        &self,
        team_id: &str,
        name: &str,
    ) -> Result<Channel, MattermostError> {
        check_id("team id", team_id)?;
        check_name("channel name", name, "-_")?;
        self.json(
            Method::GET,
            &format!("/teams/{team_id}/channels/name/{name}"),
            &[],
            Body::None,
            Priority::Normal,
        )
        .await
    }

    /// Like [`RestClient::upload_file`], reporting the bytes sent as they go.
    pub async fn upload_file_tracked(
        &self,
        channel_id: &str,
        filename: &str,
        bytes: Vec<u8>,
        progress: Progress,
    ) -> Result<FileInfo, MattermostError> {
        self.upload(channel_id, filename, Body::Tracked(bytes, progress))
            .await
    }
}

/// The request with `data` as its body, sent in chunks that are reported
/// to `progress`; its length is declared, since Mattermost refuses a raw
/// upload without a `Content-Length`.
pub(super) fn tracked(
    req: reqwest::RequestBuilder,
    data: &[u8],
    progress: &Progress,
) -> reqwest::RequestBuilder {
    let total = data.len();
    let data = data.to_vec();
    let progress = progress.clone();
    progress(0);
    let chunks = futures::stream::unfold(0usize, move |sent| {
        let end = (sent + CHUNK).min(total);
        let chunk = (sent < total).then(|| data[sent..end].to_vec());
        let progress = progress.clone();
        async move {
            let chunk = chunk?;
            progress(end as u64);
            Some((Ok::<_, std::io::Error>(chunk), end))
        }
    });
    req.header(CONTENT_LENGTH, total)
        .body(reqwest::Body::wrap_stream(chunks))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `Date` header (RFC 9110's IMF-fixdate, which RFC 2822 parsing reads).
fn server_time(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let text = header(headers, DATE.as_str())?;
    DateTime::parse_from_rfc2822(&text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How a WebSocket handshake went, as far as it got.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SocketProbeError {
    #[error("the upgrade to a WebSocket failed: {0}")]
    Upgrade(String),
    #[error(
        "the socket opened but the server did not authenticate it from the Authorization \
         header within {0:?}; an authentication challenge with the same token was answered, \
         so something between here and the server drops that header"
    )]
    HeaderDropped(Duration),
    #[error(
        "the socket opened but the server authenticated it neither from the Authorization \
         header nor from an authentication challenge within {0:?}"
    )]
    NotAuthenticated(Duration),
}

/// What a successful handshake returned.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketProbe {
    pub connection_id: String,
}

/// Opens a socket the way the link does (`Authorization: Bearer` on the
/// upgrade) and waits for the `hello` that says the server authenticated
/// it. Without one it answers the server's authentication challenge with
/// the token on the same socket, to tell a header dropped on the way from
/// a token refused. Then closes the socket.
pub async fn websocket(
    ws_url: &Url,
    token: &Secret,
    wait: Duration,
) -> Result<SocketProbe, SocketProbeError> {
    let upgrade = |e: String| SocketProbeError::Upgrade(token.scrub(&e));
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| upgrade(e.to_string()))?;
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| upgrade("the token is not a valid header value".into()))?;
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    let connect = tokio_tungstenite::connect_async_with_config(request, None, true);
    let (mut ws, _) = match tokio::time::timeout(wait, connect).await {
        Err(_) => return Err(upgrade(format!("no answer within {wait:?}"))),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            return Err(upgrade(format!(
                "the server answered HTTP {}",
                resp.status()
            )));
        }
        Ok(Err(e)) => return Err(upgrade(e.to_string())),
        Ok(Ok(pair)) => pair,
    };
    let outcome = match first_hello(&mut ws, wait).await {
        Some(probe) => Ok(probe),
        None => {
            let challenge = json!({
                "seq": 1,
                "action": "authentication_challenge",
                "data": {"token": token.expose()},
            });
            let sent = ws.send(Message::text(challenge.to_string())).await.is_ok();
            if sent && challenge_answered(&mut ws, wait).await {
                Err(SocketProbeError::HeaderDropped(wait))
            } else {
                Err(SocketProbeError::NotAuthenticated(wait))
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    outcome
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The `hello` event, if one comes within `wait`.
async fn first_hello(ws: &mut Socket, wait: Duration) -> Option<SocketProbe> {
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if frame["event"] == "hello" {
                let id = frame["data"]["connection_id"].as_str().unwrap_or("");
                return Some(SocketProbe {
                    connection_id: id.to_owned(),
                });
            }
        }
        None
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

/// Whether the reply to action 1 came back `OK` within `wait`.
async fn challenge_answered(ws: &mut Socket, wait: Duration) -> bool {
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if frame["seq_reply"] == 1 {
                return frame["status"] == "OK";
            }
        }
        false
    };
    tokio::time::timeout(wait, read).await.unwrap_or(false)
}
