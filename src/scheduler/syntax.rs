//! The `!schedule` chat command: its syntax and its dispatch to [`ops`].
//!
//! ```text
//! !schedule add <name> "<cron>" [tz=<Zone>] [user=@name] [agent=<agent>] [model=<provider/model>] [enabled=false] <prompt>
//! !schedule list
//! !schedule remove|enable|disable|run <name>
//! !schedule help
//! ```
//!
//! The cron expression is quoted (`"…"`, `'…'`, `` `…` `` or typographic
//! quotes, which phone keyboards insert), or given as exactly five unquoted
//! fields, or as one `@daily`-style word. Options are `key=value` words right
//! after it, in any order; everything after the last option is the prompt,
//! newlines included.

use super::Schedules;
use super::ops::{AddRequest, Caller};
use crate::access::Verdict;

/// What `!schedule help` (and every usage error) shows.
pub const USAGE: &str = "**Scheduled prompts**\n\
```\n\
!schedule add <name> \"<cron>\" [tz=<Zone>] [user=@name] [agent=<agent>] [model=<provider/model>] [enabled=false] <prompt>\n\
!schedule list\n\
!schedule remove <name>\n\
!schedule enable <name>\n\
!schedule disable <name>\n\
!schedule run <name>\n\
```\n\
The cron expression has five fields: minute hour day-of-month month day-of-week \
(0 or 7 is Sunday), e.g. `!schedule add weekday-prs \"0 9 * * 1-5\" tz=America/New_York \
Summarise the open pull requests`. The result of each run is DM'd to you \
(the owner may name another `user=`).";

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Add(AddRequest),
    List,
    Remove(String),
    Enable(String),
    Disable(String),
    Run(String),
    Help,
}

/// The next whitespace-separated word and the text after it.
fn word(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    Some((&text[..end], &text[end..]))
}

/// The closing quote for an opening one.
fn closing(open: char) -> Option<&'static [char]> {
    match open {
        '"' => Some(&['"', '”']),
        '\'' => Some(&['\'', '’']),
        '`' => Some(&['`']),
        '“' => Some(&['”', '"']),
        '‘' => Some(&['’', '\'']),
        _ => None,
    }
}

/// The cron expression at the start of `text` and the text after it.
fn cron_expr(text: &str) -> Result<(String, &str), String> {
    let text = text.trim_start();
    let Some(first) = text.chars().next() else {
        return Err("the cron expression is missing".into());
    };
    if let Some(ends) = closing(first) {
        let inner = &text[first.len_utf8()..];
        let Some(end) = inner.find(ends) else {
            return Err(format!(
                "the cron expression's closing quote is missing: write it as \
                 {first}0 9 * * 1-5{first}"
            ));
        };
        let close_len = inner[end..].chars().next().map_or(1, char::len_utf8);
        return Ok((inner[..end].trim().to_owned(), &inner[end + close_len..]));
    }
    if first == '@' {
        let (w, rest) = word(text).unwrap_or((text, ""));
        return Ok((w.to_owned(), rest));
    }
    let mut rest = text;
    let mut fields = Vec::new();
    for _ in 0..5 {
        let Some((w, after)) = word(rest) else {
            break;
        };
        fields.push(w);
        rest = after;
    }
    Ok((fields.join(" "), rest))
}

/// Parse the text after `!schedule `.
pub fn parse(args: &str) -> Result<Command, String> {
    let Some((verb, rest)) = word(args) else {
        return Ok(Command::Help);
    };
    let name = |what: &str| -> Result<String, String> {
        match word(rest) {
            Some((n, extra)) if extra.trim().is_empty() => Ok(n.to_owned()),
            Some(_) => Err(format!(
                "`{what}` takes one schedule name, e.g. `!schedule {what} daily-prs`"
            )),
            None => Err(format!("which schedule? e.g. `!schedule {what} daily-prs`")),
        }
    };
    match verb.to_ascii_lowercase().as_str() {
        "add" | "new" | "create" => parse_add(rest).map(Command::Add),
        "list" | "ls" if rest.trim().is_empty() => Ok(Command::List),
        "list" | "ls" => Err("`list` takes no arguments".into()),
        "remove" | "rm" | "delete" => name("remove").map(Command::Remove),
        "enable" => name("enable").map(Command::Enable),
        "disable" => name("disable").map(Command::Disable),
        "run" => name("run").map(Command::Run),
        "help" | "?" => Ok(Command::Help),
        other => Err(format!(
            "unknown schedule command `{}`: use add, list, remove, enable, disable or run",
            other.chars().take(40).collect::<String>()
        )),
    }
}

fn parse_add(text: &str) -> Result<AddRequest, String> {
    let Some((name, rest)) = word(text) else {
        return Err(
            "the schedule needs a name, a cron expression and a prompt, e.g. \
                    `!schedule add daily-prs \"0 9 * * 1-5\" Summarise the open PRs`"
                .into(),
        );
    };
    let (cron, mut rest) = cron_expr(rest)?;
    let mut req = AddRequest {
        name: name.to_owned(),
        cron,
        ..AddRequest::default()
    };
    while let Some((w, after)) = word(rest) {
        let Some((key, value)) = w.split_once('=') else {
            break;
        };
        let text = Some(value.to_owned());
        match key.to_ascii_lowercase().as_str() {
            "tz" | "timezone" | "zone" => req.timezone = text,
            "user" | "to" => req.user = text,
            "agent" => req.agent = text,
            "model" => req.model = text,
            "enabled" => {
                req.enabled = Some(match value.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" | "1" => true,
                    "false" | "no" | "off" | "0" => false,
                    other => {
                        return Err(format!(
                            "`enabled={other}`: use enabled=true or enabled=false"
                        ));
                    }
                })
            }
            // Not an option: the prompt starts here.
            _ => break,
        }
        rest = after;
    }
    req.prompt = rest.trim().to_owned();
    Ok(req)
}

/// Run one `!schedule` command for `user_id`; the reply to post.
pub(super) async fn command(ctx: &Schedules, user_id: &str, args: &str) -> String {
    if ctx.app.access.may_prompt(user_id) != Verdict::Allowed {
        return format!(
            ":no_entry: Only the owner and allowed users may manage schedules ({}).",
            crate::access::HOW_TO_CONFIGURE
        );
    }
    let parsed = match parse(args) {
        Ok(c) => c,
        Err(e) => return format!(":warning: {e}\n\n{USAGE}"),
    };
    let caller = Caller::Chat { user_id };
    let result = match parsed {
        Command::Help => Ok(USAGE.to_owned()),
        Command::List => ctx.with_ops(async |o| o.list().await).await,
        Command::Add(req) => ctx.with_ops(async |o| o.add(req, caller).await).await,
        Command::Remove(n) => ctx.with_ops(async |o| o.remove(&n).await).await,
        Command::Enable(n) => ctx.with_ops(async |o| o.set_enabled(&n, true).await).await,
        Command::Disable(n) => ctx.with_ops(async |o| o.set_enabled(&n, false).await).await,
        Command::Run(n) => ctx.run_now(&n).await,
    };
    match result {
        Ok(text) => text,
        Err(e) => format!(":warning: {e}"),
    }
}
