//! Routing of one inbound post: who sent it, where, and what it asks for.
//!
//! Every post this instance answers is first claimed in the store, so two
//! agents sharing a bot never both answer it; posts in threads owned by
//! another running instance are left to that instance unclaimed.

use std::sync::Arc;

use tracing::{Instrument, debug, info, info_span, warn};

use super::Router;
use crate::access::Verdict;
use crate::files::refs::{self, Gate};
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::sessions::text;
use crate::sessions::threads::new_session;
use crate::sessions::turn::start_turn;
use crate::sessions::{Engine, NewThread, Started, say};
use crate::store::{ClaimState, ThreadBinding, ThreadStatus, now_millis};

/// A post as the link delivered it.
#[derive(Debug, Clone)]
pub struct InboundPost {
    pub post: Post,
    /// `D`, `G`, `O` or `P`; empty for posts recovered over REST.
    pub channel_type: String,
    pub sender_name: String,
    /// Found by a catch-up (after a link outage or a restart): past the
    /// age limit it is offered rather than run.
    pub caught_up: bool,
    /// Already claimed by this instance (before a restart, or offered as
    /// missed and now asked for): judged again in full, without claiming it
    /// a second time.
    pub recovered: bool,
    /// When the bridge got it, for the post → prompt latency.
    pub received: std::time::Instant,
}

impl InboundPost {
    /// A post found over REST after being away: no channel type or sender
    /// name comes with it.
    pub(super) fn caught_up(post: Post) -> InboundPost {
        InboundPost {
            post,
            channel_type: String::new(),
            sender_name: String::new(),
            caught_up: true,
            recovered: false,
            received: std::time::Instant::now(),
        }
    }

    /// A post this instance claimed before a restart.
    pub(super) fn recovered(post: Post) -> InboundPost {
        InboundPost {
            recovered: true,
            ..InboundPost::caught_up(post)
        }
    }

    /// A missed post someone asked to run: as if it had just arrived.
    pub(super) fn asked_for(post: Post) -> InboundPost {
        InboundPost {
            caught_up: false,
            ..InboundPost::recovered(post)
        }
    }
}

pub(super) async fn handle(router: &Arc<Router>, inbound: InboundPost) {
    let span = info_span!("post", id = %inbound.post.id, caught_up = inbound.caught_up);
    route(router, inbound).instrument(span).await;
}

