//! OpenCode's request events in chat: new requests posted where their
//! session is followed (a subagent's in its parent's thread), settled ones
//! updated, requests still pending after a reconnect posted again, and the
//! requests of an aborted turn declined.

use std::sync::Arc;

use tracing::debug;

use super::{
    Asks, PermissionOutcome, QuestionOutcome, book, edit, permission_asked, permission_replied,
    question_asked, question_settled, show_open_question,
};
use crate::asks;
use crate::opencode::PermissionReply;
use crate::opencode::events::Event;
use crate::sessions::{Spot, thread_for};

/// After a (re)connect: requests OpenCode still waits on whose session has
/// a thread here but no post in this agent's life (it restarted) are
/// posted again.
pub async fn resync(ctx: &Arc<Asks>) {
    let permissions = ctx.engine.app.opencode().pending_permissions().await;
    let questions = ctx.engine.app.opencode().pending_questions().await;
    let (permissions, questions) = match (permissions, questions) {
        (Ok(p), Ok(q)) => (p, q),
        (Err(e), _) | (_, Err(e)) => {
            debug!(error = %e, "cannot list pending requests");
            return;
        }
    };
    for req in permissions {
        if let Some(spot) = thread_for(&ctx.engine, &req.session_id, None).await {
            permission_asked(ctx, spot, req).await;
        }
    }
    for req in questions {
        if let Some(spot) = thread_for(&ctx.engine, &req.session_id, None).await {
            question_asked(ctx, spot, req).await;
        }
    }
}

/// A permission or question event: a new request is posted at `spot` (no
/// spot: nowhere to ask, the TUI answers it), a settled one updates its post.
pub async fn on_event(ctx: &Arc<Asks>, event: &Event, spot: Option<Spot>) {
    match event {
        Event::PermissionAsked(p) => {
            if let Some(spot) = spot {
                permission_asked(ctx, spot, p.clone()).await;
            }
        }
        Event::QuestionAsked(q) => {
            if let Some(spot) = spot {
                question_asked(ctx, spot, q.clone()).await;
            }
        }
        Event::PermissionReplied(r) => permission_replied(ctx, r).await,
        Event::QuestionReplied(r) => question_settled(ctx, &r.request_id, Some(&r.answers)).await,
        Event::QuestionRejected(r) => question_settled(ctx, &r.request_id, None).await,
        _ => {}
    }
}

/// Whether an event asks a person something (rather than settling it).
pub fn is_new_request(event: &Event) -> bool {
    matches!(event, Event::PermissionAsked(_) | Event::QuestionAsked(_))
}

/// Requests of a session with no thread here, such as a subagent's: they
/// go to the thread of the session that started it, so a subagent waiting
/// for a person never wedges its parent unseen.
pub async fn unbound(ctx: Arc<Asks>, event: Event) {
    let spot = match event.session_id() {
        Some(session_id) if is_new_request(&event) => parent_thread(&ctx, session_id).await,
        _ => None,
    };
    on_event(&ctx, &event, spot).await;
}

/// Whether an event is about a permission request or a question.
pub fn is_ask(event: &Event) -> bool {
    matches!(
        event,
        Event::PermissionAsked(_)
            | Event::QuestionAsked(_)
            | Event::PermissionReplied(_)
            | Event::QuestionReplied(_)
            | Event::QuestionRejected(_)
    )
}

async fn parent_thread(ctx: &Asks, session_id: &str) -> Option<Spot> {
    let mut id = session_id.to_owned();
    // Subagents can start subagents; a few levels up is plenty.
    for _ in 0..4 {
        let parent = ctx
            .engine
            .app
            .opencode()
            .get_session(&id)
            .await
            .ok()?
            .parent_id?;
        if let Some(spot) = thread_for(&ctx.engine, &parent, None).await {
            return Some(spot);
        }
        id = parent;
    }
    None
}

/// A turn of the session was aborted. OpenCode keeps its requests listed
/// after an abort, and a late "allow" could still run the aborted command,
/// so they are declined here and their posts say they are no longer asked.
pub async fn drop_session(ctx: &Asks, session_id: &str) {
    let (permissions, questions) = {
        let mut b = book(ctx);
        let p: Vec<String> = b
            .permissions
            .iter()
            .filter(|(_, p)| p.req.session_id == session_id && !p.answering)
            .map(|(id, _)| id.clone())
            .collect();
        let q: Vec<String> = b
            .questions
            .iter()
            .filter(|(_, q)| q.req.session_id == session_id && !q.answering)
            .map(|(id, _)| id.clone())
            .collect();
        (
            p.iter()
                .filter_map(|id| b.permissions.remove(id))
                .collect::<Vec<_>>(),
            q.iter()
                .filter_map(|id| b.questions.remove(id))
                .collect::<Vec<_>>(),
        )
    };
    for p in permissions {
        if let Err(e) = ctx
            .engine
            .app
            .opencode()
            .reply_permission(&p.req.id, PermissionReply::Reject)
            .await
        {
            debug!(error = %e, "cannot decline a stale permission request");
        }
        edit(
            ctx,
            &p.post_id,
            &asks::permission_post(&p.req, &PermissionOutcome::Gone),
        )
        .await;
    }
    for q in questions {
        if let Err(e) = ctx.engine.app.opencode().reject_question(&q.req.id).await {
            debug!(error = %e, "cannot decline a stale question");
        }
        show_open_question(ctx, &q, &QuestionOutcome::Gone).await;
    }
}
