//! Test control: seeding accounts and channels, inspecting what the server
//! stored and received, and injecting faults. The same operations back the
//! in-process [`crate::Simulator`] handle and the JSON routes under `/__sim`
//! (for the Node conformance tests and demos).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::app::{RequestRecord, Sim};
use crate::error::ApiError;
use crate::faults::{FaultAction, FaultRule, RateLimit, RateLimiter};
use crate::model::{Channel, ChannelType, CreatePostBody, Post, Reaction, ReactionBody, Team};
use crate::ws::{ConnectionInfo, KillMode};

/// A seeded account and its access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub username: String,
    pub token: String,
}

fn bad(msg: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "api.sim.control.app_error", msg)
}

impl Sim {
    /// Adds a user (or bot) with a token. Usernames are unique, lowercase.
    pub fn create_account(&self, username: &str, is_bot: bool) -> Result<Account, ApiError> {
        let username = username.to_lowercase();
        let valid = !username.is_empty()
            && username.len() <= 64
            && username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid {
            return Err(bad("invalid username"));
        }
        let mut store = self.store.lock();
        if store.user_by_name(&username).is_some() {
            return Err(bad("username already taken"));
        }
        let (user, token) = store.add_user(&username, is_bot);
        Ok(Account {
            id: user.id,
            username: user.username,
            token,
        })
    }

    /// Adds a team.
    pub fn create_team(&self, name: &str, display_name: &str) -> Team {
        self.store.lock().add_team(name, display_name)
    }

    /// Makes a user a member of a team.
    pub fn add_to_team(&self, team_id: &str, user_id: &str) -> Result<(), ApiError> {
        let mut store = self.store.lock();
        if !store.teams.contains_key(team_id) || !store.users.contains_key(user_id) {
            return Err(bad("unknown team or user"));
        }
        store
            .team_members
            .insert((team_id.to_owned(), user_id.to_owned()));
        Ok(())
    }

    /// Adds a public or private channel to a team.
    pub fn create_channel(
        &self,
        team_id: &str,
        name: &str,
        display_name: &str,
        kind: ChannelType,
    ) -> Result<Channel, ApiError> {
        if !matches!(kind, ChannelType::Open | ChannelType::Private) {
            return Err(bad("use direct_channel or group_channel for D and G"));
        }
        let mut store = self.store.lock();
        if !store.teams.contains_key(team_id) {
            return Err(bad("unknown team"));
        }
        Ok(store.add_channel(team_id, kind, name, display_name, ""))
    }

    /// Adds a user to a channel (and, for team channels, to its team).
    pub fn add_member(&self, channel_id: &str, user_id: &str) -> Result<(), ApiError> {
        let mut store = self.store.lock();
        let team_id = store
            .channels
            .get(channel_id)
            .map(|c| c.team_id.clone())
            .ok_or_else(|| bad("unknown channel"))?;
        if !store.users.contains_key(user_id) {
            return Err(bad("unknown user"));
        }
        if !team_id.is_empty() {
            store.team_members.insert((team_id, user_id.to_owned()));
        }
        store.add_channel_member(channel_id, user_id);
        Ok(())
    }

    /// Every stored post row (edit-history rows included), in creation order.
    pub fn all_posts(&self) -> Vec<Post> {
        let store = self.store.lock();
        store
            .post_order
            .iter()
            .filter_map(|id| store.posts.get(id))
            .map(|p| store.render(p))
            .collect()
    }

    /// One post as a client would get it, deleted or not.
    pub fn one_post(&self, id: &str) -> Option<Post> {
        let store = self.store.lock();
        store.posts.get(id).map(|p| store.render(p))
    }

    /// The edit-history rows of a post, oldest first.
    pub fn edits_of(&self, id: &str) -> Vec<Post> {
        self.all_posts()
            .into_iter()
            .filter(|p| p.original_id == id)
            .collect()
    }

    /// Turns rate limiting on (with a fresh bucket) or off.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        *self.rate_limiter.lock() = limit.map(RateLimiter::new);
    }
}

#[derive(Deserialize)]
struct AccountReq {
    username: String,
}

#[derive(Deserialize)]
struct TeamReq {
    name: String,
    #[serde(default)]
    display_name: String,
}

#[derive(Deserialize)]
struct UserReq {
    user_id: String,
}

