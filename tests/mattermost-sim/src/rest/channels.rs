//! `/teams/...` and `/channels/...` routes (post history lives in `posts`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Session, parse_body, require_id};
use crate::app::Sim;
use crate::error::ApiError;
use crate::model::{Channel, ChannelMember, ChannelType, Team};

fn missing_channel() -> ApiError {
    ApiError::not_found(
        "app.channel.get.existing.app_error",
        "Unable to find the existing channel.",
    )
}

/// `GET /teams/{team_id}`: members only.
pub async fn team(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(team_id): Path<String>,
) -> Result<Json<Team>, ApiError> {
    require_id(&team_id, "team_id")?;
    let store = sim.store.lock();
    let team = store.teams.get(&team_id).cloned().ok_or_else(|| {
        ApiError::not_found(
            "app.team.get.find.app_error",
            "Unable to find the existing team.",
        )
    })?;
    if !store.is_team_member(&team_id, &s.user_id) {
        return Err(ApiError::permissions());
    }
    Ok(Json(team))
}

/// `GET /teams/{team_id}/members/{user_id}`: for members of the team; a
/// user who is not in it is a 404, as on the real server.
pub async fn team_member(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path((team_id, user_id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_id(&team_id, "team_id")?;
    require_id(&user_id, "user_id")?;
    let store = sim.store.lock();
    if !store.is_team_member(&team_id, &s.user_id) {
        return Err(ApiError::permissions());
    }
    if !store.is_team_member(&team_id, &user_id) {
        return Err(ApiError::not_found(
            "app.team.get_member.missing.app_error",
            "No team member found for that user ID and team ID.",
        ));
    }
    Ok(Json(serde_json::json!({
        "team_id": team_id,
        "user_id": user_id,
        "roles": "team_user",
        "delete_at": 0,
        "scheme_guest": false,
        "scheme_user": true,
        "scheme_admin": false,
    })))
}

/// `GET /users/{user_id}/teams/{team_id}/channels` (`me` allowed): the
/// channels of the team the user is a member of, with their DMs and group
/// DMs (which belong to no team), as the real server lists them. Only for
/// oneself (no admin accounts here).
pub async fn for_user_in_team(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path((user_id, team_id)): Path<(String, String)>,
) -> Result<Json<Vec<Channel>>, ApiError> {
    let user_id = if user_id == "me" {
        s.user_id.clone()
    } else {
        user_id
    };
    require_id(&user_id, "user_id")?;
    require_id(&team_id, "team_id")?;
    if user_id != s.user_id {
        return Err(ApiError::permissions());
    }
    let store = sim.store.lock();
    if !store.is_team_member(&team_id, &user_id) {
        return Err(ApiError::permissions());
    }
    let mut channels: Vec<Channel> = store
        .channels
        .values()
        .filter(|c| {
            (c.team_id == team_id || c.team_id.is_empty())
                && c.delete_at == 0
                && store.is_member(&c.id, &user_id)
        })
        .cloned()
        .collect();
    channels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(channels))
}

/// `GET /teams/{team_id}/channels/name/{channel_name}`.
pub async fn by_name(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path((team_id, name)): Path<(String, String)>,
) -> Result<Json<Channel>, ApiError> {
    require_id(&team_id, "team_id")?;
    let store = sim.store.lock();
    if !store.is_team_member(&team_id, &s.user_id) {
        return Err(ApiError::permissions());
    }
    let channel = store
        .channels
        .values()
        .find(|c| c.team_id == team_id && c.name == name && c.delete_at == 0)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(
                "app.channel.get_by_name.missing.app_error",
                "Channel does not exist.",
            )
        })?;
    if !store.can_read(&channel, &s.user_id) {
        return Err(ApiError::permissions());
    }
    Ok(Json(channel))
}

/// `GET /channels/{channel_id}`.
pub async fn get_one(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(channel_id): Path<String>,
) -> Result<Json<Channel>, ApiError> {
    require_id(&channel_id, "channel_id")?;
    let store = sim.store.lock();
    let channel = store
        .channels
        .get(&channel_id)
        .cloned()
        .ok_or_else(missing_channel)?;
    if !store.can_read(&channel, &s.user_id) {
        return Err(ApiError::permissions());
    }
    Ok(Json(channel))
}

