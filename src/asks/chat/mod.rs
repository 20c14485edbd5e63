//! Permission requests and questions answered from chat.
//!
//! A session's task posts each request in the session's thread and records
//! it in the [`Book`]; answers come from reactions and thread replies (only
//! from permitted users) and go to OpenCode's reply endpoints. The post is
//! then edited to say who answered what. An answer given in the TUI arrives
//! as a `*.replied` event and updates the post too. A question nobody
//! answers is declined after `OPENCODE_MM_QUESTION_TIMEOUT`, so the agent
//! is never stuck on an unattended thread.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{Instrument, debug, info, info_span, warn};

use super::{self as asks, Asked, PermissionOutcome, QuestionOutcome};
use crate::mattermost::budget::Priority;
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::opencode::events::{PermissionAsked, PermissionReplied, QuestionAsked};
use crate::opencode::{OpenCodeError, PermissionReply};
use crate::sessions::{Engine, Spot, say};

mod events;

pub use events::{drop_session, is_ask, is_new_request, on_event, resync, unbound};

/// Requests waiting for an answer in chat, by request id.
#[derive(Default)]
pub struct Book {
    permissions: HashMap<String, Permission>,
    questions: HashMap<String, Question>,
    /// Requests whose post is on its way. The session's task and the
    /// resync after a connect can both see a request; only the first posts.
    posting: std::collections::HashSet<String>,
}

impl Book {
    /// Claim the posting of a request; false when it is posted or posting.
    fn start_posting(&mut self, id: &str) -> bool {
        !id.is_empty()
            && !self.permissions.contains_key(id)
            && !self.questions.contains_key(id)
            && self.posting.insert(id.to_owned())
    }
}

struct Permission {
    req: PermissionAsked,
    post_id: String,
    /// The thread it was posted in (a subagent's goes to its parent's).
    spot: Spot,
    /// An answer from chat is on its way to OpenCode; the `replied` event
    /// it causes must not be mistaken for an answer from elsewhere.
    answering: bool,
}

struct Question {
    req: QuestionAsked,
    spot: Spot,
    /// One post per question asked so far; the last one is open.
    post_ids: Vec<String>,
    /// Answers collected so far, one per answered question.
    answers: Vec<Vec<String>>,
    answering: bool,
}

impl Question {
    fn asked(&self) -> Asked {
        Asked {
            index: self.answers.len(),
            total: self.req.questions.len(),
        }
    }
}

/// The asks feature: its book of open requests, on top of the engine.
pub struct Asks {
    pub engine: Arc<Engine>,
    book: std::sync::Mutex<Book>,
}

impl Asks {
    pub fn new(engine: Arc<Engine>) -> Arc<Asks> {
        Arc::new(Asks {
            engine,
            book: std::sync::Mutex::new(Book::default()),
        })
    }
}

fn book(ctx: &Asks) -> std::sync::MutexGuard<'_, Book> {
    ctx.book
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether the session has a question or permission request open in chat.
pub fn waiting(ctx: &Asks, session_id: &str) -> bool {
    let b = book(ctx);
    b.permissions
        .values()
        .any(|p| p.req.session_id == session_id)
        || b.questions.values().any(|q| q.req.session_id == session_id)
}

/// Whether the session has a question open in chat (whose options are
/// answered by number).
pub fn question_waiting(ctx: &Asks, session_id: &str) -> bool {
    book(ctx)
        .questions
        .values()
        .any(|q| q.req.session_id == session_id)
}

/// Posts of permission requests still waiting for ✅ or ❌: after an outage
/// their reactions are read back, since nothing replays the lost events.
pub fn permission_posts(ctx: &Asks) -> Vec<String> {
    book(ctx)
        .permissions
        .values()
        .filter(|p| !p.answering)
        .map(|p| p.post_id.clone())
        .collect()
}

/// With `OPENCODE_MM_NOTIFY_PERMISSION`, a new request mentions the person
/// who started the thread, so it notifies them even where thread replies
/// do not (a followed channel thread, a muted channel).
async fn with_mention(ctx: &Asks, conn: &Connection, spot: &Spot, text: String) -> String {
    if !ctx.engine.app.config.notify_permission {
        return text;
    }
    let Ok(Some(binding)) = ctx.engine.app.store.thread(&spot.root_id).await else {
        return text;
    };
    if binding.created_by.is_empty() || binding.created_by == conn.info.bot.id {
        return text;
    }
    match conn.rest.user(&binding.created_by).await {
        Ok(user) if !user.username.is_empty() => format!("{text}\n\n@{}", user.username),
        _ => text,
    }
}

