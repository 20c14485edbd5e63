//! REST API v4: the router, authentication, and the middleware that gives
//! every response the real server's headers (and applies rate limits and
//! injected faults).

mod channels;
mod files;
mod posts;
mod system;
mod users;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::de::DeserializeOwned;

use crate::app::{RequestRecord, Sim};
use crate::error::{ApiError, REQUEST_ID};
use crate::faults::RateDecision;
use crate::ids::{is_valid_id, new_id, wall_ms};
use crate::model::VERSION_ID;

/// JSON bodies are capped like `MaximumPayloadSizeBytes` (uploads are exempt).
const MAX_JSON_BODY: usize = 300_000;

/// Where a request's token came from.
#[derive(Debug, PartialEq, Eq)]
pub enum Token {
    None,
    /// `Authorization: Bearer|Token <t>` (any case) or the `MMAUTHTOKEN` cookie.
    Header(String),
    /// `?access_token=`, which the server accepts only for OAuth sessions.
    Query,
}

/// Reads the token the way `ParseAuthTokenFromRequest` does: header first
/// (scheme matched case-insensitively), then cookie, then query string.
pub fn parse_token(headers: &HeaderMap, query: Option<&str>) -> Token {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if auth.len() > 6 && auth[..6].eq_ignore_ascii_case("bearer") {
            return Token::Header(auth[7..].to_owned());
        }
        if auth.len() > 5 && auth[..5].eq_ignore_ascii_case("token") {
            return Token::Header(auth[6..].to_owned());
        }
    }
    for cookie in headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for part in cookie.split(';') {
            if let Some(t) = part.trim().strip_prefix("MMAUTHTOKEN=") {
                return Token::Header(t.to_owned());
            }
        }
    }
    let in_query = query
        .unwrap_or("")
        .split('&')
        .any(|kv| kv.starts_with("access_token=") && kv.len() > "access_token=".len());
    if in_query { Token::Query } else { Token::None }
}

/// The authenticated caller of a REST route.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
}

impl FromRequestParts<Arc<Sim>> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, sim: &Arc<Sim>) -> Result<Self, ApiError> {
        match parse_token(&parts.headers, parts.uri.query()) {
            Token::Header(t) => sim
                .store
                .lock()
                .user_for_token(&t)
                .map(|u| Session {
                    user_id: u.id.clone(),
                })
                .ok_or_else(ApiError::session_expired),
            Token::Query => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "api.context.token_provided.app_error",
                "Session is not OAuth but token was provided in the query string.",
            )),
            Token::None => Err(ApiError::session_expired()),
        }
    }
}

/// Decodes a JSON body; failures are the real `invalid_body_param` error.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes, name: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|_| ApiError::invalid_body(name))
}

/// A 400 `invalid_url_param` unless `id` has the shape of an id.
pub fn require_id(id: &str, name: &str) -> Result<(), ApiError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid_url(name))
    }
}

