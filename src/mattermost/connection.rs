//! One live connection to a Mattermost server: the bot's identity, the REST
//! client and the WebSocket link, set up by `mattermost_connect` (or at
//! start-up with `MATTERMOST_AUTO_CONNECT`) and torn down by
//! `mattermost_disconnect`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc};
use tracing::{info, warn};

use super::budget::RateBudget;
use super::error::MattermostError;
use super::rest::{RestClient, RetryPolicy};
use super::types::{Post, Team, User};
use super::ws::{self, CatchUp, Inbound, LinkConfig, LinkHandle, LinkState, LinkStats};
use crate::config::{ChannelType, Config};

/// Inbound events buffered before the link waits for the consumer.
pub const INBOUND_QUEUE: usize = 1024;
/// How long `connect` waits for the WebSocket `hello` before answering that
/// it is still connecting (the link keeps trying in the background).
const HELLO_WAIT: Duration = Duration::from_secs(10);

/// What `mattermost_connect` learned about the server and the bot.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub site_url: String,
    pub api_url: String,
    pub server_version: String,
    pub max_post_runes: usize,
    pub bot: User,
    pub teams: Vec<Team>,
}

pub struct Connection {
    pub info: ServerInfo,
    pub rest: Arc<RestClient>,
    pub link: LinkHandle,
    pub connected_at: Instant,
}

#[async_trait]
impl CatchUp for RestClient {
    async fn posts_since(&self, channel_id: &str, since_ms: i64) -> Result<Vec<Post>, String> {
        RestClient::posts_since(self, channel_id, since_ms)
            .await
            .map_err(|e| e.to_string())
    }

    async fn token_rejected(&self) -> bool {
        matches!(self.me().await, Err(MattermostError::InvalidToken { .. }))
    }
}

/// Why connecting failed, worded for the user.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect: {0}")]
    Config(String),
    #[error(transparent)]
    Mattermost(#[from] MattermostError),
}

