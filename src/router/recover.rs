//! After a fresh connection: serve the channels we answer in, finish
//! replies that were streaming, re-send prompts whose delivery was cut
//! short, post again the requests OpenCode still waits on, and run posts
//! that arrived while nobody listened.

use std::sync::Arc;

use tracing::{info, warn};

use super::Router;
use super::inbound::{self, InboundPost, sender_and_text};
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::sessions::threads::new_session;
use crate::sessions::turn::{resume_replies, start_turn};
use crate::sessions::{Engine, NewThread, Started};
use crate::store::ClaimState;

/// After a fresh connection: serve the channels we answer in, finish replies
/// that were streaming, re-send prompts whose delivery was cut short, and
/// run posts that arrived while nobody listened.
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
    resume_claims(ctx).await;
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
                    inbound::handle(
                        router,
                        InboundPost {
                            post,
                            channel_type: String::new(),
                            sender_name: String::new(),
                            mentions: Vec::new(),
                            caught_up: true,
                            received: std::time::Instant::now(),
                        },
                    )
                    .await;
                }
            }
            Err(e) => warn!(error = %e, channel, "catch-up failed"),
        }
    }
}

/// Claims whose prompt may not have reached OpenCode: send it (again, under
/// the same message id) unless OpenCode already has it.
pub(super) async fn resume_claims(ctx: &Arc<Engine>) {
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
            // Interrupted before a session was chosen: run the post afresh.
            if let Ok(post) = conn.rest.post(&claim.post_id).await {
                ctx.app
                    .set_claim_state(&claim.post_id, ClaimState::Failed)
                    .await;
                info!(post = %claim.post_id, "re-running a post interrupted before its session existed");
                retry_post(ctx, &conn, post).await;
            }
            continue;
        };
        let landed = ctx
            .app
            .opencode()
            .messages(session_id)
            .await
            .map(|m| m.iter().any(|m| &m.info.id == message_id))
            .unwrap_or(false);
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
async fn retry_post(ctx: &Arc<Engine>, conn: &Connection, post: Post) {
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
