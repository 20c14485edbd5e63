//! Work a dead instance left behind. An agent killed for good (its host
//! gone, `kill -9` with nobody to restart it) leaves claims it had taken
//! but not finished; no one else may run them, since the session lives in
//! that instance's OpenCode. Once its lease has lapsed, a live agent marks
//! each such claim Failed (exactly once across the fleet, and only while
//! the instance is still offline) and tells the thread, so the person knows
//! to send it again rather than wait. An instance that comes back within
//! its lease finishes its own work, as after any restart.

use tracing::{info, warn};

use crate::app::App;
use crate::sessions::threads::{say, say_in};
use crate::store::{Claim, ClaimState, Instance, now_millis};

/// One pass over every offline instance's unfinished claims.
pub async fn sweep(app: &App) {
    let lease = i64::try_from(app.config.instance_lease.as_millis()).unwrap_or(i64::MAX);
    let offline_before = now_millis().saturating_sub(lease);
    let instances = match app.store.instances().await {
        Ok(list) => list,
        Err(e) => {
            warn!(error = %e, "cannot list instances for orphaned claims");
            return;
        }
    };
    for dead in instances
        .iter()
        .filter(|i| i.id != app.instance.id && i.heartbeat_at < offline_before)
    {
        let claims = match app.store.unfinished_claims(&dead.id).await {
            Ok(list) => list,
            Err(e) => {
                warn!(error = %e, instance = %dead.id, "cannot read an offline instance's claims");
                continue;
            }
        };
        for claim in claims
            .iter()
            .filter(|c| matches!(c.state, ClaimState::Claimed | ClaimState::Prompted))
        {
            match app
                .store
                .abandon_claim(&claim.post_id, &dead.id, offline_before)
                .await
            {
                Ok(true) => tell(app, dead, claim).await,
                Ok(false) => {}
                Err(e) => warn!(error = %e, post = %claim.post_id, "cannot abandon a claim"),
            }
        }
    }
}

/// The notice in the abandoned post's thread.
async fn tell(app: &App, dead: &Instance, claim: &Claim) {
    info!(post = %claim.post_id, instance = %dead.id, "claim of an offline instance marked failed");
    let Some(conn) = app.connection().await else {
        return;
    };
    let text = notice(dead, claim.state);
    // A prompted claim knows its session's thread; else the post's own.
    if let (Some(channel), Some(root)) = (&claim.channel_id, &claim.root_post_id) {
        return say_in(&conn, channel, root, &text).await;
    }
    match conn.rest.post(&claim.post_id).await {
        Ok(post) => say(&conn, &post, &text).await,
        Err(e) => warn!(error = %e, post = %claim.post_id, "cannot read the abandoned post"),
    }
}

/// What happened to a message whose instance went away with it.
pub fn notice(dead: &Instance, state: ClaimState) -> String {
    let since = chrono::DateTime::from_timestamp_millis(dead.heartbeat_at)
        .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
        .unwrap_or_default();
    let what = if state == ClaimState::Prompted {
        "while it was working on this message, so its reply may stop short"
    } else {
        "before it ran this message, so it did not run"
    };
    format!(
        ":electric_plug: Instance **{}** is offline{since}: it went away {what}. Nothing \
         else will run it. Send it again once that instance is back (its OpenCode runs in \
         `{}`), or send a new message (not in a thread) to start a session elsewhere.",
        dead.display_name(),
        dead.directory
    )
}
