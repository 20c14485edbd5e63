//! After a fresh connection: serve the channels we answer in, finish
//! replies that were streaming, re-send prompts whose delivery was cut
//! short, post again the requests OpenCode still waits on, run (or, past the
//! age limit, offer) posts that arrived while nobody listened, and act on
//! reactions given meanwhile.

use std::sync::Arc;

use tracing::{info, warn};

use super::Router;
use super::inbound::{self, InboundPost, sender_and_text};
use crate::sessions::Started;
use crate::sessions::turn::{resume_replies, start_turn};
use crate::store::ClaimState;

/// After a fresh connection: serve the channels we answer in, finish replies
/// that were streaming, re-send prompts whose delivery was cut short, run
/// posts that arrived while nobody listened, and read back the reactions
/// given to posts still waiting for one.
pub(super) async fn recover(router: &Arc<Router>) {
    let ctx = &router.engine;
    let Some(conn) = ctx.app.connection().await else {
        return;
    };
    let mut channels: Vec<String> = Vec::new();
    for user in ctx.app.access.permitted_users() {
        match conn.rest.direct_channel(&conn.info.bot.id, &user).await {
            Ok(ch) => channels.push(ch.id),
            Err(e) => warn!(error = %e, user, "cannot open the DM with a permitted user"),
        }
    }
    let prefix = format!("{}|", ctx.app.instance.id);
    let cursors: Vec<(String, i64)> = match ctx.app.store.cursors().await {
        Ok(list) => list
            .into_iter()
            .filter_map(|(key, at)| key.strip_prefix(&prefix).map(|ch| (ch.to_owned(), at)))
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot read cursors");
            Vec::new()
        }
    };
    for (ch, _) in &cursors {
        if !channels.contains(ch) {
            channels.push(ch.clone());
        }
    }
    for ch in &channels {
        conn.link.serve_channel(ch);
    }
    resume_replies(ctx).await;
    resume_claims(router).await;
    crate::asks::chat::resync(&router.asks).await;
    for (channel, at) in cursors {
        match conn.rest.posts_since(&channel, at).await {
            Ok(posts) => {
                let fresh: Vec<_> = posts
                    .into_iter()
                    // Edits of older posts come back too; only new posts are
                    // prompts. The post at the cursor itself is already
                    // claimed, so it drops out there.
                    .filter(|p| p.create_at >= at && p.delete_at == 0)
                    .collect();
                if !fresh.is_empty() {
                    info!(
                        channel,
                        count = fresh.len(),
                        "catching up on posts made while away"
                    );
                }
                for post in fresh {
                    inbound::handle(router, InboundPost::caught_up(post)).await;
                }
            }
            Err(e) => warn!(error = %e, channel, "catch-up failed"),
        }
    }
    super::missed::catch_up_reactions(router).await;
}

/// Claims whose prompt may not have reached OpenCode: send it (again, under
/// the same message id) unless OpenCode already has it.
pub(super) async fn resume_claims(router: &Arc<Router>) {
    let ctx = &router.engine;
    let Some(conn) = ctx.app.connection().await else {
        return;
    };
    let claims = match ctx.app.store.unfinished_claims(&ctx.app.instance.id).await {
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
            // Interrupted before a session was chosen: judge the post again
            // from the start (who, where, mention, command or answer), as
            // if it had just arrived; the claim is already ours.
            if let Ok(post) = conn.rest.post(&claim.post_id).await {
                info!(post = %claim.post_id, "judging again a post interrupted before its session existed");
                let again = InboundPost::recovered(post);
                inbound::handle(router, again).await;
            }
            continue;
        };
        // Unknown is not "no": a slow or failing OpenCode must not make a
        // prompt run twice. The claim stays for the next recovery.
        let landed = match ctx.app.opencode().messages(session_id).await {
            Ok(messages) => messages.iter().any(|m| &m.info.id == message_id),
            Err(e) => {
                warn!(error = %e, post = %claim.post_id, "cannot tell whether an interrupted prompt landed; left for the next recovery");
                continue;
            }
        };
        if landed {
            ctx.app
                .set_claim_state(&claim.post_id, ClaimState::Prompted)
                .await;
            continue;
        }
        let Ok(Some(binding)) = ctx.app.store.thread(root).await else {
            continue;
        };
        let Ok(post) = conn.rest.post(&claim.post_id).await else {
            continue;
        };
        // Judged a prompt before the restart; who may prompt can have changed.
        if ctx.app.access.may_prompt(&post.user_id) != crate::access::Verdict::Allowed {
            ctx.app
                .set_claim_state(&claim.post_id, ClaimState::Done)
                .await;
            continue;
        }
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
