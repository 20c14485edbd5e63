//! The server's rules: what each operation checks, changes, and publishes.
//!
//! REST handlers and the control API both call these methods, so a post made
//! by a test through [`crate::Simulator::post_as`] is validated and fanned out
//! exactly like one made over HTTP.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use axum::http::StatusCode;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::SimConfig;
use crate::error::ApiError;
use crate::faults::{Faults, RateLimiter};
use crate::ids::{is_valid_id, new_id, now_ms};
use crate::model::{
    Channel, ChannelType, CreatePostBody, Post, PostPatchBody, Reaction, ReactionBody, TypingBody,
    UpdatePostBody,
};
use crate::state::{Store, direct_name, group_name};
use crate::ws::{Broadcast, Event, EventData, Hub, HubLimits};

/// One REST request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    /// Unix ms when the request arrived.
    pub at: i64,
    /// How long it took to answer, in ms.
    pub duration_ms: u64,
    /// The request body's size (`Content-Length`; 0 without one).
    pub body_bytes: u64,
}

/// Shared state of one simulator instance.
#[derive(Debug)]
pub struct Sim {
    config: RwLock<SimConfig>,
    pub store: Mutex<Store>,
    pub hub: Mutex<Hub>,
    pub faults: Mutex<Faults>,
    pub rate_limiter: Mutex<Option<RateLimiter>>,
    pub requests: Mutex<Vec<RequestRecord>>,
    site_url: RwLock<String>,
    shutdown: watch::Sender<bool>,
}

impl Sim {
    /// A simulator with empty state.
    pub fn new(config: SimConfig) -> Self {
        let limits = HubLimits {
            resume_buffer: config.ws_resume_buffer,
            reap_after: config.ws_inactive_reap,
        };
        Sim {
            config: RwLock::new(config),
            store: Mutex::new(Store::default()),
            hub: Mutex::new(Hub::new(limits)),
            faults: Mutex::new(Faults::default()),
            rate_limiter: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            site_url: RwLock::new(String::new()),
            shutdown: watch::Sender::new(false),
        }
    }

    /// Current settings.
    pub fn config(&self) -> SimConfig {
        self.config.read().clone()
    }

    /// Changes settings for requests from now on.
    pub fn update_config(&self, f: impl FnOnce(&mut SimConfig)) {
        f(&mut self.config.write());
    }

    /// `SiteURL` (the base URL the server listens on).
    pub fn site_url(&self) -> String {
        self.site_url.read().clone()
    }

    pub(crate) fn set_site_url(&self, url: String) {
        *self.site_url.write() = url;
    }

    /// A receiver that changes when the simulator shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(crate) fn trigger_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Online status of users: "online" while a socket is attached.
    pub fn statuses(&self, ids: Option<&[String]>) -> Value {
        let store = self.store.lock();
        let hub = self.hub.lock();
        let mut map = serde_json::Map::new();
        let all: Vec<String> = match ids {
            Some(ids) => ids.to_vec(),
            None => store.users.keys().cloned().collect(),
        };
        for id in all.iter().filter(|id| store.users.contains_key(*id)) {
            let status = if hub.is_online(id) {
                "online"
            } else {
                "offline"
            };
            map.insert(id.clone(), json!(status));
        }
        Value::Object(map)
    }

    /// `typing` to every member of the channel but the typist.
    pub fn user_typing(&self, user_id: &str, body: &TypingBody) -> Result<(), ApiError> {
        let store = self.store.lock();
        let channel = store
            .channels
            .get(&body.channel_id)
            .ok_or_else(ApiError::permissions)?;
        if !store.is_member(&channel.id, user_id) {
            return Err(ApiError::permissions());
        }
        let mut data = EventData::new();
        data.insert("parent_id".into(), json!(body.parent_id));
        data.insert("user_id".into(), json!(user_id));
        let data = Arc::new(data);
        let deliveries = store
            .member_ids(&channel.id)
            .into_iter()
            .filter(|m| m != user_id)
            .map(|m| (m, data.clone()))
            .collect();
        let mut omit = std::collections::BTreeMap::new();
        omit.insert(user_id.to_owned(), true);
        let event = Event {
            name: "typing",
            broadcast: Broadcast {
                omit_users: Some(omit),
                channel_id: channel.id.clone(),
                ..Broadcast::default()
            },
            deliveries,
        };
        self.hub.lock().publish(&event);
        Ok(())
    }

