//! The `!` commands people type in the bot DM or a session thread: the
//! parser, `!help`, and the table that sends each command to the one
//! feature operation that carries it out.
//!
//! Parsing is pure, so every malformed or hostile input has a unit test.
//! Adding a command means a variant and a `parse` arm here, a line in
//! [`COMMANDS`] and in [`run`], and its operation in a feature module.

use std::sync::Arc;

use tracing::info;

use super::Router;
use crate::commands::Here;
use crate::commands::ops as session_ops;
use crate::mattermost::connection::Connection;
use crate::sessions::say;

/// A command as typed, arguments checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Sessions,
    /// A session's short id or a unique prefix of its id; `none` detaches.
    Use(String),
    Current,
    New(Option<String>),
    Stop,
    /// End this thread's session: its threads stop forwarding.
    End,
    /// Decline the open question, or deny the open permission request.
    Reject,
    Models,
    /// `provider/model`, or `None` to show the current choice. `default`
    /// returns to OpenCode's default.
    Model(Option<String>),
    Costs,
    Status,
    /// A permalink to the thread to merge into this one.
    Merge(String),
    /// Everything after `schedule`, for the scheduler's own parser.
    Schedule(String),
    /// Everything after `team`, for the channels feature's parser.
    Team(String),
}

impl Command {
    /// The command's name, as typed after the prefix.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Help => "help",
            Command::Sessions => "sessions",
            Command::Use(_) => "use",
            Command::Current => "current",
            Command::New(_) => "new",
            Command::Stop => "stop",
            Command::End => "end",
            Command::Reject => "reject",
            Command::Models => "models",
            Command::Model(_) => "model",
            Command::Costs => "costs",
            Command::Status => "status",
            Command::Merge(_) => "merge",
            Command::Schedule(_) => "schedule",
            Command::Team(_) => "team",
        }
    }
}

/// Why a `!` message is not a valid command: what the person sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown command `{prefix}{name}`.{}", suggestion_text(prefix, suggestion.as_deref()))]
    Unknown {
        prefix: String,
        name: String,
        suggestion: Option<String>,
    },
    #[error("{problem}. Usage: `{prefix}{usage}`")]
    BadArgs {
        prefix: String,
        usage: &'static str,
        problem: String,
    },
}

fn suggestion_text(prefix: &str, suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!(" Did you mean `{prefix}{s}`? `{prefix}help` lists them all."),
        None => format!(" `{prefix}help` lists the commands."),
    }
}

/// Name, usage and what it does, in the order `!help` shows them.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("help", "help", "this list"),
    (
        "sessions",
        "sessions",
        "sessions of this OpenCode instance: status, age, directory, thread",
    ),
    (
        "use",
        "use <id>",
        "attach this DM or thread to a session (short id or id prefix); `use none` detaches the DM",
    ),
    (
        "current",
        "current",
        "the session this DM or thread talks to",
    ),
    (
        "new",
        "new [title]",
        "start a new session with its own thread",
    ),
    ("stop", "stop", "abort the running turn"),
    (
        "end",
        "end",
        "end this thread's session: the thread stops forwarding (the session stays in OpenCode)",
    ),
    (
        "reject",
        "reject",
        "decline the agent's open question (or deny its permission request)",
    ),
    (
        "models",
        "models",
        "the models OpenCode can use, numbered; reply with a number to choose",
    ),
    (
        "model",
        "model [provider/model | default]",
        "show or set the model of this thread's session",
    ),
    (
        "costs",
        "costs",
        "cost and tokens (input, output, reasoning, cache) of this session",
    ),
    (
        "status",
        "status",
        "connection, instance, queue and rate-limit state",
    ),
    (
        "merge",
        "merge <permalink>",
        "summarise another thread into this session as context, and lock that thread",
    ),
    (
        "schedule",
        "schedule add|list|remove|enable|disable|run …",
        "cron-scheduled prompts whose results are sent to you as a DM",
    ),
    (
        "team",
        crate::channels::team::USAGE,
        "owner only, in this DM: your teammates, who may prompt in your channel threads, \
         answer guest requests and start sessions for you",
    ),
];

