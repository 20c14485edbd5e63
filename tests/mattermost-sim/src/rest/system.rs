//! Server-wide routes: client config, ping, the WebSocket upgrade, and the
//! 404 for everything else.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Token, parse_token};
use crate::app::Sim;
use crate::error::ApiError;
use crate::model::{SERVER_VERSION, VERSION_ID};
use crate::ws::{Upgrade, serve_socket};

/// Client frames are limited to 8 KiB, like the server's read limit.
const MAX_CLIENT_FRAME: usize = 8 * 1024;

/// Unknown routes: `api.context.404.app_error`.
pub async fn not_found() -> ApiError {
    ApiError::route_not_found()
}

/// `GET /config/client?format=old`: a flat map whose values are all strings.
pub async fn client_config(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if q.get("format").is_none_or(|f| f != "old") {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "api.config.client.old_format.app_error",
            "New format for the client configuration is not supported yet. Please specify format=old.",
        ));
    }
    let cfg = sim.config();
    let build_hash = VERSION_ID.split('.').nth(6).unwrap_or("");
    Ok(Json(json!({
        "AboutLink": "",
        "BuildDate": "",
        "BuildHash": build_hash,
        "BuildNumber": SERVER_VERSION,
        "DiagnosticsEnabled": "false",
        "EnableBotAccountCreation": "true",
        "EnableCustomEmoji": "false",
        "EnableFileAttachments": cfg.enable_file_attachments.to_string(),
        "EnablePostUsernameOverride": "false",
        "FeatureFlagCollapsedThreads": "true",
        "CollapsedThreads": "disabled",
        "MaxFileSize": cfg.max_file_size.to_string(),
        "MaxPostSize": cfg.max_post_size.to_string(),
        "PostEditTimeLimit": cfg.post_edit_time_limit.to_string(),
        "SiteName": "Mattermost Simulator",
        "SiteURL": sim.site_url(),
        "TimeBetweenUserTypingUpdatesMilliseconds": "5000",
        "Version": SERVER_VERSION,
        "WebsocketURL": "",
        "WebsocketPort": "80",
        "WebsocketSecurePort": "443",
    })))
}

/// `GET /system/ping` (no auth needed).
pub async fn ping() -> Json<Value> {
    Json(json!({
        "ActiveSearchBackend": "database",
        "AndroidLatestVersion": "",
        "AndroidMinVersion": "",
        "IosLatestVersion": "",
        "IosMinVersion": "",
        "status": "OK",
    }))
}

/// `GET /websocket`: the upgrade succeeds even with a bad token (the socket
/// then stays unauthenticated until a challenge or the 5 s timeout).
pub async fn websocket(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let query: String = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let user_id = match parse_token(&headers, Some(&query)) {
        Token::Header(t) => sim.store.lock().user_for_token(&t).map(|u| u.id.clone()),
        Token::Query => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "api.context.token_provided.app_error",
                "Session is not OAuth but token was provided in the query string.",
            )
            .into_response();
        }
        Token::None => None,
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "api.web_socket.connect.upgrade.app_error",
                "Failed to upgrade websocket connection.",
            )
            .into_response();
        }
    };
    let up = Upgrade {
        user_id,
        connection_id: q.get("connection_id").cloned().unwrap_or_default(),
        sequence_number: q.get("sequence_number").cloned(),
        posted_ack: q.get("posted_ack").is_some_and(|v| v == "true"),
    };
    ws.max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| serve_socket(sim, socket, up))
}
