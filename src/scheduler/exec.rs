//! One run of a schedule: a fresh OpenCode session, the prompt, the wait for
//! OpenCode to finish (or the timeout), and the result DM'd to the target
//! user in a thread bound to that session.
//!
//! The run never touches the sessions people are working in (the old
//! plugin's runs hijacked the user's live session), and whatever happens,
//! the target user gets a DM: the answer, the failure, or the timeout.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, debug, info, info_span, warn};

use super::{Due, Scheduler, cron, from_millis, millis};
use crate::app::App;
use crate::mattermost::budget::Priority;
use crate::mattermost::connection::Connection;
use crate::mattermost::rest::NewPost;
use crate::opencode::{Activity, MessageIds, ModelRef, OpenCode, Prompt, Session};
use crate::render::layout::{self, MetaKind};
use crate::render::outcome_of;
use crate::render::{Outcome, Turn, format};
use crate::store::{RunState, Schedule, ScheduleRun, Store, ThreadBinding, ThreadStatus};

/// How often OpenCode is asked whether the run's session is done.
const POLL: Duration = Duration::from_secs(1);
/// Polls that find the session idle without an answer to our prompt before
/// the run is given up: OpenCode can report idle between storing the prompt
/// and starting to answer it.
const IDLE_UNANSWERED: u32 = 15;
/// How long a finished run waits for a Mattermost connection to deliver.
const DELIVERY_WAIT: Duration = Duration::from_secs(120);

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ending {
    Done,
    Failed(String),
    TimedOut(Duration),
}

/// What a run produced: its session (if one was made) and the assistant's
/// final text (partial after a timeout or failure).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Produced {
    pub session: Option<Session>,
    pub text: String,
    pub ending: Ending,
    pub elapsed: Duration,
}

/// Run one won claim to the end and record how it went.
pub(super) async fn execute(ctx: Arc<App>, scheduler: Arc<Scheduler>, due: Due) {
    let span = info_span!("scheduled_run", schedule = %due.schedule.name);
    async move {
        let Due { schedule, mut run } = due;
        let timeout = scheduler.policy().timeout;
        let when = run_label(&schedule, &run);
        let produced = produce(
            ctx.opencode.as_ref(),
            ctx.store.as_ref(),
            &schedule,
            &mut run,
            &when,
            timeout,
        )
        .await;
        info!(ending = ?produced.ending, chars = produced.text.chars().count(), "scheduled run finished");
        let delivered = deliver(&ctx, &schedule, &produced).await;
        run.finished_at = Some(millis(scheduler.now()));
        run.session_id = produced.session.as_ref().map(|s| s.id.clone());
        let (state, mut detail) = match &produced.ending {
            Ending::Done => (RunState::Done, None),
            Ending::Failed(e) => (RunState::Failed, Some(e.clone())),
            Ending::TimedOut(after) => (
                RunState::TimedOut,
                Some(format!("timed out after {}", format::duration(ms(*after)))),
            ),
        };
        run.state = state;
        match delivered {
            Ok(post_id) => run.post_id = Some(post_id),
            Err(e) => {
                warn!(error = %e, "the result could not be delivered");
                run.state = match run.state {
                    RunState::Done => RunState::Failed,
                    other => other,
                };
                let note = format!("result not delivered: {e}");
                detail = Some(match detail {
                    Some(d) => format!("{d}; {note}"),
                    None => note,
                });
            }
        }
        run.detail = detail;
        if let Err(e) = ctx.store.update_schedule_run(&run).await {
            warn!(error = %e, "cannot record the run's outcome");
        }
    }
    .instrument(span)
    .await
}