#[derive(Deserialize)]
struct ChannelReq {
    team_id: String,
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(rename = "type", default = "open")]
    kind: ChannelType,
}

fn open() -> ChannelType {
    ChannelType::Open
}

#[derive(Deserialize)]
struct DirectReq {
    user_ids: Vec<String>,
}

#[derive(Deserialize)]
struct PostReq {
    user_id: String,
    channel_id: String,
    message: String,
    #[serde(default)]
    root_id: String,
    #[serde(default)]
    props: Option<Map<String, Value>>,
    #[serde(default)]
    file_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct KillReq {
    user_id: String,
    #[serde(default = "close")]
    mode: KillMode,
}

fn close() -> KillMode {
    KillMode::Close
}

#[derive(Deserialize)]
struct StallReq {
    user_id: String,
    millis: u64,
}

#[derive(Deserialize)]
struct FaultReq {
    #[serde(default = "any")]
    method: String,
    path: String,
    status: u16,
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "one_u64")]
    retry_after_secs: u64,
}

#[derive(Deserialize)]
struct DelayReq {
    #[serde(default = "any")]
    method: String,
    path: String,
    millis: u64,
    #[serde(default = "one")]
    count: u32,
}

fn any() -> String {
    "*".to_owned()
}
fn one() -> u32 {
    1
}
fn one_u64() -> u64 {
    1
}

#[derive(Deserialize)]
struct ConfigReq {
    max_file_size: Option<u64>,
    max_post_size: Option<usize>,
    enable_file_attachments: Option<bool>,
    post_edit_time_limit: Option<i64>,
    clock_offset_ms: Option<i64>,
}

type S = State<Arc<Sim>>;
type R<T> = Result<Json<T>, ApiError>;

/// The `/__sim` routes.
pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/__sim/users", post(create_user))
        .route("/__sim/bots", post(create_bot))
        .route("/__sim/teams", post(create_team))
        .route("/__sim/teams/{team_id}/members", post(add_to_team))
        .route("/__sim/channels", post(create_channel))
        .route("/__sim/channels/{channel_id}/members", post(add_member))
        .route("/__sim/direct", post(direct))
        .route("/__sim/posts", post(post_as).get(posts))
        .route("/__sim/posts/{post_id}", get(one_post))
        .route("/__sim/posts/{post_id}/edits", get(edits))
        .route("/__sim/reactions", post(react_as))
        .route("/__sim/requests", get(requests).delete(clear_requests))
        .route("/__sim/connections", get(connections))
        .route("/__sim/sockets/kill", post(kill))
        .route("/__sim/sockets/stall", post(stall))
        .route(
            "/__sim/faults",
            post(fail_next).get(faults).delete(clear_faults),
        )
        .route("/__sim/delays", post(delay_next))
        .route("/__sim/rate_limit", post(rate_limit).delete(no_rate_limit))
        .route("/__sim/config", post(config))
}

async fn create_user(State(sim): S, Json(r): Json<AccountReq>) -> R<Account> {
    Ok(Json(sim.create_account(&r.username, false)?))
}

async fn create_bot(State(sim): S, Json(r): Json<AccountReq>) -> R<Account> {
    Ok(Json(sim.create_account(&r.username, true)?))
}

async fn create_team(State(sim): S, Json(r): Json<TeamReq>) -> Json<Team> {
    let display = if r.display_name.is_empty() {
        r.name.clone()
    } else {
        r.display_name
    };
    Json(sim.create_team(&r.name, &display))
}

async fn add_to_team(State(sim): S, Path(team): Path<String>, Json(r): Json<UserReq>) -> R<Value> {
    sim.add_to_team(&team, &r.user_id)?;
    Ok(Json(json!({"status": "OK"})))
}

async fn create_channel(State(sim): S, Json(r): Json<ChannelReq>) -> R<Channel> {
    let display = if r.display_name.is_empty() {
        r.name.clone()
    } else {
        r.display_name
    };
    Ok(Json(
        sim.create_channel(&r.team_id, &r.name, &display, r.kind)?,
    ))
}

async fn add_member(State(sim): S, Path(ch): Path<String>, Json(r): Json<UserReq>) -> R<Value> {
    sim.add_member(&ch, &r.user_id)?;
    Ok(Json(json!({"status": "OK"})))
}

