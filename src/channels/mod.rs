//! Working together in channels: who may prompt this instance outside its
//! owner's DM, and how others are let in.
//!
//! - access tiers: the owner (`MATTERMOST_OWNER_USER_ID`, and the users of
//!   `OPENCODE_MM_ALLOWED_USERS`, who keep the prompting rights they have
//!   everywhere), the owner's teammates (kept in the store, managed with
//!   `!team` in [`team`]), and everyone else;
//! - the owner's replies in a bound channel thread are prompts without an
//!   @mention ([`follows_up`]);
//! - everyone else's @mention in a bound thread is held for the owner's or a
//!   teammate's approval ([`guests`]);
//! - in a thread with no session, the seed's delegation table decides
//!   whether this instance starts one ([`delegation`]).
//!
//! [`admit`] is the one call the router makes for a channel post; nothing a
//! guest sends reaches OpenCode unless it returns [`Admit::Prompt`].

pub mod delegation;
pub mod guests;
pub mod team;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tracing::{debug, info, warn};

use crate::app::App;
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::sessions::{Engine, text};
use crate::store::{Grantee, StoreError, ThreadBinding, ThreadStatus};

/// Where someone stands with this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// `MATTERMOST_OWNER_USER_ID`.
    Owner,
    /// Listed in `OPENCODE_MM_ALLOWED_USERS`: prompts like the owner, but
    /// neither manages the team nor follows up without a mention.
    Allowed,
    /// On the owner's team.
    Teammate,
    Guest,
}

impl Tier {
    /// Owner and teammates answer guest requests.
    pub fn may_approve(self) -> bool {
        matches!(self, Tier::Owner | Tier::Teammate)
    }
}

/// The tier of `user_id`. A store failure is an error, never a guess.
pub async fn tier_of(app: &App, user_id: &str) -> Result<Tier, StoreError> {
    if user_id.is_empty() {
        return Ok(Tier::Guest);
    }
    if app.access.owner() == Some(user_id) {
        return Ok(Tier::Owner);
    }
    if app.access.permitted_users().iter().any(|u| u == user_id) {
        return Ok(Tier::Allowed);
    }
    let Some(owner) = app.access.owner() else {
        return Ok(Tier::Guest);
    };
    let team = app.store.teammates(owner).await?;
    Ok(if team.iter().any(|t| t.user_id == user_id) {
        Tier::Teammate
    } else {
        Tier::Guest
    })
}

/// Whether a channel post without an @mention of the bot is still for it:
/// the owner's reply in a thread bound to one of this instance's sessions,
/// or an owner's or teammate's reply in a thread where a guest request
/// waits (so `1`, `2`, `3` or `deny` need no mention).
pub async fn follows_up(app: &App, post: &Post) -> bool {
    if post.root_id.is_empty() {
        return false;
    }
    let bound = match app.store.thread(&post.root_id).await {
        Ok(Some(b)) => b.instance_id == app.instance.id && b.status == ThreadStatus::Active,
        Ok(None) => false,
        Err(e) => {
            warn!(error = %e, "cannot read the thread binding; a reply without a mention is ignored");
            return false;
        }
    };
    if !bound {
        return false;
    }
    if app.access.owner() == Some(post.user_id.as_str()) {
        return true;
    }
    match tier_of(app, &post.user_id).await {
        Ok(Tier::Teammate) => guests::waiting_in(app, &post.root_id).await,
        _ => false,
    }
}

/// What becomes of a channel post (not a DM) after [`admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Handle it as today: a command, an answer, or a prompt.
    Prompt,
    /// Done here (held, answered, delegated, or ignored).
    Handled,
}

