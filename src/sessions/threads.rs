//! Threads and the sessions they talk to: a new session gets a card post
//! and a thread binding; an existing session can be attached to a channel;
//! and the engine's (and every feature's) bot posts in a thread go through
//! [`say`] and [`reply_in`].

use std::sync::Arc;

use tracing::{debug, info, warn};

use super::{Engine, text};
use crate::mattermost::budget::Priority;
use crate::mattermost::connection::Connection;
use crate::mattermost::rest::NewPost;
use crate::mattermost::types::Post;
use crate::opencode::Session;
use crate::store::{ThreadBinding, ThreadStatus, now_millis};

/// Create an OpenCode session and its thread. In a DM the thread's root is
/// a card naming the session; in a channel the person's post is the root
/// and the card its first reply, so the channel is not spammed.
pub async fn new_session(
    ctx: &Arc<Engine>,
    conn: &Connection,
    post: &Post,
    sender: &str,
    prompt_text: &str,
    place: NewThread,
) -> Option<ThreadBinding> {
    new_session_for(ctx, conn, post, sender, None, prompt_text, place).await
}

/// [`new_session`], delegated when `owner` is set: a teammate (`sender`)
/// starts it for the owner, and the card names both.
pub async fn new_session_for(
    ctx: &Arc<Engine>,
    conn: &Connection,
    post: &Post,
    sender: &str,
    owner: Option<&str>,
    prompt_text: &str,
    place: NewThread,
) -> Option<ThreadBinding> {
    let title = text::preview(prompt_text, 60);
    let session = match ctx
        .app
        .opencode()
        .create_session((!title.is_empty()).then_some(title.as_str()))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            say(
                conn,
                post,
                &text::opencode_failed("start an OpenCode session", &e.to_string()),
            )
            .await;
            return None;
        }
    };
    ctx.stats
        .sessions_created
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let spot = ThreadSpot {
        channel_id: &post.channel_id,
        reply_to: match place {
            NewThread::CardRoot => None,
            NewThread::PostThread => Some(post.thread_root()),
        },
        created_by: &post.user_id,
        alias: post.root_id.is_empty().then_some(post.id.as_str()),
        owner,
    };
    let binding = open_thread(ctx, conn, &spot, sender, prompt_text, &session).await?;
    info!(session = %session.id, root = %binding.root_post_id, "new session and thread");
    Some(binding)
}

/// Where the thread of a new or attached session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewThread {
    /// A fresh top-level card post in the post's channel (DMs).
    CardRoot,
    /// The post's own thread, with the card as a reply (channels, so they
    /// are not spammed with roots).
    PostThread,
}

impl NewThread {
    pub fn for_post(post: &Post, in_dm: bool) -> NewThread {
        if in_dm && post.root_id.is_empty() {
            NewThread::CardRoot
        } else {
            NewThread::PostThread
        }
    }
}

/// Where a session's card goes.
pub struct ThreadSpot<'a> {
    pub channel_id: &'a str,
    /// Reply in this existing thread; `None` makes the card a new root.
    pub reply_to: Option<&'a str>,
    pub created_by: &'a str,
    /// A top-level post whose replies should reach the session too.
    pub alias: Option<&'a str>,
    /// The owner's username on a delegated session's card.
    pub owner: Option<&'a str>,
}

/// Post a session's card and bind its thread.
pub async fn open_thread(
    ctx: &Arc<Engine>,
    conn: &Connection,
    spot: &ThreadSpot<'_>,
    sender: &str,
    prompt_text: &str,
    session: &crate::opencode::Session,
) -> Option<ThreadBinding> {
    let started = chrono::DateTime::from_timestamp_millis(now_millis())
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let directory = if session.directory.is_empty() {
        ctx.app.instance.directory.clone()
    } else {
        session.directory.clone()
    };
    let card = text::session_card(&text::Card {
        project: text::project_name(&directory),
        directory: &directory,
        short_id: session.short_id(),
        started: &started,
        requested_by: sender,
        owner: spot.owner,
        prompt: prompt_text,
    });
    let root_id = spot.reply_to.unwrap_or_default().to_owned();
    let created = reply_in(conn, spot.channel_id, &root_id, card, Priority::Urgent).await;
    let card_post = match created {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "cannot post the session card");
            return None;
        }
    };
    let thread_root = if root_id.is_empty() {
        card_post.id
    } else {
        root_id
    };
    let binding = ThreadBinding {
        root_post_id: thread_root.clone(),
        channel_id: spot.channel_id.to_owned(),
        session_id: session.id.clone(),
        instance_id: ctx.app.instance.id.clone(),
        created_by: spot.created_by.to_owned(),
        created_at: now_millis(),
        status: ThreadStatus::Active,
        model: None,
    };
    if let Err(e) = ctx.app.store.bind_thread(&binding).await {
        warn!(error = %e, "cannot record the thread binding");
        return None;
    }
    ctx.bound(&session.id);
    // A reply to the person's own first post reaches the same session. It
    // sorts after the card's thread, which stays the session's home.
    if let Some(alias) = spot.alias.filter(|a| !a.is_empty() && *a != thread_root) {
        let alias = ThreadBinding {
            root_post_id: alias.to_owned(),
            created_at: binding.created_at + 1,
            ..binding.clone()
        };
        if let Err(e) = ctx.app.store.bind_thread(&alias).await {
            debug!(error = %e, "cannot bind the first post as an alias");
        }
    }

    Some(binding)
}