async fn direct(State(sim): S, Json(r): Json<DirectReq>) -> R<Channel> {
    match r.user_ids.as_slice() {
        [a, b] => Ok(Json(sim.direct_channel(a, a, b)?)),
        ids if ids.len() >= 3 => Ok(Json(sim.group_channel(&ids[0], ids)?)),
        _ => Err(bad("user_ids needs 2 (DM) or 3-8 (group) ids")),
    }
}

async fn post_as(State(sim): S, Json(r): Json<PostReq>) -> R<Post> {
    let body = CreatePostBody {
        channel_id: r.channel_id,
        message: r.message,
        root_id: r.root_id,
        file_ids: r.file_ids,
        props: r.props,
        ..CreatePostBody::default()
    };
    Ok(Json(sim.create_post(&r.user_id, body, true)?))
}

async fn posts(State(sim): S) -> Json<Vec<Post>> {
    Json(sim.all_posts())
}

async fn one_post(State(sim): S, Path(id): Path<String>) -> R<Post> {
    sim.one_post(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("app.post.get.app_error", "Unable to get the post."))
}

async fn edits(State(sim): S, Path(id): Path<String>) -> Json<Vec<Post>> {
    Json(sim.edits_of(&id))
}

async fn react_as(State(sim): S, Json(r): Json<ReactionBody>) -> R<Reaction> {
    let user = r.user_id.clone();
    Ok(Json(sim.add_reaction(&user, r)?))
}

async fn requests(State(sim): S) -> Json<Vec<RequestRecord>> {
    Json(sim.requests.lock().clone())
}

async fn clear_requests(State(sim): S) -> Json<Value> {
    sim.requests.lock().clear();
    Json(json!({"status": "OK"}))
}

async fn connections(State(sim): S) -> Json<Vec<ConnectionInfo>> {
    Json(sim.hub.lock().connections())
}

async fn kill(State(sim): S, Json(r): Json<KillReq>) -> Json<Value> {
    let n = sim.hub.lock().kill_user(&r.user_id, r.mode);
    Json(json!({"killed": n}))
}

async fn stall(State(sim): S, Json(r): Json<StallReq>) -> Json<Value> {
    let n = sim
        .hub
        .lock()
        .stall_user(&r.user_id, Duration::from_millis(r.millis));
    Json(json!({"stalled": n}))
}

async fn fail_next(State(sim): S, Json(r): Json<FaultReq>) -> Json<Value> {
    sim.faults.lock().add(FaultRule {
        method: r.method,
        path: r.path,
        action: FaultAction::Status {
            status: r.status,
            retry_after_secs: r.retry_after_secs,
        },
        remaining: r.count,
        skip: 0,
    });
    Json(json!({"status": "OK"}))
}

async fn delay_next(State(sim): S, Json(r): Json<DelayReq>) -> Json<Value> {
    sim.faults.lock().add(FaultRule {
        method: r.method,
        path: r.path,
        action: FaultAction::Delay { millis: r.millis },
        remaining: r.count,
        skip: 0,
    });
    Json(json!({"status": "OK"}))
}

async fn faults(State(sim): S) -> Json<Vec<FaultRule>> {
    Json(sim.faults.lock().rules())
}

async fn clear_faults(State(sim): S) -> Json<Value> {
    sim.faults.lock().clear();
    Json(json!({"status": "OK"}))
}

async fn rate_limit(State(sim): S, Json(r): Json<RateLimit>) -> Json<Value> {
    sim.set_rate_limit(Some(r));
    Json(json!({"status": "OK"}))
}

async fn no_rate_limit(State(sim): S) -> Json<Value> {
    sim.set_rate_limit(None);
    Json(json!({"status": "OK"}))
}

async fn config(State(sim): S, Json(r): Json<ConfigReq>) -> Json<Value> {
    sim.update_config(|c| {
        if let Some(v) = r.max_file_size {
            c.max_file_size = v;
        }
        if let Some(v) = r.max_post_size {
            c.max_post_size = v;
        }
        if let Some(v) = r.enable_file_attachments {
            c.enable_file_attachments = v;
        }
        if let Some(v) = r.post_edit_time_limit {
            c.post_edit_time_limit = v;
        }
        if let Some(v) = r.clock_offset_ms {
            c.clock_offset_ms = v;
        }
    });
    Json(json!({"status": "OK"}))
}
