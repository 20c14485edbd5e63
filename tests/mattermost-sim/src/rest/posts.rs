//! `/posts/...`, `/reactions` and channel history routes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::Value;

use super::{Session, parse_body, require_id};
use crate::app::Sim;
use crate::error::ApiError;
use crate::model::{
    CreatePostBody, FileInfo, Post, PostList, PostPatchBody, Reaction, ReactionBody,
    UpdatePostBody, status_ok,
};
use crate::state::Store;

type Q = Query<HashMap<String, String>>;

fn missing_post() -> ApiError {
    ApiError::not_found("app.post.get.app_error", "Unable to get the post.")
}

/// `page`/`per_page` as the server reads them: bad values fall back to the
/// defaults (0 and 60) and `per_page` is capped at 200.
pub fn paging(q: &HashMap<String, String>) -> (usize, usize) {
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(60)
        .min(200);
    (page, per_page)
}

/// A live post the session may read, or the real errors (404, then 403).
fn readable_post<'a>(store: &'a Store, post_id: &str, user_id: &str) -> Result<&'a Post, ApiError> {
    let post = store
        .posts
        .get(post_id)
        .filter(|p| p.delete_at == 0)
        .ok_or_else(missing_post)?;
    let channel = store
        .channels
        .get(&post.channel_id)
        .ok_or_else(missing_post)?;
    if !store.can_read(channel, user_id) {
        return Err(ApiError::permissions());
    }
    Ok(post)
}

/// `POST /posts` → 201.
pub async fn create(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Query(q): Q,
    body: Bytes,
) -> Result<(StatusCode, Json<Post>), ApiError> {
    let body: CreatePostBody = parse_body(&body, "post")?;
    let set_online = q.get("set_online").is_none_or(|v| v != "false");
    let post = sim.create_post(&s.user_id, body, set_online)?;
    Ok((StatusCode::CREATED, Json(post)))
}

/// `GET /posts/{post_id}`.
pub async fn get_one(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(post_id): Path<String>,
) -> Result<Json<Post>, ApiError> {
    require_id(&post_id, "post_id")?;
    let store = sim.store.lock();
    let post = readable_post(&store, &post_id, &s.user_id)?;
    Ok(Json(store.render(post)))
}

/// `PUT /posts/{post_id}/patch` → 200.
pub async fn patch(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(post_id): Path<String>,
    body: Bytes,
) -> Result<Json<Post>, ApiError> {
    require_id(&post_id, "post_id")?;
    let patch: PostPatchBody = parse_body(&body, "post")?;
    Ok(Json(sim.patch_post(&s.user_id, &post_id, patch)?))
}

/// `PUT /posts/{post_id}` → 200.
pub async fn update(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(post_id): Path<String>,
    body: Bytes,
) -> Result<Json<Post>, ApiError> {
    require_id(&post_id, "post_id")?;
    let body: UpdatePostBody = parse_body(&body, "post")?;
    Ok(Json(sim.update_post(&s.user_id, &post_id, body)?))
}

