//! One task per OpenCode session: it owns the session's running turns, feeds
//! them OpenCode events, and keeps their reply posts in step, paced by the
//! throttle. The final text of a turn always comes from OpenCode's stored
//! messages, so a dropped event or an agent restart cannot leave a reply
//! short.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span, warn};

use super::{Engine, Spot};
use crate::mattermost::budget::Priority;
use crate::opencode::events::Event;
use crate::opencode::{Activity, OpenCodeError, Prompt};
use crate::render::{Outcome, Throttle, Turn, outcome_of};
use crate::store::{ClaimState, Reply, ReplyState, now_millis};

/// How often the typing indicator is renewed (Mattermost shows it ~5 s).
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// How often a quiet turn is looked at: elapsed time in the status line, and
/// a check with OpenCode in case its `session.idle` never reached us.
const CHECK_EVERY: Duration = Duration::from_secs(3);
/// Idle checks with our prompt stored but unanswered before the turn is
/// given up as failed (about `CHECK_EVERY` apart).
const UNANSWERED_CHECKS: u8 = 4;

/// Messages a session task holds before senders wait (turn starts) or
/// events are dropped for the task to settle from OpenCode's stored state.
pub(crate) const SESSION_QUEUE: usize = 1024;
/// Prompts that may wait behind a session's running turn; more are refused
/// in their own reply, so a flood cannot grow without bound.
pub(crate) const MAX_WAITING_PROMPTS: usize = 32;

/// A turn being streamed into its reply posts.
pub(crate) struct Run {
    pub turn: Turn,
    pub throttle: Throttle,
    pub reply: Reply,
    /// The text last sent for each post of `reply.post_ids` (same length;
    /// empty for posts of a resumed reply, so they are all rewritten once).
    pub sent: Vec<String>,
    /// The claimed post that asked for this turn, marked done at the end.
    pub claim: Option<String>,
    /// `prompt_async` returned (or, after a restart, had returned).
    pub prompted: bool,
    pub shown_text: bool,
    pub last_activity: Instant,
    /// Times OpenCode looked idle with our prompt stored but no answer to
    /// it: a `session.idle` of the previous turn can arrive after our
    /// prompt landed and before OpenCode starts answering it.
    pub idle_unanswered: u8,
    /// Shown as waiting for the turn before it, until its answer starts.
    pub queued: bool,
    /// Its prompt is on the way to OpenCode.
    pub launched: bool,
    /// An edit carrying response text has landed.
    pub text_sent: bool,
}

impl Run {
    pub fn new(turn: Turn, reply: Reply, throttle: Throttle, claim: Option<String>) -> Run {
        Run {
            turn,
            throttle,
            sent: vec![String::new(); reply.post_ids.len()],
            reply,
            claim,
            prompted: false,
            shown_text: false,
            last_activity: Instant::now(),
            idle_unanswered: 0,
            queued: false,
            launched: false,
            text_sent: false,
        }
    }
}

/// A prompt to send for a turn once the session is free.
pub(crate) struct PromptJob {
    pub prompt: Prompt,
    pub root_post_id: String,
    /// The claimed post that asked for it.
    pub post_id: String,
    /// When the post reached the bridge, for the post → prompt latency.
    pub received: std::time::Instant,
    /// The post started the session (its latency includes creating it).
    pub new_session: bool,
    /// When routing handed it to the session task.
    pub handed: std::time::Instant,
    /// It waited for the session's running turn: its latency is the user's
    /// choice of timing, not the bridge's overhead.
    pub queued: bool,
}

/// What a queued turn says while it waits.
const QUEUED: &str = "the current turn to finish (this message is queued)";

pub(crate) enum SessionMsg {
    Event(Box<Event>),
    /// Events held before the task started, in order (first message only).
    Replay(Vec<Event>),
    /// A new turn; its first post may already exist. With a prompt to send
    /// (now, or after the running turn), or without one when the prompt was
    /// sent before (a reply resumed after a restart).
    Start(Box<Run>, Option<Box<PromptJob>>),
    /// `prompt_async` for this user message succeeded.
    Prompted(String),
    /// `prompt_async` for this user message failed.
    Failed(String, String),
}

