//! Reactions: ✅/❌ answer a permission request (the asks feature); ▶️ runs
//! a post that was offered as missed; on the bot's posts in a session
//! thread, 🛑 stops the running turn, 🔁 sends the thread's last prompt
//! again, 🗑️ deletes the session's temporary files.
//! Only permitted users' reactions count, and only the instance that owns
//! the thread acts, so two agents sharing a bot never both do.

use std::sync::Arc;

use tracing::{info, warn};

use super::Router;
use crate::asks::Reaction;
use crate::mattermost::connection::Connection;
use crate::sessions::turn::{start_turn, stop_session};
use crate::sessions::{Engine, LastPrompt, Started, say};
use crate::store::ThreadStatus;

/// A reaction added to a post (live, or read back after an outage).
pub(super) async fn reacted(router: &Arc<Router>, reaction: crate::mattermost::types::Reaction) {
    let app = &router.engine.app;
    let Some(conn) = app.connection().await else {
        return;
    };
    if reaction.user_id == conn.info.bot.id {
        return;
    }
    let Some(wanted) = crate::asks::reaction(&reaction.emoji_name) else {
        return;
    };
    if app.access.may_prompt(&reaction.user_id) != crate::access::Verdict::Allowed {
        info!(user = %reaction.user_id, emoji = %reaction.emoji_name, "reaction from a user who may not answer; ignored");
        return;
    }
    let by = conn
        .rest
        .user(&reaction.user_id)
        .await
        .map(|u| u.username)
        .unwrap_or_else(|_| reaction.user_id.clone());
    match wanted {
        Reaction::Allow | Reaction::Deny => {
            let allow = wanted == Reaction::Allow;
            crate::asks::chat::answer_reaction(&router.asks, &conn, &reaction.post_id, allow, &by)
                .await;
        }
        Reaction::Run => super::missed::run(router, &conn, &reaction, &by).await,
        action => on_bot_post(router, &conn, &reaction.post_id, action, &by).await,
    }
}

async fn on_bot_post(
    router: &Arc<Router>,
    conn: &Connection,
    post_id: &str,
    action: Reaction,
    by: &str,
) {
    let ctx = &router.engine;
    let post = match conn.rest.post(post_id).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "cannot read the post a reaction is on");
            return;
        }
    };
    if post.user_id != conn.info.bot.id {
        return;
    }
    let binding = match ctx.app.store.thread(post.thread_root()).await {
        Ok(Some(b)) if b.instance_id == ctx.app.instance.id && b.status == ThreadStatus::Active => {
            b
        }
        Ok(_) => return,
        Err(e) => {
            warn!(error = %e, "cannot read the thread binding");
            return;
        }
    };
    info!(?action, by, session = %binding.session_id, "reaction on a bot post");
    let answer = match action {
        Reaction::Stop => stop_session(ctx, &binding.session_id)
            .await
            .unwrap_or_else(|e| e),
        Reaction::Retry => match last_prompt(ctx, conn, &binding.root_post_id).await {
            Some(last) => {
                let started = Started::follow_up(std::time::Instant::now());
                start_turn(
                    ctx,
                    &binding,
                    &last.post,
                    &last.sender,
                    &last.text,
                    None,
                    started,
                )
                .await;
                String::new()
            }
            None => ":grey_question: There is no earlier prompt in this thread to send again."
                .to_owned(),
        },
        Reaction::Clear => crate::files::clear_session(&ctx.app.config, &binding.session_id).await,
        Reaction::Allow | Reaction::Deny | Reaction::Run => String::new(),
    };
    if !answer.is_empty() {
        say(conn, &post, &answer).await;
    }
}

/// The thread's last prompt: remembered since this agent started, or else
/// the newest post in the thread by a permitted user that is not a command
/// or an answer and, outside a DM, names the bot (as a prompt there must).
async fn last_prompt(ctx: &Engine, conn: &Connection, root: &str) -> Option<LastPrompt> {
    let remembered = ctx.last_prompt(root);
    if remembered.is_some() {
        return remembered;
    }
    let posts = conn.rest.thread(root).await.ok()?;
    let channel = &posts.first()?.channel_id;
    let is_dm = conn.rest.channel(channel).await.ok()?.kind == "D";
    let prefix = &ctx.app.config.command_prefix;
    let bot_name = &conn.info.bot.username;
    let post = posts.into_iter().rev().find(|p| {
        let text = crate::sessions::text::strip_mention(&p.message, bot_name);
        p.user_id != conn.info.bot.id
            && (is_dm || crate::sessions::text::mentions(&p.message, bot_name))
            && p.kind.is_empty()
            && !p.is_integration()
            && ctx.app.access.may_prompt(&p.user_id) == crate::access::Verdict::Allowed
            && !text.trim().is_empty()
            && !text.trim_start().starts_with(prefix.as_str())
            && crate::asks::parse_permission(&text).is_none()
            && !text
                .trim()
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
    })?;
    let sender = conn
        .rest
        .user(&post.user_id)
        .await
        .map(|u| u.username)
        .unwrap_or_default();
    let text = crate::sessions::text::strip_mention(&post.message, &conn.info.bot.username);
    Some(LastPrompt { post, sender, text })
}