async fn post_in(conn: &Connection, spot: &Spot, message: String) -> Option<String> {
    match crate::sessions::reply_in(
        conn,
        &spot.channel_id,
        &spot.root_id,
        message,
        Priority::Urgent,
    )
    .await
    {
        Ok(p) => Some(p.id),
        Err(e) => {
            warn!(error = %e, "cannot post a request for an answer");
            None
        }
    }
}

async fn edit(ctx: &Asks, post_id: &str, message: &str) {
    let Some(conn) = ctx.engine.app.connection().await else {
        return;
    };
    let span = info_span!("post", id = %post_id);
    if let Err(e) = conn
        .rest
        .patch_post(post_id, message, None, Priority::Urgent)
        .instrument(span)
        .await
    {
        warn!(error = %e, "cannot update a request post");
    }
}

/// Post a permission request in the session's thread.
pub async fn permission_asked(ctx: &Asks, spot: Spot, req: PermissionAsked) {
    if !book(ctx).start_posting(&req.id) {
        return;
    }
    let posted = post_permission(ctx, &spot, &req).await;
    let Some((conn, post_id)) = record_permission(ctx, &spot, req, posted) else {
        return;
    };
    // One click to answer: the bot's own reactions offer the two choices.
    for emoji in ["white_check_mark", "x"] {
        if let Err(e) = conn
            .rest
            .add_reaction(&conn.info.bot.id, &post_id, emoji)
            .await
        {
            debug!(error = %e, "cannot add an answer reaction");
        }
    }
}

/// Book a posted request (before its answer buttons, so no answer is
/// missed), and release its posting claim either way.
fn record_permission(
    ctx: &Asks,
    spot: &Spot,
    req: PermissionAsked,
    posted: Option<(Arc<Connection>, String)>,
) -> Option<(Arc<Connection>, String)> {
    let mut b = book(ctx);
    b.posting.remove(&req.id);
    let (conn, post_id) = posted?;
    info!(request = %req.id, permission = %req.permission, post = %post_id, "permission asked in chat");
    b.permissions.insert(
        req.id.clone(),
        Permission {
            req,
            post_id: post_id.clone(),
            spot: spot.clone(),
            answering: false,
        },
    );
    Some((conn, post_id))
}

async fn post_permission(
    ctx: &Asks,
    spot: &Spot,
    req: &PermissionAsked,
) -> Option<(Arc<Connection>, String)> {
    let Some(conn) = ctx.engine.app.connection().await else {
        debug!("not connected; the permission request waits for the TUI");
        return None;
    };
    let mut text = asks::permission_post(req, &PermissionOutcome::Pending);
    // A command too long to show goes with the post as a file.
    let mut file_ids = Vec::new();
    if let Some(full) = asks::long_command(req) {
        let id: String = req
            .id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .take(64)
            .collect();
        let name = format!("command-{id}.txt");
        match conn
            .rest
            .upload_file(&spot.channel_id, &name, full.into_bytes())
            .await
        {
            Ok(info) => file_ids.push(info.id),
            Err(e) => {
                warn!(error = %e, "cannot attach the whole command");
                text.push_str(
                    "\n:x: **The attachment failed.** Read the whole command in OpenCode \
                     before you allow it.",
                );
            }
        }
    }
    let text = with_mention(ctx, &conn, spot, text).await;
    let created = crate::sessions::reply_with_files(
        &conn,
        &spot.channel_id,
        &spot.root_id,
        text,
        file_ids,
        Priority::Urgent,
    )
    .await;
    match created {
        Ok(post) => Some((conn, post.id)),
        Err(e) => {
            warn!(error = %e, "cannot post a request for an answer");
            None
        }
    }
}

/// OpenCode says a permission request was answered: by us (nothing to do)
/// or elsewhere (the post says so).
pub async fn permission_replied(ctx: &Asks, replied: &PermissionReplied) {
    let entry = {
        let mut b = book(ctx);
        match b.permissions.get(&replied.request_id) {
            Some(p) if p.answering => return,
            Some(_) => b.permissions.remove(&replied.request_id),
            None => return,
        }
    };
    let Some(p) = entry else { return };
    let outcome = match PermissionReply::parse(&replied.reply) {
        Some(reply) => PermissionOutcome::Elsewhere(reply),
        None => PermissionOutcome::Gone,
    };
    edit(ctx, &p.post_id, &asks::permission_post(&p.req, &outcome)).await;
}

