//! Routing of one inbound post: who sent it, where, and what it asks for.
//!
//! Every post this instance answers is first claimed in the store, so two
//! agents sharing a bot never both answer it; posts in threads owned by
//! another running instance are left to that instance unclaimed.

use std::sync::Arc;

use tracing::{Instrument, debug, info, info_span, warn};

use super::reply::{self, Run, SessionMsg};
use super::{Ctx, text};
use crate::access::Verdict;
use crate::mattermost::budget::Priority;
use crate::mattermost::connection::Connection;
use crate::mattermost::rest::NewPost;
use crate::mattermost::types::Post;
use crate::opencode::{ModelRef, OpenCodeError, Prompt, new_message_id};
use crate::render::Turn;
use crate::store::{Claim, ClaimState, Reply, ReplyState, ThreadBinding, ThreadStatus, now_millis};

/// A prompt that waited longer than this before going to OpenCode is logged
/// with where the time went.
const SLOW_PROMPT: std::time::Duration = std::time::Duration::from_millis(200);

/// A post as the link delivered it.
#[derive(Debug, Clone)]
pub struct InboundPost {
    pub post: Post,
    /// `D`, `G`, `O` or `P`; empty for posts recovered over REST.
    pub channel_type: String,
    pub sender_name: String,
    /// User ids the server says the post mentions.
    pub mentions: Vec<String>,
    pub caught_up: bool,
    /// When the bridge got it, for the post → prompt latency.
    pub received: std::time::Instant,
}

pub(super) async fn handle(ctx: &Arc<Ctx>, inbound: InboundPost) {
    let span = info_span!("post", id = %inbound.post.id, caught_up = inbound.caught_up);
    route(ctx, inbound).instrument(span).await;
}