/// Start the task of one session; it ends when the sender is dropped.
pub(crate) fn spawn(ctx: Arc<Engine>, session_id: String) -> mpsc::Sender<SessionMsg> {
    let (tx, rx) = mpsc::channel(SESSION_QUEUE);
    let span = info_span!("session", id = %session_id);
    let own = tx.downgrade();
    tokio::spawn(session_loop(ctx, session_id, rx, own).instrument(span));
    tx
}

/// Whether a run holds the session: its prompt went (or is going) to
/// OpenCode and it has not ended.
fn holds_session(run: &Run) -> bool {
    run.turn.outcome().is_none() && (run.prompted || run.launched)
}

async fn session_loop(
    ctx: Arc<Engine>,
    session_id: String,
    mut rx: mpsc::Receiver<SessionMsg>,
    own: mpsc::WeakSender<SessionMsg>,
) {
    let mut runs: Vec<Run> = Vec::new();
    // Prompts waiting for the running turn, oldest first.
    let mut queue: std::collections::VecDeque<PromptJob> = std::collections::VecDeque::new();
    let hooks = ctx.hooks();
    let mut typing = tokio::time::interval(TYPING_EVERY);
    let mut check = tokio::time::interval(CHECK_EVERY);
    loop {
        let due = runs.iter().filter_map(|r| r.throttle.due()).min();
        let sleep = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let mut branch = "message";
        let began = Instant::now();
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                match msg {
                    SessionMsg::Start(run, job) => {
                        branch = "start";
                        let mut run = *run;
                        // A reply resumed after a reconnect that this task
                        // already streams.
                        if job.is_none() && runs.iter().any(|r| r.turn.user_message_id() == run.turn.user_message_id()) {
                            continue;
                        }
                        if let Some(hooks) = &hooks {
                            hooks.our_prompt(&session_id, run.turn.user_message_id());
                        }
                        if let Some(job) = job {
                            if queue.len() >= MAX_WAITING_PROMPTS {
                                run.turn.finish(
                                    Outcome::Failed(format!(
                                        "{MAX_WAITING_PROMPTS} prompts already wait for this session; \
                                         send this again once they ran, or stop them with !stop"
                                    )),
                                    now_ms(),
                                );
                                run.throttle.changed(Instant::now(), 0, true);
                            } else if runs.iter().any(holds_session) {
                                run.queued = true;
                                run.turn.set_waiting(Some(QUEUED.to_owned()));
                                let mut job = *job;
                                job.queued = true;
                                queue.push_back(job);
                                ctx.stats.queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            } else {
                                run.launched = true;
                                launch(&ctx, &session_id, *job, own.clone());
                            }
                        }
                        runs.push(run);
                    }
                    SessionMsg::Prompted(id) => {
                        if let Some(run) = runs.iter_mut().find(|r| r.turn.user_message_id() == id) {
                            run.prompted = true;
                            run.last_activity = Instant::now();
                        }
                    }
                    SessionMsg::Failed(id, error) => {
                        if let Some(run) = runs.iter_mut().find(|r| r.turn.user_message_id() == id) {
                            run.turn.finish(Outcome::Failed(error), now_ms());
                        }
                    }
                    SessionMsg::Event(event) => {
                        on_event(&ctx, &session_id, hooks.as_deref(), &mut runs, *event).await;
                    }
                    SessionMsg::Replay(events) => {
                        branch = "replay";
                        for event in events {
                            on_event(&ctx, &session_id, hooks.as_deref(), &mut runs, event).await;
                        }
                    }
                }
            }
            () = sleep => {
                branch = "edits";
                let now = Instant::now();
                for run in runs.iter_mut() {
                    if run.throttle.due().is_some_and(|at| at <= now) {
                        // The first post of a turn, then its first text, are
                        // news; later edits are progress and yield to others' news.
                        let priority = if run.reply.post_ids.is_empty() {
                            Priority::Urgent
                        } else if run.shown_text && !run.text_sent {
                            Priority::Normal
                        } else {
                            Priority::Progress
                        };
                        let had_text = run.shown_text;
                        let written = match flush(&ctx, run, priority).await {
                            Ok(written) => {
                                run.text_sent |= had_text;
                                written
                            }
                            Err(e) => {
                                debug!(error = %e, "progress edit failed; the next one carries it");
                                None
                            }
                        };
                        // Counted from when the edit landed, so edits that waited
                        // for the rate budget still arrive paced.
                        run.throttle.sent(Instant::now(), written);
                    }
                }
            }
            _ = typing.tick(), if runs.iter().any(holds_session) => {
                branch = "typing";
                if let Some(run) = runs.iter().find(|r| holds_session(r)) {
                    ctx.app.typing(&run.reply.channel_id, &run.reply.root_post_id).await;
                }
            }
            _ = check.tick(), if !runs.is_empty() => {
                branch = "check";
                let now = Instant::now();
                for run in runs.iter_mut() {
                    // Elapsed time in the status line moves on.
                    run.throttle.changed(now, 0, false);
                }
                let quiet = runs.iter().any(|r| r.prompted && now.duration_since(r.last_activity) >= CHECK_EVERY);
                if quiet {
                    settle(&ctx, &session_id, &mut runs).await;
                }
            }
        }
        let took = began.elapsed();
        let finishing = Instant::now();
        // Finished runs get their final text and leave.
        let mut i = 0;
        while i < runs.len() {
            if runs[i].turn.outcome().is_some() {
                let mut run = runs.remove(i);
                if run.turn.outcome() == Some(&Outcome::Aborted)
                    && let Some(hooks) = ctx.hooks()
                {
                    hooks.aborted(&session_id).await;
                }
                finish(&ctx, &mut run).await;
            } else {
                i += 1;
            }
        }
        let finished_in = finishing.elapsed();
        if took + finished_in > Duration::from_millis(200) {
            // Anything that holds the task holds this session's queued prompts.
            debug!(
                branch,
                took_ms = took.as_millis() as u64,
                finishing_ms = finished_in.as_millis() as u64,
                "session task was busy"
            );
        }
        // The session is free: the oldest queued prompt goes.
        if !runs.iter().any(holds_session)
            && let Some(job) = queue.pop_front()
        {
            ctx.stats
                .queued
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(run) = runs
                .iter_mut()
                .find(|r| r.turn.user_message_id() == job.prompt.message_id)
            {
                // The turn's clock starts now, not when it was queued.
                run.turn = Turn::new(session_id.clone(), job.prompt.message_id.clone(), now_ms());
                run.queued = false;
                run.launched = true;
                run.last_activity = Instant::now();
                run.throttle.changed(Instant::now(), 0, true);
            }
            launch(&ctx, &session_id, job, own.clone());
        }
    }
}