/// Answer a permission request from chat. `request` names it; `None`
/// means the session's oldest open one. Returns what to tell the person
/// when the answer could not be delivered.
async fn answer_permission(
    ctx: &Asks,
    request: Option<&str>,
    session_id: &str,
    reply: PermissionReply,
    by: &str,
) -> Option<Result<(), String>> {
    let (id, req, post_id) = {
        let mut b = book(ctx);
        let id = match request {
            Some(id) => id.to_owned(),
            None => b
                .permissions
                .iter()
                .filter(|(_, p)| p.req.session_id == session_id && !p.answering)
                .map(|(id, _)| id.clone())
                .min()?,
        };
        let p = b.permissions.get_mut(&id).filter(|p| !p.answering)?;
        p.answering = true;
        (id, p.req.clone(), p.post_id.clone())
    };
    info!(request = %id, reply = reply.as_str(), by, "permission answered from chat");
    let result = ctx.engine.app.opencode().reply_permission(&id, reply).await;
    let (outcome, told) = match result {
        Ok(()) => (
            PermissionOutcome::Answered {
                reply,
                by: by.to_owned(),
            },
            Ok(()),
        ),
        Err(OpenCodeError::NotFound { .. }) => (PermissionOutcome::Gone, Ok(())),
        Err(e) => {
            // Still pending in OpenCode: keep it open for another try.
            if let Some(p) = book(ctx).permissions.get_mut(&id) {
                p.answering = false;
            }
            return Some(Err(format!(
                ":x: Could not answer the permission request: {e}"
            )));
        }
    };
    book(ctx).permissions.remove(&id);
    edit(ctx, &post_id, &asks::permission_post(&req, &outcome)).await;
    Some(told)
}

/// Post the first question of a question request.
pub async fn question_asked(ctx: &Arc<Asks>, spot: Spot, req: QuestionAsked) {
    if req.questions.is_empty() || !book(ctx).start_posting(&req.id) {
        return;
    }
    let posted = post_first_question(ctx, &spot, &req).await;
    let id = req.id.clone();
    {
        let mut b = book(ctx);
        b.posting.remove(&req.id);
        let Some(post_id) = posted else {
            return;
        };
        info!(request = %req.id, questions = req.questions.len(), post = %post_id, "question asked in chat");
        b.questions.insert(
            id.clone(),
            Question {
                req,
                spot,
                post_ids: vec![post_id],
                answers: Vec::new(),
                answering: false,
            },
        );
    }
    let ctx = ctx.clone();
    let timeout = ctx.engine.app.config.question_timeout;
    tokio::spawn(
        async move {
            tokio::time::sleep(timeout).await;
            expire(&ctx, &id, timeout).await;
        }
        .in_current_span(),
    );
}

async fn post_first_question(ctx: &Asks, spot: &Spot, req: &QuestionAsked) -> Option<String> {
    let Some(conn) = ctx.engine.app.connection().await else {
        debug!("not connected; the question waits for the TUI");
        return None;
    };
    let first = asks::question_post(
        &req.questions[0],
        Asked {
            index: 0,
            total: req.questions.len(),
        },
        &QuestionOutcome::Pending,
        &ctx.engine.app.config.command_prefix,
    );
    let first = with_mention(ctx, &conn, spot, first).await;
    post_in(&conn, spot, first).await
}

/// Nobody answered in time: decline the request so the agent goes on.
async fn expire(ctx: &Asks, request_id: &str, after: std::time::Duration) {
    let Some(q) = take_question(ctx, request_id, None) else {
        return;
    };
    info!(request = %request_id, "question expired; declining it");
    let outcome = match ctx.engine.app.opencode().reject_question(request_id).await {
        Ok(()) => QuestionOutcome::Expired {
            after_minutes: after.as_secs().div_ceil(60),
        },
        Err(OpenCodeError::NotFound { .. }) => QuestionOutcome::Gone,
        Err(e) => {
            warn!(error = %e, "cannot decline an expired question");
            QuestionOutcome::Gone
        }
    };
    show_open_question(ctx, &q, &outcome).await;
    if let (QuestionOutcome::Expired { after_minutes }, Some(conn)) =
        (&outcome, ctx.engine.app.connection().await)
    {
        post_in(
            &conn,
            &q.spot,
            format!(
                ":hourglass: Nobody answered the question within {after_minutes} min, so it \
                 was declined and the agent goes on without it."
            ),
        )
        .await;
    }
}