/// The full router: REST v4, the WebSocket, and the `/__sim` control API.
pub fn router(sim: Arc<Sim>) -> Router {
    let api = Router::new()
        .route("/api/v4/users/me", get(users::me))
        .route("/api/v4/users/me/teams", get(users::my_teams))
        .route("/api/v4/users/usernames", post(users::by_usernames))
        .route("/api/v4/users/ids", post(users::by_ids))
        .route("/api/v4/users/username/{username}", get(users::by_username))
        .route("/api/v4/users/{user_id}", get(users::by_id))
        .route("/api/v4/users/{user_id}/teams", get(users::teams_of))
        .route("/api/v4/users/{user_id}/typing", post(users::typing))
        .route(
            "/api/v4/users/{user_id}/teams/{team_id}/channels",
            get(channels::for_user_in_team),
        )
        .route(
            "/api/v4/users/{user_id}/posts/{post_id}/reactions/{emoji_name}",
            delete(users::delete_reaction),
        )
        .route("/api/v4/teams/{team_id}", get(channels::team))
        .route(
            "/api/v4/teams/{team_id}/members/{user_id}",
            get(channels::team_member),
        )
        .route(
            "/api/v4/teams/{team_id}/channels/name/{channel_name}",
            get(channels::by_name),
        )
        .route("/api/v4/channels", post(channels::create))
        .route("/api/v4/channels/direct", post(channels::direct))
        .route("/api/v4/channels/group", post(channels::group))
        .route("/api/v4/channels/{channel_id}", get(channels::get_one))
        .route(
            "/api/v4/channels/{channel_id}/members",
            get(channels::members).post(channels::add_member),
        )
        .route(
            "/api/v4/channels/{channel_id}/members/{user_id}",
            get(channels::member),
        )
        .route(
            "/api/v4/channels/{channel_id}/members/{user_id}/notify_props",
            put(channels::update_notify_props),
        )
        .route(
            "/api/v4/channels/members/{user_id}/view",
            post(channels::view),
        )
        .route(
            "/api/v4/channels/{channel_id}/posts",
            get(posts::for_channel),
        )
        .route("/api/v4/posts", post(posts::create))
        .route(
            "/api/v4/posts/{post_id}",
            get(posts::get_one).put(posts::update).delete(posts::remove),
        )
        .route("/api/v4/posts/{post_id}/patch", put(posts::patch))
        .route("/api/v4/posts/{post_id}/thread", get(posts::thread))
        .route("/api/v4/posts/{post_id}/files/info", get(posts::files_info))
        .route("/api/v4/posts/{post_id}/reactions", get(posts::reactions))
        .route(
            "/api/v4/posts/{post_id}/edit_history",
            get(posts::edit_history),
        )
        .route("/api/v4/reactions", post(posts::react))
        .route("/api/v4/config/client", get(system::client_config))
        .route("/api/v4/system/ping", get(system::ping))
        .route("/api/v4/websocket", get(system::websocket))
        .route("/api/v4/websocket/", get(system::websocket))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .route(
            "/api/v4/files",
            post(files::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v4/files/{file_id}", get(files::download))
        .route("/api/v4/files/{file_id}/info", get(files::info))
        .fallback(system::not_found)
        .layer(middleware::from_fn_with_state(sim.clone(), observe));
    Router::new()
        .merge(crate::control::router())
        .merge(api)
        .with_state(sim)
}

/// Every REST request passes here: rate limiting, injected faults, the
/// `X-Request-ID`/`X-Version-ID` headers, and the request log.
async fn observe(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let at = wall_ms();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body_bytes = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));

    let rate = sim.rate_limiter.lock().as_mut().map(|rl| rl.check(ip));
    let mut resp = match rate {
        Some(d) if d.limited => too_many_requests(d.retry_after_secs),
        _ => {
            let injection = sim.faults.lock().take(&method, &path);
            if let Some(delay) = injection.delay {
                tokio::time::sleep(delay).await;
            }
            match injection.status {
                Some((429, retry_after)) => {
                    let mut r = too_many_requests(retry_after);
                    let limit = rate.map_or(101, |d| d.limit);
                    set_rate_headers(
                        &mut r,
                        RateDecision {
                            limited: true,
                            limit,
                            remaining: 0,
                            reset_secs: retry_after,
                            retry_after_secs: retry_after,
                        },
                    );
                    r
                }
                status => {
                    let request_id = new_id();
                    let mut r = match status {
                        Some((code, _)) => {
                            REQUEST_ID
                                .scope(request_id.clone(), async move {
                                    let status = StatusCode::from_u16(code)
                                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                                    ApiError::new(
                                        status,
                                        "api.sim.injected_fault.app_error",
                                        format!("Injected failure ({code})."),
                                    )
                                    .into_response()
                                })
                                .await
                        }
                        None => REQUEST_ID.scope(request_id.clone(), next.run(req)).await,
                    };
                    if let Some(hold) = injection.answer_delay {
                        tokio::time::sleep(hold).await;
                    }
                    let h = r.headers_mut();
                    if let Ok(v) = HeaderValue::from_str(&request_id) {
                        h.insert(HeaderName::from_static("x-request-id"), v);
                    }
                    h.insert(
                        HeaderName::from_static("x-version-id"),
                        HeaderValue::from_static(VERSION_ID),
                    );
                    r
                }
            }
        }
    };
    if let Some(d) = rate {
        set_rate_headers(&mut resp, d);
    }
    set_date(&mut resp, sim.config().clock_offset_ms);
    sim.requests.lock().push(RequestRecord {
        method,
        path,
        query,
        status: resp.status().as_u16(),
        at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        body_bytes,
    });
    resp
}

/// `Date` from the server's clock, which may be set off this machine's.
fn set_date(resp: &mut Response, offset_ms: i64) {
    let now = std::time::SystemTime::now();
    let offset = std::time::Duration::from_millis(offset_ms.unsigned_abs());
    let at = if offset_ms >= 0 {
        now.checked_add(offset)
    } else {
        now.checked_sub(offset)
    };
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at.unwrap_or(now))) {
        resp.headers_mut().insert(header::DATE, v);
    }
}

/// The rate limiter's refusal: plain text, not an AppError.
fn too_many_requests(retry_after: u64) -> Response {
    let mut r = (StatusCode::TOO_MANY_REQUESTS, "limit exceeded\n").into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    r
}

/// `X-Ratelimit-*` as Go's header canonicalisation spells them.
fn set_rate_headers(resp: &mut Response, d: RateDecision) {
    let h = resp.headers_mut();
    h.insert(
        HeaderName::from_static("x-ratelimit-limit"),
        HeaderValue::from(d.limit),
    );
    h.insert(
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderValue::from(d.remaining),
    );
    h.insert(
        HeaderName::from_static("x-ratelimit-reset"),
        HeaderValue::from(d.reset_secs),
    );
    if d.limited {
        h.insert(header::RETRY_AFTER, HeaderValue::from(d.retry_after_secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn auth_scheme_is_case_insensitive() {
        assert_eq!(
            parse_token(&headers("BEARER abc"), None),
            Token::Header("abc".into())
        );
        assert_eq!(
            parse_token(&headers("bearer abc"), None),
            Token::Header("abc".into())
        );
        assert_eq!(
            parse_token(&headers("Token abc"), None),
            Token::Header("abc".into())
        );
        assert_eq!(parse_token(&headers("Basic abc"), None), Token::None);
        assert_eq!(
            parse_token(&HeaderMap::new(), Some("access_token=x")),
            Token::Query
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; MMAUTHTOKEN=tok"),
        );
        assert_eq!(parse_token(&h, None), Token::Header("tok".into()));
    }
}