/// Send a prompt without holding up the session task; the outcome comes
/// back as a message.
fn launch(ctx: &Arc<Engine>, session_id: &str, job: PromptJob, own: mpsc::WeakSender<SessionMsg>) {
    let ctx = ctx.clone();
    let session_id = session_id.to_owned();
    tokio::spawn(
        async move {
            let id = job.prompt.message_id.clone();
            let msg = match super::turn::send_prompt(&ctx, &session_id, &job).await {
                Ok(()) => SessionMsg::Prompted(id),
                Err(error) => SessionMsg::Failed(id, error),
            };
            if let Some(tx) = own.upgrade() {
                let _ = tx.send(msg).await;
            }
        }
        .in_current_span(),
    );
}

/// What a running turn's status line says while OpenCode waits for a person.
const WAIT_PERMISSION: &str = "your answer to the permission request below";
const WAIT_QUESTION: &str = "your answer to the question below";

/// One OpenCode event of this session: requests, a prompt typed elsewhere
/// (a turn of its own), the running turns' text, and settling at idle.
async fn on_event(
    ctx: &Arc<Engine>,
    session_id: &str,
    hooks: Option<&dyn super::Hooks>,
    runs: &mut Vec<Run>,
    event: Event,
) {
    asks_event(ctx, session_id, runs, &event).await;
    if let Some((message_id, text)) = hooks.and_then(|h| h.foreign_prompt(session_id, &event))
        && let Some(run) = tui_turn(ctx, session_id, runs, &message_id, &text).await
    {
        runs.push(run);
    }
    let idle = matches!(event, Event::SessionIdle(_));
    apply_event(runs, &event);
    if idle {
        settle(ctx, session_id, runs).await;
    }
}

