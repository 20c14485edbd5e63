//! `opencode-mattermost setup`: from nothing to a working configuration.
//! It checks the server URL and the bot's token live (`users/me` through
//! the crate's REST client), finds the owner by username, lets the person
//! choose a team and a default channel among the bot's, writes the config
//! file the agent reads (created 0600), and names the plugin in OpenCode's
//! global or the project's `opencode.json`.
//!
//! Every question has a flag; with `--yes` nothing is asked and a missing
//! required flag is an error, for scripts. A value given by a flag that
//! fails its check is an error at once; an answer typed at the prompt that
//! fails is explained and asked again.

mod ask;
mod files;
mod jsonc;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::{Config, Secret};
use crate::mattermost::types::{Channel, Team, User};
use crate::mattermost::{MattermostError, RateBudget, RestClient, RetryPolicy};
use ask::Ask;
use files::Registration;

/// The package OpenCode installs for the plugin.
pub const PLUGIN_PACKAGE: &str = "opencode-mattermost";

/// Set the agent up: check the server and token, choose the owner, a team
/// and a default channel, write the config file, register the plugin.
/// Asks for what no flag gives, unless --yes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SetupArgs {
    /// The Mattermost server, e.g. https://chat.example.com.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The bot's access token; `-` reads it from stdin. Without it: the
    /// MATTERMOST_TOKEN environment variable, else a hidden prompt (so the
    /// token never needs to be in the shell history).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Your Mattermost username: the owner, who may prompt and approve.
    #[arg(long, value_name = "USERNAME")]
    pub owner: Option<String>,
    /// The team of the default channel (name, display name or id); needed
    /// with --channel when the bot is in several teams.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<String>,
    /// The channel where sessions started in OpenCode get their thread
    /// (name, display name or id, one the bot is a member of); `none` for
    /// none.
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// Where to register the plugin: every project (`global`, OpenCode's
    /// own config directory), the current directory's `opencode.json`
    /// (`project`), or nowhere (`none`). With --yes the default is global.
    #[arg(long, value_enum)]
    pub scope: Option<Scope>,
    /// Ask nothing: take the flags (a missing --url, --owner or token is an
    /// error), and replace the settings of an existing config file.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    Global,
    Project,
    None,
}

/// Run the wizard against the process environment and current directory.
pub fn run(args: SetupArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let cwd = std::env::current_dir().context("reading the current directory")?;
    super::block_on(setup(args, &env, &cwd, out))
}

async fn setup(
    args: SetupArgs,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let ask = Ask::new(args.yes);
    let site = settle(
        &ask,
        args.url.clone(),
        || ask.text("Mattermost server URL", "--url", None),
        async |url: &str| site_url(url),
    )
    .await?;
    let token = match token_given(args.token.as_deref(), env)? {
        Some(t) => t,
        None => ask.secret("Bot access token (not shown)", "--token")?,
    };
    check_token(&token)?;
    let link = Link::new(&site, &token)?;
    let bot = link.bot().await?;
    writeln!(
        out,
        "Mattermost {} at {site}: signed in as @{}{}",
        link.version().await,
        bot.username,
        if bot.is_bot {
            ""
        } else {
            " (a user account; a bot account is the usual choice)"
        }
    )?;

    let owner = settle(
        &ask,
        args.owner.clone(),
        || ask.text("Your Mattermost username (the owner)", "--owner", None),
        async |name: &str| link.owner(name, &bot).await,
    )
    .await?;
    writeln!(out, "Owner: @{} ({})", owner.username, owner.id)?;

    let channel = default_channel(&args, &ask, &link, &bot, &owner, out).await?;

    let global = opencode_config_dir(env);
    let scope = scope(&args, &ask, global.as_deref(), cwd)?;
    let registration = plan_registration(scope, global.as_deref(), cwd)?;

    let path = Config::file_path(env)
        .context("no place for the config file: set HOME, XDG_CONFIG_HOME or OPENCODE_MM_CONFIG")?;
    files::check_regular(&path)?;
    let existing = files::read_config(&path)?;
    if existing.is_some()
        && !ask.confirm(&format!(
            "{} exists. Replace its Mattermost settings (the others stay)?",
            path.display()
        ))?
    {
        bail!("nothing written: {} is as it was", path.display());
    }
    let settings = files::Settings {
        url: site.clone(),
        token,
        owner_user_id: owner.id.clone(),
        bot_username: bot.username.clone(),
        default_channel_id: channel.map(|c| c.id),
    };
    files::write_private(&path, &files::config_text(existing, &settings)?)?;
    writeln!(out, "Wrote {} (mode 600)", path.display())?;
    for (var, value) in overriding(env, &settings) {
        writeln!(
            out,
            "Note: {var} is set in this environment ({value}) and wins over the file"
        )?;
    }

    register(registration, out)?;
    writeln!(
        out,
        "Next: start OpenCode (`opencode`, or `opencode serve` for several clients) and ask it \
         to run `mattermost_status`; then DM @{} to start a session.",
        bot.username
    )?;
    Ok(())
}