async fn route(router: &Arc<Router>, mut inbound: InboundPost) {
    let ctx = &router.engine;
    let Some(conn) = ctx.app.connection().await else {
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
    // The channel's cursor moves past a post only once it is decided: not
    // ours, or claimed in the store. A post whose fate is unknown (a
    // failed lookup or claim) is seen again at the next catch-up.
    // A webhook, slash command or plugin posts under the id of whoever set
    // it up; whoever holds its URL is not that person.
    if post.is_integration() && !ctx.app.config.allow_integration_posts {
        debug!("integration post (webhook, command, plugin or bot); not a person's, ignored");
        return advance_cursor(ctx, post).await;
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
    if !ctx.app.access.channel_allowed(&inbound.channel_type) {
        debug!(kind = %inbound.channel_type, "channel type not enabled");
        return advance_cursor(ctx, post).await;
    }
    // Outside a DM only an explicit `@botname` in the text addresses the
    // bot. The server's `mentions` is no guide: it names every member of a
    // group message, and everyone at `@here`, `@channel` or `@all`.
    let is_dm = inbound.channel_type == "D";
    // The owner's replies in a bound thread need no mention (channels).
    if !is_dm
        && !text::mentions(&post.message, &bot.username)
        && !crate::channels::follows_up(&ctx.app, post).await
    {
        return advance_cursor(ctx, post).await;
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
        && b.instance_id != ctx.app.instance.id
        && ctx.app.instance_alive(&b.instance_id).await
    {
        return advance_cursor(ctx, post).await;
    }
    // A top-level DM command that belongs to no session is answered by one
    // instance, the same every time (see `App::leads`).
    if binding.is_none()
        && is_dm
        && post.root_id.is_empty()
        && super::chat::parse(&post.message, &ctx.app.config.command_prefix).is_some()
        && !ctx.app.leads().await
    {
        debug!("a top-level command for the leading instance");
        return advance_cursor(ctx, post).await;
    }
    let claimed = if inbound.recovered {
        Ok(true)
    } else {
        ctx.app
            .store
            .claim_post(&post.id, &ctx.app.instance.id, now_millis())
            .await
    };
    match claimed {
        Ok(true) => advance_cursor(ctx, post).await,
        Ok(false) => {
            debug!("already claimed");
            return advance_cursor(ctx, post).await;
        }
        Err(e) => {
            warn!(error = %e, "cannot claim the post; not answering it");
            return;
        }
    }

    match ctx.app.access.may_prompt(&post.user_id) {
        Verdict::Unconfigured => {
            if router.first_time(&format!("unconfigured:{}", post.channel_id)) {
                say(&conn, post, &text::not_configured_notice()).await;
            }
            ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
            return;
        }
        // Outside a DM the channels feature judges: teammates, approved
        // guests, guest requests, delegation.
        _ if !is_dm => {
            let sender = &inbound.sender_name;
            // Bare numbers from someone a `!!` list or a question waits on
            // answer that, never a guest request by accident.
            let numbers_taken = binding.as_ref().is_some_and(|b| {
                router.refs.list_waits_for(&b.root_post_id, &post.user_id)
                    || crate::asks::chat::question_waiting(&router.asks, &b.session_id)
            });
            let admitted =
                crate::channels::admit(ctx, &conn, post, sender, binding.as_ref(), numbers_taken)
                    .await;
            if admitted == crate::channels::Admit::Handled {
                ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
                return;
            }
        }
        Verdict::Allowed => {}
        Verdict::Stranger => {
            info!(user = %post.user_id, "prompt from a user who is not allowed; ignored");
            if is_dm && router.first_time(&format!("stranger:{}", post.user_id)) {
                say(&conn, post, text::STRANGER_NOTICE).await;
            }
            ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
            return;
        }
    }

    // Found at catch-up long after it was sent: claimed above, so no other
    // agent runs it either, but only offered.
    if inbound.caught_up && super::missed::too_old(&ctx.app, post) {
        return super::missed::offer(ctx, &conn, post).await;
    }

    let (sender, prompt_text) = sender_and_text(&conn, post, &inbound.sender_name).await;
    let here = crate::commands::Here {
        post,
        binding: binding.as_ref(),
        is_dm,
        sender: &sender,
    };
    if super::chat::handle(router, &conn, &here, &prompt_text).await {
        ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
        return;
    }
    // A thread merged into another answers with where the talk went on.
    if let Some(pointer) = crate::context::merge::lock_notice(ctx, &conn, post).await {
        say(&conn, post, &pointer).await;
        ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
        return;
    }
    let binding = match binding {
        Some(b) if b.instance_id != ctx.app.instance.id => {
            let notice = match ctx.app.instance_row(&b.instance_id).await {
                Some(i) => {
                    text::other_instance_down(&i.display_name(), &i.directory, Some(i.heartbeat_at))
                }
                None => text::other_instance_down(&b.instance_id, "?", None),
            };
            say(&conn, post, &notice).await;
            ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
            return;
        }
        Some(b) if b.status == ThreadStatus::Ended => {
            say(
                &conn,
                post,
                &text::session_ended(&ctx.app.config.command_prefix),
            )
            .await;
            ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
            return;
        }
        Some(b) => b,
        None if !post.root_id.is_empty() && is_dm => {
            say(&conn, post, text::UNLINKED_THREAD).await;
            ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
            return;
        }
        None => {
            // `!!` references resolve first: one that matches nothing
            // starts no session.
            let refs = router.refs.clone();
            let gate = refs::gate(&refs, &ctx.app, &conn, post, &sender, &prompt_text, None).await;
            if matches!(gate, Gate::Stopped) {
                return ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
            }
            // A new session waits on OpenCode and a card post; it runs on
            // its own so a burst of new DMs does not queue one behind the
            // other. Nothing can be posted in its thread before it exists,
            // so no later post depends on it.
            let (ctx, conn, post) = (ctx.clone(), conn.clone(), post.clone());
            let place = NewThread::for_post(&post, is_dm);
            let received = inbound.received;
            tokio::spawn(
                async move {
                    match (
                        new_session(&ctx, &conn, &post, &sender, &prompt_text, place).await,
                        gate,
                    ) {
                        (Some(b), Gate::Ask(ask)) => {
                            refs::ask(&refs, &ctx.app, &conn, &b, *ask).await;
                            ctx.app.set_claim_state(&post.id, ClaimState::Done).await
                        }
                        (Some(b), _) => {
                            let started = Started::new_session(received);
                            start_turn(&ctx, &b, &post, &sender, &prompt_text, None, started).await
                        }
                        (None, _) => ctx.app.set_claim_state(&post.id, ClaimState::Failed).await,
                    }
                }
                .in_current_span(),
            );
            return;
        }
    };
    // The author's numbers answering a `!!` list run the prompt it held.
    if refs::answer(&router.refs, ctx, &conn, &binding, post, &prompt_text).await {
        ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
        return;
    }
    // While the session waits for a person, a reply may be the answer.
    if crate::asks::chat::answer_text(
        &router.asks,
        &conn,
        &binding.session_id,
        post,
        &sender,
        &prompt_text,
    )
    .await
    {
        ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
        return;
    }
    match refs::gate(
        &router.refs,
        &ctx.app,
        &conn,
        post,
        &sender,
        &prompt_text,
        Some(&binding),
    )
    .await
    {
        Gate::Run => {}
        Gate::Stopped => return ctx.app.set_claim_state(&post.id, ClaimState::Done).await,
        Gate::Ask(ask) => {
            refs::ask(&router.refs, &ctx.app, &conn, &binding, *ask).await;
            return ctx.app.set_claim_state(&post.id, ClaimState::Done).await;
        }
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

/// Who sent a post (the name the link reported, else looked up) and its
/// text without the bot's @mention.
pub(super) async fn sender_and_text(
    conn: &Connection,
    post: &Post,
    known_name: &str,
) -> (String, String) {
    let sender = crate::sessions::threads::sender_name(conn, post, known_name).await;
    (
        sender,
        text::strip_mention(&post.message, &conn.info.bot.username),
    )
}

/// The binding a post is addressed to: its thread's, or for a top-level DM
/// post the thread the DM is attached to.
async fn thread_of(
    ctx: &Engine,
    post: &Post,
    is_dm: bool,
) -> Result<Option<ThreadBinding>, crate::store::StoreError> {
    if !post.root_id.is_empty() {
        return ctx.app.store.thread(&post.root_id).await;
    }
    if !is_dm {
        return Ok(None);
    }
    let Some(root) = ctx.app.store.selection(&post.channel_id).await? else {
        return Ok(None);
    };
    match ctx.app.store.thread(&root).await? {
        Some(b) if b.status == ThreadStatus::Active => Ok(Some(b)),
        // The attached session ended: the DM goes back to starting new ones.
        _ => {
            ctx.app
                .store
                .select_thread(&post.channel_id, None, now_millis())
                .await?;
            Ok(None)
        }
    }
}

/// Record that this instance has decided `post`, so catch-up starts after it.
async fn advance_cursor(ctx: &Engine, post: &Post) {
    let key = ctx.app.cursor_key(&post.channel_id);
    if let Err(e) = ctx
        .app
        .store
        .advance_cursor(&key, post.create_at, &post.id)
        .await
    {
        warn!(error = %e, "cannot record the channel cursor");
    }
}