/// Permission requests and questions: posted in the session's thread,
/// settled posts updated, and the running turn shown as waiting.
async fn asks_event(ctx: &Arc<Engine>, session_id: &str, runs: &mut [Run], event: &Event) {
    let waiting = match event {
        Event::PermissionAsked(_) => Some(WAIT_PERMISSION),
        Event::QuestionAsked(_) => Some(WAIT_QUESTION),
        Event::PermissionReplied(_) | Event::QuestionReplied(_) | Event::QuestionRejected(_) => {
            None
        }
        _ => return,
    };
    let spot = if waiting.is_some() {
        thread_for(ctx, session_id, Some(runs)).await
    } else {
        None
    };
    let Some(hooks) = ctx.hooks() else { return };
    hooks.ask_event(event, spot).await;
    if !ctx.app.config.notify_status || (waiting.is_none() && hooks.still_waiting(session_id)) {
        return;
    }
    let now = Instant::now();
    for run in runs.iter_mut().filter(|r| holds_session(r) && !r.queued) {
        run.turn.set_waiting(waiting.map(str::to_owned));
        run.throttle.changed(now, 0, true);
    }
}

/// The thread a session's requests and TUI prompts go to: the running
/// turn's, else the one a DM is attached to, else its oldest live thread.
pub(crate) async fn thread_for(
    ctx: &Engine,
    session_id: &str,
    runs: Option<&[Run]>,
) -> Option<Spot> {
    let run = runs.and_then(|runs| {
        runs.iter()
            .rev()
            .find(|r| holds_session(r))
            .or_else(|| runs.last())
    });
    let (channel_id, root_id) = match run {
        Some(run) => (run.reply.channel_id.clone(), run.reply.root_post_id.clone()),
        None => home_thread(ctx, session_id).await?,
    };
    Some(Spot {
        channel_id,
        root_id,
    })
}

/// Where a session's TUI prompts go when no turn is running: the thread a
/// DM is attached to (`!use`), else the session's oldest live thread here.
async fn home_thread(ctx: &Engine, session_id: &str) -> Option<(String, String)> {
    let threads = ctx.app.live_threads(session_id).await.ok()?;
    for b in &threads {
        if let Ok(Some(root)) = ctx.app.store.selection(&b.channel_id).await
            && root == b.root_post_id
        {
            return Some((b.channel_id.clone(), b.root_post_id.clone()));
        }
    }
    threads
        .into_iter()
        .next()
        .map(|b| (b.channel_id, b.root_post_id))
}

/// A prompt typed at the TUI: echo it into the session's thread and stream
/// its answer there like a chat turn's.
async fn tui_turn(
    ctx: &Arc<Engine>,
    session_id: &str,
    runs: &[Run],
    message_id: &str,
    text: &str,
) -> Option<Run> {
    // A reply row means an earlier life of this agent sent or echoed it.
    if let Ok(Some(_)) = ctx.app.store.reply(session_id, message_id).await {
        return None;
    }
    let (channel_id, root_post_id) = match runs.last() {
        Some(run) => (run.reply.channel_id.clone(), run.reply.root_post_id.clone()),
        None => home_thread(ctx, session_id).await?,
    };
    let conn = ctx.app.connection().await?;
    let hooks = ctx.hooks()?;
    let echo = hooks.echo(&crate::render::layout::cap(
        text,
        ctx.app.limits(&conn).post_chars - 40,
    ));
    let echo = ctx.app.for_channel(&channel_id, echo).await;
    let echoed = super::reply_in(&conn, &channel_id, &root_post_id, echo, Priority::Urgent).await;
    if let Err(e) = echoed {
        warn!(error = %e, "cannot echo a TUI prompt");
    }
    let reply = Reply {
        session_id: session_id.to_owned(),
        user_message_id: message_id.to_owned(),
        instance_id: ctx.app.instance.id.clone(),
        channel_id,
        root_post_id,
        post_ids: Vec::new(),
        started_at: now_millis(),
        state: ReplyState::Streaming,
        pending_post_id: None,
    };
    if let Err(e) = ctx.app.store.save_reply(&reply).await {
        warn!(error = %e, "cannot record the reply");
    }
    let turn = Turn::new(session_id.to_owned(), message_id.to_owned(), now_ms());
    let mut run = Run::new(turn, reply, ctx.app.throttle(), None);
    run.prompted = true;
    if runs.iter().any(holds_session) {
        // OpenCode runs it after the current turn.
        run.queued = true;
        run.turn.set_waiting(Some(QUEUED.to_owned()));
    }
    run.throttle.changed(Instant::now(), 0, true);
    Some(run)
}

