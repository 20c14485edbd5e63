//! `!merge <permalink>`: another thread's conversation, summarised, goes
//! into this thread's session as context (stored without starting a reply
//! turn), and the other thread is locked with a pointer here.
//!
//! Nothing of the source thread is read or told unless the requester is a
//! member of its channel: a private channel's text never reaches a session
//! (or a thread) of someone who could not read it, and the refusal is the
//! same whether the post exists or not.

use std::sync::Arc;

use tracing::{info, warn};

use super::Context;
use super::format;
use super::permalink;
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::opencode::{ModelRef, Prompt};
use crate::sessions::{Engine, say_in};
use crate::store::{MergeLock, ThreadBinding, ThreadStatus, now_millis};

/// The refusal for a post that does not exist, that the bot cannot read,
/// or whose channel the requester is not in: one answer for all three.
const UNREADABLE: &str = ":lock: Cannot merge: that post does not exist, or it is in a channel \
     you are not a member of (or I cannot read).";

/// What `!merge` acts on: the post that asked, its thread's binding and
/// who sent it.
pub struct MergeRequest<'a> {
    pub post: &'a Post,
    pub binding: Option<&'a ThreadBinding>,
    pub sender: &'a str,
    pub link: &'a str,
    /// What may go to OpenCode: not a guest's request nobody approved.
    pub admits: &'a dyn super::Admits,
}