async fn route(ctx: &Arc<Ctx>, mut inbound: InboundPost) {
    let Some(conn) = ctx.connection().await else {
        debug!("not connected; post left for catch-up");
        return;
    };
    let post = &inbound.post;
    let bot = &conn.info.bot;
    // System messages (joins, header changes) and our own posts are not prompts.
    if post.user_id == bot.id || !post.kind.is_empty() || post.delete_at != 0 || post.id.is_empty()
    {
        return;
    }
    if let Err(e) = ctx
        .store
        .advance_cursor(&ctx.cursor_key(&post.channel_id), post.create_at, &post.id)
        .await
    {
        warn!(error = %e, "cannot record the channel cursor");
    }
    if inbound.channel_type.is_empty() {
        match conn.rest.channel(&post.channel_id).await {
            Ok(ch) => inbound.channel_type = ch.kind,
            Err(e) => {
                warn!(error = %e, "cannot tell the channel's type; post ignored");
                return;
            }
        }
    }
    let post = &inbound.post;
    if !ctx.access.channel_allowed(&inbound.channel_type) {
        debug!(kind = %inbound.channel_type, "channel type not enabled");
        return;
    }
    let is_dm = inbound.channel_type == "D";
    let mentioned = inbound.mentions.iter().any(|m| m == &bot.id)
        || text::mentions(&post.message, &bot.username);
    if !is_dm && !mentioned {
        return;
    }

    // A reply in a thread goes to the thread's session; a top-level DM to
    // the session the DM is attached to (`!use`), if any.
    let binding = match thread_of(ctx, post, is_dm).await {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "cannot read the thread binding; post ignored");
            return;
        }
    };
    // Threads of another live instance are theirs to answer.
    if let Some(b) = &binding
        && b.instance_id != ctx.instance.id
        && ctx.instance_alive(&b.instance_id).await
    {
        return;
    }
    match ctx
        .store
        .claim_post(&post.id, &ctx.instance.id, now_millis())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            debug!("already claimed");
            return;
        }
        Err(e) => {
            warn!(error = %e, "cannot claim the post; not answering it");
            return;
        }
    }

    match ctx.access.may_prompt(&post.user_id) {
        Verdict::Allowed => {}
        Verdict::Unconfigured => {
            if first_time(ctx, &format!("unconfigured:{}", post.channel_id)) {
                say(&conn, post, &text::not_configured_notice()).await;
            }
            ctx.set_claim_state(&post.id, ClaimState::Done).await;
            return;
        }
        Verdict::Stranger => {
            info!(user = %post.user_id, "prompt from a user who is not allowed; ignored");
            if is_dm && first_time(ctx, &format!("stranger:{}", post.user_id)) {
                say(&conn, post, text::STRANGER_NOTICE).await;
            }
            ctx.set_claim_state(&post.id, ClaimState::Done).await;
            return;
        }
    }

    let (sender, prompt_text) = sender_and_text(&conn, post, &inbound.sender_name).await;
    let here = crate::commands::exec::Here {
        post,
        binding: binding.as_ref(),
        is_dm,
        sender: &sender,
    };
    if crate::commands::exec::handle(ctx, &conn, &here, &prompt_text).await {
        ctx.set_claim_state(&post.id, ClaimState::Done).await;
        return;
    }
    let binding = match binding {
        Some(b) if b.instance_id != ctx.instance.id => {
            let (dir, host) = instance_place(ctx, &b.instance_id).await;
            say(&conn, post, &text::other_instance_down(&dir, &host)).await;
            ctx.set_claim_state(&post.id, ClaimState::Done).await;
            return;
        }
        Some(b) if b.status == ThreadStatus::Ended => {
            say(&conn, post, text::SESSION_ENDED).await;
            ctx.set_claim_state(&post.id, ClaimState::Done).await;
            return;
        }
        Some(b) => b,
        None if !post.root_id.is_empty() && is_dm => {
            say(&conn, post, text::UNLINKED_THREAD).await;
            ctx.set_claim_state(&post.id, ClaimState::Done).await;
            return;
        }
        None => {
            // A new session waits on OpenCode and a card post; it runs on
            // its own so a burst of new DMs does not queue one behind the
            // other. Nothing can be posted in its thread before it exists,
            // so no later post depends on it.
            let (ctx, conn, post) = (ctx.clone(), conn.clone(), post.clone());
            let place = NewThread::for_post(&post, is_dm);
            let received = inbound.received;
            tokio::spawn(
                async move {
                    match new_session(&ctx, &conn, &post, &sender, &prompt_text, place).await {
                        Some(b) => {
                            let started = Started::new_session(received);
                            start_turn(&ctx, &b, &post, &sender, &prompt_text, None, started).await
                        }
                        None => ctx.set_claim_state(&post.id, ClaimState::Failed).await,
                    }
                }
                .in_current_span(),
            );
            return;
        }
    };
    // While the session waits for a person, a reply may be the answer.
    if super::asks::answer_text(ctx, &conn, &binding.session_id, post, &sender, &prompt_text).await
    {
        ctx.set_claim_state(&post.id, ClaimState::Done).await;
        return;
    }
    start_turn(
        ctx,
        &binding,
        post,
        &sender,
        &prompt_text,
        None,
        Started::follow_up(inbound.received),
    )
    .await;
}

/// When a prompt's post reached the bridge, and whether its session had to
/// be created first: the two latencies are reported apart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub at: std::time::Instant,
    pub new_session: bool,
}

impl Started {
    pub(crate) fn follow_up(at: std::time::Instant) -> Started {
        Started {
            at,
            new_session: false,
        }
    }
    pub(super) fn new_session(at: std::time::Instant) -> Started {
        Started {
            at,
            new_session: true,
        }
    }
}

/// Create an OpenCode session and its thread. In a DM the thread's root is
/// a card naming the session; in a channel the person's post is the root
/// and the card its first reply, so the channel is not spammed.
pub(crate) async fn new_session(
    ctx: &Ctx,
    conn: &Connection,
    post: &Post,
    sender: &str,
    prompt_text: &str,
    place: NewThread,
) -> Option<ThreadBinding> {
    let title = text::preview(prompt_text, 60);
    let session = match ctx
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
    };
    let binding = open_thread(ctx, conn, &spot, sender, prompt_text, &session).await?;
    info!(session = %session.id, root = %binding.root_post_id, "new session and thread");
    Some(binding)
}

/// Where the thread of a new or attached session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewThread {
    /// A fresh top-level card post in the post's channel (DMs).
    CardRoot,
    /// The post's own thread, with the card as a reply (channels, so they
    /// are not spammed with roots).
    PostThread,
}

impl NewThread {
    pub(crate) fn for_post(post: &Post, in_dm: bool) -> NewThread {
        if in_dm && post.root_id.is_empty() {
            NewThread::CardRoot
        } else {
            NewThread::PostThread
        }
    }
}

