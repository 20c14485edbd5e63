//! The owner's team: `!team add @user`, `!team remove @user`, `!team list`
//! and `!team` alone (tiers and settings), owner only, in a DM; and the
//! one-time import of the old plugin's team file.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tracing::{info, warn};

use crate::app::App;
use crate::mattermost::connection::Connection;
use crate::store::Teammate;

/// `!team …` as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamCommand {
    Show,
    List,
    /// A username, without `@`, lower case.
    Add(String),
    Remove(String),
}

/// What `!team` takes, for its usage line.
pub const USAGE: &str = "team [list | add @user | remove @user]";

/// Read `!team`'s arguments; the error is what the person sees.
pub fn parse(args: &str) -> Result<TeamCommand, String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(TeamCommand::Show),
        [w] if w.eq_ignore_ascii_case("list") => Ok(TeamCommand::List),
        [w, name] if w.eq_ignore_ascii_case("add") => username(name).map(TeamCommand::Add),
        [w, name] if w.eq_ignore_ascii_case("remove") => username(name).map(TeamCommand::Remove),
        [w] if w.eq_ignore_ascii_case("add") || w.eq_ignore_ascii_case("remove") => {
            Err(format!("who? Write `{} @username`", w.to_ascii_lowercase()))
        }
        [w, _, _, ..] if w.eq_ignore_ascii_case("add") || w.eq_ignore_ascii_case("remove") => {
            Err("one person at a time".into())
        }
        _ => Err(format!(
            "`{}` is not a team command",
            crate::render::format::echo(args)
        )),
    }
}

