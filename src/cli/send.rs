//! `opencode-mattermost send`: a post from a script or a CI job, as the
//! bot, to a person (`@user`: their DM with the bot), a channel of the
//! bot's team (`~channel`), or a thread (a post's permalink). Text comes
//! from the command line or stdin, a file is uploaded first. Every refusal
//! (no such user or channel, no permission, a file too big) is an error
//! that says which.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use url::Url;

use crate::config::{Config, is_mattermost_id};
use crate::mattermost::connection::permalink;
use crate::mattermost::types::Team;
use crate::mattermost::{MattermostError, NewPost, Priority, RateBudget, RestClient, RetryPolicy};

/// Text read from stdin beyond this is refused: no post is that long.
const MAX_STDIN: u64 = 1 << 20;
/// Uploads from this size get a progress bar (on a terminal).
const LARGE_FILE: u64 = 1 << 20;

/// What to send, as the command line gave it.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    pub to: String,
    pub file: Option<PathBuf>,
    pub team: Option<String>,
    pub text: Option<String>,
}

/// Where a post goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The DM between the bot and this username.
    User(String),
    /// A channel of the bot's team, by name.
    Channel(String),
    /// The thread of this post; the team's name from its permalink.
    Thread {
        team: Option<String>,
        post_id: String,
    },
}

/// Reads `--to`. A permalink must point at the configured server.
pub fn parse_target(to: &str, site: &Url) -> anyhow::Result<Target> {
    let to = to.trim();
    if let Some(name) = to.strip_prefix('@') {
        if name.is_empty() {
            bail!("--to @: a username must follow the @");
        }
        return Ok(Target::User(name.to_owned()));
    }
    if let Some(name) = to.strip_prefix('~') {
        if name.is_empty() {
            bail!("--to ~: a channel name must follow the ~");
        }
        return Ok(Target::Channel(name.to_owned()));
    }
    if !(to.starts_with("https://") || to.starts_with("http://")) {
        bail!(
            "--to takes @user, ~channel or a post's permalink (https://host/team/pl/<post id>), \
             not `{}`",
            to.escape_debug()
        );
    }
    let url = Url::parse(to).with_context(|| format!("--to {to}: not a URL"))?;
    let same_server = url.scheme() == site.scheme()
        && url.host_str() == site.host_str()
        && url.port_or_known_default() == site.port_or_known_default();
    let base = site.path().trim_end_matches('/');
    let rest = url.path().strip_prefix(base).filter(|_| same_server);
    let Some(rest) = rest else {
        bail!("--to {to}: the permalink is not on the configured server {site}");
    };
    match rest
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        [team, "pl", id] if is_mattermost_id(id) => Ok(Target::Thread {
            team: Some(team.to_string()).filter(|t| t != "_redirect"),
            post_id: id.to_string(),
        }),
        _ => bail!("--to {to}: not a post's permalink (https://host/team/pl/<post id>)"),
    }
}