/// `DELETE /posts/{post_id}` → `{"status":"OK"}`.
pub async fn remove(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(post_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_id(&post_id, "post_id")?;
    sim.delete_post(&s.user_id, &post_id)?;
    Ok(Json(status_ok()))
}

/// `GET /posts/{post_id}/thread` with the real (non-CRT) paging:
/// `perPage` (0 = all, max 200), `fromPost` + `fromCreateAt`, `direction`;
/// `perPage + 1` rows are read to set `has_next`.
pub async fn thread(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(post_id): Path<String>,
    Query(q): Q,
) -> Result<Json<PostList>, ApiError> {
    require_id(&post_id, "post_id")?;
    let per_page = match q.get("perPage") {
        None => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n <= 200 => usize::try_from(n).unwrap_or(0),
            _ => return Err(ApiError::invalid_body("perPage")),
        },
    };
    let from_create_at = match q.get("fromCreateAt").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| ApiError::invalid_body("fromCreateAt"))?,
    };
    let from_post = q.get("fromPost").cloned().unwrap_or_default();
    if !from_post.is_empty() && from_create_at == 0 {
        return Err(ApiError::invalid_body(
            "if fromPost is set, then fromCreateAt must also be set",
        ));
    }
    let direction = q.get("direction").cloned().unwrap_or_default();
    if !matches!(direction.as_str(), "" | "up" | "down") {
        return Err(ApiError::invalid_body("direction"));
    }
    let skip_threads = q.get("skipFetchThreads").is_some_and(|v| v == "true");

    let store = sim.store.lock();
    let post = readable_post(&store, &post_id, &s.user_id)?;
    let mut list = PostList::empty();
    list.order.push(post.id.clone());
    list.posts.insert(post.id.clone(), store.render(post));
    if skip_threads {
        return Ok(Json(list));
    }
    let root = store.thread_root(post).to_owned();
    let mut rows: Vec<&Post> = store
        .posts
        .values()
        .filter(|p| (p.id == root || p.root_id == root) && p.delete_at == 0)
        .filter(|p| {
            if from_create_at == 0 {
                return true;
            }
            let tie = !from_post.is_empty() && p.create_at == from_create_at;
            if direction == "down" {
                p.create_at > from_create_at || (tie && p.id > from_post)
            } else {
                p.create_at < from_create_at || (tie && p.id < from_post)
            }
        })
        .collect();
    rows.sort_by(|a, b| (a.create_at, &a.id).cmp(&(b.create_at, &b.id)));
    if direction == "up" {
        rows.reverse();
    }
    if per_page != 0 && rows.len() > per_page {
        rows.truncate(per_page);
        list.has_next = true;
    }
    for p in rows {
        if p.id == post.id {
            continue;
        }
        list.order.push(p.id.clone());
        list.posts.insert(p.id.clone(), store.render(p));
    }
    Ok(Json(list))
}

/// `GET /channels/{channel_id}/posts` with `since`, `before`/`after`, or
/// `page`/`per_page`, and the real `next_post_id`/`prev_post_id` cursors.
pub async fn for_channel(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(channel_id): Path<String>,
    Query(q): Q,
) -> Result<Json<PostList>, ApiError> {
    require_id(&channel_id, "channel_id")?;
    let since = match q.get("since").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| ApiError::invalid_url("since"))?,
    };
    let after = q.get("after").cloned().unwrap_or_default();
    let before = q.get("before").cloned().unwrap_or_default();
    if !after.is_empty() {
        require_id(&after, "after")?;
    }
    if !before.is_empty() {
        require_id(&before, "before")?;
    }
    let (page, per_page) = paging(&q);
    let skip_threads = q.get("skipFetchThreads").is_some_and(|v| v == "true");

    let store = sim.store.lock();
    let channel = store
        .channels
        .get(&channel_id)
        .ok_or_else(ApiError::permissions)?;
    if !store.can_read(channel, &s.user_id) {
        return Err(ApiError::permissions());
    }
    let mut list = PostList::empty();
    if since > 0 {
        // Everything updated after `since`, deleted posts and edit-history
        // rows included, plus the roots of those posts (in `posts` only).
        let mut changed: Vec<&Post> = store
            .posts
            .values()
            .filter(|p| p.channel_id == channel_id && p.update_at > since)
            .collect();
        changed.sort_by(|a, b| (b.create_at, &b.id).cmp(&(a.create_at, &a.id)));
        for p in &changed {
            list.order.push(p.id.clone());
            list.posts.insert(p.id.clone(), store.render(p));
        }
        for p in changed {
            if let Some(root) = store.posts.get(&p.root_id) {
                list.posts
                    .entry(root.id.clone())
                    .or_insert_with(|| store.render(root));
            }
        }
        return Ok(Json(list));
    }
    // Newest first.
    let mut live = store.live_channel_posts(&channel_id);
    live.reverse();
    let anchor = |id: &str| store.posts.get(id).map(|p| p.create_at);
    let page_rows: Vec<&Post> = if !after.is_empty() {
        match anchor(&after) {
            None => Vec::new(),
            Some(t) => {
                let mut asc: Vec<&Post> = live
                    .iter()
                    .rev()
                    .filter(|p| p.create_at > t)
                    .copied()
                    .collect();
                asc = asc
                    .into_iter()
                    .skip(page * per_page)
                    .take(per_page)
                    .collect();
                asc.reverse();
                asc
            }
        }
    } else if !before.is_empty() {
        match anchor(&before) {
            None => Vec::new(),
            Some(t) => live
                .iter()
                .filter(|p| p.create_at < t)
                .skip(page * per_page)
                .take(per_page)
                .copied()
                .collect(),
        }
    } else {
        live.iter()
            .skip(page * per_page)
            .take(per_page)
            .copied()
            .collect()
    };
    for p in &page_rows {
        list.order.push(p.id.clone());
        list.posts.insert(p.id.clone(), store.render(p));
    }
    for p in &page_rows {
        let root = store.thread_root(p).to_owned();
        for q in live
            .iter()
            .filter(|q| q.id == root || (!skip_threads && q.root_id == root))
        {
            list.posts
                .entry(q.id.clone())
                .or_insert_with(|| store.render(q));
        }
    }
    // Cursors, as `AddCursorIdsForPostList` sets them.
    let newer = |t: i64| {
        live.iter()
            .rev()
            .find(|p| p.create_at > t)
            .map(|p| p.id.clone())
            .unwrap_or_default()
    };
    let older = |t: i64| {
        live.iter()
            .find(|p| p.create_at < t)
            .map(|p| p.id.clone())
            .unwrap_or_default()
    };
    let first = page_rows.first().map(|p| p.create_at);
    let last = page_rows.last().map(|p| p.create_at);
    let (mut next_set, mut prev_set) = (false, false);
    if !after.is_empty() {
        if page == 0 {
            list.prev_post_id = after.clone();
            prev_set = true;
        }
        next_set = page_rows.len() < per_page;
    } else if !before.is_empty() {
        if page == 0 {
            list.next_post_id = before.clone();
            next_set = true;
        }
        prev_set = page_rows.len() < per_page;
    }
    if !next_set {
        list.next_post_id = first.map(newer).unwrap_or_default();
    }
    if !prev_set {
        list.prev_post_id = last.map(older).unwrap_or_default();
    }
    Ok(Json(list))
}