/// Take a question out of the book: by id, or the session's oldest open one.
fn take_question(ctx: &Asks, request_id: &str, session_id: Option<&str>) -> Option<Question> {
    let mut b = book(ctx);
    let id = if request_id.is_empty() {
        let session_id = session_id?;
        b.questions
            .iter()
            .filter(|(_, q)| q.req.session_id == session_id && !q.answering)
            .map(|(id, _)| id.clone())
            .min()?
    } else {
        request_id.to_owned()
    };
    if b.questions.get(&id).is_some_and(|q| q.answering) {
        return None;
    }
    b.questions.remove(&id)
}

/// Edit the open question's post to its outcome.
async fn show_open_question(ctx: &Asks, q: &Question, outcome: &QuestionOutcome) {
    let asked = q.asked();
    let (Some(info), Some(post_id)) = (q.req.questions.get(asked.index), q.post_ids.last()) else {
        return;
    };
    let prefix = &ctx.engine.app.config.command_prefix;
    edit(
        ctx,
        post_id,
        &asks::question_post(info, asked, outcome, prefix),
    )
    .await;
}

/// OpenCode says a question request was answered or declined. When that
/// happened elsewhere, the open post says so.
pub async fn question_settled(ctx: &Asks, request_id: &str, answers: Option<&[Vec<String>]>) {
    let Some(q) = take_question(ctx, request_id, None) else {
        return;
    };
    let index = q.answers.len();
    let outcome = match answers {
        Some(all) => QuestionOutcome::Elsewhere {
            answer: all.get(index).cloned(),
        },
        None => QuestionOutcome::Gone,
    };
    show_open_question(ctx, &q, &outcome).await;
}

