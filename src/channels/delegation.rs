//! Who starts a session in a channel thread that has none: the seed's
//! delegation table. Several people may run an instance on one shared bot,
//! so an @mention of the bot is for the instance of the person it names:
//!
//! | who | writes | this instance |
//! |---|---|---|
//! | teammate | `@bot @owner`, all three in the channel | delegated session for the owner |
//! | teammate | `@bot` alone | silent (their own instance may answer) |
//! | anyone else | `@bot @owner` | silent |
//! | owner | `@bot` | a normal session |
//! | owner | `@bot @someone_else` | silent (that person's instance answers) |
//! | anyone | `@bot @owner`, owner not in the channel | silent |
//!
//! The people addressed are the @mentions written right beside the bot's
//! (`@bot @owner fix it`); a name later in the sentence is just text.

use std::sync::Arc;

use tracing::{Instrument, info, warn};

use super::{Admit, Tier};
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::sessions::threads::new_session_for;
use crate::sessions::turn::start_turn;
use crate::sessions::{Engine, NewThread, Started, text};
use crate::store::{ClaimState, Grantee, ThreadGrant};

/// What the table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A session for the sender, as in a DM.
    Session,
    /// A session for the owner, started by a teammate (channel membership
    /// still to check).
    Delegate,
    /// Not for this instance.
    Silent,
}

/// The usernames (lower case, without `@`) written as a run of @mentions
/// directly before or after the bot's own, the bot left out. Text in code
/// is not read: only whitespace-separated words of the message are.
pub fn addressees(message: &str, bot: &str) -> Vec<String> {
    let words: Vec<Option<String>> = message.split_whitespace().map(mention_of).collect();
    let bot = bot.to_ascii_lowercase();
    let Some(at) = words
        .iter()
        .position(|w| w.as_deref() == Some(bot.as_str()))
    else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut push = |w: &Option<String>| match w {
        Some(name) if *name != bot => {
            if !names.contains(name) {
                names.push(name.clone());
            }
            true
        }
        Some(_) => true,
        None => false,
    };
    for w in words[..at].iter().rev() {
        if !push(w) {
            break;
        }
    }
    for w in &words[at + 1..] {
        if !push(w) {
            break;
        }
    }
    names
}

/// `@name` (with trailing punctuation allowed) → `name` in lower case.
fn mention_of(word: &str) -> Option<String> {
    let name = word
        .strip_prefix('@')?
        .trim_end_matches([',', ':', ';', '.', '!', '?']);
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    valid.then(|| name.to_ascii_lowercase())
}

/// The table, for a sender of `tier` addressing `addressed` (from
/// [`addressees`]); `owner` is the owner's username in lower case.
pub fn decide(tier: Tier, addressed: &[String], owner: Option<&str>) -> Decision {
    let names_owner = |name: &String| owner.is_some_and(|o| o == name);
    match tier {
        Tier::Owner | Tier::Allowed => {
            // The owner naming themself is still just the owner.
            if addressed
                .iter()
                .all(|n| tier == Tier::Owner && names_owner(n))
            {
                Decision::Session
            } else {
                Decision::Silent
            }
        }
        Tier::Teammate if addressed.len() == 1 && names_owner(&addressed[0]) => Decision::Delegate,
        Tier::Teammate | Tier::Guest => Decision::Silent,
    }
}

/// A channel post addressing the bot in a thread with no session.
pub(super) async fn new_thread(
    ctx: &Arc<Engine>,
    conn: &Arc<Connection>,
    post: &Post,
    sender: &str,
    tier: Tier,
) -> Admit {
    let app = &ctx.app;
    let addressed = addressees(&post.message, &conn.info.bot.username);
    if tier == Tier::Guest || (tier == Tier::Owner || tier == Tier::Allowed) && addressed.is_empty()
    {
        return match tier {
            Tier::Guest => {
                info!(user = %post.user_id, "a mention from someone not on the team starts nothing here");
                Admit::Handled
            }
            _ => Admit::Prompt,
        };
    }
    let owner_name = super::owner_name(app, conn).await;
    let owner_lower = owner_name.as_deref().map(str::to_ascii_lowercase);
    match decide(tier, &addressed, owner_lower.as_deref()) {
        Decision::Session => Admit::Prompt,
        Decision::Silent => {
            info!(
                ?tier,
                "the mention is for another instance or nobody here; silent"
            );
            Admit::Handled
        }
        Decision::Delegate => {
            let Some(owner_name) = owner_name else {
                return Admit::Handled;
            };
            if all_members(app, conn, post).await {
                delegate(ctx, conn, post, sender, &owner_name).await;
            } else {
                info!(
                    "delegation where the owner, teammate or bot is not a channel member; silent"
                );
            }
            Admit::Handled
        }
    }
}

/// Whether the owner, the teammate and the bot are all members of the
/// post's channel. Any failed lookup counts as "no".
async fn all_members(app: &crate::app::App, conn: &Connection, post: &Post) -> bool {
    let Some(owner) = app.access.owner() else {
        return false;
    };
    for user in [owner, post.user_id.as_str(), conn.info.bot.id.as_str()] {
        match conn.rest.is_channel_member(&post.channel_id, user).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                warn!(error = %e, "cannot check channel membership; not delegating");
                return false;
            }
        }
    }
    true
}

/// Start the owner's session on a teammate's behalf in the post's thread,
/// and approve the teammate for it.
async fn delegate(
    ctx: &Arc<Engine>,
    conn: &Arc<Connection>,
    post: &Post,
    sender: &str,
    owner_name: &str,
) {
    let sender = crate::sessions::threads::sender_name(conn, post, sender).await;
    let prompt = text::strip_mention(
        &text::strip_mention(&post.message, &conn.info.bot.username),
        owner_name,
    );
    let (ctx, conn, post, owner_name) = (
        ctx.clone(),
        conn.clone(),
        post.clone(),
        owner_name.to_owned(),
    );
    info!(teammate = %post.user_id, "delegated session");
    tokio::spawn(
        async move {
            let place = NewThread::PostThread;
            let created = new_session_for(
                &ctx,
                &conn,
                &post,
                &sender,
                Some(&owner_name),
                &prompt,
                place,
            )
            .await;
            let Some(binding) = created else {
                ctx.app.set_claim_state(&post.id, ClaimState::Failed).await;
                return;
            };
            let grant = ThreadGrant {
                root_post_id: binding.root_post_id.clone(),
                grantee: Grantee::User(post.user_id.clone()),
                granted_by: format!("delegation:{}", post.user_id),
                granted_at: ctx.app.clock.now().timestamp_millis(),
            };
            if let Err(e) = ctx.app.store.grant_thread(&grant).await {
                warn!(error = %e, "cannot approve the delegating teammate for the thread");
            }
            let started = Started::new_session(std::time::Instant::now());
            start_turn(&ctx, &binding, &post, &sender, &prompt, None, started).await;
        }
        .in_current_span(),
    );
}
