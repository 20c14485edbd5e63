//! The session commands' operations: list, attach (`use`), describe
//! (`current`), start (`new`), models, costs and status. The `!` commands
//! and the session tools are thin callers of these.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::mattermost::connection::{Connection, describe_link};
use crate::mattermost::types::Post;
use crate::opencode::{Activity, ModelRef, Session};
use crate::render::format;
use crate::sessions::threads::{attach, new_session, thread_of_session};
use crate::sessions::{Engine, NewThread};
use crate::store::{ThreadBinding, ThreadStatus, now_millis};

/// How long a `!models` list waits for its number.
const CHOICE_TTL: Duration = Duration::from_secs(600);
/// Most sessions `!sessions` lists.
const LIST_MAX: usize = 20;

/// Where a command was typed.
pub struct Here<'a> {
    pub post: &'a Post,
    /// The session thread the post is addressed to (its thread, or the
    /// session its DM is attached to).
    pub binding: Option<&'a ThreadBinding>,
    pub is_dm: bool,
    pub sender: &'a str,
}

/// A numbered `!models` list waiting for the person to pick one.
#[derive(Debug, Clone)]
pub struct Choice {
    models: Vec<String>,
    root_post_id: String,
    at: Instant,
}

/// The `!models` lists waiting for a number, by channel, thread and user.
#[derive(Debug, Default)]
pub struct Choices(std::sync::Mutex<std::collections::HashMap<String, Choice>>);

fn choice_key(post: &Post) -> String {
    format!("{}|{}|{}", post.channel_id, post.root_id, post.user_id)
}

