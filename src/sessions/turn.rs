//! A turn from start to end: the first reply post and the prompt handed to
//! the session's task, the prompt sent to OpenCode, stopping a turn, and
//! after a restart, replies that were streaming finished from OpenCode's
//! stored messages.

use std::sync::Arc;

use tracing::{debug, info, warn};

use super::task::{PromptJob, Run, SessionMsg};
use super::{Engine, text};
use crate::mattermost::types::Post;
use crate::opencode::{Activity, FilePart, ModelRef, OpenCodeError, Prompt};
use crate::render::Turn;
use crate::store::{Claim, ClaimState, Reply, ReplyState, ThreadBinding, ThreadStatus, now_millis};

/// A prompt that waited longer than this before going to OpenCode is logged
/// with where the time went.
const SLOW_PROMPT: std::time::Duration = std::time::Duration::from_millis(200);

/// Files that came with a prompt, prepared by the files feature: parts the
/// model sees, and a note appended to the prompt text naming every file.
#[derive(Debug, Clone, Default)]
pub struct Attachments {
    pub parts: Vec<FilePart>,
    pub note: String,
}

/// When a prompt's post reached the bridge, and whether its session had to
/// be created first: the two latencies are reported apart.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub at: std::time::Instant,
    pub new_session: bool,
}

impl Started {
    pub fn follow_up(at: std::time::Instant) -> Started {
        Started {
            at,
            new_session: false,
        }
    }
    pub fn new_session(at: std::time::Instant) -> Started {
        Started {
            at,
            new_session: true,
        }
    }
}

/// Post the turn's first reply post, hand the turn to its session task and
/// send the prompt. `message_id` is set when a prompt is re-sent after a
/// restart, so OpenCode sees the same message.
pub async fn start_turn(
    ctx: &Arc<Engine>,
    binding: &ThreadBinding,
    post: &Post,
    sender: &str,
    prompt_text: &str,
    message_id: Option<String>,
    started: Started,
) {
    let message_id = message_id.unwrap_or_else(|| ctx.message_ids.next(now_millis().max(0) as u64));
    ctx.remember(
        &binding.root_post_id,
        LastPrompt {
            post: post.clone(),
            sender: sender.to_owned(),
            text: prompt_text.to_owned(),
        },
    );
    let claim = Claim {
        post_id: post.id.clone(),
        instance_id: ctx.app.instance.id.clone(),
        claimed_at: now_millis(),
        state: ClaimState::Claimed,
        session_id: Some(binding.session_id.clone()),
        message_id: Some(message_id.clone()),
        root_post_id: Some(binding.root_post_id.clone()),
        channel_id: Some(binding.channel_id.clone()),
    };
    if let Err(e) = ctx.app.store.update_claim(&claim).await {
        warn!(error = %e, "cannot record the claim's session");
    }
    let existing = ctx
        .app
        .store
        .reply(&binding.session_id, &message_id)
        .await
        .ok()
        .flatten();
    let reply_row = existing.unwrap_or_else(|| Reply {
        session_id: binding.session_id.clone(),
        user_message_id: message_id.clone(),
        instance_id: ctx.app.instance.id.clone(),
        channel_id: binding.channel_id.clone(),
        root_post_id: binding.root_post_id.clone(),
        post_ids: Vec::new(),
        started_at: now_millis(),
        state: ReplyState::Streaming,
        pending_post_id: None,
    });
    let turn = Turn::new(
        binding.session_id.clone(),
        message_id.clone(),
        reply_row.started_at as f64,
    );
    let mut run = Run::new(turn, reply_row, ctx.app.throttle(), Some(post.id.clone()));
    // The session task posts the first reply post at once; the prompt does
    // not wait for it.
    run.throttle.changed(tokio::time::Instant::now(), 0, true);
    if let Err(e) = ctx.app.store.save_reply(&run.reply).await {
        warn!(error = %e, "cannot record the reply");
    }
    // Attachments are fetched into the session's temporary directory; the
    // model gets images and PDFs as file parts and every file by path.
    let (attached, context) = match ctx.hooks() {
        Some(hooks) => (
            hooks.attachments(binding, post).await,
            hooks.context(binding, post, started.new_session).await,
        ),
        None => (Attachments::default(), None),
    };
    // Context goes between the envelope and the request, marked as such.
    let body = match context {
        Some(context) => format!("{context}{prompt_text}"),
        None => prompt_text.to_owned(),
    };
    let mut text = text::prompt_envelope(
        sender,
        &binding.root_post_id,
        &post.id,
        &post.channel_id,
        &body,
    );
    text.push_str(&attached.note);
    let prompt = Prompt {
        message_id,
        text,
        model: binding.model.as_deref().and_then(ModelRef::parse),
        files: attached.parts,
        ..Prompt::default()
    };
    // The session task sends the prompt, or queues it behind a running turn.
    let job = PromptJob {
        prompt,
        root_post_id: binding.root_post_id.clone(),
        post_id: post.id.clone(),
        received: started.at,
        new_session: started.new_session,
        handed: std::time::Instant::now(),
        queued: false,
    };
    // Waits when the session's queue is full: backpressure to the router.
    let task = ctx.session(&binding.session_id);
    let _ = task
        .send(SessionMsg::Start(Box::new(run), Some(Box::new(job))))
        .await;
}

