//! Posts found at catch-up after the agent was away for longer than
//! `OPENCODE_MM_CATCH_UP_MAX_AGE`. A prompt from hours ago may no longer be
//! wanted, so it is claimed (no other agent runs it) but not run: a notice
//! in its thread offers to run it with ▶️. The offer is a
//! [`ClaimState::Missed`] claim that keeps the notice's id, so it outlives
//! a restart, and taking it is exactly-once in the store.
//!
//! Reactions given while events were lost (on such notices, and ✅/❌ on
//! open permission requests) are read back over REST afterwards and go
//! through the same path as live ones.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use super::Router;
use super::inbound::{self, InboundPost};
use crate::app::App;
use crate::asks::Reaction;
use crate::mattermost::budget::Priority;
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::sessions::{Engine, reply_in};
use crate::store::{Claim, ClaimState};

/// ▶️ as Mattermost names it; the bot adds it to its notice as a button.
const RUN_EMOJI: &str = "arrow_forward";

/// Whether a post found at catch-up is past the age limit, by the app's clock.
pub(super) fn too_old(app: &App, post: &Post) -> bool {
    let Some(limit) = app.config.catch_up_max_age else {
        return false;
    };
    let age = app
        .clock
        .now()
        .timestamp_millis()
        .saturating_sub(post.create_at);
    age > i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)
}

/// Tell the sender the post was not run and record the offer. When the
/// notice cannot be posted, the claim stays plain, so the next restart
/// judges the post again rather than losing it silently.
pub(super) async fn offer(ctx: &Engine, conn: &Connection, post: &Post) {
    let text = notice(post.create_at, ctx.app.clock.now());
    let notice = match reply_in(
        conn,
        &post.channel_id,
        post.thread_root(),
        text,
        Priority::Urgent,
    )
    .await
    {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot post the notice of a post too old to run");
            return;
        }
    };
    let recorded = match ctx.app.store.claim(&post.id).await {
        Ok(Some(claim)) => {
            let offered = Claim {
                state: ClaimState::Missed,
                message_id: Some(notice.id.clone()),
                channel_id: Some(post.channel_id.clone()),
                ..claim
            };
            ctx.app.store.update_claim(&offered).await
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        warn!(error = %e, "cannot record the offer of a missed post");
    }
    info!(notice = %notice.id, "too old to run after catch-up; offered instead");
    if let Err(e) = conn
        .rest
        .add_reaction(&conn.info.bot.id, &notice.id, RUN_EMOJI)
        .await
    {
        debug!(error = %e, "cannot add the run reaction");
    }
}

/// ▶️ on a notice by a permitted user: the offered post runs as if it had
/// just arrived, when that user sent it or owns the agent. Only the
/// instance holding the offer acts, and the store hands it out once.
pub(super) async fn run(
    router: &Arc<Router>,
    conn: &Connection,
    reaction: &crate::mattermost::types::Reaction,
    by: &str,
) {
    let app = &router.engine.app;
    let Some(offer) = offer_on(app, &reaction.post_id).await else {
        return;
    };
    let post = match conn.rest.post(&offer.post_id).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, post = %offer.post_id, "cannot read a missed post to run it");
            return;
        }
    };
    let owner = app.config.owner_user_id.as_deref() == Some(reaction.user_id.as_str());
    if post.user_id != reaction.user_id && !owner {
        info!(user = %reaction.user_id, "run asked by neither the sender nor the owner; ignored");
        return;
    }
    match app.store.take_missed(&post.id, &app.instance.id).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            warn!(error = %e, "cannot take the offer of a missed post");
            return;
        }
    }
    info!(post = %post.id, by, "running a missed post on request");
    let ran = format!(
        ":arrow_forward: Running it now, as @{by} asked. (I was offline when it was \
         sent, {}.)",
        when(post.create_at, app.clock.now())
    );
    if let Err(e) = conn
        .rest
        .patch_post(&reaction.post_id, &ran, None, Priority::Normal)
        .await
    {
        debug!(error = %e, "cannot update the notice of a missed post");
    }
    inbound::handle(router, InboundPost::asked_for(post)).await;
}