/// The session a thread-scoped command acts on, or how to get one.
pub fn session_here<'a>(ctx: &Engine, here: &'a Here<'_>) -> Result<&'a ThreadBinding, String> {
    let prefix = &ctx.app.config.command_prefix;
    match here.binding {
        Some(b) if b.instance_id != ctx.app.instance.id => Err(format!(
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

/// `!end`: stop the session's running turn, if any, and end its threads
/// here: each gets the ended notice and its card says so. The session
/// stays in OpenCode, so `use` can attach it again.
pub async fn end(ctx: &Engine, here: &Here<'_>) -> Result<String, String> {
    let b = session_here(ctx, here)?;
    if let Err(e) = crate::sessions::turn::stop_session(ctx, &b.session_id).await {
        warn!(error = %e, "cannot stop the turn of a session being ended");
    }
    let why = crate::sessions::text::Ending::EndedBy(here.sender.to_owned());
    match crate::sessions::ended::end_session(ctx, &b.session_id, &why).await {
        // The notice in the thread is the answer.
        0 => Ok("Nothing to end here.".into()),
        _ => Ok(String::new()),
    }
}

/// OpenCode's sessions, or the answer to give when they cannot be listed.
async fn list_sessions(ctx: &Engine) -> Result<Vec<Session>, String> {
    ctx.app
        .opencode()
        .list_sessions()
        .await
        .map_err(|e| format!(":x: Could not list OpenCode's sessions: {e}"))
}

/// A session by its short id, its id, or a unique prefix of either.
pub async fn resolve_session(ctx: &Engine, wanted: &str) -> Result<Session, String> {
    let prefix = &ctx.app.config.command_prefix;
    let sessions = list_sessions(ctx).await?;
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

/// `!sessions` and `mattermost_list_sessions`: this instance's sessions,
/// newest first, with status, age, directory and thread.
pub async fn sessions_report(
    ctx: &Engine,
    conn: Option<&Connection>,
    current: Option<&str>,
) -> Result<String, String> {
    let sessions = list_sessions(ctx).await?;
    let sessions: Vec<Session> = sessions
        .into_iter()
        .filter(|s| s.parent_id.is_none())
        .collect();
    if sessions.is_empty() {
        return Ok(format!(
            "No sessions yet in `{}`. Send a message to start one.",
            ctx.app.instance.directory
        ));
    }
    let activity = ctx.app.opencode().activity().await.unwrap_or_default();
    let now = now_millis() as f64;
    let mut out = format!(
        "**Sessions of {} (`{}`, this instance)** ({} in all, newest first):\n",
        ctx.app.instance.display_name(),
        ctx.app.instance.directory,
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
        ctx.app.config.command_prefix
    ));
    Ok(out)
}

/// `!use <id>`.
pub async fn use_session(
    ctx: &Arc<Engine>,
    conn: &Connection,
    here: &Here<'_>,
    wanted: &str,
) -> Result<String, String> {
    let post = here.post;
    let prefix = &ctx.app.config.command_prefix;
    if wanted.eq_ignore_ascii_case("none") {
        if !here.is_dm {
            return Err(format!(
                ":grey_question: `{prefix}use none` detaches a DM; threads stay with their session."
            ));
        }
        ctx.app
            .store
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
                ctx.app
                    .store
                    .set_thread_session(&post.root_id, &session.id)
                    .await
            }
            None => {
                ctx.app
                    .store
                    .bind_thread(&ThreadBinding {
                        root_post_id: post.root_id.clone(),
                        channel_id: post.channel_id.clone(),
                        session_id: session.id.clone(),
                        instance_id: ctx.app.instance.id.clone(),
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
        ctx.app
            .store
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

pub fn title_of(session: &Session) -> String {
    if session.title.is_empty() {
        "untitled".to_owned()
    } else {
        format::plain(&format::one_line(&session.title, 60))
    }
}

/// `!current`.
pub async fn current(ctx: &Engine, conn: &Connection, here: &Here<'_>) -> Result<String, String> {
    let prefix = &ctx.app.config.command_prefix;
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
pub async fn describe_binding(
    ctx: &Engine,
    conn: &Connection,
    b: &ThreadBinding,
) -> Result<String, String> {
    let link = conn.permalink(&b.root_post_id, None);
    if b.instance_id != ctx.app.instance.id {
        return Ok(format!(
            "Session `{}` of another OpenCode instance (`{}`) · [thread]({link})",
            b.session_id, b.instance_id
        ));
    }
    let session = ctx
        .app
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
pub async fn new(
    ctx: &Arc<Engine>,
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
    let prefix = &ctx.app.config.command_prefix;
    if here.is_dm {
        ctx.app
            .store
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

/// Every model OpenCode can use, as `provider/model`, in a stable order.
async fn model_list(ctx: &Engine) -> Result<(Vec<String>, Vec<String>), String> {
    let providers = ctx
        .app
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
pub async fn models(ctx: &Engine, choices: &Choices, here: &Here<'_>) -> Result<String, String> {
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
    choices
        .0
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
pub async fn pick_model(
    ctx: &Engine,
    choices: &Choices,
    here: &Here<'_>,
    text: &str,
) -> Option<String> {
    let number: usize = text.trim().parse().ok()?;
    let choice = {
        let mut choices = choices
            .0
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
    choices
        .0
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
pub async fn model(
    ctx: &Engine,
    here: &Here<'_>,
    choice: Option<String>,
) -> Result<String, String> {
    let b = session_here(ctx, here)?;
    match choice.as_deref() {
        None => Ok(match &b.model {
            Some(m) => format!("This session uses `{m}`."),
            None => format!(
                "This session uses OpenCode's default model. `{}models` lists the others.",
                ctx.app.config.command_prefix
            ),
        }),
        Some("default") => set_model(ctx, &b.root_post_id, None).await,
        Some(m) => {
            let (all, _) = model_list(ctx).await?;
            if !all.iter().any(|known| known == m) {
                return Err(format!(
                    ":grey_question: OpenCode has no model `{m}`. `{}models` lists them.",
                    ctx.app.config.command_prefix
                ));
            }
            set_model(ctx, &b.root_post_id, Some(m)).await
        }
    }
}

async fn set_model(
    ctx: &Engine,
    root_post_id: &str,
    model: Option<&str>,
) -> Result<String, String> {
    ctx.app
        .store
        .set_thread_model(root_post_id, model)
        .await
        .map_err(|e| format!(":x: Could not save the model: {e}"))?;
    Ok(match model.and_then(ModelRef::parse) {
        Some(m) => format!(":white_check_mark: The next prompts in this session use `{m}`."),
        None => ":white_check_mark: The next prompts use OpenCode's default model.".into(),
    })
}

/// `!costs`.
pub async fn costs(ctx: &Engine, here: &Here<'_>) -> Result<String, String> {
    let b = session_here(ctx, here)?;
    let messages = ctx
        .app
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
pub fn status(ctx: &Engine, conn: &Connection) -> String {
    let s = &ctx.stats;
    let mut out = format!(
        "**Status** of `{}`\n- Instance `{}` (pid {})\n",
        ctx.app.instance.directory,
        ctx.app.instance.id,
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
pub async fn dm_with(conn: &Connection, user_id: &str) -> Result<String, String> {
    conn.rest
        .direct_channel(&conn.info.bot.id, user_id)
        .await
        .map(|c| c.id)
        .map_err(|e| {
            warn!(error = %e, "cannot open a DM");
            format!("cannot open the DM with {user_id}: {e}")
        })
}