/// Answer a post in its thread.
pub async fn say(conn: &Connection, post: &Post, message: &str) {
    let result = reply_in(
        conn,
        &post.channel_id,
        post.thread_root(),
        message.to_owned(),
        Priority::Urgent,
    )
    .await;
    if let Err(e) = result {
        warn!(error = %e, "cannot answer the post");
    }
}

/// A bot post in thread `root_id` of `channel_id`; a failure is logged.
pub async fn say_in(conn: &Connection, channel_id: &str, root_id: &str, message: &str) {
    let result = reply_in(
        conn,
        channel_id,
        root_id,
        message.to_owned(),
        Priority::Urgent,
    )
    .await;
    if let Err(e) = result {
        warn!(error = %e, "cannot post in the thread");
    }
}

/// A bot post in a thread (`root_id`), or at the top of the channel when
/// `root_id` is empty.
pub async fn reply_in(
    conn: &Connection,
    channel_id: &str,
    root_id: &str,
    message: String,
    priority: Priority,
) -> Result<Post, crate::mattermost::MattermostError> {
    reply_with_files(conn, channel_id, root_id, message, Vec::new(), priority).await
}

/// [`reply_in`] with files already uploaded to the channel.
pub async fn reply_with_files(
    conn: &Connection,
    channel_id: &str,
    root_id: &str,
    message: String,
    file_ids: Vec<String>,
    priority: Priority,
) -> Result<Post, crate::mattermost::MattermostError> {
    conn.rest
        .create_post(
            &conn.info.bot.id,
            &NewPost {
                channel_id: channel_id.to_owned(),
                message,
                root_id: root_id.to_owned(),
                file_ids,
                ..NewPost::default()
            },
            priority,
        )
        .await
}

/// The prop a streamed reply post carries with its `pending_post_id`: Mattermost
/// forgets pending ids after 30 s, so after a crash between creating the post
/// and recording its id, this is how the post is found again.
pub const PENDING_PROP: &str = "opencode_mm_pending";

/// A reply post created under a `pending_post_id` the caller has already
/// recorded, marked with it (see [`PENDING_PROP`]).
pub(crate) async fn reply_recorded(
    conn: &Connection,
    channel_id: &str,
    root_id: &str,
    message: String,
    pending: &str,
    priority: Priority,
) -> Result<Post, crate::mattermost::MattermostError> {
    conn.rest
        .create_post(
            &conn.info.bot.id,
            &NewPost {
                channel_id: channel_id.to_owned(),
                message,
                root_id: root_id.to_owned(),
                props: Some(serde_json::json!({ PENDING_PROP: pending })),
                pending_post_id: pending.to_owned(),
                ..NewPost::default()
            },
            priority,
        )
        .await
}

/// The post of thread `root_id` that an earlier life created under
/// `pending`, if the create call landed.
pub(crate) async fn find_recorded(
    conn: &Connection,
    root_id: &str,
    pending: &str,
) -> Result<Option<String>, crate::mattermost::MattermostError> {
    let posts = conn.rest.thread(root_id).await?;
    Ok(posts
        .into_iter()
        .find(|p| {
            p.user_id == conn.info.bot.id
                && p.props.get(PENDING_PROP).and_then(|v| v.as_str()) == Some(pending)
        })
        .map(|p| p.id))
}

/// The live thread of a session on this instance, preferring one in
/// `channel` when given.
pub async fn thread_of_session(
    ctx: &Engine,
    session_id: &str,
    channel: Option<&str>,
) -> Option<ThreadBinding> {
    let mine = ctx.app.live_threads(session_id).await.ok()?;
    channel
        .and_then(|ch| mine.iter().find(|t| t.channel_id == ch).cloned())
        .or_else(|| mine.into_iter().next())
}

/// The session's thread in `channel`, posting its card first if it has none
/// there yet.
pub async fn attach(
    ctx: &Arc<Engine>,
    conn: &Connection,
    channel_id: &str,
    session: &Session,
    requested_by: &str,
    user_id: &str,
    reuse_any_channel: bool,
) -> Result<ThreadBinding, String> {
    let existing = thread_of_session(ctx, &session.id, Some(channel_id))
        .await
        .filter(|t| reuse_any_channel || t.channel_id == channel_id);
    if let Some(t) = existing {
        ctx.bound(&session.id);
        return Ok(t);
    }
    let spot = ThreadSpot {
        channel_id,
        reply_to: None,
        created_by: user_id,
        alias: None,
        owner: None,
    };
    open_thread(ctx, conn, &spot, requested_by, &session.title, session)
        .await
        .ok_or_else(|| ":x: Could not post the session's thread; see the agent log.".to_owned())
}

/// Who sent `post`: the name the link reported (`known`, with or without
/// its `@`), else looked up; empty when the lookup fails.
pub async fn sender_name(conn: &Connection, post: &Post, known: &str) -> String {
    if known.is_empty() {
        conn.rest
            .user(&post.user_id)
            .await
            .map(|u| u.username)
            .unwrap_or_default()
    } else {
        known.trim_start_matches('@').to_owned()
    }
}