/// Judge a channel post that addresses this instance (claimed already).
/// `binding` is the thread's session, if any; `numbers_taken` when its
/// author owes the thread another numbered answer (see [`guests::Answer`]).
pub async fn admit(
    ctx: &Arc<Engine>,
    conn: &Arc<Connection>,
    post: &Post,
    sender_name: &str,
    binding: Option<&ThreadBinding>,
    numbers_taken: bool,
) -> Admit {
    let app = &ctx.app;
    let tier = match tier_of(app, &post.user_id).await {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "cannot read the team; the post is not run");
            return Admit::Handled;
        }
    };
    let text = text::strip_mention(&post.message, &conn.info.bot.username);
    let Some(binding) = binding else {
        return delegation::new_thread(ctx, conn, post, sender_name, tier).await;
    };
    // Another instance's thread, or an ended one: the router says so to
    // those who may prompt; a guest gets nothing.
    if binding.instance_id != app.instance.id || binding.status != ThreadStatus::Active {
        return if tier == Tier::Guest {
            Admit::Handled
        } else {
            Admit::Prompt
        };
    }
    // An answer to a waiting guest request comes first.
    if let Some(answer) = guests::Answer::parse(&text, !numbers_taken)
        && guests::waiting_in(app, &binding.root_post_id).await
    {
        if tier.may_approve() {
            guests::answer(ctx, conn, post, binding, answer).await;
        } else {
            info!(user = %post.user_id, "an answer to a guest request from someone who may not answer; ignored");
        }
        return Admit::Handled;
    }
    match tier {
        Tier::Owner | Tier::Allowed | Tier::Teammate => Admit::Prompt,
        Tier::Guest => {
            if is_command(&text, &app.config.command_prefix) {
                info!(user = %post.user_id, "a command from a guest; ignored");
                return Admit::Handled;
            }
            match approved(app, &binding.root_post_id, &post.user_id).await {
                Ok(true) => {
                    debug!(user = %post.user_id, "guest approved for this thread");
                    Admit::Prompt
                }
                Ok(false) => {
                    guests::hold(ctx, conn, post, sender_name, binding).await;
                    Admit::Handled
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the thread's approvals; the post is not run");
                    Admit::Handled
                }
            }
        }
    }
}

/// Whether `post` may go to OpenCode as thread context. The thread's talk
/// does, whoever wrote it; a request to the bot from someone who may not
/// prompt there does not: a guest's post held, denied or expired, or an
/// @mention of the bot by a guest not approved in the thread. Unsure is no.
pub async fn may_be_context(app: &App, post: &Post) -> bool {
    use crate::store::GuestState;
    match app.store.guest_request(&post.id).await {
        Ok(Some(r)) => {
            return matches!(
                r.state,
                GuestState::Once | GuestState::User | GuestState::Everyone
            );
        }
        Ok(None) => {}
        Err(_) => return false,
    }
    let Some(conn) = app.connection().await else {
        return false;
    };
    // The bot's own request post quotes the held message.
    if post.user_id == conn.info.bot.id {
        return !guests::is_pending_request(&post.message);
    }
    if !text::mentions(&post.message, &conn.info.bot.username) {
        return true;
    }
    let root = if post.root_id.is_empty() {
        &post.id
    } else {
        &post.root_id
    };
    match tier_of(app, &post.user_id).await {
        Ok(Tier::Guest) => approved(app, root, &post.user_id).await.unwrap_or(false),
        Ok(_) => true,
        Err(_) => false,
    }
}

/// Whether the thread's approvals let `user_id` prompt.
pub async fn approved(app: &App, root: &str, user_id: &str) -> Result<bool, StoreError> {
    Ok(app
        .store
        .thread_grants(root)
        .await?
        .iter()
        .any(|g| match &g.grantee {
            Grantee::Everyone => true,
            Grantee::User(id) => id == user_id,
        }))
}

/// Whether `text` reads as a `!command` (the router's parser decides which):
/// the prefix directly followed by a letter.
fn is_command(text: &str, prefix: &str) -> bool {
    !prefix.is_empty()
        && text
            .trim_start()
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// The username of the instance owner, looked up (for mentions and cards).
async fn owner_name(app: &App, conn: &Connection) -> Option<String> {
    let owner = app.access.owner()?;
    match conn.rest.user(owner).await {
        Ok(u) => Some(u.username),
        Err(e) => {
            warn!(error = %e, "cannot look up the owner's username");
            None
        }
    }
}