/// Carry out `!merge`: the answer in the destination thread, or why not.
pub async fn merge(
    context: &Context,
    engine: &Arc<Engine>,
    conn: &Connection,
    req: &MergeRequest<'_>,
) -> Result<String, String> {
    let app = &engine.app;
    let prefix = &app.config.command_prefix;
    let requester = &req.post.user_id;
    if !app.access.may_merge(requester) {
        return Err(":lock: Only the owner and their teammates can merge threads.".into());
    }
    let dest = match req.binding {
        Some(b) if b.instance_id == app.instance.id && b.status == ThreadStatus::Active => b,
        _ => {
            return Err(format!(
                ":grey_question: Use `{prefix}merge <permalink>` in the thread of a running \
                 session: the other thread's conversation goes into that session."
            ));
        }
    };
    if let Ok(Some(_)) = app.store.thread_lock(&dest.root_post_id).await {
        return Err(":lock: This thread was itself merged into another and is locked.".into());
    }
    let Some(site) = app.config.site_url.as_ref() else {
        return Err(":x: No Mattermost server is configured.".into());
    };
    let post_id = permalink::parse(req.link, site)
        .map_err(|e| format!(":grey_question: Cannot merge: {e}."))?;
    let Ok(source) = conn.rest.post(&post_id).await else {
        return Err(UNREADABLE.into());
    };
    // Membership first: nothing else about the source is told before it.
    match conn
        .rest
        .channel_member(&source.channel_id, requester)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            info!(user = %requester, "merge refused: not a member of the source channel");
            return Err(UNREADABLE.into());
        }
        Err(e) => return Err(format!(":x: Cannot check who may read that thread: {e}")),
    }
    let source_root = source.thread_root().to_owned();
    let into_itself = source_root == dest.root_post_id
        || source_root == req.post.thread_root()
        || matches!(
            app.store.thread(&source_root).await,
            Ok(Some(b)) if b.session_id == dest.session_id
        );
    if into_itself {
        return Err(
            ":grey_question: Cannot merge a thread into itself (or into its own session).".into(),
        );
    }
    let dest_link = conn.permalink(&dest.root_post_id, None);
    match app.store.thread_lock(&source_root).await {
        Ok(Some(lock)) => {
            let there = conn.permalink(&lock.into_root_post_id, None);
            return Err(format!(
                ":lock: That thread was already merged into [another thread]({there})."
            ));
        }
        Ok(None) => {}
        Err(e) => return Err(format!(":x: Cannot read the merge record: {e}")),
    }
    let thread = conn
        .rest
        .thread(&source_root)
        .await
        .map_err(|e| format!(":x: Cannot read that thread: {e}"))?;
    let mut posts: Vec<&Post> = Vec::new();
    for p in thread
        .iter()
        .filter(|p| p.kind.is_empty() && p.delete_at == 0 && !p.message.trim().is_empty())
    {
        if req.admits.admits(p).await {
            posts.push(p);
        }
    }
    if posts.is_empty() {
        return Err(":grey_question: That thread has nothing to merge.".into());
    }
    let messages = super::messages_of(conn, &posts).await;
    let model = dest.model.as_deref().and_then(ModelRef::parse);
    let source_link = conn.permalink(&source_root, None);
    let (summary, block) =
        match super::summary::summarise(app, &context.ids, &messages, "merged thread", model).await
        {
            Ok(summary) => {
                let chars = format::listing(&messages).chars().count();
                let block = format::summarised(&summary, messages.len(), chars, None);
                (Some(summary), block)
            }
            Err(e) => {
                let limit = usize::try_from(app.config.context_max_chars).unwrap_or(usize::MAX);
                let why = format!("summarising failed: {e}");
                (None, format::fitted(&messages, limit, &why))
            }
        };
    let message_id = context.ids.next(now_millis().max(0) as u64);
    if let Some(hooks) = engine.hooks() {
        hooks.our_prompt(&dest.session_id, &message_id);
    }
    let prompt = Prompt {
        message_id,
        text: format!(
            "[Merged from another Mattermost thread ({source_link}) by @{}: the conversation \
             there, for the turns that follow. No reply is needed now.]\n{block}",
            req.sender
        ),
        no_reply: true,
        ..Prompt::default()
    };
    app.opencode()
        .prompt_async(&dest.session_id, &prompt)
        .await
        .map_err(|e| format!(":x: Could not hand the merged context to the session: {e}"))?;
    let at = chrono::DateTime::from_timestamp_millis(now_millis())
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let lock = MergeLock {
        root_post_id: source_root.clone(),
        channel_id: source.channel_id.clone(),
        into_root_post_id: dest.root_post_id.clone(),
        into_channel_id: dest.channel_id.clone(),
        merged_by: requester.clone(),
        merged_at: now_millis(),
    };
    match app.store.lock_thread(&lock).await {
        Ok(true) => {
            say_in(
                conn,
                &source.channel_id,
                &source_root,
                &format!(
                    ":lock: **Thread merged** into [another thread]({dest_link}) by @{} at \
                     {at}. This thread is locked: continue there.",
                    req.sender
                ),
            )
            .await;
        }
        Ok(false) => {}
        Err(e) => warn!(error = %e, "cannot record the merge lock"),
    }
    info!(source = %source_root, dest = %dest.root_post_id, "threads merged");
    // The summary is shown only where the source's text was already
    // readable: the same channel, or a public one.
    let public = source.channel_id == dest.channel_id
        || matches!(conn.rest.channel(&source.channel_id).await, Ok(c) if c.kind == "O");
    let mut answer = format!(
        ":twisted_rightwards_arrows: **Merged thread context** from [this thread]({source_link}): \
         {} messages, handed to this session as context.",
        messages.len()
    );
    match summary {
        Some(s) if public => {
            answer.push_str("\n---\n**Summary:**\n");
            // The model's words notify nobody and load no image.
            answer.push_str(&crate::render::quiet(&s, app.config.channel_images));
            answer.push_str("\n---");
        }
        Some(_) => answer.push_str(" (The summary is not shown here: that channel is private.)"),
        None => answer.push_str(" Summarising failed, so the newest messages that fit were sent."),
    }
    answer.push_str(&format!("\n_Merged by @{} at {at}_", req.sender));
    Ok(answer)
}

/// The answer to a prompt in a merged (locked) thread, if `post` is in one.
pub async fn lock_notice(engine: &Engine, conn: &Connection, post: &Post) -> Option<String> {
    if post.root_id.is_empty() {
        return None;
    }
    match engine.app.store.thread_lock(&post.root_id).await {
        Ok(Some(lock)) => {
            let there = conn.permalink(&lock.into_root_post_id, None);
            Some(format!(
                ":lock: This thread was merged into [another thread]({there}) and is locked. \
                 Continue there."
            ))
        }
        Ok(None) => None,
        Err(e) => {
            warn!(error = %e, "cannot read the merge record; treating the thread as unlocked");
            None
        }
    }
}