/// A reply in a thread whose session waits for an answer. Returns true when
/// the post was an answer (it is then not a prompt).
pub async fn answer_text(
    ctx: &Arc<Asks>,
    conn: &Connection,
    session_id: &str,
    post: &Post,
    sender: &str,
    text: &str,
) -> bool {
    // A permission word goes to the permission request waiting in this
    // thread (the session's own, or a subagent's posted here); anything
    // else to an open question.
    let thread = post.thread_root();
    if let Some(reply) = asks::parse_permission(text) {
        let waiting: Vec<String> = {
            let b = book(ctx);
            let mut ids: Vec<String> = b
                .permissions
                .iter()
                .filter(|(_, p)| {
                    !p.answering && (p.spot.root_id == thread || p.req.session_id == session_id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.sort();
            ids
        };
        match waiting.as_slice() {
            [] => {}
            [id] => {
                if let Some(result) =
                    answer_permission(ctx, Some(id), session_id, reply, sender).await
                {
                    if let Err(message) = result {
                        say(conn, post, &message).await;
                    }
                    return true;
                }
            }
            several => {
                // Which one was meant is not in the words: ask, never guess.
                say(
                    conn,
                    post,
                    &format!(
                        ":grey_question: {} permission requests wait in this thread. React \
                         :white_check_mark: or :x: on the one you mean.",
                        several.len()
                    ),
                )
                .await;
                return true;
            }
        }
    }
    let (id, info, asked) = {
        let mut b = book(ctx);
        let Some((id, q)) = b
            .questions
            .iter_mut()
            .filter(|(_, q)| {
                !q.answering && (q.spot.root_id == thread || q.req.session_id == session_id)
            })
            .min_by(|a, b| a.0.cmp(b.0))
        else {
            return false;
        };
        let asked = q.asked();
        let Some(info) = q.req.questions.get(asked.index).cloned() else {
            return false;
        };
        q.answering = true;
        (id.clone(), info, asked)
    };
    let release = |ctx: &Asks| {
        if let Some(q) = book(ctx).questions.get_mut(&id) {
            q.answering = false;
        }
    };
    let answer = match asks::parse_question(text, &info) {
        Ok(a) => a,
        Err(why) => {
            release(ctx);
            say(conn, post, &format!(":warning: {why}")).await;
            return true;
        }
    };
    let prefix = ctx.engine.app.config.command_prefix.clone();
    let answered = QuestionOutcome::Answered {
        answer: answer.clone(),
        by: sender.to_owned(),
    };
    let (open_post, spot, more) = {
        let mut b = book(ctx);
        let Some(q) = b.questions.get_mut(&id) else {
            return true;
        };
        q.answers.push(answer);
        let more = q.req.questions.get(q.answers.len()).cloned().map(|next| {
            (
                next,
                Asked {
                    index: q.answers.len(),
                    total: q.req.questions.len(),
                },
            )
        });
        (q.post_ids.last().cloned(), q.spot.clone(), more)
    };
    if let Some(post_id) = &open_post {
        edit(
            ctx,
            post_id,
            &asks::question_post(&info, asked, &answered, &prefix),
        )
        .await;
    }
    if let Some((next, next_asked)) = more {
        // Several questions are asked one after another.
        let text = asks::question_post(&next, next_asked, &QuestionOutcome::Pending, &prefix);
        let next_post = post_in(conn, &spot, text).await;
        let mut b = book(ctx);
        if let Some(q) = b.questions.get_mut(&id) {
            q.post_ids.extend(next_post);
            q.answering = false;
        }
        return true;
    }
    let Some(q) = book(ctx).questions.remove(&id) else {
        return true;
    };
    info!(request = %id, by = sender, "question answered from chat");
    match ctx
        .engine
        .app
        .opencode()
        .reply_question(&id, &q.answers)
        .await
    {
        Ok(()) => {}
        Err(OpenCodeError::NotFound { .. }) => {
            say(
                conn,
                post,
                ":warning: This question was answered elsewhere or has expired; OpenCode no \
                 longer waits for it.",
            )
            .await;
        }
        Err(e) => {
            say(
                conn,
                post,
                &format!(":x: Could not send the answer to OpenCode: {e}"),
            )
            .await;
        }
    }
    true
}

/// `!reject`: decline the session's open question, or else deny its open
/// permission request. The answer for the person.
pub async fn reject(ctx: &Asks, session_id: &str, by: &str) -> String {
    if let Some(q) = take_question(ctx, "", Some(session_id)) {
        info!(request = %q.req.id, by, "question declined from chat");
        return match ctx.engine.app.opencode().reject_question(&q.req.id).await {
            Ok(()) => {
                show_open_question(ctx, &q, &QuestionOutcome::Rejected { by: by.to_owned() }).await;
                String::new()
            }
            Err(OpenCodeError::NotFound { .. }) => {
                show_open_question(ctx, &q, &QuestionOutcome::Gone).await;
                ":warning: OpenCode no longer waits for that question.".to_owned()
            }
            Err(e) => {
                book(ctx).questions.insert(q.req.id.clone(), q);
                format!(":x: Could not decline the question: {e}")
            }
        };
    }
    match answer_permission(ctx, None, session_id, PermissionReply::Reject, by).await {
        Some(Ok(())) => String::new(),
        Some(Err(message)) => message,
        None => "Nothing in this session is waiting for an answer.".to_owned(),
    }
}

/// ✅ or ❌ from a permitted user (the router checked who) on a post:
/// answers the permission request posted there, if any.
pub async fn answer_reaction(ctx: &Asks, conn: &Connection, post_id: &str, allow: bool, by: &str) {
    let on_permission = {
        let b = book(ctx);
        b.permissions
            .iter()
            .find(|(_, p)| p.post_id == post_id)
            .map(|(id, p)| (id.clone(), p.req.session_id.clone()))
    };
    let Some((id, session_id)) = on_permission else {
        return;
    };
    let reply = if allow {
        PermissionReply::Once
    } else {
        PermissionReply::Reject
    };
    if let Some(Err(message)) = answer_permission(ctx, Some(&id), &session_id, reply, by).await
        && let Ok(p) = conn.rest.post(post_id).await
    {
        say(conn, &p, &message).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Book;

    #[test]
    fn a_request_is_posted_by_one_path_only() {
        let mut book = Book::default();
        assert!(book.start_posting("per_1"));
        // The resync after a connect sees the same request while the
        // session's task is still posting it.
        assert!(!book.start_posting("per_1"));
        assert!(!book.start_posting(""), "a request without an id");
        book.posting.remove("per_1");
        assert!(book.start_posting("per_1"), "released after a failed post");
    }
}