/// The message: the argument, or stdin for `-` or when no text is given
/// and stdin is not a terminal. A trailing newline is dropped.
pub fn message(text: Option<String>) -> anyhow::Result<String> {
    let from_stdin = match text.as_deref() {
        Some("-") => true,
        Some(_) => false,
        None => !std::io::stdin().is_terminal(),
    };
    if !from_stdin {
        return Ok(text.unwrap_or_default());
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_STDIN + 1)
        .read_to_end(&mut bytes)
        .context("reading the message from stdin")?;
    if bytes.len() as u64 > MAX_STDIN {
        bail!("stdin holds more than {MAX_STDIN} bytes, more than any post; send it with --file");
    }
    let text = String::from_utf8(bytes).context("the message on stdin is not UTF-8 text")?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Posts `message` (and the file) where `options.to` says; returns the
/// post's permalink.
pub async fn run(
    config: &Config,
    options: &SendOptions,
    message: &str,
    progress: bool,
) -> anyhow::Result<String> {
    let (Some(site), Some(api), Some(token)) =
        (&config.site_url, config.api_url(), config.token.clone())
    else {
        bail!(
            "MATTERMOST_URL and MATTERMOST_TOKEN must be set (`opencode-mattermost doctor` checks them)"
        );
    };
    let target = parse_target(&options.to, site)?;
    let file = options.file.as_deref().map(local_file).transpose()?;
    if message.is_empty() && file.is_none() {
        bail!("nothing to send: give TEXT, pipe it on stdin, or --file PATH");
    }
    let budget = Arc::new(RateBudget::new(
        config.rate_per_second as f64,
        config.rate_burst as f64,
    ));
    let rest = RestClient::new(&api, token, budget, RetryPolicy::default())?;
    let me = rest.me().await?;
    let server = rest.client_config().await?;
    if let Some(max) = server.max_post_size() {
        let len = message.chars().count();
        if len > max {
            bail!("the message is {len} characters; this server takes at most {max} per post");
        }
    }
    let (channel_id, root_id, team, place) = match &target {
        Target::User(name) => {
            let user = rest.user_by_username(name).await.map_err(|e| match e {
                MattermostError::NotFound { .. } => {
                    anyhow::anyhow!("unknown user: no @{name} on {site}")
                }
                other => other.into(),
            })?;
            let dm = rest
                .direct_channel(&me.id, &user.id)
                .await
                .map_err(|e| refusal(e, &format!("open a DM with @{}", user.username)))?;
            (
                dm.id,
                String::new(),
                None,
                format!("the DM with @{}", user.username),
            )
        }
        Target::Channel(name) => {
            let team = team_for_channel(&rest, config, options.team.as_deref()).await?;
            let channel = rest
                .team_channel(&team.id, name)
                .await
                .map_err(|e| match e {
                    MattermostError::NotFound { .. } => {
                        anyhow::anyhow!("unknown channel: no ~{name} in the team {}", team.name)
                    }
                    other => refusal(other, &format!("read ~{name} in the team {}", team.name)),
                })?;
            (
                channel.id,
                String::new(),
                Some(team.name),
                format!("~{name}"),
            )
        }
        Target::Thread { team, post_id } => {
            let post = rest.post(post_id).await.map_err(|e| match e {
                MattermostError::NotFound { .. } => {
                    anyhow::anyhow!("unknown post: no {post_id} on {site} that the bot can see")
                }
                other => refusal(other, &format!("read the post {post_id}")),
            })?;
            let root = if post.root_id.is_empty() {
                post.id
            } else {
                post.root_id
            };
            let place = format!("the thread of {root}");
            (post.channel_id, root, team.clone(), place)
        }
    };
    let mut file_ids = Vec::new();
    if let Some((path, name, size)) = file {
        if let Some(max) = server.max_file_size().filter(|max| size > *max) {
            bail!(
                "{} is {size} bytes; this server takes files up to {max} bytes",
                path.display()
            );
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let uploaded = if progress && size >= LARGE_FILE {
            let bar = progress_bar(size, &name);
            let shown = bar.clone();
            let report: crate::mattermost::probe::Progress =
                Arc::new(move |n| shown.set_position(n));
            let done = rest
                .upload_file_tracked(&channel_id, &name, bytes, report)
                .await;
            bar.finish_and_clear();
            done
        } else {
            rest.upload_file(&channel_id, &name, bytes).await
        };
        let info = uploaded.map_err(|e| match e {
            MattermostError::Rejected { status: 413, .. } => {
                anyhow::anyhow!("{} is too big for this server: {e}", path.display())
            }
            other => refusal(other, &format!("upload {name} to {place}")),
        })?;
        file_ids.push(info.id);
    }
    let post = NewPost {
        channel_id,
        message: message.to_owned(),
        root_id,
        file_ids,
        ..NewPost::default()
    };
    let created = rest
        .create_post(&me.id, &post, Priority::Normal)
        .await
        .map_err(|e| refusal(e, &format!("post in {place}")))?;
    let site_url = server
        .site_url()
        .map(str::to_owned)
        .unwrap_or_else(|| site.to_string());
    Ok(permalink(&site_url, team.as_deref(), &created.id))
}

/// A 403 said as what the bot may not do; other errors as they are.
fn refusal(e: MattermostError, what: &str) -> anyhow::Error {
    match e {
        MattermostError::Forbidden { message, .. } => anyhow::anyhow!(
            "no permission: the server refused to let the bot {what} (HTTP 403: {message}); add \
             the bot to the team or channel, or grant it the permission"
        ),
        other => other.into(),
    }
}

/// The file's path, the name to upload it as, and its size.
fn local_file(path: &Path) -> anyhow::Result<(PathBuf, String, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("{}: no such file", path.display()),
        _ => anyhow::anyhow!("{}: {e}", path.display()),
    })?;
    if !meta.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .with_context(|| format!("{}: the file name is not UTF-8", path.display()))?;
    Ok((path.to_path_buf(), name, meta.len()))
}