    /// `POST /posts`: validation, `pending_post_id` dedupe, file attachment,
    /// `from_bot`, channel counters and the `posted` fan-out.
    pub fn create_post(
        &self,
        actor: &str,
        body: CreatePostBody,
        set_online: bool,
    ) -> Result<Post, ApiError> {
        let cfg = self.config();
        let mut store = self.store.lock();
        let channel = store
            .channels
            .get(&body.channel_id)
            .cloned()
            .ok_or_else(ApiError::permissions)?;
        if !store.is_member(&channel.id, actor) {
            return Err(ApiError::permissions());
        }
        let now = now_ms();
        if !body.pending_post_id.is_empty() {
            let ttl = i64::try_from(cfg.pending_post_ttl.as_millis()).unwrap_or(i64::MAX);
            store.pending.retain(|_, (_, at)| now - *at < ttl);
            if let Some((post_id, _)) = store.pending.get(&body.pending_post_id)
                && let Some(existing) = store.posts.get(post_id)
            {
                return Ok(store.render(existing));
            }
        }
        check_message_length(&body.message, cfg.max_post_size)?;
        if !body.root_id.is_empty() {
            let root = store
                .posts
                .get(&body.root_id)
                .filter(|r| r.delete_at == 0 && r.root_id.is_empty())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "api.post.create_post.root_id.app_error",
                        "Invalid RootId parameter.",
                    )
                })?;
            if root.channel_id != channel.id {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "api.post.create_post.channel_root_id.app_error",
                    "Invalid ChannelId for RootId parameter.",
                ));
            }
        }
        let Some(author) = store.users.get(actor).cloned() else {
            return Err(ApiError::session_expired());
        };
        let mut props = body.props.unwrap_or_default();
        if author.is_bot {
            props.insert("from_bot".into(), json!("true"));
        }
        check_props_size(&props)?;
        // Only files this user uploaded to this channel and not yet attached;
        // anything else is dropped silently, as the real server does.
        let mut file_ids: Vec<String> = Vec::new();
        for id in body.file_ids.unwrap_or_default() {
            let ok = store.files.get(&id).is_some_and(|f| {
                f.info.user_id == actor
                    && f.info.channel_id == channel.id
                    && f.info.post_id.is_empty()
                    && f.info.delete_at == 0
            });
            if ok && !file_ids.contains(&id) {
                file_ids.push(id);
            }
        }
        if serde_json::to_string(&file_ids)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            > 300
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "model.post.is_valid.file_ids.app_error",
                "Invalid file ids. Note that uploads are limited to 10 files maximum. Please use additional posts for more files.",
            ));
        }
        let post = Post {
            id: new_id(),
            create_at: now,
            update_at: now,
            edit_at: 0,
            delete_at: 0,
            is_pinned: false,
            user_id: actor.to_owned(),
            channel_id: channel.id.clone(),
            root_id: body.root_id.clone(),
            original_id: String::new(),
            message: body.message,
            kind: body.kind,
            props,
            hashtags: String::new(),
            file_ids: file_ids.clone(),
            // Not a database column: only the create response and the
            // `posted` event carry it.
            pending_post_id: String::new(),
            has_reactions: false,
            reply_count: 0,
            last_reply_at: 0,
            participants: None,
            metadata: Default::default(),
        };
        for id in &file_ids {
            if let Some(f) = store.files.get_mut(id) {
                f.info.post_id = post.id.clone();
            }
        }
        if !body.root_id.is_empty()
            && let Some(root) = store.posts.get_mut(&body.root_id)
        {
            root.update_at = now;
        }
        if let Some(ch) = store.channels.get_mut(&channel.id) {
            ch.last_post_at = now;
            ch.total_msg_count += 1;
            if post.root_id.is_empty() {
                ch.last_root_post_at = now;
                ch.total_msg_count_root += 1;
            }
        }
        store.post_order.push(post.id.clone());
        store.posts.insert(post.id.clone(), post.clone());
        if !body.pending_post_id.is_empty() {
            store
                .pending
                .insert(body.pending_post_id.clone(), (post.id.clone(), now));
        }
        let mut rendered = store.render(&post);
        rendered.pending_post_id = body.pending_post_id;
        let online: HashSet<String> = {
            let hub = self.hub.lock();
            store
                .member_ids(&channel.id)
                .into_iter()
                .filter(|m| hub.is_online(m))
                .collect()
        };
        let mentioned = crate::mentions::mentioned_users(&store, &channel, &post, &online);
        store.increment_mention_count(&channel.id, &mentioned, post.root_id.is_empty());
        let event = posted_event(
            &store,
            &channel,
            &author.username,
            &rendered,
            set_online,
            &mentioned,
        );
        self.hub.lock().publish(&event);
        Ok(rendered)
    }

    /// `PUT /posts/{id}/patch`: absent fields stay, `props` is replaced whole.
    pub fn patch_post(
        &self,
        actor: &str,
        post_id: &str,
        patch: PostPatchBody,
    ) -> Result<Post, ApiError> {
        self.edit_post(actor, post_id, patch.message.is_some(), |p| {
            if let Some(m) = patch.message {
                p.message = m;
            }
            if let Some(pinned) = patch.is_pinned {
                p.is_pinned = pinned;
            }
            if let Some(props) = patch.props {
                p.props = props;
            }
            if let Some(h) = patch.has_reactions {
                p.has_reactions = h;
            }
            // 9.8 ignores `file_ids` in a patch.
        })
    }

    /// `PUT /posts/{id}`: message, pin, reactions flag and props are taken
    /// from the body (absent props clear them, as the real server does).
    pub fn update_post(
        &self,
        actor: &str,
        post_id: &str,
        body: UpdatePostBody,
    ) -> Result<Post, ApiError> {
        if body.id != post_id {
            return Err(ApiError::invalid_body("id"));
        }
        self.edit_post(actor, post_id, true, |p| {
            p.message = body.message;
            p.is_pinned = body.is_pinned;
            p.has_reactions = body.has_reactions;
            p.props = body.props.unwrap_or_default();
        })
    }

    /// Shared edit path: permission and time-limit checks, the history row
    /// (old version under a new id, `original_id` set, `delete_at` set), and
    /// the `post_edited` fan-out to every member, the editor included.
    fn edit_post(
        &self,
        actor: &str,
        post_id: &str,
        touches_message: bool,
        apply: impl FnOnce(&mut Post),
    ) -> Result<Post, ApiError> {
        let cfg = self.config();
        let mut store = self.store.lock();
        let old = store
            .posts
            .get(post_id)
            .filter(|p| p.delete_at == 0 && p.original_id.is_empty())
            .cloned()
            .ok_or_else(ApiError::permissions)?;
        if old.user_id != actor || !store.is_member(&old.channel_id, actor) {
            return Err(ApiError::permissions());
        }
        let now = now_ms();
        if cfg.post_edit_time_limit >= 0
            && touches_message
            && now > old.create_at + cfg.post_edit_time_limit * 1000
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "api.post.update_post.permissions_time_limit.app_error",
                format!(
                    "Post edit is only allowed for {} seconds. Please ask your System Administrator for details.",
                    cfg.post_edit_time_limit
                ),
            ));
        }
        if old.kind.starts_with("system_") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "api.post.update_post.system_message.app_error",
                "Unable to update system message.",
            ));
        }
        let mut new = old.clone();
        apply(&mut new);
        check_message_length(&new.message, cfg.max_post_size)?;
        check_props_size(&new.props)?;
        if new.message != old.message {
            new.edit_at = now;
        }
        new.update_at = now;
        let mut history = old.clone();
        history.original_id = old.id.clone();
        history.id = new_id();
        history.delete_at = now;
        history.update_at = now;
        store.post_order.push(history.id.clone());
        store.posts.insert(history.id.clone(), history);
        if !new.root_id.is_empty()
            && let Some(root) = store.posts.get_mut(&new.root_id)
        {
            root.update_at = root.update_at.max(now);
        }
        store.posts.insert(new.id.clone(), new.clone());
        let rendered = store.render(&new);
        let event = post_event("post_edited", &store, &rendered, false);
        self.hub.lock().publish(&event);
        Ok(rendered)
    }

    /// `DELETE /posts/{id}`: soft-deletes the post and, for a root, its replies.
    pub fn delete_post(&self, actor: &str, post_id: &str) -> Result<(), ApiError> {
        let mut store = self.store.lock();
        let post = store
            .posts
            .get(post_id)
            .filter(|p| p.delete_at == 0 && p.original_id.is_empty())
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found("app.post.get.app_error", "Unable to get the post.")
            })?;
        if post.user_id != actor || !store.is_member(&post.channel_id, actor) {
            return Err(ApiError::permissions());
        }
        // The event carries the copy read before deletion.
        let before = store.render(&post);
        let now = now_ms();
        for p in store.posts.values_mut() {
            if (p.id == post.id || p.root_id == post.id) && p.delete_at == 0 {
                p.delete_at = now;
                p.update_at = now;
                p.props.insert("deleteBy".into(), json!(actor));
            }
        }
        let event = post_event("post_deleted", &store, &before, true);
        self.hub.lock().publish(&event);
        Ok(())
    }

    /// `POST /reactions`.
    pub fn add_reaction(&self, actor: &str, body: ReactionBody) -> Result<Reaction, ApiError> {
        if body.user_id != actor {
            return Err(ApiError::permissions());
        }
        if !is_valid_id(&body.post_id) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "model.reaction.is_valid.post_id.app_error",
                "Invalid post id.",
            ));
        }
        check_emoji(&body.emoji_name)?;
        let mut store = self.store.lock();
        let post = store
            .posts
            .get(&body.post_id)
            .filter(|p| p.delete_at == 0)
            .cloned()
            .ok_or_else(ApiError::permissions)?;
        if !store.is_member(&post.channel_id, actor) {
            return Err(ApiError::permissions());
        }
        let now = now_ms();
        let reaction = Reaction {
            user_id: actor.to_owned(),
            post_id: post.id.clone(),
            emoji_name: body.emoji_name,
            create_at: now,
            update_at: now,
            delete_at: 0,
            remote_id: String::new(),
            channel_id: post.channel_id.clone(),
        };
        store.reactions.retain(|r| {
            !(r.user_id == reaction.user_id
                && r.post_id == reaction.post_id
                && r.emoji_name == reaction.emoji_name)
        });
        store.reactions.push(reaction.clone());
        if let Some(p) = store.posts.get_mut(&post.id) {
            p.has_reactions = true;
            p.update_at = now;
        }
        let event = reaction_event("reaction_added", &store, &reaction);
        self.hub.lock().publish(&event);
        Ok(reaction)
    }

    /// `DELETE /users/{user_id}/posts/{post_id}/reactions/{emoji_name}`.
    pub fn remove_reaction(
        &self,
        actor: &str,
        user_id: &str,
        post_id: &str,
        emoji: &str,
    ) -> Result<(), ApiError> {
        if user_id != actor {
            return Err(ApiError::permissions());
        }
        let mut store = self.store.lock();
        let post = store
            .posts
            .get(post_id)
            .cloned()
            .ok_or_else(ApiError::permissions)?;
        if !store.is_member(&post.channel_id, actor) {
            return Err(ApiError::permissions());
        }
        let pos = store
            .reactions
            .iter()
            .position(|r| r.user_id == user_id && r.post_id == post_id && r.emoji_name == emoji);
        if let Some(pos) = pos {
            let mut reaction = store.reactions.remove(pos);
            let now = now_ms();
            let still = store.reactions.iter().any(|r| r.post_id == post_id);
            if let Some(p) = store.posts.get_mut(post_id) {
                p.has_reactions = still;
                p.update_at = now;
            }
            reaction.delete_at = now;
            reaction.update_at = now;
            let event = reaction_event("reaction_removed", &store, &reaction);
            self.hub.lock().publish(&event);
        }
        Ok(())
    }

    /// `POST /channels/direct`: finds or creates the DM.
    pub fn direct_channel(&self, actor: &str, a: &str, b: &str) -> Result<Channel, ApiError> {
        let mut store = self.store.lock();
        for id in [a, b] {
            if !is_valid_id(id) {
                return Err(ApiError::invalid_body("user_ids"));
            }
            if !store.users.contains_key(id) {
                return Err(ApiError::not_found(
                    "app.user.missing_account.const",
                    "Unable to find the user.",
                ));
            }
        }
        if actor != a && actor != b {
            return Err(ApiError::permissions());
        }
        if let Some(c) = store.find_direct(a, b) {
            return Ok(c.clone());
        }
        let channel = store.add_channel("", ChannelType::Direct, &direct_name(a, b), "", actor);
        store.add_channel_member(&channel.id, a);
        store.add_channel_member(&channel.id, b);
        Ok(channel)
    }

    /// `POST /channels/group`: 3–8 users, the caller added if missing.
    pub fn group_channel(&self, actor: &str, ids: &[String]) -> Result<Channel, ApiError> {
        let mut ids: Vec<String> = ids.to_vec();
        if !ids.iter().any(|i| i == actor) {
            ids.push(actor.to_owned());
        }
        ids.sort();
        ids.dedup();
        if !(3..=8).contains(&ids.len()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "api.channel.create_group.bad_size.app_error",
                "Group message channels must contain at least 3 and no more than 8 users.",
            ));
        }
        let mut store = self.store.lock();
        let mut names = Vec::new();
        for id in &ids {
            match store.users.get(id) {
                Some(u) => names.push(u.username.clone()),
                None => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "api.channel.create_group.bad_user.app_error",
                        "One of the provided users does not exist.",
                    ));
                }
            }
        }
        if let Some(c) = store.find_group(&ids) {
            return Ok(c.clone());
        }
        names.sort();
        let channel = store.add_channel(
            "",
            ChannelType::Group,
            &group_name(&ids),
            &names.join(", "),
            actor,
        );
        for id in &ids {
            store.add_channel_member(&channel.id, id);
        }
        Ok(channel)
    }
}

