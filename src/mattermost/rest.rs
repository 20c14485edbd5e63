//! The Mattermost REST v4 client: typed calls, one shared rate budget,
//! retries with backoff for 5xx, timeouts and connection resets, and
//! `pending_post_id` so a retried post is never duplicated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::budget::{Priority, RateBudget, ServerLimit, Ticket};
use super::error::MattermostError;
use super::types::{
    AppError, Channel, ClientConfig, FileInfo, FileUploadResponse, Post, PostList, Reaction, Team,
    User,
};
use crate::config::{Secret, is_mattermost_id};

/// How hard to try before giving up.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts for 5xx, timeouts and connection errors (1 = no retry).
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// 429 answers tolerated per request before giving up.
    pub max_rate_limited: u32,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_rate_limited: 20,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Request counters shown by `mattermost_status`.
#[derive(Debug, Default)]
pub struct RestStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

/// A new post. [`RestClient::create_post`] sets `pending_post_id` when the
/// caller has not fixed one (with [`RestClient::new_pending_post_id`]).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NewPost {
    pub channel_id: String,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub props: Option<Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pending_post_id: String,
}

pub struct RestClient {
    http: reqwest::Client,
    /// `https://host/api/v4`, no trailing slash.
    api: String,
    token: Secret,
    budget: Arc<RateBudget>,
    retry: RetryPolicy,
    pub stats: RestStats,
    /// Makes each `pending_post_id` of this client unique.
    pending_seq: AtomicU64,
}

pub(super) enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
    /// Raw bytes sent in chunks, each reported as it leaves (see `probe`).
    Tracked(Vec<u8>, super::probe::Progress),
}