/// The team whose channel `~name` means: the one named with `--team`, else
/// the default channel's, else the bot's only team.
async fn team_for_channel(
    rest: &RestClient,
    config: &Config,
    named: Option<&str>,
) -> anyhow::Result<Team> {
    let teams = rest.my_teams().await?;
    let names = || {
        teams
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = named {
        return teams
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .cloned()
            .with_context(|| {
                format!(
                    "the bot is not in a team named {name} (it is in: {})",
                    names()
                )
            });
    }
    if let Some(id) = &config.default_channel_id
        && let Ok(channel) = rest.channel(id).await
        && let Some(team) = teams.iter().find(|t| t.id == channel.team_id)
    {
        return Ok(team.clone());
    }
    match teams.as_slice() {
        [] => bail!("the bot is in no team, so ~channel names nothing: add it to a team"),
        [one] => Ok(one.clone()),
        _ => bail!(
            "the bot is in several teams ({}): name one with --team",
            names()
        ),
    }
}

fn progress_bar(size: u64, name: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "abcdefghijklmnopqrstuvwxyz";

    #[test]
    fn targets_are_read_and_permalinks_must_be_this_servers() {
        let site = Url::parse("https://chat.example.com/mm").unwrap();
        assert_eq!(
            parse_target("@alice", &site).unwrap(),
            Target::User("alice".into())
        );
        assert_eq!(
            parse_target("~town-square", &site).unwrap(),
            Target::Channel("town-square".into())
        );
        assert_eq!(
            parse_target(&format!("https://chat.example.com/mm/eng/pl/{ID}"), &site).unwrap(),
            Target::Thread {
                team: Some("eng".into()),
                post_id: ID.into()
            }
        );
        assert_eq!(
            parse_target(
                &format!("https://chat.example.com:443/mm/_redirect/pl/{ID}"),
                &site
            )
            .unwrap(),
            Target::Thread {
                team: None,
                post_id: ID.into()
            }
        );
        for bad in [
            "alice",
            "@",
            "~",
            "",
            "https://other.example.com/mm/eng/pl/abcdefghijklmnopqrstuvwxyz",
            "http://chat.example.com/mm/eng/pl/abcdefghijklmnopqrstuvwxyz",
            "https://chat.example.com:8443/mm/eng/pl/abcdefghijklmnopqrstuvwxyz",
            "https://chat.example.com/other/eng/pl/abcdefghijklmnopqrstuvwxyz",
            "https://chat.example.com/mm/eng/pl/short",
            "https://chat.example.com/mm/eng/channels/town-square",
            "https://chat.example.com/mm/pl/abcdefghijklmnopqrstuvwxyz",
        ] {
            assert!(parse_target(bad, &site).is_err(), "{bad}");
        }
    }
}
