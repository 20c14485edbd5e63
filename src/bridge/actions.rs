//! Reactions on the bot's posts that act on the post's session: 🛑 stops
//! the running turn, 🔁 sends the thread's last prompt again, 🗑️ deletes
//! the session's temporary files. Only the instance that owns the thread
//! acts, so two agents sharing a bot never both do.

use std::sync::Arc;

use tracing::{info, warn};

use super::Ctx;
use super::inbound::{Started, start_turn};
use crate::asks::Reaction;
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::store::ThreadStatus;

/// The prompt a thread last ran, for 🔁.
#[derive(Debug, Clone)]
pub(crate) struct LastPrompt {
    pub post: Post,
    pub sender: String,
    pub text: String,
}

/// Remember the prompt a thread just ran.
pub(super) fn remember(ctx: &Ctx, root_post_id: &str, last: LastPrompt) {
    ctx.last_prompts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(root_post_id.to_owned(), last);
}

pub(super) async fn on_bot_post(
    ctx: &Arc<Ctx>,
    conn: &Connection,
    post_id: &str,
    action: Reaction,
    by: &str,
) {
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
    let binding = match ctx.store.thread(post.thread_root()).await {
        Ok(Some(b)) if b.instance_id == ctx.instance.id && b.status == ThreadStatus::Active => b,
        Ok(_) => return,
        Err(e) => {
            warn!(error = %e, "cannot read the thread binding");
            return;
        }
    };
    info!(?action, by, session = %binding.session_id, "reaction on a bot post");
    let answer = match action {
        Reaction::Stop => crate::commands::exec::stop_session(ctx, &binding.session_id)
            .await
            .unwrap_or_else(|e| e),
        Reaction::Retry => match last_prompt(ctx, conn, &binding.root_post_id).await {
            Some(last) => {
                start_turn(
                    ctx,
                    &binding,
                    &last.post,
                    &last.sender,
                    &last.text,
                    None,
                    Started::follow_up(std::time::Instant::now()),
                )
                .await;
                String::new()
            }
            None => ":grey_question: There is no earlier prompt in this thread to send again."
                .to_owned(),
        },
        Reaction::Clear => clear_files(ctx, &binding.session_id).await,
        Reaction::Allow | Reaction::Deny => String::new(),
    };
    if !answer.is_empty() {
        super::say(conn, &post, &answer).await;
    }
}

/// The thread's last prompt: remembered since this agent started, or else
/// the newest post in the thread by a permitted user that is not a command
/// or an answer.
async fn last_prompt(ctx: &Ctx, conn: &Connection, root: &str) -> Option<LastPrompt> {
    let remembered = ctx
        .last_prompts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(root)
        .cloned();
    if remembered.is_some() {
        return remembered;
    }
    let posts = conn.rest.thread(root).await.ok()?;
    let prefix = &ctx.agent.config.command_prefix;
    let post = posts.into_iter().rev().find(|p| {
        let text = super::text::strip_mention(&p.message, &conn.info.bot.username);
        p.user_id != conn.info.bot.id
            && p.kind.is_empty()
            && ctx.access.may_prompt(&p.user_id) == crate::access::Verdict::Allowed
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
    let text = super::text::strip_mention(&post.message, &conn.info.bot.username);
    Some(LastPrompt { post, sender, text })
}

/// Delete the session's temporary folder (files received from chat).
async fn clear_files(ctx: &Ctx, session_id: &str) -> String {
    let dir = crate::files::session_dir(&crate::files::temp_root(&ctx.agent.config), session_id);
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
        if !dir.exists() {
            return Ok(0);
        }
        let count = walk_count(&dir);
        std::fs::remove_dir_all(&dir)?;
        Ok(count)
    })
    .await;
    match result {
        Ok(Ok(0)) => ":wastebasket: This session has no temporary files.".to_owned(),
        Ok(Ok(n)) => format!(
            ":wastebasket: Deleted {n} temporary file{} of this session.",
            if n == 1 { "" } else { "s" }
        ),
        Ok(Err(e)) => format!(":x: Could not delete the session's temporary files: {e}"),
        Err(e) => format!(":x: Could not delete the session's temporary files: {e}"),
    }
}

/// Regular files under a folder (symlinks are not followed).
fn walk_count(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_count(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}