impl RestClient {
    pub fn new(
        api_url: &str,
        token: Secret,
        budget: Arc<RateBudget>,
        retry: RetryPolicy,
    ) -> Result<Self, MattermostError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("opencode-mattermost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MattermostError::InvalidInput {
                what: "HTTP client",
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            api: api_url.trim_end_matches('/').to_owned(),
            token,
            budget,
            retry,
            stats: RestStats::default(),
            pending_seq: AtomicU64::new(0),
        })
    }

    pub fn api_url(&self) -> &str {
        &self.api
    }

    pub fn budget(&self) -> &RateBudget {
        &self.budget
    }

    /// Send one logical request, retrying as the policy allows.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
        priority: Priority,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), MattermostError> {
        let action = format!("{method} {path}");
        let url = format!("{}{path}", self.api);
        let mut attempt = 0u32;
        let mut limited = 0u32;
        let mut limited_wait = Duration::ZERO;
        loop {
            attempt += 1;
            let ticket = self.budget.acquire(priority).await;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let mut req = self
                .http
                .request(method.clone(), &url)
                .query(query)
                .bearer_auth(self.token.expose())
                .timeout(self.retry.request_timeout);
            req = match &body {
                Body::None => req,
                Body::Json(v) => req.json(v),
                Body::Bytes(b) => req.body(b.clone()),
                Body::Tracked(b, progress) => super::probe::tracked(req, b, progress),
            };
            let outcome = req.send().await;
            let retryable_err = match outcome {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    self.observe(ticket, &headers);
                    let bytes = match resp.bytes().await {
                        Ok(b) => b.to_vec(),
                        Err(e) => {
                            self.backoff_or_fail(attempt, &action, 0, &e.to_string())
                                .await?;
                            continue;
                        }
                    };
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let wait = retry_after(&headers).unwrap_or(Duration::from_secs(1));
                        self.budget.rate_limited(wait);
                        limited += 1;
                        limited_wait += wait;
                        warn!(%action, ?wait, "rate limited by Mattermost; waiting");
                        if limited > self.retry.max_rate_limited {
                            return Err(MattermostError::RateLimited {
                                action,
                                waited: limited_wait,
                            });
                        }
                        attempt -= 1; // a 429 is not a failed attempt
                        continue;
                    }
                    if status.is_server_error() {
                        let message = self.error_text(&bytes);
                        self.backoff_or_fail(attempt, &action, status.as_u16(), &message)
                            .await?;
                        continue;
                    }
                    if status.is_success() {
                        return Ok((status, headers, bytes));
                    }
                    return Err(self.client_error(&action, status, &bytes));
                }
                Err(e) => e,
            };
            let reason = self.token.scrub(&error_chain(&retryable_err));
            if retryable_err.is_connect() && attempt >= self.retry.attempts {
                return Err(MattermostError::Unreachable {
                    url: self.api.clone(),
                    reason,
                });
            }
            self.backoff_or_fail(attempt, &action, 0, &reason).await?;
        }
    }

    async fn backoff_or_fail(
        &self,
        attempt: u32,
        action: &str,
        status: u16,
        message: &str,
    ) -> Result<(), MattermostError> {
        if attempt >= self.retry.attempts {
            return Err(if status == 0 {
                MattermostError::Unreachable {
                    url: self.api.clone(),
                    reason: format!("{action}: {message} (after {attempt} attempts)"),
                }
            } else {
                MattermostError::Server {
                    action: action.to_owned(),
                    status,
                    attempts: attempt,
                    message: message.to_owned(),
                }
            });
        }
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        let exp = self
            .retry
            .initial_backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.retry.max_backoff);
        // Full jitter: spread retries of many clients apart.
        let wait = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
        debug!(action, attempt, ?wait, status, "retrying");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn observe(&self, ticket: Ticket<'_>, headers: &HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        // HeaderMap lookups are case-insensitive, matching Go's X-Ratelimit-*.
        let server = ServerLimit {
            limit: num("x-ratelimit-limit"),
            remaining: num("x-ratelimit-remaining"),
            reset: num("x-ratelimit-reset").map(Duration::from_secs),
        };
        if server != ServerLimit::default() {
            self.budget.observe(ticket, server);
        }
    }

    fn error_text(&self, bytes: &[u8]) -> String {
        let text = match serde_json::from_slice::<AppError>(bytes) {
            Ok(e) if !e.message.is_empty() => format!("{} ({})", e.message, e.id),
            _ => String::from_utf8_lossy(bytes).chars().take(200).collect(),
        };
        self.token.scrub(text.trim())
    }

    fn client_error(&self, action: &str, status: StatusCode, bytes: &[u8]) -> MattermostError {
        let e: AppError = serde_json::from_slice(bytes).unwrap_or_default();
        let message = self.token.scrub(&e.message);
        match status {
            StatusCode::UNAUTHORIZED => MattermostError::InvalidToken { id: e.id },
            StatusCode::FORBIDDEN => MattermostError::Forbidden {
                action: action.to_owned(),
                id: e.id,
                message,
            },
            StatusCode::NOT_FOUND => MattermostError::NotFound {
                what: action.to_owned(),
                message,
            },
            _ => MattermostError::Rejected {
                action: action.to_owned(),
                status: status.as_u16(),
                id: e.id,
                message,
            },
        }
    }

    pub(super) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
        priority: Priority,
    ) -> Result<T, MattermostError> {
        let action = format!("{method} {path}");
        let (_, _, bytes) = self.call(method, path, query, body, priority).await?;
        serde_json::from_slice(&bytes).map_err(|e| MattermostError::BadResponse {
            action,
            reason: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, MattermostError> {
        self.json(Method::GET, path, &[], Body::None, Priority::Normal)
            .await
    }

    // ---- users, teams, channels ----

    pub async fn me(&self) -> Result<User, MattermostError> {
        self.get("/users/me").await
    }

    pub async fn user(&self, id: &str) -> Result<User, MattermostError> {
        check_id("user id", id)?;
        self.get(&format!("/users/{id}")).await
    }

    pub async fn user_by_username(&self, username: &str) -> Result<User, MattermostError> {
        let name = username.trim_start_matches('@');
        check_name("username", name, "._-")?;
        self.get(&format!("/users/username/{name}")).await
    }

    pub async fn users_by_ids(&self, ids: &[String]) -> Result<Vec<User>, MattermostError> {
        for id in ids {
            check_id("user id", id)?;
        }
        self.json(
            Method::POST,
            "/users/ids",
            &[],
            Body::Json(json!(ids)),
            Priority::Normal,
        )
        .await
    }

    pub async fn my_teams(&self) -> Result<Vec<Team>, MattermostError> {
        self.get("/users/me/teams").await
    }

    /// Whether `user_id` belongs to the team (a 404 is "no").
    pub async fn is_team_member(
        &self,
        team_id: &str,
        user_id: &str,
    ) -> Result<bool, MattermostError> {
        check_id("team id", team_id)?;
        check_id("user id", user_id)?;
        match self
            .get::<Value>(&format!("/teams/{team_id}/members/{user_id}"))
            .await
        {
            Ok(_) => Ok(true),
            Err(MattermostError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The bot's channels in a team, with its DMs and group DMs.
    pub async fn my_channels(&self, team_id: &str) -> Result<Vec<Channel>, MattermostError> {
        check_id("team id", team_id)?;
        self.get(&format!("/users/me/teams/{team_id}/channels"))
            .await
    }

    pub async fn channel(&self, id: &str) -> Result<Channel, MattermostError> {
        check_id("channel id", id)?;
        self.get(&format!("/channels/{id}")).await
    }

    /// Whether `user_id` is a member of the channel. A 404 is "no"; the
    /// bot's own lack of access (403) is an error, never a guess.
    pub async fn is_channel_member(
        &self,
        channel_id: &str,
        user_id: &str,
    ) -> Result<bool, MattermostError> {
        check_id("channel id", channel_id)?;
        check_id("user id", user_id)?;
        let path = format!("/channels/{channel_id}/members/{user_id}");
        match self.get::<Value>(&path).await {
            Ok(_) => Ok(true),
            Err(MattermostError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Like [`RestClient::is_channel_member`], but a channel the bot cannot
    /// read counts as no: for checks that must tell nothing about it.
    pub async fn channel_member(
        &self,
        channel_id: &str,
        user_id: &str,
    ) -> Result<bool, MattermostError> {
        match self.is_channel_member(channel_id, user_id).await {
            Err(MattermostError::Forbidden { .. }) => Ok(false),
            other => other,
        }
    }

    /// The DM channel between two users (created if needed).
    pub async fn direct_channel(&self, a: &str, b: &str) -> Result<Channel, MattermostError> {
        check_id("user id", a)?;
        check_id("user id", b)?;
        self.json(
            Method::POST,
            "/channels/direct",
            &[],
            Body::Json(json!([a, b])),
            Priority::Normal,
        )
        .await
    }

    // ---- posts ----

    /// Create a post. The `pending_post_id` is fixed before the first attempt,
    /// so a retry after a lost answer returns the original post instead of
    /// creating a second one.
    pub async fn create_post(
        &self,
        bot_user_id: &str,
        post: &NewPost,
        priority: Priority,
    ) -> Result<Post, MattermostError> {
        check_id("channel id", &post.channel_id)?;
        if !post.root_id.is_empty() {
            check_id("root post id", &post.root_id)?;
        }
        let mut body = serde_json::to_value(post).map_err(|e| MattermostError::InvalidInput {
            what: "post",
            reason: e.to_string(),
        })?;
        if post.pending_post_id.is_empty() {
            body["pending_post_id"] = json!(self.new_pending_post_id(bot_user_id));
        }
        self.json(Method::POST, "/posts", &[], Body::Json(body), priority)
            .await
    }

    /// A `pending_post_id` unique to this client, for a caller that records
    /// it before creating the post.
    pub fn new_pending_post_id(&self, bot_user_id: &str) -> String {
        pending_post_id(bot_user_id, &self.pending_seq)
    }

    /// Replace a post's message (and props, when given: they replace the map).
    pub async fn patch_post(
        &self,
        id: &str,
        message: &str,
        props: Option<Value>,
        priority: Priority,
    ) -> Result<Post, MattermostError> {
        check_id("post id", id)?;
        let mut body = json!({"message": message});
        if let Some(props) = props {
            body["props"] = props;
        }
        self.json(
            Method::PUT,
            &format!("/posts/{id}/patch"),
            &[],
            Body::Json(body),
            priority,
        )
        .await
    }

    pub async fn post(&self, id: &str) -> Result<Post, MattermostError> {
        check_id("post id", id)?;
        self.get(&format!("/posts/{id}")).await
    }

    /// Every post of a thread, root first then by creation time, following
    /// the server's pages.
    pub async fn thread(&self, root_id: &str) -> Result<Vec<Post>, MattermostError> {
        check_id("post id", root_id)?;
        let mut all: Vec<Post> = Vec::new();
        let mut from: Option<(String, i64)> = None;
        loop {
            let mut query = vec![
                ("perPage", "200".to_owned()),
                ("direction", "down".to_owned()),
                ("skipFetchThreads", "false".to_owned()),
                ("collapsedThreads", "false".to_owned()),
            ];
            if let Some((post, at)) = &from {
                query.push(("fromPost", post.clone()));
                query.push(("fromCreateAt", at.to_string()));
            }
            let page: PostList = self
                .json(
                    Method::GET,
                    &format!("/posts/{root_id}/thread"),
                    &query,
                    Body::None,
                    Priority::Normal,
                )
                .await?;
            let mut posts: Vec<Post> = page.posts.into_values().collect();
            posts.sort_by_key(|p| p.create_at);
            let last = posts.last().map(|p| (p.id.clone(), p.create_at));
            for p in posts {
                if !all.iter().any(|q| q.id == p.id) {
                    all.push(p);
                }
            }
            match (page.has_next, last) {
                (true, Some(last)) if from.as_ref() != Some(&last) => from = Some(last),
                _ => break,
            }
        }
        all.sort_by_key(|p| (p.id != root_id, p.create_at));
        Ok(all)
    }

    /// Posts of a channel created or changed after `since_ms`.
    pub async fn posts_since(
        &self,
        channel_id: &str,
        since_ms: i64,
    ) -> Result<Vec<Post>, MattermostError> {
        check_id("channel id", channel_id)?;
        let list: PostList = self
            .json(
                Method::GET,
                &format!("/channels/{channel_id}/posts"),
                &[("since", since_ms.to_string())],
                Body::None,
                Priority::Normal,
            )
            .await?;
        let mut posts: Vec<Post> = list.posts.into_values().collect();
        posts.sort_by_key(|p| p.create_at);
        Ok(posts)
    }

    // ---- files ----

    /// Upload a file to a channel (raw body) and return its info.
    pub async fn upload_file(
        &self,
        channel_id: &str,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<FileInfo, MattermostError> {
        self.upload(channel_id, filename, Body::Bytes(bytes)).await
    }

    pub(super) async fn upload(
        &self,
        channel_id: &str,
        filename: &str,
        body: Body,
    ) -> Result<FileInfo, MattermostError> {
        check_id("channel id", channel_id)?;
        if filename.is_empty() || filename.chars().any(char::is_control) {
            return Err(MattermostError::InvalidInput {
                what: "file name",
                reason: format!("`{}` cannot be uploaded as a name", filename.escape_debug()),
            });
        }
        let action = "POST /files";
        let (_, _, body) = self
            .call(
                Method::POST,
                "/files",
                &[
                    ("channel_id", channel_id.to_owned()),
                    ("filename", filename.to_owned()),
                ],
                body,
                Priority::Normal,
            )
            .await?;
        let resp: FileUploadResponse =
            serde_json::from_slice(&body).map_err(|e| MattermostError::BadResponse {
                action: action.into(),
                reason: e.to_string(),
            })?;
        resp.file_infos
            .into_iter()
            .next()
            .ok_or_else(|| MattermostError::BadResponse {
                action: action.into(),
                reason: "no file info in the answer".into(),
            })
    }

    pub async fn file_info(&self, id: &str) -> Result<FileInfo, MattermostError> {
        check_id("file id", id)?;
        self.get(&format!("/files/{id}/info")).await
    }

    /// Download a file's bytes; refuses files larger than `max_bytes`.
    pub async fn download_file(
        &self,
        id: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, MattermostError> {
        let info = self.file_info(id).await?;
        if info.size as u64 > max_bytes {
            return Err(MattermostError::InvalidInput {
                what: "file",
                reason: format!(
                    "`{}` is {} bytes, above the {max_bytes}-byte limit",
                    info.name, info.size
                ),
            });
        }
        let (_, _, bytes) = self
            .call(
                Method::GET,
                &format!("/files/{id}"),
                &[],
                Body::None,
                Priority::Normal,
            )
            .await?;
        Ok(bytes)
    }

    // ---- reactions, typing, config ----

    pub async fn add_reaction(
        &self,
        user_id: &str,
        post_id: &str,
        emoji: &str,
    ) -> Result<Reaction, MattermostError> {
        check_id("post id", post_id)?;
        check_id("user id", user_id)?;
        check_name("emoji name", emoji, "_+-")?;
        self.json(
            Method::POST,
            "/reactions",
            &[],
            Body::Json(json!({"user_id": user_id, "post_id": post_id, "emoji_name": emoji})),
            Priority::Urgent,
        )
        .await
    }

    pub async fn reactions(&self, post_id: &str) -> Result<Vec<Reaction>, MattermostError> {
        check_id("post id", post_id)?;
        // The server answers `null` for a post without reactions.
        let list: Option<Vec<Reaction>> = self.get(&format!("/posts/{post_id}/reactions")).await?;
        Ok(list.unwrap_or_default())
    }

    pub async fn remove_reaction(
        &self,
        user_id: &str,
        post_id: &str,
        emoji: &str,
    ) -> Result<(), MattermostError> {
        check_id("post id", post_id)?;
        check_id("user id", user_id)?;
        check_name("emoji name", emoji, "_+-")?;
        self.call(
            Method::DELETE,
            &format!("/users/{user_id}/posts/{post_id}/reactions/{emoji}"),
            &[],
            Body::None,
            Priority::Normal,
        )
        .await
        .map(|_| ())
    }

    /// Show "… is typing" in a channel or thread for a few seconds.
    pub async fn typing(
        &self,
        user_id: &str,
        channel_id: &str,
        parent_id: &str,
    ) -> Result<(), MattermostError> {
        check_id("user id", user_id)?;
        check_id("channel id", channel_id)?;
        self.call(
            Method::POST,
            &format!("/users/{user_id}/typing"),
            &[],
            Body::Json(json!({"channel_id": channel_id, "parent_id": parent_id})),
            Priority::Progress,
        )
        .await
        .map(|_| ())
    }

    pub async fn client_config(&self) -> Result<ClientConfig, MattermostError> {
        let map: std::collections::BTreeMap<String, Value> = self
            .json(
                Method::GET,
                "/config/client",
                &[("format", "old".to_owned())],
                Body::None,
                Priority::Normal,
            )
            .await?;
        Ok(ClientConfig(
            map.into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect(),
        ))
    }
}

/// `Retry-After` in seconds (Mattermost never sends the HTTP-date form).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(super::budget::MAX_BLOCK.as_secs_f64())))
}

/// `<user_id>:<ms>` plus the client's counter.
fn pending_post_id(user_id: &str, seq: &AtomicU64) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{user_id}:{ms}{:03}",
        seq.fetch_add(1, Ordering::Relaxed) % 1000
    )
}

pub(super) fn check_id(what: &'static str, id: &str) -> Result<(), MattermostError> {
    if is_mattermost_id(id) {
        Ok(())
    } else {
        Err(MattermostError::InvalidInput {
            what,
            reason: format!("`{}` is not a Mattermost id", id.escape_debug()),
        })
    }
}

/// A name that goes into a URL path (username, emoji): ASCII letters and
/// digits plus `extra`, at most 64 characters.
pub(super) fn check_name(
    what: &'static str,
    value: &str,
    extra: &str,
) -> Result<(), MattermostError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    if ok {
        Ok(())
    } else {
        Err(MattermostError::InvalidInput {
            what,
            reason: format!("`{}` is not a valid {what}", value.escape_debug()),
        })
    }
}

/// reqwest's error with its sources, which carry the useful part.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