/// Where a session's card goes.
pub(crate) struct ThreadSpot<'a> {
    pub channel_id: &'a str,
    /// Reply in this existing thread; `None` makes the card a new root.
    pub reply_to: Option<&'a str>,
    pub created_by: &'a str,
    /// A top-level post whose replies should reach the session too.
    pub alias: Option<&'a str>,
}

/// Post a session's card and bind its thread.
pub(crate) async fn open_thread(
    ctx: &Ctx,
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
        ctx.instance.directory.clone()
    } else {
        session.directory.clone()
    };
    let card = text::session_card(&text::Card {
        project: text::project_name(&directory),
        directory: &directory,
        short_id: session.short_id(),
        started: &started,
        requested_by: sender,
        prompt: prompt_text,
    });
    let root_id = spot.reply_to.unwrap_or_default().to_owned();
    let created = conn
        .rest
        .create_post(
            &conn.info.bot.id,
            &NewPost {
                channel_id: spot.channel_id.to_owned(),
                message: card,
                root_id: root_id.clone(),
                ..NewPost::default()
            },
            Priority::Urgent,
        )
        .await;
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
        instance_id: ctx.instance.id.clone(),
        created_by: spot.created_by.to_owned(),
        created_at: now_millis(),
        status: ThreadStatus::Active,
        model: None,
    };
    if let Err(e) = ctx.store.bind_thread(&binding).await {
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
        if let Err(e) = ctx.store.bind_thread(&alias).await {
            debug!(error = %e, "cannot bind the first post as an alias");
        }
    }

    Some(binding)
}

/// Post the turn's first reply post, hand the turn to its session task and
/// send the prompt. `message_id` is set when a prompt is re-sent after a
/// restart, so OpenCode sees the same message.
pub(crate) async fn start_turn(
    ctx: &Arc<Ctx>,
    binding: &ThreadBinding,
    post: &Post,
    sender: &str,
    prompt_text: &str,
    message_id: Option<String>,
    started: Started,
) {
    let message_id = message_id.unwrap_or_else(|| new_message_id(now_millis().max(0) as u64));
    super::actions::remember(
        ctx,
        &binding.root_post_id,
        super::actions::LastPrompt {
            post: post.clone(),
            sender: sender.to_owned(),
            text: prompt_text.to_owned(),
        },
    );
    let claim = Claim {
        post_id: post.id.clone(),
        instance_id: ctx.instance.id.clone(),
        claimed_at: now_millis(),
        state: ClaimState::Claimed,
        session_id: Some(binding.session_id.clone()),
        message_id: Some(message_id.clone()),
        root_post_id: Some(binding.root_post_id.clone()),
        channel_id: Some(binding.channel_id.clone()),
    };
    if let Err(e) = ctx.store.update_claim(&claim).await {
        warn!(error = %e, "cannot record the claim's session");
    }
    let existing = ctx
        .store
        .reply(&binding.session_id, &message_id)
        .await
        .ok()
        .flatten();
    let reply_row = existing.unwrap_or_else(|| Reply {
        session_id: binding.session_id.clone(),
        user_message_id: message_id.clone(),
        instance_id: ctx.instance.id.clone(),
        channel_id: binding.channel_id.clone(),
        root_post_id: binding.root_post_id.clone(),
        post_ids: Vec::new(),
        started_at: now_millis(),
        state: ReplyState::Streaming,
    });
    let turn = Turn::new(
        binding.session_id.clone(),
        message_id.clone(),
        reply_row.started_at as f64,
    );
    let mut run = Run::new(turn, reply_row, ctx.throttle(), Some(post.id.clone()));
    // The session task posts the first reply post at once; the prompt does
    // not wait for it.
    run.throttle.changed(tokio::time::Instant::now(), 0, true);
    if let Err(e) = ctx.store.save_reply(&run.reply).await {
        warn!(error = %e, "cannot record the reply");
    }
    // Attachments are fetched into the session's temporary directory; the
    // model gets images and PDFs as file parts and every file by path.
    let attached = crate::files::inbound::prepare(ctx, binding, post).await;
    let prompt = Prompt {
        message_id,
        text: attached.prompt_text(text::prompt_envelope(
            sender,
            &binding.root_post_id,
            &post.id,
            &post.channel_id,
            prompt_text,
        )),
        model: binding.model.as_deref().and_then(ModelRef::parse),
        agent: None,
        files: attached.parts,
    };
    // The session task sends the prompt, or queues it behind a running turn.
    let job = reply::PromptJob {
        prompt,
        root_post_id: binding.root_post_id.clone(),
        post_id: post.id.clone(),
        received: started.at,
        new_session: started.new_session,
        handed: std::time::Instant::now(),
        queued: false,
    };
    let _ = ctx
        .session(&binding.session_id)
        .send(SessionMsg::Start(Box::new(run), Some(Box::new(job))));
}