fn usage_of(name: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("help", |(_, usage, _)| usage)
}

/// Longest title `!new` accepts, in characters.
pub const MAX_TITLE: usize = 200;

/// Read a message as a command. `None` when it is not one (an ordinary
/// prompt): it must start with `prefix` directly followed by a word. Text
/// inside a code block never starts with the prefix, so it is never a
/// command; neither are `!!`, `! note` or `!?`.
pub fn parse(text: &str, prefix: &str) -> Option<Result<Command, CommandError>> {
    if prefix.is_empty() {
        return None;
    }
    let rest = text.trim_start().strip_prefix(prefix)?;
    let name_len = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    let (name, args) = rest.split_at(name_len);
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_with_letter
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    let name = name.to_ascii_lowercase();
    let args = args.trim();
    let bad = |problem: String| {
        Err(CommandError::BadArgs {
            prefix: prefix.to_owned(),
            usage: usage_of(&name),
            problem,
        })
    };
    let no_args = |command: Command| {
        if args.is_empty() {
            Ok(command)
        } else {
            bad(format!("`{prefix}{name}` takes no arguments"))
        }
    };
    let single_word = args.split_whitespace().count() <= 1;
    Some(match name.as_str() {
        "help" => no_args(Command::Help),
        "sessions" => no_args(Command::Sessions),
        "current" => no_args(Command::Current),
        "stop" => no_args(Command::Stop),
        "end" => no_args(Command::End),
        // `cancel` is what the plugin this replaces called it.
        "reject" | "cancel" => no_args(Command::Reject),
        "models" => no_args(Command::Models),
        "costs" => no_args(Command::Costs),
        "status" => no_args(Command::Status),
        "use" if args.is_empty() => bad("which session? Give its short id".into()),
        "use" if !single_word => bad("give one session id".into()),
        "use" if !is_id_like(args) => bad(format!(
            "`{}` is not a session id (letters, digits, `-` and `_` only)",
            crate::render::format::echo(args)
        )),
        "use" => Ok(Command::Use(args.to_owned())),
        "new" if args.contains('\n') => bad("the title must be one line".into()),
        "new" if args.chars().count() > MAX_TITLE => {
            bad(format!("the title is longer than {MAX_TITLE} characters"))
        }
        "new" => Ok(Command::New((!args.is_empty()).then(|| args.to_owned()))),
        "model" if args.is_empty() => Ok(Command::Model(None)),
        "model" if !single_word => bad("give one model as `provider/model`".into()),
        "model" if args.eq_ignore_ascii_case("default") => {
            Ok(Command::Model(Some("default".into())))
        }
        "model" if crate::opencode::ModelRef::parse(args).is_none() || args.contains('`') => {
            bad(format!(
                "`{}` is not a model; write it as `provider/model`, as `{prefix}models` lists them",
                crate::render::format::echo(args)
            ))
        }
        "model" => Ok(Command::Model(Some(args.to_owned()))),
        "merge" if args.is_empty() => bad("which thread? Give its permalink".into()),
        "merge" if !single_word => bad("give one permalink".into()),
        "merge" if args.chars().count() > 2048 => bad("that link is too long".into()),
        "merge" => Ok(Command::Merge(args.to_owned())),
        "schedule" => Ok(Command::Schedule(args.to_owned())),
        "team" => Ok(Command::Team(args.to_owned())),
        _ => Err(CommandError::Unknown {
            prefix: prefix.to_owned(),
            suggestion: closest(&name),
            name: crate::render::format::echo(&name),
        }),
    })
}

