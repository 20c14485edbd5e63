//! Carrying out the `!` commands, and the session operations the session
//! tools share with them (listing, attaching, describing).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Command, parse};
use crate::bridge::{Ctx, NewThread, ThreadSpot, new_session, open_thread, say};
use crate::mattermost::connection::{Connection, describe_link};
use crate::mattermost::types::Post;
use crate::opencode::{Activity, ModelRef, Session};
use crate::render::format;
use crate::store::{ThreadBinding, ThreadStatus, now_millis};

/// How long a `!models` list waits for its number.
const CHOICE_TTL: Duration = Duration::from_secs(600);
/// Most sessions `!sessions` lists.
const LIST_MAX: usize = 20;

/// Where a command was typed.
pub(crate) struct Here<'a> {
    pub post: &'a Post,
    /// The session thread the post is addressed to (its thread, or the
    /// session its DM is attached to).
    pub binding: Option<&'a ThreadBinding>,
    pub is_dm: bool,
    pub sender: &'a str,
}

/// A numbered `!models` list waiting for the person to pick one.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    models: Vec<String>,
    root_post_id: String,
    at: Instant,
}

fn choice_key(post: &Post) -> String {
    format!("{}|{}|{}", post.channel_id, post.root_id, post.user_id)
}

/// Run `text` as a command (or the number answering a `!models` list) and
/// answer it. False when it is an ordinary prompt.
pub(crate) async fn handle(ctx: &Arc<Ctx>, conn: &Connection, here: &Here<'_>, text: &str) -> bool {
    if let Some(reply) = pick_model(ctx, here, text).await {
        say(conn, here.post, &reply).await;
        return true;
    }
    let prefix = ctx.agent.config.command_prefix.clone();
    let Some(parsed) = parse(text, &prefix) else {
        return false;
    };
    let reply = match parsed {
        Ok(command) => {
            info!(?command, "command");
            match run(ctx, conn, here, command).await {
                Ok(text) | Err(text) => text,
            }
        }
        Err(e) => format!(":grey_question: {}", capitalise(&e.to_string())),
    };
    if !reply.is_empty() {
        say(conn, here.post, &reply).await;
    }
    true
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Carry out one command: the answer, or what went wrong (also an answer).
async fn run(
    ctx: &Arc<Ctx>,
    conn: &Connection,
    here: &Here<'_>,
    command: Command,
) -> Result<String, String> {
    let prefix = ctx.agent.config.command_prefix.as_str();
    match command {
        Command::Help => Ok(super::help(prefix)),
        Command::Sessions => {
            sessions_report(ctx, Some(conn), here.binding.map(|b| b.session_id.as_str())).await
        }
        Command::Use(id) => use_session(ctx, conn, here, &id).await,
        Command::Current => current(ctx, conn, here).await,
        Command::New(title) => new(ctx, conn, here, title).await,
        Command::Stop => stop(ctx, here).await,
        Command::Reject => reject(ctx, here).await,
        Command::Models => models(ctx, here).await,
        Command::Model(choice) => model(ctx, here, choice).await,
        Command::Costs => costs(ctx, here).await,
        Command::Status => Ok(status(ctx, conn)),
        Command::Schedule(args) => Ok(schedule(ctx, here, &args).await),
    }
}

async fn schedule(ctx: &Arc<Ctx>, here: &Here<'_>, args: &str) -> String {
    crate::scheduler::command(ctx, &here.post.user_id, args).await
}

/// The session a thread-scoped command acts on, or how to get one.
fn session_here<'a>(ctx: &Ctx, here: &'a Here<'_>) -> Result<&'a ThreadBinding, String> {
    let prefix = &ctx.agent.config.command_prefix;
    match here.binding {
        Some(b) if b.instance_id != ctx.instance.id => Err(format!(
            ":electric_plug: This thread belongs to another OpenCode instance that is not \
             running. `{prefix}new` starts a session here."
        )),
        Some(b) if b.status == ThreadStatus::Ended => Err(format!(
            ":no_entry: This thread's session has ended. `{prefix}use <id>` attaches another, \
             `{prefix}new` starts one."
        )),
        Some(b) => Ok(b),
        None => Err(format!(
            ":grey_question: No session here. Use this in a session's thread, or attach this DM \
             to one with `{prefix}use <id>` (`{prefix}sessions` lists them)."
        )),
    }
}

/// A session by its short id, its id, or a unique prefix of either.
pub(crate) async fn resolve_session(ctx: &Ctx, wanted: &str) -> Result<Session, String> {
    let prefix = &ctx.agent.config.command_prefix;
    let sessions = ctx
        .opencode()
        .list_sessions()
        .await
        .map_err(|e| format!(":x: Could not list OpenCode's sessions: {e}"))?;
    let wanted_lower = wanted.to_lowercase();
    if let Some(exact) = sessions
        .iter()
        .find(|s| s.id == wanted || s.slug.to_lowercase() == wanted_lower)
    {
        return Ok(exact.clone());
    }
    let matches: Vec<&Session> = sessions
        .iter()
        .filter(|s| {
            s.id.starts_with(wanted)
                || (!s.slug.is_empty() && s.slug.to_lowercase().starts_with(&wanted_lower))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            ":grey_question: No session `{wanted}` in this OpenCode instance. \
             `{prefix}sessions` lists them."
        )),
        many => Err(format!(
            ":grey_question: `{wanted}` matches {} sessions ({}). Give more of the id.",
            many.len(),
            many.iter()
                .take(5)
                .map(|s| format!("`{}`", s.short_id()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The live thread of a session on this instance, preferring one in
/// `channel` when given.
async fn thread_of_session(
    ctx: &Ctx,
    session_id: &str,
    channel: Option<&str>,
) -> Option<ThreadBinding> {
    let mine = ctx.live_threads(session_id).await.ok()?;
    channel
        .and_then(|ch| mine.iter().find(|t| t.channel_id == ch).cloned())
        .or_else(|| mine.into_iter().next())
}

/// `!sessions` and `mattermost_list_sessions`: this instance's sessions,
/// newest first, with status, age, directory and thread.
pub(crate) async fn sessions_report(
    ctx: &Ctx,
    conn: Option<&Connection>,
    current: Option<&str>,
) -> Result<String, String> {
    let sessions = ctx
        .opencode()
        .list_sessions()
        .await
        .map_err(|e| format!(":x: Could not list OpenCode's sessions: {e}"))?;
    let sessions: Vec<Session> = sessions
        .into_iter()
        .filter(|s| s.parent_id.is_none())
        .collect();
    if sessions.is_empty() {
        return Ok(format!(
            "No sessions yet in `{}`. Send a message to start one.",
            ctx.instance.directory
        ));
    }
    let activity = ctx.opencode().activity().await.unwrap_or_default();
    let now = now_millis() as f64;
    let mut out = format!(
        "**Sessions of `{}`** ({} in all, newest first):\n",
        ctx.instance.directory,
        sessions.len()
    );
    for s in sessions.iter().take(LIST_MAX) {
        let state = match activity.iter().find(|(id, _)| *id == s.id).map(|(_, a)| a) {
            Some(Activity::Busy) => "busy",
            Some(Activity::Retry { .. }) => "retrying",
            _ => "idle",
        };
        let age = format::duration((now - s.time.updated.max(s.time.created)).max(0.0));
        let thread = match (thread_of_session(ctx, &s.id, None).await, conn) {
            (Some(t), Some(conn)) => format!("[thread]({})", conn.permalink(&t.root_post_id, None)),
            (Some(_), None) => "has a thread".to_owned(),
            (None, _) => "no thread".to_owned(),
        };
        let marker = if current == Some(s.id.as_str()) {
            " ← here"
        } else {
            ""
        };
        let title = if s.title.is_empty() {
            "(untitled)".to_owned()
        } else {
            format::plain(&format::one_line(&s.title, 60))
        };
        out.push_str(&format!(
            "- `{}` {title} · {state} · {age} ago · `{}` · {thread}{marker}\n",
            s.short_id(),
            s.directory,
        ));
    }
    if sessions.len() > LIST_MAX {
        out.push_str(&format!("…and {} older.\n", sessions.len() - LIST_MAX));
    }
    out.push_str(&format!(
        "`{}use <id>` attaches this DM or thread to one.",
        ctx.agent.config.command_prefix
    ));
    Ok(out)
}

/// `!use <id>`.
async fn use_session(
    ctx: &Arc<Ctx>,
    conn: &Connection,
    here: &Here<'_>,
    wanted: &str,
) -> Result<String, String> {
    let post = here.post;
    let prefix = &ctx.agent.config.command_prefix;
    if wanted.eq_ignore_ascii_case("none") {
        if !here.is_dm {
            return Err(format!(
                ":grey_question: `{prefix}use none` detaches a DM; threads stay with their session."
            ));
        }
        ctx.store
            .select_thread(&post.channel_id, None, now_millis())
            .await
            .map_err(|e| format!(":x: Could not detach: {e}"))?;
        return Ok("Detached: each new message in this DM starts a new session.".into());
    }
    let session = resolve_session(ctx, wanted).await?;
    if !post.root_id.is_empty() {
        // In a thread: the thread now talks to that session. Routing
        // already looked its binding up.
        match here.binding {
            Some(_) => {
                ctx.store
                    .set_thread_session(&post.root_id, &session.id)
                    .await
            }
            None => {
                ctx.store
                    .bind_thread(&ThreadBinding {
                        root_post_id: post.root_id.clone(),
                        channel_id: post.channel_id.clone(),
                        session_id: session.id.clone(),
                        instance_id: ctx.instance.id.clone(),
                        created_by: post.user_id.clone(),
                        created_at: now_millis(),
                        status: ThreadStatus::Active,
                        model: None,
                    })
                    .await
            }
        }
        .map_err(|e| format!(":x: Could not attach this thread: {e}"))?;
        ctx.bound(&session.id);
        return Ok(format!(
            ":link: This thread now talks to session `{}` ({}). Replies here go to it.",
            session.short_id(),
            title_of(&session)
        ));
    }
    let thread = attach(
        ctx,
        conn,
        &post.channel_id,
        &session,
        here.sender,
        &post.user_id,
        !here.is_dm,
    )
    .await?;
    if here.is_dm {
        ctx.store
            .select_thread(&post.channel_id, Some(&thread.root_post_id), now_millis())
            .await
            .map_err(|e| format!(":x: Could not attach this DM: {e}"))?;
    }
    Ok(format!(
        ":link: This DM now talks to session `{}` ({}): [thread]({}). New messages here go to \
         it; `{prefix}new` starts a fresh one, `{prefix}use none` detaches.",
        session.short_id(),
        title_of(&session),
        conn.permalink(&thread.root_post_id, None)
    ))
}

fn title_of(session: &Session) -> String {
    if session.title.is_empty() {
        "untitled".to_owned()
    } else {
        format::plain(&format::one_line(&session.title, 60))
    }
}

/// The session's thread in `channel`, posting its card first if it has none
/// there yet.
pub(crate) async fn attach(
    ctx: &Arc<Ctx>,
    conn: &Connection,
    channel_id: &str,
    session: &Session,
    requested_by: &str,
    user_id: &str,
    reuse_any_channel: bool,
) -> Result<ThreadBinding, String> {
    let existing = thread_of_session(ctx, &session.id, Some(channel_id))
        .await
        .filter(|t| reuse_any_channel || t.channel_id == channel_id);
    if let Some(t) = existing {
        ctx.bound(&session.id);
        return Ok(t);
    }
    let spot = ThreadSpot {
        channel_id,
        reply_to: None,
        created_by: user_id,
        alias: None,
    };
    open_thread(ctx, conn, &spot, requested_by, &session.title, session)
        .await
        .ok_or_else(|| ":x: Could not post the session's thread; see the agent log.".to_owned())
}

/// A thread for a session in a channel (the default channel for sessions
/// started at the TUI).
pub(crate) async fn thread_in_channel(
    ctx: &Arc<Ctx>,
    conn: &Connection,
    channel_id: &str,
    session: &Session,
) -> Result<ThreadBinding, String> {
    attach(ctx, conn, channel_id, session, "the TUI", "", false).await
}

/// `!current`.
async fn current(ctx: &Ctx, conn: &Connection, here: &Here<'_>) -> Result<String, String> {
    let prefix = &ctx.agent.config.command_prefix;
    let Some(b) = here.binding else {
        return Ok(if here.is_dm && here.post.root_id.is_empty() {
            format!(
                "No session attached to this DM: each new message starts one. \
                 `{prefix}use <id>` attaches one."
            )
        } else {
            format!("No session here. `{prefix}sessions` lists them.")
        });
    };
    describe_binding(ctx, conn, b).await
}

/// A thread's session in a few lines: for `!current` and
/// `mattermost_current_session`.
pub(crate) async fn describe_binding(
    ctx: &Ctx,
    conn: &Connection,
    b: &ThreadBinding,
) -> Result<String, String> {
    let link = conn.permalink(&b.root_post_id, None);
    if b.instance_id != ctx.instance.id {
        return Ok(format!(
            "Session `{}` of another OpenCode instance (`{}`) · [thread]({link})",
            b.session_id, b.instance_id
        ));
    }
    let session = ctx
        .opencode()
        .get_session(&b.session_id)
        .await
        .map_err(|e| format!(":x: Could not read session `{}`: {e}", b.session_id))?;
    let model = b
        .model
        .clone()
        .unwrap_or_else(|| "OpenCode's default".to_owned());
    let state = if b.status == ThreadStatus::Ended {
        "ended"
    } else {
        "active"
    };
    Ok(format!(
        "Session `{}` · {} · `{}` · {state} · model {model} · [thread]({link})",
        session.short_id(),
        title_of(&session),
        session.directory
    ))
}

/// `!new [title]`: a new session with its own thread; in a DM it becomes
/// the session new messages go to.
async fn new(
    ctx: &Arc<Ctx>,
    conn: &Connection,
    here: &Here<'_>,
    title: Option<String>,
) -> Result<String, String> {
    let post = here.post;
    let title = title.unwrap_or_else(|| format!("New session from @{}", here.sender));
    let place = if here.is_dm {
        NewThread::CardRoot
    } else {
        NewThread::PostThread
    };
    let binding = new_session(ctx, conn, post, here.sender, &title, place)
        .await
        .ok_or_else(|| ":x: Could not start a session; see the agent log.".to_owned())?;
    let prefix = &ctx.agent.config.command_prefix;
    if here.is_dm {
        ctx.store
            .select_thread(&post.channel_id, Some(&binding.root_post_id), now_millis())
            .await
            .map_err(|e| format!(":x: Started, but could not attach this DM to it: {e}"))?;
        return Ok(format!(
            ":sparkles: Started a new session: [thread]({}). New messages in this DM go to it \
             (`{prefix}use none` detaches).",
            conn.permalink(&binding.root_post_id, None)
        ));
    }
    Ok(format!(
        ":sparkles: Started a new session: [thread]({}).",
        conn.permalink(&binding.root_post_id, None)
    ))
}

/// `!stop`.
async fn stop(ctx: &Ctx, here: &Here<'_>) -> Result<String, String> {
    let b = session_here(ctx, here)?;
    stop_session(ctx, &b.session_id).await
}

/// Abort a session's running turn (`!stop`, the 🛑 reaction). An empty
/// answer means it stopped: the turn's own post shows that.
pub(crate) async fn stop_session(ctx: &Ctx, session_id: &str) -> Result<String, String> {
    let busy = ctx
        .opencode()
        .activity()
        .await
        .map_err(|e| format!(":x: Could not ask OpenCode: {e}"))?
        .iter()
        .any(|(id, a)| id == session_id && !matches!(a, Activity::Idle));
    if !busy {
        return Ok("Nothing is running in this session.".into());
    }
    ctx.opencode()
        .abort(session_id)
        .await
        .map_err(|e| format!(":x: Could not stop the turn: {e}"))?;
    Ok(String::new())
}

/// `!reject`: decline the thread's open question (or deny its permission
/// request) so the agent goes on.
async fn reject(ctx: &Ctx, here: &Here<'_>) -> Result<String, String> {
    let b = session_here(ctx, here)?;
    Ok(crate::bridge::reject_request(ctx, &b.session_id, here.sender).await)
}

/// Every model OpenCode can use, as `provider/model`, in a stable order.
async fn model_list(ctx: &Ctx) -> Result<(Vec<String>, Vec<String>), String> {
    let providers = ctx
        .opencode()
        .providers()
        .await
        .map_err(|e| format!(":x: Could not list OpenCode's models: {e}"))?;
    let mut all = Vec::new();
    let mut defaults = Vec::new();
    for p in &providers.providers {
        for id in p.models.keys() {
            all.push(format!("{}/{id}", p.id));
        }
        if let Some(d) = providers.default.get(&p.id) {
            defaults.push(format!("{}/{d}", p.id));
        }
    }
    Ok((all, defaults))
}

/// `!models`.
async fn models(ctx: &Ctx, here: &Here<'_>) -> Result<String, String> {
    let b = session_here(ctx, here)?;
    let (all, defaults) = model_list(ctx).await?;
    if all.is_empty() {
        return Ok("OpenCode has no models configured.".into());
    }
    let mut out = String::from("**Models** (reply with a number to choose):\n");
    for (i, m) in all.iter().enumerate() {
        let mut notes = Vec::new();
        if b.model.as_deref() == Some(m.as_str()) {
            notes.push("this session");
        }
        if defaults.contains(m) {
            notes.push("provider default");
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join(", "))
        };
        out.push_str(&format!("{}. `{m}`{notes}\n", i + 1));
    }
    ctx.choices
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(
            choice_key(here.post),
            Choice {
                models: all,
                root_post_id: b.root_post_id.clone(),
                at: Instant::now(),
            },
        );
    Ok(out)
}

/// A bare number after `!models` in the same place chooses that model.
async fn pick_model(ctx: &Ctx, here: &Here<'_>, text: &str) -> Option<String> {
    let number: usize = text.trim().parse().ok()?;
    let choice = {
        let mut choices = ctx
            .choices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        choices.retain(|_, c| c.at.elapsed() < CHOICE_TTL);
        choices.get(&choice_key(here.post)).cloned()?
    };
    let Some(model) = number.checked_sub(1).and_then(|i| choice.models.get(i)) else {
        return Some(format!(
            ":grey_question: Choose a number from 1 to {}.",
            choice.models.len()
        ));
    };
    ctx.choices
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&choice_key(here.post));
    Some(
        match set_model(ctx, &choice.root_post_id, Some(model)).await {
            Ok(text) | Err(text) => text,
        },
    )
}

/// `!model [provider/model | default]`.
async fn model(ctx: &Ctx, here: &Here<'_>, choice: Option<String>) -> Result<String, String> {
    let b = session_here(ctx, here)?;
    match choice.as_deref() {
        None => Ok(match &b.model {
            Some(m) => format!("This session uses `{m}`."),
            None => format!(
                "This session uses OpenCode's default model. `{}models` lists the others.",
                ctx.agent.config.command_prefix
            ),
        }),
        Some("default") => set_model(ctx, &b.root_post_id, None).await,
        Some(m) => {
            let (all, _) = model_list(ctx).await?;
            if !all.iter().any(|known| known == m) {
                return Err(format!(
                    ":grey_question: OpenCode has no model `{m}`. `{}models` lists them.",
                    ctx.agent.config.command_prefix
                ));
            }
            set_model(ctx, &b.root_post_id, Some(m)).await
        }
    }
}

async fn set_model(ctx: &Ctx, root_post_id: &str, model: Option<&str>) -> Result<String, String> {
    ctx.store
        .set_thread_model(root_post_id, model)
        .await
        .map_err(|e| format!(":x: Could not save the model: {e}"))?;
    Ok(match model.and_then(ModelRef::parse) {
        Some(m) => format!(":white_check_mark: The next prompts in this session use `{m}`."),
        None => ":white_check_mark: The next prompts use OpenCode's default model.".into(),
    })
}

/// `!costs`.
async fn costs(ctx: &Ctx, here: &Here<'_>) -> Result<String, String> {
    let b = session_here(ctx, here)?;
    let messages = ctx
        .opencode()
        .messages(&b.session_id)
        .await
        .map_err(|e| format!(":x: Could not read the session: {e}"))?;
    let mut cost = 0.0;
    let (mut input, mut output, mut reasoning, mut read, mut write) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut turns = 0;
    for m in messages.iter().filter(|m| m.info.role == "assistant") {
        turns += 1;
        cost += m.info.cost;
        input += m.info.tokens.input;
        output += m.info.tokens.output;
        reasoning += m.info.tokens.reasoning;
        read += m.info.tokens.cache.read;
        write += m.info.tokens.cache.write;
    }
    Ok(format!(
        "**Costs of this session** ({turns} model calls): {}\n\
         Tokens: input {} · output {} · reasoning {} · cache read {} · cache write {}",
        format::cost(cost),
        format::tokens(input),
        format::tokens(output),
        format::tokens(reasoning),
        format::tokens(read),
        format::tokens(write),
    ))
}

/// `!status`.
fn status(ctx: &Ctx, conn: &Connection) -> String {
    let s = &ctx.stats;
    let mut out = format!(
        "**Status** of `{}`\n- Instance `{}` (pid {})\n",
        ctx.instance.directory,
        ctx.instance.id,
        std::process::id()
    );
    for line in describe_link(conn) {
        out.push_str(&format!("- {line}\n"));
    }
    out.push_str(&format!(
        "- Queue: {} prompt(s) waiting for their session\n- Bridge: {}",
        s.queued.load(Ordering::Relaxed),
        s.summary()
    ));
    out
}

/// The DM between the bot and a user, for tools acting "for the owner".
pub(crate) async fn dm_with(conn: &Connection, user_id: &str) -> Result<String, String> {
    conn.rest
        .direct_channel(&conn.info.bot.id, user_id)
        .await
        .map(|c| c.id)
        .map_err(|e| {
            warn!(error = %e, "cannot open a DM");
            format!("cannot open the DM with {user_id}: {e}")
        })
}
