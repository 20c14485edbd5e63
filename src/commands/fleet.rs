//! Sessions on the other instances sharing the store (other projects or
//! hosts behind the same bot). This instance cannot ask their OpenCode, so
//! what it knows of them is their thread bindings: the sessions people
//! started or attached from chat.

use std::sync::Arc;

use super::ops::Here;
use crate::mattermost::connection::Connection;
use crate::sessions::Engine;
use crate::store::{Instance, ThreadBinding, ThreadStatus, now_millis};

/// Most sessions listed per other instance.
const PER_INSTANCE: usize = 10;

/// The live threads of each other live instance that `user_id` started.
async fn threads_elsewhere(ctx: &Engine, user_id: &str) -> Vec<(Instance, Vec<ThreadBinding>)> {
    let mut out = Vec::new();
    for peer in ctx.app.peers().await {
        let mut threads: Vec<ThreadBinding> = ctx
            .app
            .store
            .threads_of_instance(&peer.id)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.status == ThreadStatus::Active && t.created_by == user_id)
            .collect();
        threads.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        out.push((peer, threads));
    }
    out
}

/// `!sessions`, the part about other instances: each live one with the
/// sessions `user_id` has threads with there, newest first.
pub async fn elsewhere_report(ctx: &Engine, conn: &Connection, user_id: &str) -> String {
    let mut out = String::new();
    for (peer, mut threads) in threads_elsewhere(ctx, user_id).await {
        // One line per session: its newest thread.
        let mut seen = std::collections::HashSet::new();
        threads.retain(|t| seen.insert(t.session_id.clone()));
        out.push_str(&format!(
            "\n**Instance {}** (`{}`, live):\n",
            peer.display_name(),
            peer.directory
        ));
        if threads.is_empty() {
            out.push_str("- no sessions of yours with a thread\n");
        }
        for t in threads.iter().take(PER_INSTANCE) {
            out.push_str(&format!(
                "- `{}` · [thread]({})\n",
                t.session_id,
                conn.permalink(&t.root_post_id, None)
            ));
        }
        if threads.len() > PER_INSTANCE {
            out.push_str(&format!("…and {} older.\n", threads.len() - PER_INSTANCE));
        }
    }
    out
}

/// `!use <id>` in a DM for a session another live instance runs: the DM is
/// attached to that session's thread, so its new messages reach that
/// instance. `None` when no other instance has a thread of it.
pub async fn use_elsewhere(
    ctx: &Arc<Engine>,
    conn: &Connection,
    here: &Here<'_>,
    wanted: &str,
) -> Option<Result<String, String>> {
    let wanted = wanted.trim();
    if wanted.len() < 4 {
        return None;
    }
    let mut found: Vec<(Instance, ThreadBinding)> = Vec::new();
    for (peer, threads) in threads_elsewhere(ctx, &here.post.user_id).await {
        for t in threads {
            if t.session_id.starts_with(wanted) {
                found.push((peer.clone(), t));
            }
        }
    }
    let sessions: std::collections::HashSet<&str> =
        found.iter().map(|(_, t)| t.session_id.as_str()).collect();
    let n = sessions.len();
    // Of one session's threads, the one in this DM if there is one.
    let in_this_dm = found
        .iter()
        .position(|(_, t)| t.channel_id == here.post.channel_id)
        .unwrap_or(0);
    let (peer, thread) = match n {
        0 => return None,
        1 => found.swap_remove(in_this_dm),
        n => {
            return Some(Err(format!(
                ":grey_question: `{wanted}` matches {n} sessions on other instances. Give more of the id."
            )));
        }
    };
    // Only a thread in this DM can take the DM's messages: its instance
    // answers there. Elsewhere, the person is pointed to the thread.
    if !here.is_dm || !here.post.root_id.is_empty() || thread.channel_id != here.post.channel_id {
        return Some(Err(format!(
            ":grey_question: Session `{}` runs on instance **{}**, which this one cannot \
             attach here: continue in [its thread]({}).",
            short(&thread.session_id),
            peer.display_name(),
            conn.permalink(&thread.root_post_id, None)
        )));
    }
    let selected = ctx
        .app
        .store
        .select_thread(
            &here.post.channel_id,
            Some(&thread.root_post_id),
            now_millis(),
        )
        .await;
    Some(match selected {
        Ok(()) => Ok(format!(
            ":link: This DM now talks to session `{}` on instance **{}**: [thread]({}). New \
             messages here go to it.",
            short(&thread.session_id),
            peer.display_name(),
            conn.permalink(&thread.root_post_id, None)
        )),
        Err(e) => Err(format!(":x: Could not attach this DM: {e}")),
    })
}

/// Enough of a session id to tell it apart in a message (ids begin with
/// their creation time, so short prefixes collide).
fn short(session_id: &str) -> String {
    session_id.chars().take(20).collect()
}