/// A Mattermost username (`@` optional): letters, digits, `.`, `_`, `-`,
/// at most 64 characters.
fn username(word: &str) -> Result<String, String> {
    let name = word.strip_prefix('@').unwrap_or(word);
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{}` is not a username",
            crate::render::format::echo(word)
        ))
    }
}

/// Carry out `!team …` typed by `user_id` (`in_dm`: in a DM with the bot).
pub async fn command(
    app: &App,
    conn: &Connection,
    user_id: &str,
    in_dm: bool,
    args: &str,
) -> String {
    let Some(owner) = app.access.owner() else {
        return ":lock: There is no team without an owner: set `MATTERMOST_OWNER_USER_ID`.".into();
    };
    if owner != user_id {
        return ":lock: Only the owner manages the team.".into();
    }
    if !in_dm {
        return ":lock: Manage the team in a DM with the bot.".into();
    }
    let command = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            let prefix = &app.config.command_prefix;
            return format!(":grey_question: {e}. Usage: `{prefix}{USAGE}`");
        }
    };
    match run(app, conn, owner, command).await {
        Ok(text) | Err(text) => text,
    }
}

async fn run(
    app: &App,
    conn: &Connection,
    owner: &str,
    command: TeamCommand,
) -> Result<String, String> {
    let store_failed = |e: crate::store::StoreError| format!(":x: {e}");
    match command {
        TeamCommand::List => {
            let team = app.store.teammates(owner).await.map_err(store_failed)?;
            Ok(list(&team))
        }
        TeamCommand::Show => {
            let team = app.store.teammates(owner).await.map_err(store_failed)?;
            let owner_name = conn
                .rest
                .user(owner)
                .await
                .map(|u| u.username)
                .unwrap_or_else(|_| owner.to_owned());
            Ok(show(app, &owner_name, &team))
        }
        TeamCommand::Add(name) => {
            let user = conn
                .rest
                .user_by_username(&name)
                .await
                .map_err(|_| format!(":grey_question: There is no user @{name}."))?;
            if user.id == owner {
                return Err(":grey_question: You are the owner; you need no team.".into());
            }
            if user.id == conn.info.bot.id || user.is_bot {
                return Err(format!(":grey_question: @{name} is a bot."));
            }
            let added = app
                .store
                .add_teammate(&Teammate {
                    owner_user_id: owner.to_owned(),
                    user_id: user.id.clone(),
                    username: user.username.clone(),
                    added_by: owner.to_owned(),
                    added_at: app.clock.now().timestamp_millis(),
                })
                .await
                .map_err(store_failed)?;
            info!(teammate = %user.id, added, "team add");
            Ok(if added {
                format!(":white_check_mark: @{} added to your team.", user.username)
            } else {
                format!("@{} is already on your team.", user.username)
            })
        }
        TeamCommand::Remove(name) => {
            let team = app.store.teammates(owner).await.map_err(store_failed)?;
            // By the stored name first, so a renamed or deactivated account
            // can still be removed.
            let member = team.iter().find(|t| t.username.eq_ignore_ascii_case(&name));
            let user_id = match member {
                Some(t) => t.user_id.clone(),
                None => match conn.rest.user_by_username(&name).await {
                    Ok(u) => u.id,
                    Err(_) => return Err(format!(":grey_question: There is no user @{name}.")),
                },
            };
            let removed = app
                .store
                .remove_teammate(owner, &user_id)
                .await
                .map_err(store_failed)?;
            info!(teammate = %user_id, removed, "team remove");
            Ok(if removed {
                format!(":wave: @{name} removed from your team.")
            } else {
                format!("@{name} is not on your team.")
            })
        }
    }
}

/// `!team list`.
pub fn list(team: &[Teammate]) -> String {
    if team.is_empty() {
        return "No teammates yet. Add one with `team add @user`.".into();
    }
    let mut out = format!(":busts_in_silhouette: **Team members ({})**\n", team.len());
    for (i, t) in team.iter().enumerate() {
        out.push_str(&format!("{}. @{}\n", i + 1, t.username));
    }
    out.trim_end().to_owned()
}

/// `!team` alone: the tiers, who is in them, and the settings.
fn show(app: &App, owner_name: &str, team: &[Teammate]) -> String {
    let config = &app.config;
    let allowed = config.allowed_users.len();
    let names: Vec<String> = team.iter().map(|t| format!("@{}", t.username)).collect();
    let members = if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    };
    let types: Vec<String> = config
        .allowed_channel_types
        .iter()
        .map(|t| t.code().to_string())
        .collect();
    format!(
        ":busts_in_silhouette: **Team**\n\
         - **Owner**: @{owner_name}: everything, manages the team\n\
         - **Teammates** ({}): {members}: prompt in session threads without approval, \
         answer guest requests, start sessions for you with `@bot @{owner_name}`\n\
         - **Allowed users** (`OPENCODE_MM_ALLOWED_USERS`): {allowed}\n\
         - **Everyone else**: a guest request in the thread, answered by you or a teammate\n\n\
         **Settings**: guest requests expire after {} (`OPENCODE_MM_GUEST_APPROVAL_TIMEOUT`); \
         channel types {} (`OPENCODE_MM_ALLOWED_CHANNEL_TYPES`)",
        team.len(),
        super::guests::describe(config.guest_approval_timeout),
        types.join(",")
    )
}

/// The old plugin's team file (`mattermost-team.json`).
#[derive(Debug, Deserialize)]
struct TeamFile {
    team: TeamSection,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TeamSection {
    owner_id: String,
    #[serde(default)]
    members: Vec<FileMember>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileMember {
    user_id: String,
    username: String,
}

/// Where the old plugin kept its team file, in its order.
pub fn default_team_files(home: Option<&Path>) -> Vec<PathBuf> {
    home.map(|h| {
        vec![
            h.join(".config/opencode/mattermost-team.json"),
            h.join(".opencode/mattermost-team.json"),
        ]
    })
    .unwrap_or_default()
}

/// Members of a team file that belong to `owner`, each checked; the
/// reasons the rest were left out.
pub fn read_team_file(text: &str, owner: &str) -> Result<(Vec<(String, String)>, usize), String> {
    let file: TeamFile = serde_json::from_str(text).map_err(|e| format!("not a team file: {e}"))?;
    if file.team.owner_id != owner {
        return Err("it belongs to another owner".into());
    }
    let mut members = Vec::new();
    let mut skipped = 0;
    for m in file.team.members {
        let id_ok = m.user_id.len() == 26 && m.user_id.chars().all(|c| c.is_ascii_alphanumeric());
        match username(&m.username) {
            Ok(name) if id_ok && m.user_id != owner => members.push((m.user_id, name)),
            _ => skipped += 1,
        }
    }
    Ok((members, skipped))
}

/// Import the old plugin's team file once per owner: `OPENCODE_MM_TEAM_FILE`
/// or the first of its default places that exists. Nothing is marked
/// imported until a file was read.
pub async fn import_once(app: &App, home: Option<PathBuf>) {
    let Some(owner) = app.access.owner() else {
        return;
    };
    let candidates = match &app.config.team_file {
        Some(p) => vec![p.clone()],
        None => default_team_files(home.as_deref()),
    };
    let Some((path, text)) = candidates
        .into_iter()
        .find_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
    else {
        return;
    };
    let (members, skipped) = match read_team_file(&text, owner) {
        Ok(found) => found,
        Err(why) => {
            warn!(file = %path.display(), "team file not imported: {why}");
            return;
        }
    };
    let source = path.display().to_string();
    let at = app.clock.now().timestamp_millis();
    match app.store.mark_team_imported(owner, &source, at).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            warn!(error = %e, "cannot record the team import");
            return;
        }
    }
    let mut added = 0;
    for (user_id, username) in members {
        let mate = Teammate {
            owner_user_id: owner.to_owned(),
            user_id,
            username,
            added_by: format!("import:{source}"),
            added_at: at,
        };
        match app.store.add_teammate(&mate).await {
            Ok(true) => added += 1,
            Ok(false) => {}
            Err(e) => warn!(error = %e, "cannot import a teammate"),
        }
    }
    info!(file = %source, added, skipped, "imported the old plugin's team file");
}