fn check_message_length(message: &str, max: usize) -> Result<(), ApiError> {
    let len = message.chars().count();
    if len > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "model.post.is_valid.message_length.app_error",
            format!(
                "Post Message property is longer than the maximum permitted length. Length: {len}, MaxLength: {max}."
            ),
        ));
    }
    Ok(())
}

fn check_props_size(props: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    let len = serde_json::to_string(props)
        .map(|s| s.chars().count())
        .unwrap_or(0);
    if len > 800_000 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "model.post.is_valid.props.app_error",
            "Invalid Props.",
        ));
    }
    Ok(())
}

fn check_emoji(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "model.reaction.is_valid.emoji_name.app_error",
            "Invalid emoji name.",
        ))
    }
}

fn to_json_string<T: Serialize>(v: &T) -> Value {
    Value::String(serde_json::to_string(v).unwrap_or_default())
}

/// The `posted` event: `mentions` (`["<recipient id>"]`) for each of
/// `mentioned` only, channel naming as clients see it, `otherFile`/`image`
/// flags for attachments.
fn posted_event(
    store: &Store,
    channel: &Channel,
    sender_username: &str,
    post: &Post,
    set_online: bool,
    mentioned: &BTreeSet<String>,
) -> Event {
    let display = match channel.kind {
        ChannelType::Direct => format!("@{sender_username}"),
        _ => channel.display_name.clone(),
    };
    let mut base = EventData::new();
    base.insert("channel_display_name".into(), json!(display));
    base.insert("channel_name".into(), json!(channel.name));
    base.insert("channel_type".into(), json!(channel.kind.code()));
    base.insert("post".into(), to_json_string(post));
    base.insert("sender_name".into(), json!(format!("@{sender_username}")));
    base.insert("set_online".into(), json!(set_online));
    base.insert("team_id".into(), json!(channel.team_id));
    let mut has_image = false;
    let mut has_other = false;
    for f in &post.metadata.files {
        if f.mime_type.starts_with("image/") {
            has_image = true;
        } else {
            has_other = true;
        }
    }
    if has_image {
        base.insert("image".into(), json!("true"));
    }
    if has_other {
        base.insert("otherFile".into(), json!("true"));
    }
    let base = Arc::new(base);
    let deliveries = store
        .member_ids(&channel.id)
        .into_iter()
        .map(|member| {
            let data = if mentioned.contains(&member) {
                let mut d = (*base).clone();
                d.insert("mentions".into(), to_json_string(&[&member]));
                Arc::new(d)
            } else {
                base.clone()
            };
            (member, data)
        })
        .collect();
    Event {
        name: "posted",
        broadcast: Broadcast {
            channel_id: channel.id.clone(),
            ..Broadcast::default()
        },
        deliveries,
    }
}

/// `post_edited` / `post_deleted`: `{post}` to every channel member.
fn post_event(name: &'static str, store: &Store, post: &Post, sanitized: bool) -> Event {
    let mut data = EventData::new();
    data.insert("post".into(), to_json_string(post));
    let data = Arc::new(data);
    Event {
        name,
        broadcast: Broadcast {
            channel_id: post.channel_id.clone(),
            contains_sanitized_data: sanitized,
            ..Broadcast::default()
        },
        deliveries: store
            .member_ids(&post.channel_id)
            .into_iter()
            .map(|m| (m, data.clone()))
            .collect(),
    }
}

/// `reaction_added` / `reaction_removed`: `{reaction}` to every channel member.
fn reaction_event(name: &'static str, store: &Store, reaction: &Reaction) -> Event {
    let mut data = EventData::new();
    data.insert("reaction".into(), to_json_string(reaction));
    let data = Arc::new(data);
    Event {
        name,
        broadcast: Broadcast {
            channel_id: reaction.channel_id.clone(),
            ..Broadcast::default()
        },
        deliveries: store
            .member_ids(&reaction.channel_id)
            .into_iter()
            .map(|m| (m, data.clone()))
            .collect(),
    }
}
