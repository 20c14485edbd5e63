//! Ending a session's threads: when OpenCode deletes the session, or
//! someone types `!end` in its thread. Each thread is marked ended in the
//! store (later prompts there get [`text::session_ended`]), gets a notice,
//! and its card is edited to show it.

use std::collections::HashMap;

use tracing::{info, warn};

use super::text::{self, Ending};
use super::{Engine, say_in};
use crate::mattermost::budget::Priority;
use crate::mattermost::connection::Connection;
use crate::store::{ThreadBinding, ThreadStatus, now_millis};

/// End every live thread of `session_id` on this instance; how many
/// threads got the notice (a session's alias bindings share their home
/// thread's notice).
pub async fn end_session(ctx: &Engine, session_id: &str, why: &Ending) -> usize {
    let threads = match ctx.app.store.threads_of_session(session_id).await {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "cannot read the session's threads");
            return 0;
        }
    };
    let live: Vec<ThreadBinding> = threads
        .into_iter()
        .filter(|t| t.status == ThreadStatus::Active && t.instance_id == ctx.app.instance.id)
        .collect();
    if live.is_empty() {
        return 0;
    }
    for t in &live {
        if let Err(e) = ctx
            .app
            .store
            .set_thread_status(&t.root_post_id, ThreadStatus::Ended)
            .await
        {
            warn!(error = %e, root = %t.root_post_id, "cannot mark the thread ended");
        }
    }
    ctx.unbound(session_id);
    info!(session = %session_id, threads = live.len(), ?why, "session ended");
    let Some(conn) = ctx.app.connection().await else {
        return 0;
    };
    // The home thread of each channel: the first bound there (an alias is
    // bound just after it).
    let mut homes: HashMap<&str, &ThreadBinding> = HashMap::new();
    for t in &live {
        let home = homes.entry(t.channel_id.as_str()).or_insert(t);
        if t.created_at < home.created_at {
            *home = t;
        }
    }
    let prefix = &ctx.app.config.command_prefix;
    for home in homes.values() {
        say_in(
            &conn,
            &home.channel_id,
            &home.root_post_id,
            &text::ended_notice(why, prefix),
        )
        .await;
        mark_card(&conn, &home.root_post_id, why).await;
    }
    homes.len()
}

/// Edit the session card of thread `root` to show that it ended.
async fn mark_card(conn: &Connection, root: &str, why: &Ending) {
    let posts = match conn.rest.thread(root).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "cannot read the thread to mark its card");
            return;
        }
    };
    let Some(card) = posts
        .iter()
        .find(|p| p.user_id == conn.info.bot.id && text::is_card(&p.message))
    else {
        return;
    };
    if card.message.contains(text::CARD_ENDED) {
        return;
    }
    let at = chrono::DateTime::from_timestamp_millis(now_millis())
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let edited = text::card_ended(&card.message, &at, why);
    if let Err(e) = conn
        .rest
        .patch_post(&card.id, &edited, None, Priority::Urgent)
        .await
    {
        warn!(error = %e, "cannot mark the session card ended");
    }
}