/// A plausible session id or prefix: what `!use` compares with.
fn is_id_like(text: &str) -> bool {
    text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The known command within two edits of a mistyped one.
fn closest(name: &str) -> Option<String> {
    COMMANDS
        .iter()
        .map(|(n, _, _)| (edit_distance(name, n), *n))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.to_owned())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The `!help` text.
pub fn help(prefix: &str) -> String {
    let mut out =
        String::from("**Commands** (in this DM or a session thread; anything else is a prompt):\n");
    for (_, usage, what) in COMMANDS {
        out.push_str(&format!("- `{prefix}{usage}`: {what}\n"));
    }
    out.push_str(
        "\nA new message in this DM starts a new session, unless the DM is attached to one \
         with `use`. A message sent while the session is busy runs after the current turn. \
         `!!path` in a prompt sends the project file it names with it.\n\
         In a channel, `@bot` starts a session in that thread; there your replies need no \
         mention, and anyone else's `@bot` waits for your (or a teammate's) `1`, `2`, `3` \
         or `deny`.",
    );
    out
}

/// Run `text` as a command (or the number answering a `!models` list) and
/// answer it. False when it is an ordinary prompt.
pub(crate) async fn handle(
    router: &Arc<Router>,
    conn: &Connection,
    here: &Here<'_>,
    text: &str,
) -> bool {
    let engine = &router.engine;
    if let Some(reply) = session_ops::pick_model(engine, &router.choices, here, text).await {
        say(conn, here.post, &reply).await;
        return true;
    }
    let prefix = engine.app.config.command_prefix.clone();
    let Some(parsed) = parse(text, &prefix) else {
        return false;
    };
    let reply = match parsed {
        Ok(command) => {
            // Arguments can carry prompt text (`!schedule add`, `!new`):
            // only the name is logged at info.
            info!(command = command.name(), "command");
            tracing::debug!(?command, "command arguments");
            match run(router, conn, here, command).await {
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
    router: &Arc<Router>,
    conn: &Connection,
    here: &Here<'_>,
    command: Command,
) -> Result<String, String> {
    let engine = &router.engine;
    let prefix = engine.app.config.command_prefix.as_str();
    match command {
        Command::Help => Ok(help(prefix)),
        Command::Sessions => {
            let current = here.binding.map(|b| b.session_id.as_str());
            let mine = session_ops::sessions_report(engine, Some(conn), current).await?;
            let elsewhere =
                crate::commands::fleet::elsewhere_report(engine, conn, &here.post.user_id).await;
            Ok(mine + &elsewhere)
        }
        Command::Use(id) => match session_ops::use_session(engine, conn, here, &id).await {
            Err(not_here) => {
                match crate::commands::fleet::use_elsewhere(engine, conn, here, &id).await {
                    Some(answer) => answer,
                    None => Err(not_here),
                }
            }
            ok => ok,
        },
        Command::Current => session_ops::current(engine, conn, here).await,
        Command::New(title) => session_ops::new(engine, conn, here, title).await,
        Command::Stop => {
            let b = session_ops::session_here(engine, here)?;
            crate::sessions::turn::stop_session(engine, &b.session_id).await
        }
        Command::End => session_ops::end(engine, here).await,
        Command::Reject => {
            let b = session_ops::session_here(engine, here)?;
            Ok(crate::asks::chat::reject(&router.asks, &b.session_id, here.sender).await)
        }
        Command::Models => session_ops::models(engine, &router.choices, here).await,
        Command::Model(choice) => session_ops::model(engine, here, choice).await,
        Command::Costs => session_ops::costs(engine, here).await,
        Command::Status => Ok(session_ops::status(engine, conn)),
        Command::Merge(link) => {
            let req = crate::context::merge::MergeRequest {
                post: here.post,
                binding: here.binding,
                sender: here.sender,
                link: &link,
                admits: &super::ContextAuthors(&engine.app),
            };
            crate::context::merge::merge(&router.context, engine, conn, &req).await
        }
        Command::Schedule(args) => Ok(router.schedules.command(&here.post.user_id, &args).await),
        Command::Team(args) => Ok(crate::channels::team::command(
            &engine.app,
            conn,
            &here.post.user_id,
            here.is_dm,
            &args,
        )
        .await),
    }
}

#[cfg(test)]
mod tests;
