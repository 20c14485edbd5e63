//! The thread-context feature: a prompt from a group message or channel
//! thread carries the messages before it, so the agent knows what the
//! people there were talking about; too long, and OpenCode summarises them
//! first. `!merge` (see [`merge`]) hands one thread's summary to another
//! thread's session and locks the first.
//!
//! - [`format`]: how context is written into a prompt, and cut to fit;
//! - [`summary`]: the short-lived summariser session;
//! - [`permalink`]: reading a post's permalink;
//! - [`merge`]: `!merge`, and the answer a merged thread gives.

pub mod format;
pub mod merge;
pub mod permalink;
pub mod summary;

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::{debug, warn};

use crate::app::App;
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::opencode::{MessageIds, ModelRef};
use crate::sessions::text;
use crate::store::ThreadBinding;
use format::Message;

/// Which messages may go to OpenCode as context. The router decides (the
/// channels feature knows tiers and guest approvals): an unapproved
/// guest's request to the bot never reaches OpenCode, as context either.
#[async_trait::async_trait]
pub trait Admits: Send + Sync {
    async fn admits(&self, post: &Post) -> bool;
}

/// The feature's state: channel types seen (a DM's prompts carry no
/// context, and the type never changes) and the ids of summary prompts.
#[derive(Debug, Default)]
pub struct Context {
    kinds: Mutex<HashMap<String, String>>,
    pub(crate) ids: MessageIds,
}

impl Context {
    /// The context block for a prompt `post` in a group or channel thread,
    /// or `None` (a DM, a top-level post, nothing before it, context off).
    /// `new_session`: the post starts its session, so every earlier message
    /// counts; a follow-up carries only what was said since the previous
    /// prompt (a permitted person's mention of the bot), which already
    /// carried what came before. Takes at most the summary timeout.
    pub async fn for_prompt(
        &self,
        app: &App,
        binding: &ThreadBinding,
        post: &Post,
        new_session: bool,
        admits: &dyn Admits,
    ) -> Option<String> {
        let wanted = usize::try_from(app.config.context_messages).unwrap_or(usize::MAX);
        if wanted == 0 || post.root_id.is_empty() {
            return None;
        }
        let conn = app.connection().await?;
        if self.kind(&conn, &post.channel_id).await? == "D" {
            return None;
        }
        let thread = match conn.rest.thread(&post.root_id).await {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "cannot read the thread for its context");
                return None;
            }
        };
        let bot = &conn.info.bot;
        let mut earlier: Vec<&Post> = thread
            .iter()
            .filter(|p| p.id != post.id && p.create_at <= post.create_at)
            .filter(|p| p.user_id != bot.id && p.kind.is_empty() && p.delete_at == 0)
            .filter(|p| !p.message.trim().is_empty())
            .collect();
        // A follow-up: the previous prompt already carried what came
        // before it, so only what was said since goes along.
        if !new_session {
            let previous = earlier.iter().rposition(|p| {
                text::mentions(&p.message, &bot.username)
                    && app.access.may_prompt(&p.user_id) == crate::access::Verdict::Allowed
            });
            if let Some(at) = previous {
                earlier.drain(..=at);
            }
        }
        // The newest `wanted` messages of people who may prompt here.
        let mut kept: Vec<&Post> = Vec::new();
        for p in earlier.iter().rev() {
            if kept.len() == wanted {
                break;
            }
            if admits.admits(p).await {
                kept.push(p);
            }
        }
        kept.reverse();
        if kept.is_empty() {
            return None;
        }
        let messages = messages_of(&conn, &kept).await;
        let model = binding.model.as_deref().and_then(ModelRef::parse);
        Some(self.block(app, &messages, "thread context", model).await)
    }

    /// `messages` as a context block: in full when within the limit, else
    /// summarised, else the newest that fit.
    pub async fn block(
        &self,
        app: &App,
        messages: &[Message],
        purpose: &str,
        model: Option<ModelRef>,
    ) -> String {
        let limit = usize::try_from(app.config.context_max_chars).unwrap_or(usize::MAX);
        let full = format::full(messages);
        let chars = format::listing(messages).chars().count();
        if chars <= limit {
            return full;
        }
        match summary::summarise(app, &self.ids, messages, purpose, model).await {
            Ok(summary) => format::summarised(&summary, messages.len(), chars, Some(limit)),
            Err(e) => format::fitted(
                messages,
                limit,
                &format!("over the {limit}-character limit, and summarising failed: {e}"),
            ),
        }
    }

    /// A channel's type, asked once.
    async fn kind(&self, conn: &Connection, channel_id: &str) -> Option<String> {
        let known = self
            .kinds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(channel_id)
            .cloned();
        if known.is_some() {
            return known;
        }
        match conn.rest.channel(channel_id).await {
            Ok(ch) => {
                self.kinds
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(channel_id.to_owned(), ch.kind.clone());
                Some(ch.kind)
            }
            Err(e) => {
                debug!(error = %e, "cannot tell the channel's type; no context");
                None
            }
        }
    }
}

/// Posts as context messages, authors by username (their id when unknown).
pub(crate) async fn messages_of(conn: &Connection, posts: &[&Post]) -> Vec<Message> {
    let mut ids: Vec<String> = posts.iter().map(|p| p.user_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let names: HashMap<String, String> = match conn.rest.users_by_ids(&ids).await {
        Ok(users) => users.into_iter().map(|u| (u.id, u.username)).collect(),
        Err(e) => {
            debug!(error = %e, "cannot look up the authors; their ids stand in");
            HashMap::new()
        }
    };
    posts
        .iter()
        .map(|p| Message {
            author: names
                .get(&p.user_id)
                .cloned()
                .unwrap_or_else(|| p.user_id.clone()),
            at_ms: p.create_at,
            text: p.message.clone(),
        })
        .collect()
}