/// Owns at most one [`Connection`]; connect is idempotent.
#[derive(Default)]
pub struct Connector {
    /// Held only to read or swap: never across the network, so status and
    /// streaming edits are never stuck behind a slow connect.
    current: Mutex<Option<Arc<Connection>>>,
    /// One connect at a time (two would open two links).
    connecting: Mutex<()>,
    /// Inbound events go here; the bridge takes the receiver.
    inbound: Mutex<Option<mpsc::Sender<Inbound>>>,
    /// Counts fresh connections, so the bridge can catch up after each.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Connector {
    /// A connector whose links deliver inbound events to `events`.
    pub fn new(events: mpsc::Sender<Inbound>) -> Self {
        Self {
            current: Mutex::new(None),
            connecting: Mutex::new(()),
            inbound: Mutex::new(Some(events)),
            generation: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes each time a fresh connection is made.
    pub fn connections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub async fn current(&self) -> Option<Arc<Connection>> {
        self.current.lock().await.clone()
    }

    /// Connect, or return the live connection. Checks the token and the
    /// bot's teams over REST before opening the WebSocket, so a bad token is
    /// one clear error instead of a reconnect storm.
    pub async fn connect(&self, config: &Config) -> Result<(Arc<Connection>, bool), ConnectError> {
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.current().await
            && !c.link.state().is_ended()
        {
            return Ok((c, false));
        }
        let (Some(api_url), Some(ws_url), Some(token)) = (
            config.api_url(),
            config.ws_url.clone(),
            config.token.clone(),
        ) else {
            let missing: Vec<String> = config
                .problems
                .iter()
                .filter(|p| {
                    matches!(
                        p.key.as_str(),
                        "MATTERMOST_URL" | "MATTERMOST_TOKEN" | "MATTERMOST_WS_URL"
                    )
                })
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect();
            return Err(ConnectError::Config(missing.join("; ")));
        };
        let budget = Arc::new(RateBudget::new(
            config.rate_per_second as f64,
            config.rate_burst as f64,
        ));
        // Connecting answers a person waiting at a prompt, so its checks fail
        // fast; the client kept for the session retries patiently. Both share
        // the server's budget.
        let probe = RestClient::new(
            &api_url,
            token.clone(),
            budget.clone(),
            RetryPolicy {
                attempts: 2,
                ..RetryPolicy::default()
            },
        )?;
        let rest = Arc::new(RestClient::new(
            &api_url,
            token.clone(),
            budget,
            RetryPolicy::default(),
        )?);
        let bot = probe.me().await?;
        if let Some(expected) = &config.bot_username
            && !expected.eq_ignore_ascii_case(&bot.username)
        {
            warn!(expected, actual = %bot.username, "the token belongs to another account");
        }
        let teams = probe.my_teams().await?;
        if teams.is_empty() {
            return Err(ConnectError::Config(format!(
                "the bot @{} is not in any team: add it to a team (System Console > \
                 Integrations > Bot Accounts, or `/invite @{}` in a team channel)",
                bot.username, bot.username
            )));
        }
        let client_config = probe.client_config().await?;
        let info = ServerInfo {
            site_url: client_config
                .site_url()
                .map(str::to_owned)
                .or_else(|| config.site_url.as_ref().map(|u| u.to_string()))
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
            api_url,
            server_version: client_config.version().unwrap_or("unknown").to_owned(),
            max_post_runes: client_config.max_post_size().unwrap_or(16383),
            bot: bot.clone(),
            teams,
        };
        let Some(events) = self.inbound.lock().await.clone() else {
            return Err(ConnectError::Config("the agent is shutting down".into()));
        };
        let mut link_config = LinkConfig::new(ws_url, token, bot.id.clone());
        link_config.backoff_initial = config.reconnect_interval.min(Duration::from_secs(5));
        let catch_up: Arc<dyn CatchUp> = rest.clone();
        let link = ws::spawn(link_config, catch_up, events);
        let _ = link.wait_connected(HELLO_WAIT).await;
        info!(bot = %bot.username, server = %info.site_url, "connected to Mattermost");
        let conn = Arc::new(Connection {
            info,
            rest,
            link,
            connected_at: Instant::now(),
        });
        *self.current.lock().await = Some(conn.clone());
        self.generation.send_modify(|g| *g += 1);
        Ok((conn, true))
    }

    /// Close the link; returns whether there was one.
    pub async fn disconnect(&self) -> bool {
        let taken = self.current.lock().await.take();
        match taken {
            Some(c) => {
                c.link.disconnect().await;
                true
            }
            None => false,
        }
    }
}

impl Connection {
    /// A link to a post: `{site}/{team}/pl/{id}` when the team is known, else
    /// `{site}/_redirect/pl/{id}`, which the web app sends to the reader's team
    /// (DMs and group messages have no team).
    pub fn permalink(&self, post_id: &str, team_id: Option<&str>) -> String {
        let team = team_id.and_then(|id| self.info.teams.iter().find(|t| t.id == id));
        permalink(&self.info.site_url, team.map(|t| t.name.as_str()), post_id)
    }
}

/// See [`Connection::permalink`].
pub fn permalink(site_url: &str, team_name: Option<&str>, post_id: &str) -> String {
    let site = site_url.trim_end_matches('/');
    match team_name.filter(|n| !n.is_empty()) {
        Some(team) => format!("{site}/{team}/pl/{post_id}"),
        None => format!("{site}/_redirect/pl/{post_id}"),
    }
}

/// One line saying who the bot answers, for connect and status.
pub fn audience(config: &Config, bot: &User) -> String {
    let mut who = Vec::new();
    if let Some(owner) = &config.owner_user_id {
        who.push(format!("the owner ({owner})"));
    }
    if !config.allowed_users.is_empty() {
        who.push(format!("{} allowed user(s)", config.allowed_users.len()));
    }
    if who.is_empty() {
        return "nobody yet: remote prompts are refused until MATTERMOST_OWNER_USER_ID or \
                OPENCODE_MM_ALLOWED_USERS is set"
            .into();
    }
    let places: Vec<&str> = config
        .allowed_channel_types
        .iter()
        .map(|t| match t {
            ChannelType::Direct => "direct messages",
            ChannelType::Group => "group messages that @mention it",
            ChannelType::Open => "public channels that @mention it",
            ChannelType::Private => "private channels that @mention it",
        })
        .collect();
    format!(
        "{} in {} (@{})",
        who.join(" and "),
        places.join(", "),
        bot.username
    )
}

/// What status says once the server refused the token.
pub fn token_rejected_line(at_ms: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "an unknown time".into());
    format!(
        "token rejected at {at}: Mattermost refused MATTERMOST_TOKEN, so the link stopped. \
         Set a valid bot token, then run mattermost_connect"
    )
}

/// The link's counters as status lines.
pub fn describe_link(conn: &Connection) -> Vec<String> {
    let stats: LinkStats = conn.link.stats();
    let state = match conn.link.state() {
        LinkState::Connecting { attempt } => format!("connecting (attempt {attempt})"),
        LinkState::Connected {
            connection_id,
            server_version,
            since,
        } => format!(
            "connected for {}s (connection {connection_id}, server {server_version})",
            since.elapsed().as_secs()
        ),
        LinkState::Reconnecting {
            attempt,
            retry_in,
            last_error,
        } => format!("reconnecting (attempt {attempt}, next in {retry_in:?}): {last_error}"),
        LinkState::Stopped => "stopped".into(),
        LinkState::TokenRejected { at_ms } => token_rejected_line(at_ms),
    };
    let last = stats
        .last_event
        .map(|at| format!("{}s ago", at.elapsed().as_secs()))
        .unwrap_or_else(|| "none yet".into());
    let budget = conn.rest.budget().stats();
    vec![
        format!("WebSocket: {state}"),
        format!(
            "Up {}s; connects {}, reconnects {}, resumes {} (refused {}), catch-ups {} recovering {} posts",
            conn.connected_at.elapsed().as_secs(),
            stats.connects,
            stats.reconnects,
            stats.resumes,
            stats.resumes_refused,
            stats.catch_ups,
            stats.posts_recovered,
        ),
        format!(
            "Events delivered {}, duplicates dropped {}, last event {last}",
            stats.events_delivered, stats.duplicates_dropped
        ),
        format!(
            "Rate limit: {:.1}/s, burst {:.0} ({}); {} waits ({:?} in all), {} answers of 429",
            budget.per_second,
            budget.burst,
            if budget.learned {
                "the server's"
            } else {
                "configured; the server sends no limits"
            },
            budget.waits,
            budget.waited,
            budget.rate_limited
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permalinks_use_the_team_or_the_redirect() {
        assert_eq!(
            permalink("https://chat.example.com/", Some("eng"), "p1"),
            "https://chat.example.com/eng/pl/p1"
        );
        assert_eq!(
            permalink("https://chat.example.com/sub", None, "p1"),
            "https://chat.example.com/sub/_redirect/pl/p1"
        );
        assert_eq!(
            permalink("https://x", Some(""), "p1"),
            "https://x/_redirect/pl/p1"
        );
    }
}