/// `GET /posts/{post_id}/files/info`.
pub async fn files_info(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(post_id): Path<String>,
) -> Result<Json<Vec<FileInfo>>, ApiError> {
    require_id(&post_id, "post_id")?;
    let store = sim.store.lock();
    let post = readable_post(&store, &post_id, &s.user_id)?;
    Ok(Json(
        post.file_ids
            .iter()
            .filter_map(|id| store.files.get(id))
            .map(|f| f.info.clone())
            .collect(),
    ))
}

/// `GET /posts/{post_id}/reactions`.
pub async fn reactions(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(post_id): Path<String>,
) -> Result<Json<Vec<Reaction>>, ApiError> {
    require_id(&post_id, "post_id")?;
    let store = sim.store.lock();
    readable_post(&store, &post_id, &s.user_id)?;
    Ok(Json(
        store
            .reactions
            .iter()
            .filter(|r| r.post_id == post_id)
            .cloned()
            .collect(),
    ))
}

/// `GET /posts/{post_id}/edit_history`: the stored history rows, newest first
/// (author only).
pub async fn edit_history(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(post_id): Path<String>,
) -> Result<Json<Vec<Post>>, ApiError> {
    require_id(&post_id, "post_id")?;
    let store = sim.store.lock();
    let post = readable_post(&store, &post_id, &s.user_id)?;
    if post.user_id != s.user_id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "api.post.get_edit_history_for_post.app_error",
            "Unable to get the edit history of another user's post.",
        ));
    }
    let mut rows: Vec<Post> = store
        .posts
        .values()
        .filter(|p| p.original_id == post_id)
        .cloned()
        .collect();
    rows.sort_by_key(|p| std::cmp::Reverse(p.update_at));
    Ok(Json(rows))
}

/// `POST /reactions` → 200 (not 201).
pub async fn react(
    State(sim): State<Arc<Sim>>,
    s: Session,
    body: Bytes,
) -> Result<Json<Reaction>, ApiError> {
    let body: ReactionBody = parse_body(&body, "reaction")?;
    Ok(Json(sim.add_reaction(&s.user_id, body)?))
}