/// `GET /channels/{channel_id}/members/{user_id}` (`me` allowed).
pub async fn member(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path((channel_id, user_id)): Path<(String, String)>,
) -> Result<Json<ChannelMember>, ApiError> {
    let user_id = if user_id == "me" {
        s.user_id.clone()
    } else {
        user_id
    };
    require_id(&channel_id, "channel_id")?;
    require_id(&user_id, "user_id")?;
    let store = sim.store.lock();
    let channel = store
        .channels
        .get(&channel_id)
        .ok_or_else(ApiError::permissions)?;
    if !store.can_read(channel, &s.user_id) {
        return Err(ApiError::permissions());
    }
    store
        .channel_members
        .get(&channel_id)
        .and_then(|m| m.get(&user_id))
        .cloned()
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(
                "app.channel.get_member.missing.app_error",
                "No channel member found for that user ID and channel ID.",
            )
        })
}

/// `GET /channels/{channel_id}/members?page&per_page`.
pub async fn members(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(channel_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<ChannelMember>>, ApiError> {
    require_id(&channel_id, "channel_id")?;
    let (page, per_page) = super::posts::paging(&q);
    let store = sim.store.lock();
    let channel = store
        .channels
        .get(&channel_id)
        .ok_or_else(ApiError::permissions)?;
    if !store.can_read(channel, &s.user_id) {
        return Err(ApiError::permissions());
    }
    let all: Vec<ChannelMember> = store
        .channel_members
        .get(&channel_id)
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    Ok(Json(
        all.into_iter()
            .skip(page * per_page)
            .take(per_page)
            .collect(),
    ))
}

/// `me`, or the user id itself: acting for another user takes
/// `edit_other_users`, which no account here has.
fn own_user_id(s: &Session, user_id: String) -> Result<String, ApiError> {
    let user_id = if user_id == "me" {
        s.user_id.clone()
    } else {
        user_id
    };
    require_id(&user_id, "user_id")?;
    if user_id == s.user_id {
        Ok(user_id)
    } else {
        Err(ApiError::permissions())
    }
}

#[derive(Deserialize)]
struct ChannelView {
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    prev_channel_id: String,
}

/// `POST /channels/members/{user_id}/view` (`me` allowed) with
/// `{channel_id, prev_channel_id}`: both read (blank ids are allowed: a
/// lost focus, a first view). Answers `{status, last_viewed_at_times}`.
pub async fn view(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user_id = own_user_id(&s, user_id)?;
    let view: ChannelView = parse_body(&body, "channel_view")?;
    let mut ids = Vec::new();
    for (id, name) in [
        (view.channel_id, "channel_view.channel_id"),
        (view.prev_channel_id, "channel_view.prev_channel_id"),
    ] {
        if id.is_empty() {
            continue;
        }
        if !crate::ids::is_valid_id(&id) {
            return Err(ApiError::invalid_param(name));
        }
        ids.push(id);
    }
    let times = sim.view_channels(&user_id, &ids);
    Ok(Json(
        serde_json::json!({"status": "OK", "last_viewed_at_times": times}),
    ))
}

/// `PUT /channels/{channel_id}/members/{user_id}/notify_props` (`me`
/// allowed): a string map; the known props change, `{status: "OK"}`.
pub async fn update_notify_props(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path((channel_id, user_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_id(&channel_id, "channel_id")?;
    let user_id = own_user_id(&s, user_id)?;
    let props: HashMap<String, String> =
        serde_json::from_slice(&body).map_err(|_| ApiError::invalid_param("notify_props"))?;
    let props = props
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    sim.update_member_notify_props(&channel_id, &user_id, &props)?;
    Ok(Json(crate::model::status_ok()))
}

#[derive(Deserialize)]
struct AddMemberBody {
    #[serde(default)]
    user_id: String,
}

/// `POST /channels/{channel_id}/members`: members add others; anyone in the
/// team may join a public channel.
pub async fn add_member(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(channel_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ChannelMember>), ApiError> {
    require_id(&channel_id, "channel_id")?;
    let body: AddMemberBody = parse_body(&body, "user_id")?;
    require_id(&body.user_id, "user_id").map_err(|_| ApiError::invalid_body("user_id"))?;
    let mut store = sim.store.lock();
    let channel = store
        .channels
        .get(&channel_id)
        .cloned()
        .ok_or_else(missing_channel)?;
    let self_join = body.user_id == s.user_id
        && channel.kind == ChannelType::Open
        && store.is_team_member(&channel.team_id, &s.user_id);
    if !(self_join || store.is_member(&channel_id, &s.user_id))
        || matches!(channel.kind, ChannelType::Direct | ChannelType::Group)
    {
        return Err(ApiError::permissions());
    }
    if !store.users.contains_key(&body.user_id) {
        return Err(ApiError::not_found(
            "app.user.missing_account.const",
            "Unable to find the user.",
        ));
    }
    if !store.is_team_member(&channel.team_id, &body.user_id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "api.channel.add_user.to.channel.failed.deleted.app_error",
            "Failed to add user to channel because they have been removed from the team.",
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(store.add_channel_member(&channel_id, &body.user_id)),
    ))
}

#[derive(Deserialize)]
struct CreateChannelBody {
    #[serde(default)]
    team_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default, rename = "type")]
    kind: String,
}

/// `POST /channels`: a public or private channel, the creator its first member.
pub async fn create(
    State(sim): State<Arc<Sim>>,
    s: Session,
    body: Bytes,
) -> Result<(StatusCode, Json<Channel>), ApiError> {
    let body: CreateChannelBody = parse_body(&body, "channel")?;
    let kind = match body.kind.as_str() {
        "O" => ChannelType::Open,
        "P" => ChannelType::Private,
        _ => return Err(ApiError::invalid_body("channel")),
    };
    let name_ok = !body.name.is_empty()
        && body.name.len() <= 64
        && body
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
    if !name_ok || body.display_name.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "model.channel.is_valid.2_or_more.app_error",
            "Name must be 2 or more lowercase alphanumeric characters.",
        ));
    }
    let mut store = sim.store.lock();
    if !store.is_team_member(&body.team_id, &s.user_id) {
        return Err(ApiError::permissions());
    }
    if store
        .channels
        .values()
        .any(|c| c.team_id == body.team_id && c.name == body.name)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "store.sql_channel.save_channel.exists.app_error",
            "A channel with that name already exists on the same team.",
        ));
    }
    let channel = store.add_channel(
        &body.team_id,
        kind,
        &body.name,
        &body.display_name,
        &s.user_id,
    );
    store.add_channel_member(&channel.id, &s.user_id);
    Ok((StatusCode::CREATED, Json(channel)))
}

/// `POST /channels/direct` `[a, b]`: 201 even when the DM already exists.
pub async fn direct(
    State(sim): State<Arc<Sim>>,
    s: Session,
    body: Bytes,
) -> Result<(StatusCode, Json<Channel>), ApiError> {
    let ids: Vec<String> = parse_body(&body, "user_ids")?;
    let [a, b] = ids.as_slice() else {
        return Err(ApiError::invalid_body("user_ids"));
    };
    let channel = sim.direct_channel(&s.user_id, a, b)?;
    Ok((StatusCode::CREATED, Json(channel)))
}

/// `POST /channels/group` with 3–8 user ids.
pub async fn group(
    State(sim): State<Arc<Sim>>,
    s: Session,
    body: Bytes,
) -> Result<(StatusCode, Json<Channel>), ApiError> {
    let ids: Vec<String> = parse_body(&body, "user_ids")?;
    if ids.iter().any(|id| !crate::ids::is_valid_id(id)) {
        return Err(ApiError::invalid_body("user_ids"));
    }
    let channel = sim.group_channel(&s.user_id, &ids)?;
    Ok((StatusCode::CREATED, Json(channel)))
}