/// A flag's value, checked (failing is an error: a script gets no second
/// try); else the answer to a question, asked until one passes.
async fn settle<T>(
    ask: &Ask,
    given: Option<String>,
    question: impl Fn() -> anyhow::Result<String>,
    check: impl AsyncFn(&str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if let Some(value) = given {
        return check(value.trim()).await;
    }
    loop {
        let answer = question()?;
        match check(&answer).await {
            Ok(t) => return Ok(t),
            Err(e) if ask.interactive() => {
                let _ = writeln!(std::io::stderr(), "{e:#}");
            }
            Err(e) => return Err(e),
        }
    }
}

/// The site URL as the agent will read it, or what is wrong with it (the
/// config's own check, so setup and agent agree).
fn site_url(text: &str) -> anyhow::Result<String> {
    let env = |k: &str| (k == "MATTERMOST_URL").then(|| text.to_owned());
    let config = Config::from_sources(&env, None);
    if let Some(url) = &config.site_url {
        return Ok(url.as_str().trim_end_matches('/').to_owned());
    }
    let why = config
        .problems
        .iter()
        .find(|p| p.key == "MATTERMOST_URL")
        .map_or_else(|| "it is empty".to_owned(), |p| p.message.clone());
    bail!("server URL: {why}")
}

/// The token from `--token` (`-`: a line of stdin) or the environment.
fn token_given(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<String>> {
    match flag {
        Some("-") => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the token from stdin")?;
            let token = line.trim().to_owned();
            if token.is_empty() {
                bail!("--token -: stdin held no token");
            }
            Ok(Some(token))
        }
        Some(t) => Ok(Some(t.trim().to_owned())),
        None => Ok(env("MATTERMOST_TOKEN").map(|t| t.trim().to_owned())),
    }
}

/// A token is one word of printable ASCII: anything else would be cut or
/// refused in the HTTP header, with a worse message.
fn check_token(token: &str) -> anyhow::Result<()> {
    if token.is_empty() {
        bail!("the token is empty");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the token has spaces or characters outside printable ASCII: paste only the token");
    }
    Ok(())
}

/// The server, reached with the token being set up.
struct Link {
    site: String,
    rest: RestClient,
}

impl Link {
    fn new(site: &str, token: &str) -> anyhow::Result<Link> {
        // A person waits: few retries, short timeouts.
        let retry = RetryPolicy {
            attempts: 2,
            request_timeout: Duration::from_secs(15),
            max_rate_limited: 3,
            ..RetryPolicy::default()
        };
        let budget = Arc::new(RateBudget::new(10.0, 20.0));
        let api = format!("{site}/api/v4");
        let rest = RestClient::new(&api, Secret::new(token), budget, retry)?;
        Ok(Link {
            site: site.to_owned(),
            rest,
        })
    }

    /// The token's account: proof that URL and token work.
    async fn bot(&self) -> anyhow::Result<User> {
        self.rest.me().await.map_err(|e| match e {
            MattermostError::NotFound { .. } | MattermostError::BadResponse { .. } => {
                anyhow::anyhow!("{e}: is {} a Mattermost server?", self.site)
            }
            e => e.into(),
        })
    }

    async fn version(&self) -> String {
        match self.rest.client_config().await {
            Ok(c) => c.version().unwrap_or("(version unknown)").to_owned(),
            Err(_) => "(version unknown)".to_owned(),
        }
    }

    /// The owner by username: a person, active, not the bot itself.
    async fn owner(&self, name: &str, bot: &User) -> anyhow::Result<User> {
        let name = name.trim().trim_start_matches('@');
        let user = match self.rest.user_by_username(name).await {
            Ok(u) => u,
            Err(MattermostError::NotFound { .. }) => {
                bail!("there is no user @{name} on {}", self.site)
            }
            Err(e) => return Err(e.into()),
        };
        if user.id == bot.id {
            bail!("@{name} is the bot itself: the owner is the person who uses it");
        }
        if user.is_bot {
            bail!("@{name} is a bot: the owner must be a person");
        }
        if user.delete_at != 0 {
            bail!("@{name} is deactivated");
        }
        Ok(user)
    }
}

/// The team and default channel: from the flags, else chosen among the
/// bot's. `None`: no default channel.
async fn default_channel(
    args: &SetupArgs,
    ask: &Ask,
    link: &Link,
    bot: &User,
    owner: &User,
    out: &mut dyn Write,
) -> anyhow::Result<Option<Channel>> {
    let wanted = args.channel.as_deref().map(str::trim);
    if matches!(wanted, Some(c) if c.eq_ignore_ascii_case("none")) {
        return Ok(None);
    }
    if args.team.is_none() && wanted.is_none() && !ask.interactive() {
        return Ok(None);
    }
    let teams = link.rest.my_teams().await?;
    if teams.is_empty() {
        bail!(
            "the bot @{} is in no team: add it to one (System Console > Integrations > Bot \
             Accounts, or `/invite @{}` in a team channel)",
            bot.username,
            bot.username
        );
    }
    let team = loop {
        let team = pick_team(args, ask, &teams, bot)?;
        if link.rest.is_team_member(&team.id, &owner.id).await? {
            break team;
        }
        let why = format!(
            "the owner @{} is not a member of team {}: its channels are out of their reach; add \
             them to it or choose another team",
            owner.username,
            team_label(&team)
        );
        if args.team.is_some() || teams.len() == 1 || !ask.interactive() {
            bail!(why);
        }
        let _ = writeln!(std::io::stderr(), "{why}");
    };
    writeln!(out, "Team: {}", team_label(&team))?;
    let mut channels: Vec<Channel> = link
        .rest
        .my_channels(&team.id)
        .await?
        .into_iter()
        .filter(|c| matches!(c.kind.as_str(), "O" | "P") && c.delete_at == 0)
        .collect();
    channels.sort_by(|a, b| a.name.cmp(&b.name));
    let names = || {
        channels
            .iter()
            .map(|c| format!("~{}", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match wanted {
        Some(w) => {
            let w = w.trim_start_matches('~');
            let found = channels.iter().find(|c| {
                c.id == w
                    || c.name.eq_ignore_ascii_case(w)
                    || c.display_name.eq_ignore_ascii_case(w)
            });
            match found {
                Some(c) => Some(c.clone()),
                None => bail!(
                    "the bot @{} is not a member of a channel `{w}` in team {} (its channels \
                     there: {}); add it to the channel (`/invite @{}` there) or choose another",
                    bot.username,
                    team_label(&team),
                    if channels.is_empty() {
                        "none".to_owned()
                    } else {
                        names()
                    },
                    bot.username
                ),
            }
        }
        None if channels.is_empty() => {
            writeln!(
                out,
                "The bot is in no channel of {}: no default channel (sessions from OpenCode get a \
                 thread when first used from chat)",
                team_label(&team)
            )?;
            None
        }
        None => {
            let mut items = vec![
                "none: a session started in OpenCode gets a thread when first used from chat"
                    .to_owned(),
            ];
            items.extend(channels.iter().map(|c| {
                let kind = if c.kind == "P" { "private" } else { "public" };
                format!("~{} ({}, {kind})", c.name, c.display_name)
            }));
            let i = ask.choose(
                "Default channel for sessions started in OpenCode",
                "--channel",
                &items,
            )?;
            i.checked_sub(1).and_then(|i| channels.get(i)).cloned()
        }
    };
    match &chosen {
        Some(c) => writeln!(out, "Default channel: ~{} ({})", c.name, c.display_name)?,
        None => writeln!(out, "Default channel: none")?,
    }
    Ok(chosen)
}

/// The team the flag names (it must be one of the bot's), the only one,
/// or the one chosen.
fn pick_team(args: &SetupArgs, ask: &Ask, teams: &[Team], bot: &User) -> anyhow::Result<Team> {
    if let Some(wanted) = args.team.as_deref().map(str::trim) {
        return teams
            .iter()
            .find(|t| {
                t.id == wanted
                    || t.name.eq_ignore_ascii_case(wanted)
                    || t.display_name.eq_ignore_ascii_case(wanted)
            })
            .cloned()
            .with_context(|| {
                format!(
                    "the bot @{} is not a member of a team `{wanted}` (its teams: {}); add it to \
                     the team or choose another",
                    bot.username,
                    teams.iter().map(team_label).collect::<Vec<_>>().join(", ")
                )
            });
    }
    if let [only] = teams {
        return Ok(only.clone());
    }
    if !ask.interactive() {
        bail!(
            "--team is needed with --channel: the bot is in {} teams ({})",
            teams.len(),
            teams.iter().map(team_label).collect::<Vec<_>>().join(", ")
        );
    }
    let items: Vec<String> = teams.iter().map(team_label).collect();
    let i = ask.choose("Team of the default channel", "--team", &items)?;
    teams.get(i).cloned().context("no such team")
}

fn team_label(t: &Team) -> String {
    format!("{} ({})", t.display_name, t.name)
}

/// Environment variables that will override what the file now says.
fn overriding(
    env: &dyn Fn(&str) -> Option<String>,
    s: &files::Settings,
) -> Vec<(&'static str, String)> {
    let written = [
        ("MATTERMOST_URL", Some(s.url.as_str())),
        ("MATTERMOST_OWNER_USER_ID", Some(s.owner_user_id.as_str())),
        (
            "OPENCODE_MM_DEFAULT_CHANNEL_ID",
            s.default_channel_id.as_deref(),
        ),
    ];
    let mut found: Vec<(&'static str, String)> = written
        .into_iter()
        .filter_map(|(var, value)| {
            let set = env(var)?;
            (Some(set.trim_end_matches('/')) != value).then_some((var, set))
        })
        .collect();
    if env("MATTERMOST_TOKEN").is_some_and(|t| t.trim() != s.token) {
        found.push(("MATTERMOST_TOKEN", "[redacted]".into()));
    }
    found
}

/// Besides `opencode.json(c)`, OpenCode's global directory may hold its
/// config as `config.json`.
const GLOBAL_ALSO: &[&str] = &["config.json"];

/// OpenCode's own config directory: `$XDG_CONFIG_HOME/opencode`, else
/// `~/.config/opencode`.
fn opencode_config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))
        .map(|base| base.join("opencode"))
}

/// Where to register the plugin: the flag, the default of --yes, or asked.
fn scope(args: &SetupArgs, ask: &Ask, global: Option<&Path>, cwd: &Path) -> anyhow::Result<Scope> {
    if let Some(s) = args.scope {
        return Ok(s);
    }
    if !ask.interactive() {
        return Ok(Scope::Global);
    }
    let global_text = global.map_or("(no home directory)".into(), |g| g.display().to_string());
    let items = [
        format!("every project ({global_text})"),
        format!("this project only ({})", cwd.display()),
        "do not register it".to_owned(),
    ];
    let i = ask.choose("Load the plugin in", "--scope", &items)?;
    Ok([Scope::Global, Scope::Project, Scope::None][i.min(2)])
}

/// What naming the plugin in OpenCode's global or the project's config
/// will do, or why nothing: every file is read and checked now, before
/// the config file is written.
fn plan_registration(
    scope: Scope,
    global: Option<&Path>,
    cwd: &Path,
) -> anyhow::Result<Option<Registration>> {
    if scope == Scope::None {
        return Ok(None);
    }
    let global = global.context(
        "no OpenCode config directory: set HOME or XDG_CONFIG_HOME (or use --scope none)",
    )?;
    if let Some(file) = files::source_install(global) {
        // A source install names no package; it loads the shim from a file.
        return Ok(Some(Registration::Already(file, "source install".into())));
    }
    Ok(Some(match scope {
        // Named globally already: a project entry would load it twice.
        Scope::Project => match files::registration(global, PLUGIN_PACKAGE, GLOBAL_ALSO)? {
            Some((path, entry)) => Registration::Already(path, entry),
            None => files::plan(cwd, PLUGIN_PACKAGE, &[])?,
        },
        _ => files::plan(global, PLUGIN_PACKAGE, GLOBAL_ALSO)?,
    }))
}

/// Register the plugin as planned, and say what happened.
fn register(plan: Option<Registration>, out: &mut dyn Write) -> anyhow::Result<()> {
    match plan {
        None => writeln!(
            out,
            "Plugin not registered: add \"{PLUGIN_PACKAGE}\" to the \"plugin\" list of an \
             opencode.json to load it"
        )?,
        Some(Registration::Already(path, entry)) => writeln!(
            out,
            "Plugin already registered in {} ({entry}): not named again",
            path.display()
        )?,
        Some(plan @ Registration::Write { .. }) => {
            files::apply(&plan)?;
            if let Registration::Write { path, .. } = &plan {
                writeln!(out, "Registered \"{PLUGIN_PACKAGE}\" in {}", path.display())?;
            }
        }
    }
    Ok(())
}