/// This instance's open offer whose notice is `notice_id`.
async fn offer_on(app: &App, notice_id: &str) -> Option<Claim> {
    match app.store.unfinished_claims(&app.instance.id).await {
        Ok(claims) => claims
            .into_iter()
            .find(|c| c.state == ClaimState::Missed && c.message_id.as_deref() == Some(notice_id)),
        Err(e) => {
            warn!(error = %e, "cannot read the offers of missed posts");
            None
        }
    }
}

/// After events may have been lost: the reactions that settle a post still
/// waiting for one (✅/❌ on an open permission request, ▶️ on an open
/// offer) are read over REST and handled like live ones. A settled post no
/// longer waits, so no reaction acts twice; others (🔁, 🛑) are left alone
/// because nothing tells whether they were already acted on.
pub(super) async fn catch_up_reactions(router: &Arc<Router>) {
    let app = &router.engine.app;
    let Some(conn) = app.connection().await else {
        return;
    };
    const ANSWERS: &[Reaction] = &[Reaction::Allow, Reaction::Deny];
    let mut waiting: Vec<(String, &[Reaction])> = crate::asks::chat::permission_posts(&router.asks)
        .into_iter()
        .map(|id| (id, ANSWERS))
        .collect();
    match app.store.unfinished_claims(&app.instance.id).await {
        Ok(claims) => waiting.extend(
            claims
                .into_iter()
                .filter(|c| c.state == ClaimState::Missed)
                .filter_map(|c| c.message_id)
                .map(|id| (id, &[Reaction::Run][..])),
        ),
        Err(e) => warn!(error = %e, "cannot read the offers of missed posts"),
    }
    for (post_id, settle) in waiting {
        let mut reactions = match conn.rest.reactions(&post_id).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, post = %post_id, "cannot read the reactions of a waiting post");
                continue;
            }
        };
        reactions.retain(|r| {
            r.user_id != conn.info.bot.id
                && crate::asks::reaction(&r.emoji_name).is_some_and(|w| settle.contains(&w))
        });
        reactions.sort_by_key(|r| r.create_at);
        for reaction in reactions {
            debug!(post = %post_id, emoji = %reaction.emoji_name, "a reaction made while events were lost");
            super::reactions::reacted(router, reaction).await;
        }
    }
}

/// The notice on a post too old to run.
fn notice(sent_at: i64, now: DateTime<Utc>) -> String {
    format!(
        ":zzz: I was offline when you sent this ({}), so I did not run it. React with \
         :arrow_forward: to run it now.",
        when(sent_at, now)
    )
}

/// When a post was sent, for people: `at 14:05 UTC, 75 min ago`.
fn when(sent_at: i64, now: DateTime<Utc>) -> String {
    let Some(sent) = DateTime::from_timestamp_millis(sent_at) else {
        return "a while ago".to_owned();
    };
    let minutes = (now - sent).num_minutes().max(0);
    let ago = match minutes {
        0..120 => format!("{minutes} min ago"),
        120..2880 => format!("{} h ago", minutes / 60),
        _ => format!("{} days ago", minutes / 1440),
    };
    let at = if sent.date_naive() == now.date_naive() {
        sent.format("%H:%M UTC")
    } else {
        sent.format("%Y-%m-%d %H:%M UTC")
    };
    format!("at {at}, {ago}")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_notice_says_when_the_post_was_sent() {
        let now = Utc.with_ymd_and_hms(2026, 3, 6, 15, 20, 0).unwrap();
        let at = |h, m| {
            Utc.with_ymd_and_hms(2026, 3, 6, h, m, 0)
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(
            notice(at(14, 5), now),
            ":zzz: I was offline when you sent this (at 14:05 UTC, 75 min ago), so I did \
             not run it. React with :arrow_forward: to run it now."
        );
        assert_eq!(when(at(9, 0), now), "at 09:00 UTC, 6 h ago");
        let days = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
        assert_eq!(
            when(days.timestamp_millis(), now),
            "at 2026-03-01 08:00 UTC, 5 days ago"
        );
        assert_eq!(when(i64::MAX, now), "a while ago");
    }
}