/// Send one prompt to OpenCode and record how it went. A session OpenCode
/// no longer has ends its thread.
pub(super) async fn send_prompt(
    ctx: &Ctx,
    session_id: &str,
    job: &reply::PromptJob,
) -> Result<(), String> {
    let waited = job.received.elapsed();
    ctx.stats.prompt_sent(waited, job.new_session, job.queued);
    if waited > SLOW_PROMPT && !job.queued {
        info!(
            routing_ms = (job.handed - job.received).as_millis() as u64,
            in_session_task_ms = job.handed.elapsed().as_millis() as u64,
            "a prompt waited before it was sent"
        );
    }
    match ctx.opencode().prompt_async(session_id, &job.prompt).await {
        Ok(()) => {
            ctx.set_claim_state(&job.post_id, ClaimState::Prompted)
                .await;
            Ok(())
        }
        Err(e) => {
            let error = match &e {
                OpenCodeError::NotFound { .. } => {
                    if let Err(e) = ctx
                        .store
                        .set_thread_status(&job.root_post_id, ThreadStatus::Ended)
                        .await
                    {
                        debug!(error = %e, "cannot mark the thread ended");
                    }
                    "this session no longer exists in OpenCode; send a new message (not in a \
                     thread) to start a new one"
                        .to_owned()
                }
                other => other.to_string(),
            };
            warn!(error = %e, "prompt_async failed");
            ctx.set_claim_state(&job.post_id, ClaimState::Failed).await;
            Err(error)
        }
    }
}

/// Replies that were streaming when the previous agent stopped: pick them up
/// again; the session task finishes them from OpenCode's stored messages.
pub(super) async fn resume_replies(ctx: &Arc<Ctx>) {
    let replies = match ctx.store.streaming_replies(&ctx.instance.id).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "cannot read unfinished replies");
            return;
        }
    };
    for reply_row in replies {
        info!(session = %reply_row.session_id, "finishing a reply interrupted by a restart");
        let mut turn = Turn::new(
            reply_row.session_id.clone(),
            reply_row.user_message_id.clone(),
            reply_row.started_at as f64,
        );
        if let Ok(messages) = ctx.opencode().messages(&reply_row.session_id).await {
            turn.load(&messages, reply::now_ms());
        }
        let claim = claim_for(ctx, &reply_row.session_id, &reply_row.user_message_id).await;
        let mut run = Run::new(turn, reply_row.clone(), ctx.throttle(), claim);
        run.prompted = true;
        let task = ctx.session(&reply_row.session_id);
        let _ = task.send(SessionMsg::Start(Box::new(run), None));
    }
}

async fn claim_for(ctx: &Ctx, session_id: &str, message_id: &str) -> Option<String> {
    let claims = ctx.store.unfinished_claims(&ctx.instance.id).await.ok()?;
    claims
        .into_iter()
        .find(|c| {
            c.session_id.as_deref() == Some(session_id)
                && c.message_id.as_deref() == Some(message_id)
        })
        .map(|c| c.post_id)
}