/// Send one prompt to OpenCode and record how it went. A session OpenCode
/// no longer has ends its thread.
pub(crate) async fn send_prompt(
    ctx: &Engine,
    session_id: &str,
    job: &PromptJob,
) -> Result<(), String> {
    let waited = job.received.elapsed();
    ctx.stats.prompt_sent(waited, job.new_session, job.queued);
    if waited > SLOW_PROMPT && !job.queued {
        info!(
            routing_ms = (job.handed - job.received).as_millis() as u64,
            in_session_task_ms = job.handed.elapsed().as_millis() as u64,
            "a prompt waited before it was sent"
        );
    }
    match ctx
        .app
        .opencode()
        .prompt_async(session_id, &job.prompt)
        .await
    {
        Ok(()) => {
            ctx.app
                .set_claim_state(&job.post_id, ClaimState::Prompted)
                .await;
            Ok(())
        }
        Err(e) => {
            let error = match &e {
                OpenCodeError::NotFound { .. } => {
                    if let Err(e) = ctx
                        .app
                        .store
                        .set_thread_status(&job.root_post_id, ThreadStatus::Ended)
                        .await
                    {
                        debug!(error = %e, "cannot mark the thread ended");
                    }
                    "this session no longer exists in OpenCode; send a new message (not in a \
                     thread) to start a new one"
                        .to_owned()
                }
                other => other.to_string(),
            };
            warn!(error = %e, "prompt_async failed");
            ctx.app
                .set_claim_state(&job.post_id, ClaimState::Failed)
                .await;
            Err(error)
        }
    }
}

/// Replies that were streaming when the previous agent stopped: pick them up
/// again; the session task finishes them from OpenCode's stored messages.
pub async fn resume_replies(ctx: &Arc<Engine>) {
    let replies = match ctx.app.store.streaming_replies(&ctx.app.instance.id).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "cannot read unfinished replies");
            return;
        }
    };
    for mut reply_row in replies {
        info!(session = %reply_row.session_id, "finishing a reply interrupted by a restart");
        adopt_recorded(ctx, &mut reply_row).await;
        let mut turn = Turn::new(
            reply_row.session_id.clone(),
            reply_row.user_message_id.clone(),
            reply_row.started_at as f64,
        );
        if let Ok(messages) = ctx.app.opencode().messages(&reply_row.session_id).await {
            turn.load(&messages, super::task::now_ms());
        }
        let claim = claim_for(ctx, &reply_row.session_id, &reply_row.user_message_id).await;
        let mut run = Run::new(turn, reply_row.clone(), ctx.app.throttle(), claim);
        run.prompted = true;
        let task = ctx.session(&reply_row.session_id);
        let _ = task.send(SessionMsg::Start(Box::new(run), None)).await;
    }
}

/// A reply post whose create call was under way at the crash: if it
/// landed, it becomes the reply's next post rather than being made again.
/// Unknown (Mattermost unreachable) keeps the pending id, which the next
/// create reuses.
async fn adopt_recorded(ctx: &Engine, reply: &mut Reply) {
    let Some(pending) = reply.pending_post_id.clone() else {
        return;
    };
    let Some(conn) = ctx.app.connection().await else {
        return;
    };
    match super::threads::find_recorded(&conn, &reply.root_post_id, &pending).await {
        Ok(found) => {
            if let Some(id) = found
                && !reply.post_ids.contains(&id)
            {
                info!(post = %id, "adopting a reply post made just before the restart");
                reply.post_ids.push(id);
            }
            reply.pending_post_id = None;
            if let Err(e) = ctx.app.store.save_reply(reply).await {
                warn!(error = %e, "cannot record the adopted reply post");
            }
        }
        Err(e) => warn!(error = %e, "cannot look for a reply post made before the restart"),
    }
}

async fn claim_for(ctx: &Engine, session_id: &str, message_id: &str) -> Option<String> {
    let claims = ctx
        .app
        .store
        .unfinished_claims(&ctx.app.instance.id)
        .await
        .ok()?;
    claims
        .into_iter()
        .find(|c| {
            c.session_id.as_deref() == Some(session_id)
                && c.message_id.as_deref() == Some(message_id)
        })
        .map(|c| c.post_id)
}

/// Abort a session's running turn (`!stop`, the 🛑 reaction). An empty
/// answer means it stopped: the turn's own post shows that.
pub async fn stop_session(ctx: &Engine, session_id: &str) -> Result<String, String> {
    let busy = ctx
        .app
        .opencode()
        .activity()
        .await
        .map_err(|e| format!(":x: Could not ask OpenCode: {e}"))?
        .iter()
        .any(|(id, a)| id == session_id && !matches!(a, Activity::Idle));
    if !busy {
        return Ok("Nothing is running in this session.".into());
    }
    ctx.app
        .opencode()
        .abort(session_id)
        .await
        .map_err(|e| format!(":x: Could not stop the turn: {e}"))?;
    Ok(String::new())
}

/// The prompt a thread last ran, for 🔁.
#[derive(Debug, Clone)]
pub struct LastPrompt {
    pub post: Post,
    pub sender: String,
    pub text: String,
}

impl Engine {
    /// Remember the prompt a thread just ran.
    fn remember(&self, root_post_id: &str, last: LastPrompt) {
        self.last_prompts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(root_post_id.to_owned(), last);
    }

    /// The prompt a thread last ran in this agent's life, if any.
    pub fn last_prompt(&self, root_post_id: &str) -> Option<LastPrompt> {
        self.last_prompts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(root_post_id)
            .cloned()
    }
}