fn apply_event(runs: &mut [Run], event: &Event) {
    let now = Instant::now();
    let added = match event {
        Event::MessagePartDelta(d) => d.delta.chars().count(),
        _ => 0,
    };
    let is_delta = matches!(event, Event::MessagePartDelta(_));
    for run in runs.iter_mut() {
        if run.turn.outcome().is_some() {
            continue;
        }
        if run.turn.apply(event, now_ms()) {
            run.last_activity = now;
            if run.queued && run.turn.has_started() {
                run.queued = false;
                run.turn.set_waiting(None);
            }
            if !run.shown_text && !run.turn.response_text().is_empty() {
                run.shown_text = true;
                run.throttle.first_text(now, added);
            } else {
                run.throttle.changed(now, added, !is_delta);
            }
        }
    }
}

/// Ask OpenCode whether the session is done; finish every prompted turn it
/// has answered. Called on `session.idle` and when a turn has been quiet,
/// since an idle event can be lost (agent restart) or stale (it belonged to
/// the previous turn and arrived after our prompt).
async fn settle(ctx: &Engine, session_id: &str, runs: &mut [Run]) {
    if !runs
        .iter()
        .any(|r| r.prompted && r.turn.outcome().is_none())
    {
        return;
    }
    let busy = match ctx.app.opencode().activity().await {
        Ok(list) => list
            .iter()
            .any(|(id, a)| id == session_id && !matches!(a, Activity::Idle)),
        Err(e) => {
            debug!(error = %e, "session status unavailable");
            return;
        }
    };
    if busy {
        return;
    }
    let messages = match ctx.app.opencode().messages(session_id).await {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "could not read the session's messages");
            return;
        }
    };
    for run in runs.iter_mut() {
        if !run.prompted || run.turn.outcome().is_some() {
            continue;
        }
        let landed = messages
            .iter()
            .any(|m| m.info.id == run.turn.user_message_id());
        run.turn.load(&messages, now_ms());
        let outcome = outcome_of(&messages, run.turn.user_message_id());
        // OpenCode stores the prompt, then the answer's first message, then
        // reports the session busy; an idle seen before the answer is
        // complete (or failed) must not end the turn. After a few checks it
        // does, so a turn never waits forever.
        let answered =
            run.turn.has_started() && (outcome != Outcome::Completed || run.turn.looks_complete());
        if !answered {
            run.idle_unanswered += 1;
            if run.idle_unanswered < UNANSWERED_CHECKS {
                continue;
            }
        }
        let outcome = match (run.turn.has_started(), landed) {
            (true, _) => outcome,
            (false, true) => {
                Outcome::Failed("OpenCode went idle without answering the prompt".into())
            }
            (false, false) => {
                Outcome::Failed("OpenCode did not take the prompt; send it again".into())
            }
        };
        run.turn.finish(outcome, now_ms());
    }
}

