//! `/users/...` routes.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::Value;

use super::{Session, parse_body, require_id};
use crate::app::Sim;
use crate::error::ApiError;
use crate::model::{Team, TypingBody, User, status_ok};

fn missing_user() -> ApiError {
    ApiError::not_found("app.user.missing_account.const", "Unable to find the user.")
}

/// `GET /users/me`.
pub async fn me(State(sim): State<Arc<Sim>>, s: Session) -> Result<Json<User>, ApiError> {
    let store = sim.store.lock();
    store
        .users
        .get(&s.user_id)
        .cloned()
        .map(Json)
        .ok_or_else(missing_user)
}

/// `GET /users/{user_id}`.
pub async fn by_id(
    State(sim): State<Arc<Sim>>,
    _s: Session,
    Path(user_id): Path<String>,
) -> Result<Json<User>, ApiError> {
    require_id(&user_id, "user_id")?;
    let store = sim.store.lock();
    store
        .users
        .get(&user_id)
        .cloned()
        .map(Json)
        .ok_or_else(missing_user)
}

/// `GET /users/username/{username}`.
pub async fn by_username(
    State(sim): State<Arc<Sim>>,
    _s: Session,
    Path(username): Path<String>,
) -> Result<Json<User>, ApiError> {
    let store = sim.store.lock();
    store
        .user_by_name(&username)
        .cloned()
        .map(Json)
        .ok_or_else(missing_user)
}

/// `POST /users/usernames`: unknown names are left out.
pub async fn by_usernames(
    State(sim): State<Arc<Sim>>,
    _s: Session,
    body: Bytes,
) -> Result<Json<Vec<User>>, ApiError> {
    let names: Vec<String> = parse_body(&body, "usernames")?;
    let store = sim.store.lock();
    Ok(Json(
        names
            .iter()
            .filter_map(|n| store.user_by_name(n).cloned())
            .collect(),
    ))
}

/// `POST /users/ids`: unknown ids are left out.
pub async fn by_ids(
    State(sim): State<Arc<Sim>>,
    _s: Session,
    body: Bytes,
) -> Result<Json<Vec<User>>, ApiError> {
    let ids: Vec<String> = parse_body(&body, "user_ids")?;
    let store = sim.store.lock();
    Ok(Json(
        ids.iter()
            .filter_map(|id| store.users.get(id).cloned())
            .collect(),
    ))
}

fn teams_for(sim: &Sim, user_id: &str) -> Vec<Team> {
    let store = sim.store.lock();
    let mut teams: Vec<Team> = store
        .teams
        .values()
        .filter(|t| store.is_team_member(&t.id, user_id))
        .cloned()
        .collect();
    teams.sort_by(|a, b| a.name.cmp(&b.name));
    teams
}

/// `GET /users/me/teams`.
pub async fn my_teams(State(sim): State<Arc<Sim>>, s: Session) -> Json<Vec<Team>> {
    Json(teams_for(&sim, &s.user_id))
}

/// `GET /users/{user_id}/teams`: only for oneself (no admin accounts here).
pub async fn teams_of(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(user_id): Path<String>,
) -> Result<Json<Vec<Team>>, ApiError> {
    require_id(&user_id, "user_id")?;
    if user_id != s.user_id {
        return Err(ApiError::permissions());
    }
    Ok(Json(teams_for(&sim, &user_id)))
}

/// `POST /users/{user_id}/typing`.
pub async fn typing(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let user_id = if user_id == "me" {
        s.user_id.clone()
    } else {
        user_id
    };
    require_id(&user_id, "user_id")?;
    if user_id != s.user_id {
        return Err(ApiError::permissions());
    }
    let body: TypingBody = parse_body(&body, "typing")?;
    require_id(&body.channel_id, "channel_id").map_err(|_| ApiError::invalid_body("channel_id"))?;
    sim.user_typing(&user_id, &body)?;
    Ok(Json(status_ok()))
}

/// `DELETE /users/{user_id}/posts/{post_id}/reactions/{emoji_name}`.
pub async fn delete_reaction(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path((user_id, post_id, emoji)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let user_id = if user_id == "me" {
        s.user_id.clone()
    } else {
        user_id
    };
    require_id(&user_id, "user_id")?;
    require_id(&post_id, "post_id")?;
    if emoji.is_empty() || emoji.len() > 64 {
        return Err(ApiError::invalid_url("emoji_name"));
    }
    sim.remove_reaction(&s.user_id, &user_id, &post_id, &emoji)?;
    Ok(Json(status_ok()))
}