/// Claims whose prompt may not have reached OpenCode: send it (again, under
/// the same message id) unless OpenCode already has it.
pub(super) async fn resume_claims(ctx: &Arc<Ctx>) {
    let Some(conn) = ctx.connection().await else {
        return;
    };
    let claims = match ctx.store.unfinished_claims(&ctx.instance.id).await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot read unfinished claims");
            return;
        }
    };
    for claim in claims {
        if claim.state != ClaimState::Claimed {
            continue;
        }
        let (Some(session_id), Some(message_id), Some(root)) =
            (&claim.session_id, &claim.message_id, &claim.root_post_id)
        else {
            // Interrupted before a session was chosen: run the post afresh.
            if let Ok(post) = conn.rest.post(&claim.post_id).await {
                ctx.set_claim_state(&claim.post_id, ClaimState::Failed)
                    .await;
                info!(post = %claim.post_id, "re-running a post interrupted before its session existed");
                retry_post(ctx, &conn, post).await;
            }
            continue;
        };
        let landed = ctx
            .opencode()
            .messages(session_id)
            .await
            .map(|m| m.iter().any(|m| &m.info.id == message_id))
            .unwrap_or(false);
        if landed {
            ctx.set_claim_state(&claim.post_id, ClaimState::Prompted)
                .await;
            continue;
        }
        let Ok(Some(binding)) = ctx.store.thread(root).await else {
            continue;
        };
        let Ok(post) = conn.rest.post(&claim.post_id).await else {
            continue;
        };
        let (sender, prompt_text) = sender_and_text(&conn, &post, "").await;
        info!(post = %post.id, "re-sending a prompt interrupted by a restart");
        start_turn(
            ctx,
            &binding,
            &post,
            &sender,
            &prompt_text,
            Some(message_id.clone()),
            Started::follow_up(std::time::Instant::now()),
        )
        .await;
    }
}

/// Run a post whose earlier claim failed before anything was created: the
/// claim row is reused, so only this path may answer it.
async fn retry_post(ctx: &Arc<Ctx>, conn: &Connection, post: Post) {
    let (sender, prompt_text) = sender_and_text(conn, &post, "").await;
    let in_dm = conn
        .rest
        .channel(&post.channel_id)
        .await
        .is_ok_and(|c| c.kind == "D");
    let place = NewThread::for_post(&post, in_dm);
    if let Some(binding) = new_session(ctx, conn, &post, &sender, &prompt_text, place).await {
        start_turn(
            ctx,
            &binding,
            &post,
            &sender,
            &prompt_text,
            None,
            Started::new_session(std::time::Instant::now()),
        )
        .await;
    }
}

/// Who sent a post (the name the link reported, else looked up) and its
/// text without the bot's @mention.
async fn sender_and_text(conn: &Connection, post: &Post, known_name: &str) -> (String, String) {
    let sender = if known_name.is_empty() {
        conn.rest
            .user(&post.user_id)
            .await
            .map(|u| u.username)
            .unwrap_or_default()
    } else {
        known_name.trim_start_matches('@').to_owned()
    };
    (
        sender,
        text::strip_mention(&post.message, &conn.info.bot.username),
    )
}

/// The binding a post is addressed to: its thread's, or for a top-level DM
/// post the thread the DM is attached to.
async fn thread_of(
    ctx: &Ctx,
    post: &Post,
    is_dm: bool,
) -> Result<Option<ThreadBinding>, crate::store::StoreError> {
    if !post.root_id.is_empty() {
        return ctx.store.thread(&post.root_id).await;
    }
    if !is_dm {
        return Ok(None);
    }
    let Some(root) = ctx.store.selection(&post.channel_id).await? else {
        return Ok(None);
    };
    match ctx.store.thread(&root).await? {
        Some(b) if b.status == ThreadStatus::Active => Ok(Some(b)),
        // The attached session ended: the DM goes back to starting new ones.
        _ => {
            ctx.store
                .select_thread(&post.channel_id, None, now_millis())
                .await?;
            Ok(None)
        }
    }
}

pub(crate) async fn instance_place(ctx: &Ctx, instance_id: &str) -> (String, String) {
    let found = ctx
        .store
        .instances()
        .await
        .ok()
        .and_then(|list| list.into_iter().find(|i| i.id == instance_id));
    match found {
        Some(i) => (i.directory, i.host),
        None => (instance_id.to_owned(), "another machine".to_owned()),
    }
}

fn first_time(ctx: &Ctx, key: &str) -> bool {
    ctx.notified
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(key.to_owned())
}

/// Answer a post in its thread.
pub(crate) async fn say(conn: &Connection, post: &Post, message: &str) {
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

/// A bot post in a thread (`root_id`), or at the top of the channel when
/// `root_id` is empty.
pub(crate) async fn reply_in(
    conn: &Connection,
    channel_id: &str,
    root_id: &str,
    message: String,
    priority: Priority,
) -> Result<Post, crate::mattermost::MattermostError> {
    conn.rest
        .create_post(
            &conn.info.bot.id,
            &NewPost {
                channel_id: channel_id.to_owned(),
                message,
                root_id: root_id.to_owned(),
                ..NewPost::default()
            },
            priority,
        )
        .await
}