/// The final edit: retried until it lands (the text must end complete), then
/// the reply and its claim are recorded as done.
async fn finish(ctx: &Engine, run: &mut Run) {
    // A reply too long to read inline goes up as a file, its head inline.
    if let Some(hooks) = ctx.hooks() {
        hooks.before_final(&mut run.turn, &run.reply).await;
    }
    if let Some(at) = run.throttle.earliest() {
        tokio::time::sleep_until(at).await;
    }
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=6 {
        match flush(ctx, run, Priority::Normal).await {
            Ok(_) => break,
            Err(e) if attempt < 6 => {
                warn!(error = %e, attempt, "final edit failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
            Err(e) => warn!(error = %e, "final edit failed; the reply stays as it was"),
        }
    }
    run.reply.state = ReplyState::Done;
    if let Err(e) = ctx.app.store.save_reply(&run.reply).await {
        warn!(error = %e, "could not record the finished reply");
    }
    notify_end(ctx, run).await;
    if let Some(post_id) = &run.claim {
        ctx.app.set_claim_state(post_id, ClaimState::Done).await;
    }
}

/// Edits do not notify anyone; a short new post in the thread does, so
/// people learn that a turn ended (`OPENCODE_MM_NOTIFY_COMPLETION`,
/// `OPENCODE_MM_NOTIFY_ERROR`). A stopped turn was someone's own doing.
async fn notify_end(ctx: &Engine, run: &Run) {
    let config = &ctx.app.config;
    let took = crate::render::format::duration((now_millis() - run.reply.started_at).max(0) as f64);
    let message = match run.turn.outcome() {
        Some(Outcome::Completed) if config.notify_completion => {
            format!("{NOTICE} :white_check_mark: **Done** after {took}.")
        }
        Some(Outcome::Failed(why)) if config.notify_error => format!(
            "{NOTICE} :x: **Failed** after {took}: {}",
            crate::render::format::defuse(&crate::render::format::one_line(why, 300))
        ),
        _ => return,
    };
    let Some(conn) = ctx.app.connection().await else {
        return;
    };
    let sent = super::reply_in(
        &conn,
        &run.reply.channel_id,
        &run.reply.root_post_id,
        message,
        Priority::Normal,
    )
    .await;
    if let Err(e) = sent {
        debug!(error = %e, "cannot post the end-of-turn notice");
    }
}

/// How end-of-turn notices begin.
const NOTICE: &str = ":bell:";

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("not connected to Mattermost")]
    NotConnected,
    #[error(transparent)]
    Mattermost(#[from] crate::mattermost::MattermostError),
    #[error(transparent)]
    OpenCode(#[from] OpenCodeError),
}

/// Bring the reply posts in line with the rendered turn: edit posts whose
/// text changed, create posts the rollover asked for. Returns the size of
/// the last post written, which paces the next edit.
pub(crate) async fn flush(
    ctx: &Engine,
    run: &mut Run,
    priority: Priority,
) -> Result<Option<usize>, FlushError> {
    let conn = ctx.app.connection().await.ok_or(FlushError::NotConnected)?;
    let mut texts = Vec::new();
    let mut written = None;
    for text in run.turn.render(&ctx.app.limits(&conn), now_ms()) {
        texts.push(ctx.app.for_channel(&run.reply.channel_id, text).await);
    }
    for (i, text) in texts.iter().enumerate() {
        if let Some(id) = run.reply.post_ids.get(i).cloned() {
            if run.sent[i] == *text {
                continue;
            }
            let span = info_span!("post", id = %id);
            conn.rest
                .patch_post(&id, text, None, priority)
                .instrument(span)
                .await?;
            ctx.stats.edit();
            run.sent[i] = text.clone();
            written = Some(text.len());
        } else {
            // The pending id is recorded first and kept until the post's id
            // is: a retry reuses it (the server answers with the first post)
            // and a restart finds the post by it.
            let pending = match run.reply.pending_post_id.clone() {
                Some(pending) => pending,
                None => {
                    let pending = conn.rest.new_pending_post_id(&conn.info.bot.id);
                    run.reply.pending_post_id = Some(pending.clone());
                    if let Err(e) = ctx.app.store.save_reply(&run.reply).await {
                        warn!(error = %e, "could not record a reply post about to be made");
                    }
                    pending
                }
            };
            let post = super::threads::reply_recorded(
                &conn,
                &run.reply.channel_id,
                &run.reply.root_post_id,
                text.clone(),
                &pending,
                priority,
            )
            .await?;
            ctx.stats.post();
            run.reply.post_ids.push(post.id);
            run.reply.pending_post_id = None;
            run.sent.push(text.clone());
            written = Some(text.len());
            if let Err(e) = ctx.app.store.save_reply(&run.reply).await {
                warn!(error = %e, "could not record a reply post");
            }
        }
    }
    // The text got shorter (an authoritative reload): later posts say so
    // rather than repeating stale text.
    for i in texts.len()..run.reply.post_ids.len() {
        const MERGED: &str = "_(merged into the post above)_";
        if run.sent[i] != MERGED {
            let id = run.reply.post_ids[i].clone();
            conn.rest.patch_post(&id, MERGED, None, priority).await?;
            run.sent[i] = MERGED.to_owned();
        }
    }
    Ok(written)
}

/// Unix milliseconds as the renderer wants them.
pub(crate) fn now_ms() -> f64 {
    now_millis() as f64
}