/// The scheduled time in the schedule's zone, or "on demand".
fn run_label(schedule: &Schedule, run: &ScheduleRun) -> String {
    match run.trigger {
        crate::store::RunTrigger::Cron => {
            let tz =
                cron::parse_zone(&schedule.timezone).unwrap_or_else(|_| crate::tz::Zone::utc());
            format!(
                "run for {}",
                cron::local(from_millis(run.scheduled_at), &tz)
            )
        }
        crate::store::RunTrigger::Manual => "run on demand".to_owned(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// Titles of the sessions scheduled runs start: their thread is the result
// DM, so they get none in the default channel.
use crate::sessions::text::SCHEDULED_TITLE_PREFIX;

/// What OpenCode receives: which schedule this is and where the answer goes,
/// then the prompt.
pub(crate) fn prompt_text(schedule: &Schedule, when: &str) -> String {
    format!(
        "[Scheduled prompt \"{}\" ({} in {}), {when}; your final answer is sent as a \
         Mattermost DM]\n{}",
        schedule.name, schedule.cron, schedule.timezone, schedule.prompt
    )
}

/// Create the session, send the prompt, wait for the answer within
/// `timeout`. Records the session on the run row as soon as it exists.
pub(crate) async fn produce(
    opencode: &dyn OpenCode,
    store: &dyn Store,
    schedule: &Schedule,
    run: &mut ScheduleRun,
    when: &str,
    timeout: Duration,
) -> Produced {
    let started = tokio::time::Instant::now();
    let title = format!("{SCHEDULED_TITLE_PREFIX}{}", schedule.name);
    let session = match opencode.create_session(Some(&title)).await {
        Ok(s) => s,
        Err(e) => {
            return Produced {
                session: None,
                text: String::new(),
                ending: Ending::Failed(format!("could not start an OpenCode session: {e}")),
                elapsed: started.elapsed(),
            };
        }
    };
    run.session_id = Some(session.id.clone());
    if let Err(e) = store.update_schedule_run(run).await {
        debug!(error = %e, "cannot record the run's session");
    }
    // The run's session is new and gets one prompt: a fresh id maker will do.
    let message_id = MessageIds::default().next(crate::store::now_millis().max(0) as u64);
    let prompt = Prompt {
        message_id: message_id.clone(),
        text: prompt_text(schedule, when),
        model: schedule.model.as_deref().and_then(ModelRef::parse),
        agent: schedule.agent.clone(),
        ..Prompt::default()
    };
    let done = |text: String, ending: Ending, session: Session| Produced {
        session: Some(session),
        text,
        ending,
        elapsed: started.elapsed(),
    };
    if let Err(e) = opencode.prompt_async(&session.id, &prompt).await {
        return done(
            String::new(),
            Ending::Failed(format!("OpenCode did not take the prompt: {e}")),
            session,
        );
    }
    match tokio::time::timeout(timeout, answer(opencode, &session.id, &message_id)).await {
        Ok((text, Outcome::Completed)) => done(text, Ending::Done, session),
        Ok((text, Outcome::Aborted)) => done(
            text,
            Ending::Failed("the run was stopped in OpenCode".into()),
            session,
        ),
        Ok((text, Outcome::Failed(e))) => done(text, Ending::Failed(e), session),
        Err(_) => {
            if let Err(e) = opencode.abort(&session.id).await {
                warn!(error = %e, "cannot stop the timed-out run");
            }
            let partial = match opencode.messages(&session.id).await {
                Ok(messages) => {
                    let mut turn = Turn::new(&session.id, &message_id, 0.0);
                    turn.load(&messages, 0.0);
                    turn.response_text()
                }
                Err(_) => String::new(),
            };
            done(partial, Ending::TimedOut(timeout), session)
        }
    }
}

/// Wait until OpenCode has answered `message_id` in full: the session is
/// idle and the turn's last message is complete (the bridge's rule, see
/// `sessions::task::settle`). Returns the turn's final text.
async fn answer(opencode: &dyn OpenCode, session_id: &str, message_id: &str) -> (String, Outcome) {
    let mut unanswered = 0;
    loop {
        tokio::time::sleep(POLL).await;
        let busy = match opencode.activity().await {
            Ok(list) => list
                .iter()
                .any(|(id, a)| id == session_id && !matches!(a, Activity::Idle)),
            Err(e) => {
                debug!(error = %e, "session status unavailable");
                continue;
            }
        };
        if busy {
            continue;
        }
        let messages = match opencode.messages(session_id).await {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "cannot read the run's messages");
                continue;
            }
        };
        let mut turn = Turn::new(session_id, message_id, 0.0);
        turn.load(&messages, 0.0);
        let outcome = outcome_of(&messages, message_id);
        if turn.has_started() && (outcome != Outcome::Completed || turn.looks_complete()) {
            return (turn.response_text(), outcome);
        }
        unanswered += 1;
        if unanswered >= IDLE_UNANSWERED {
            let why = if turn.has_started() {
                "OpenCode stopped before the answer was complete"
            } else if messages.iter().any(|m| m.info.id == message_id) {
                "OpenCode went idle without answering the prompt"
            } else {
                "OpenCode did not take the prompt"
            };
            return (turn.response_text(), Outcome::Failed(why.into()));
        }
    }
}

/// The header every result DM starts with.
pub(crate) fn header(name: &str) -> String {
    format!(":bell: **Scheduled: {name}**")
}

/// The DM's body: the header, then the answer, or what went wrong and
/// whatever text came before it.
pub(crate) fn result_body(name: &str, produced: &Produced) -> String {
    let mut body = header(name);
    body.push_str("\n\n");
    let text = produced.text.as_str();
    match &produced.ending {
        Ending::Done if text.is_empty() => body.push_str("_(no text reply)_"),
        Ending::Done => body.push_str(text),
        Ending::Failed(e) => {
            body.push_str(&format!(":warning: The run failed: {e}"));
            if !text.is_empty() {
                body.push_str("\n\nWhat it said before that:\n\n");
                body.push_str(text);
            }
        }
        Ending::TimedOut(after) => {
            body.push_str(&format!(
                ":hourglass: The run timed out after {} and was stopped \
                 (OPENCODE_MM_SCHEDULE_TIMEOUT).",
                format::duration(ms(*after))
            ));
            if !text.is_empty() {
                body.push_str("\n\nWhat it said so far:\n\n");
                body.push_str(text);
            }
        }
    }
    body
}

/// The footer of the DM's last post: how the run ended, the schedule, and
/// the session the thread continues.
pub(crate) fn result_footer(schedule: &Schedule, produced: &Produced) -> String {
    let took = format::duration(ms(produced.elapsed));
    let status = match &produced.ending {
        Ending::Done => format!("✅ Done in {took}"),
        Ending::Failed(_) => format!("❌ Failed after {took}"),
        Ending::TimedOut(_) => format!("⏱️ Timed out after {took}"),
    };
    let mut footer = format!(
        "{status} · `{}` ({}) · schedule `{}`",
        schedule.cron, schedule.timezone, schedule.name
    );
    if let Some(session) = &produced.session {
        footer.push_str(&format!(
            " · session `{}`\n_Reply in this thread to continue this session._",
            session.short_id()
        ));
    }
    footer
}

/// DM the result to the schedule's target; the first post is the thread's
/// root, bound to the run's session. Returns the root post's id.
async fn deliver(ctx: &App, schedule: &Schedule, produced: &Produced) -> Result<String, String> {
    let conn = connection(ctx).await.ok_or("not connected to Mattermost")?;
    let bot = &conn.info.bot.id;
    let channel = conn
        .rest
        .direct_channel(bot, &schedule.target_user_id)
        .await
        .map_err(|e| format!("cannot open the DM with the target user: {e}"))?;
    let posts = layout::posts(
        &result_body(&schedule.name, produced),
        &result_footer(schedule, produced),
        MetaKind::Final,
        &ctx.limits(&conn),
    );
    let mut root = String::new();
    for text in posts {
        let post = conn
            .rest
            .create_post(
                bot,
                &NewPost {
                    channel_id: channel.id.clone(),
                    message: text,
                    root_id: root.clone(),
                    ..NewPost::default()
                },
                Priority::Normal,
            )
            .await
            .map_err(|e| format!("cannot post the result: {e}"))?;
        if root.is_empty() {
            root = post.id;
            bind(ctx, schedule, produced, &root, &channel.id).await;
        }
    }
    Ok(root)
}

/// Replies in the result's thread continue the run's session.
async fn bind(ctx: &App, schedule: &Schedule, produced: &Produced, root: &str, channel: &str) {
    let Some(session) = &produced.session else {
        return;
    };
    let binding = ThreadBinding {
        root_post_id: root.to_owned(),
        channel_id: channel.to_owned(),
        session_id: session.id.clone(),
        instance_id: ctx.instance.id.clone(),
        created_by: schedule.target_user_id.clone(),
        created_at: crate::store::now_millis(),
        status: ThreadStatus::Active,
        model: schedule.model.clone(),
    };
    if let Err(e) = ctx.store.bind_thread(&binding).await {
        warn!(error = %e, "cannot bind the result's thread to the run's session");
    }
}

/// The live connection, waiting a while for one (a run can end during a
/// reconnect).
async fn connection(ctx: &App) -> Option<Arc<Connection>> {
    let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
    loop {
        if let Some(conn) = ctx.link.current().await {
            return Some(conn);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
