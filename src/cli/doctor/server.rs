//! The checks that talk to the Mattermost server, each needing the one
//! before it: the address answers, over TLS when it is https, the token is
//! accepted and belongs to a bot in a team, the owner exists and can get a
//! DM, the WebSocket authenticates, and the server's clock agrees with ours.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

use super::Check;
use crate::config::{Config, Secret, is_loopback};
use crate::mattermost::probe::{self, SocketProbeError};
use crate::mattermost::types::User;
use crate::mattermost::{MattermostError, RateBudget, RestClient, RetryPolicy};

const REACH: &str = "URL reachable";
const TLS: &str = "TLS";
const TOKEN: &str = "token valid";
const BOT: &str = "bot account";
const TEAM: &str = "team membership";
const OWNER: &str = "owner exists";
const DM: &str = "DM possible";
const SOCKET: &str = "WebSocket";
const CLOCK: &str = "clock skew";
/// In order; a failure skips the ones after it that need it.
const CHAIN: [&str; 8] = [REACH, TLS, TOKEN, BOT, TEAM, OWNER, DM, SOCKET];

/// A clock further off than this fails the check: schedules, catch-up
/// windows and instance leases all compare times.
pub const MAX_SKEW: Duration = Duration::from_secs(30);
/// How long one answer may take.
const WAIT: Duration = Duration::from_secs(10);

/// The server checks in order, and the clock check.
pub async fn checks(config: &Config) -> (Vec<Check>, Check) {
    let mut out = Vec::new();
    let clock = chain(config, &mut out).await;
    // Whatever the chain did not reach is skipped, with the reason.
    let why = out
        .iter()
        .find(|c| c.status == super::Status::Fail)
        .map(|c| format!("needs {} to pass", c.name))
        .unwrap_or_default();
    for name in CHAIN.iter().skip(out.len()) {
        out.push(Check::skip(name, why.clone()));
    }
    let clock = clock.unwrap_or_else(|| Check::skip(CLOCK, why));
    (out, clock)
}

/// Runs the chain until a check fails that the next ones need; returns
/// the clock check once the server has answered.
async fn chain(config: &Config, out: &mut Vec<Check>) -> Option<Check> {
    let Some(site) = &config.site_url else {
        out.push(Check::fail(
            REACH,
            problem(config, "MATTERMOST_URL").unwrap_or_else(|| "MATTERMOST_URL is not set".into()),
            "set MATTERMOST_URL to your server's address, e.g. https://chat.example.com",
        ));
        return None;
    };
    let token = config.token.clone();
    let rest = match client(config, token.clone()) {
        Ok(rest) => rest,
        Err(e) => {
            out.push(Check::fail(REACH, e.to_string(), "check MATTERMOST_URL"));
            return None;
        }
    };
    let (reach, tls, ping) = reach_and_tls(site, config.ws_url.as_ref(), &rest).await;
    out.push(reach);
    let clock = ping.map(clock_skew);
    if out.last().is_some_and(failed) {
        return clock;
    }
    out.push(tls);
    if out.last().is_some_and(failed) {
        return clock;
    }
    let Some(token) = token else {
        out.push(Check::fail(
            TOKEN,
            "MATTERMOST_TOKEN is not set",
            "create a bot account (System Console > Integrations > Bot Accounts), copy its \
             access token and set MATTERMOST_TOKEN",
        ));
        return clock;
    };
    let me = match rest.me().await {
        Ok(me) => me,
        Err(e) => {
            out.push(token_failed(&e));
            return clock;
        }
    };
    out.push(Check::pass(
        TOKEN,
        format!("accepted: it belongs to @{}", me.username),
    ));
    out.push(bot_account(config, &me));
    out.push(team_membership(&rest, &me).await);
    let owner = owner_exists(config, &rest).await;
    out.push(owner.0);
    out.push(match owner.1 {
        Some(owner) => dm_possible(&rest, &me, &owner).await,
        None => Check::skip(DM, "needs an owner"),
    });
    out.push(websocket(config, &token).await);
    clock
}

fn failed(check: &Check) -> bool {
    check.status == super::Status::Fail
}

/// The problem the configuration recorded for a key, if any.
fn problem(config: &Config, key: &str) -> Option<String> {
    config
        .problems
        .iter()
        .find(|p| p.key == key)
        .map(|p| format!("{key}: {}", p.message))
}

/// The agent's client, trying each call once: a person is waiting.
fn client(config: &Config, token: Option<Secret>) -> Result<RestClient, MattermostError> {
    let api = config.api_url().unwrap_or_default();
    let budget = Arc::new(RateBudget::new(
        config.rate_per_second as f64,
        config.rate_burst as f64,
    ));
    RestClient::new(
        &api,
        token.unwrap_or_else(|| Secret::new("")),
        budget,
        RetryPolicy {
            attempts: 1,
            request_timeout: WAIT,
            ..RetryPolicy::default()
        },
    )
}

/// A TCP connection to the server's port, then its ping: a TLS failure is
/// told apart from an unreachable host by the TCP connection that worked.
async fn reach_and_tls(
    site: &Url,
    ws: Option<&Url>,
    rest: &RestClient,
) -> (Check, Check, Option<(probe::Ping, DateTime<Utc>)>) {
    let host = site.host_str().unwrap_or_default();
    let port = site.port_or_known_default().unwrap_or(443);
    let address = format!("{host}:{port}");
    let fix = "check MATTERMOST_URL (scheme, host and port), that Mattermost runs, and that \
               no firewall or proxy blocks this machine";
    let connect = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(address.as_str()));
    match connect.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let detail = format!("cannot open a connection to {address}: {e}");
            return (Check::fail(REACH, detail, fix), untested(), None);
        }
        Err(_) => {
            let detail = format!("no connection to {address} within {WAIT:?}");
            return (Check::fail(REACH, detail, fix), untested(), None);
        }
    }
    let https = site.scheme() == "https";
    match rest.ping().await {
        Ok(ping) if ping.status == "OK" => {
            // `X-Version-Id` starts with the version: `9.8.1.<build>.<hash>…`.
            let version = ping
                .version_id
                .as_deref()
                .map(|v| v.split('.').take(3).collect::<Vec<_>>().join("."))
                .map(|v| format!(" (Mattermost {v})"))
                .unwrap_or_default();
            let reach = Check::pass(
                REACH,
                format!("{site} answers /api/v4/system/ping{version}"),
            );
            let now = Utc::now();
            (reach, tls(site, ws), Some((ping, now)))
        }
        Ok(ping) => {
            let detail = format!(
                "{site} answered /api/v4/system/ping with status `{}`, not OK",
                ping.status
            );
            let fix = "the server is up but unhealthy: see its logs (System Console > Server Logs)";
            (Check::fail(REACH, detail, fix), untested(), None)
        }
        Err(MattermostError::Unreachable { reason, .. }) if https => {
            let reach = Check::pass(REACH, format!("a TCP connection to {address} opened"));
            let tls = Check::fail(
                TLS,
                format!("no HTTPS answer from {address}: {reason}"),
                "the port must speak TLS with a certificate this machine trusts: add a \
                 private CA to the system's certificate store, or fix MATTERMOST_URL's port",
            );
            (reach, tls, None)
        }
        Err(e) => (Check::fail(REACH, e.to_string(), fix), untested(), None),
    }
}

fn untested() -> Check {
    Check::skip(TLS, "needs a reachable server")
}

/// https passed the handshake; plain http is fine only on this machine.
fn tls(site: &Url, ws: Option<&Url>) -> Check {
    let clear: Vec<&Url> = [Some(site), ws]
        .into_iter()
        .flatten()
        .filter(|u| matches!(u.scheme(), "http" | "ws") && !is_loopback(u))
        .collect();
    if let Some(url) = clear.first() {
        return Check::warn(
            TLS,
            format!(
                "{url} is not encrypted: the token and every message cross the network in \
                 clear text"
            ),
            "use https:// (and wss://) in MATTERMOST_URL and MATTERMOST_WS_URL",
        );
    }
    if site.scheme() == "https" {
        Check::pass(
            TLS,
            format!(
                "TLS handshake with {} done; the certificate is trusted",
                site.host_str().unwrap_or_default()
            ),
        )
    } else {
        Check::pass(
            TLS,
            "plain http to this machine (loopback): nothing crosses the network",
        )
    }
}

fn token_failed(e: &MattermostError) -> Check {
    match e {
        MattermostError::InvalidToken { .. } => Check::fail(
            TOKEN,
            "Mattermost rejected MATTERMOST_TOKEN (HTTP 401)",
            "create a new access token for the bot (System Console > Integrations > Bot \
             Accounts > Create New Token) and set MATTERMOST_TOKEN to it",
        ),
        other => Check::fail(
            TOKEN,
            format!("GET /users/me failed: {other}"),
            "see the error; the server must answer GET /api/v4/users/me",
        ),
    }
}

fn bot_account(config: &Config, me: &User) -> Check {
    if !me.is_bot {
        return Check::fail(
            BOT,
            format!("@{} is a person's account, not a bot", me.username),
            "create a bot account (System Console > Integrations > Bot Accounts) and use its \
             token: with a personal token the agent posts as that person",
        );
    }
    match &config.bot_username {
        Some(expected) if !expected.eq_ignore_ascii_case(&me.username) => Check::warn(
            BOT,
            format!(
                "@{} is a bot, but MATTERMOST_BOT_USERNAME expects @{expected}",
                me.username
            ),
            "set MATTERMOST_BOT_USERNAME to the bot's username, or the token of that bot",
        ),
        _ => Check::pass(BOT, format!("@{} is a bot account", me.username)),
    }
}

async fn team_membership(rest: &RestClient, me: &User) -> Check {
    match rest.my_teams().await {
        Ok(teams) if teams.is_empty() => Check::fail(
            TEAM,
            format!("@{} is in no team", me.username),
            format!(
                "add the bot to a team: `/invite @{}` in a channel of the team, or System \
                 Console > Teams > Add Members",
                me.username
            ),
        ),
        Ok(teams) => {
            let names: Vec<String> = teams.iter().map(|t| t.name.clone()).collect();
            Check::pass(TEAM, format!("member of {}", names.join(", ")))
        }
        Err(e) => Check::fail(
            TEAM,
            format!("listing the bot's teams failed: {e}"),
            "see the error",
        ),
    }
}

async fn owner_exists(config: &Config, rest: &RestClient) -> (Check, Option<User>) {
    let fix = "set MATTERMOST_OWNER_USER_ID to your user id (your avatar > Profile > ... > \
               Copy user ID)";
    let Some(id) = &config.owner_user_id else {
        let check = match problem(config, "MATTERMOST_OWNER_USER_ID") {
            Some(p) if !config.allowed_users.is_empty() => Check::warn(OWNER, p, fix),
            Some(p) => Check::fail(OWNER, p, fix),
            None => Check::warn(
                OWNER,
                format!(
                    "MATTERMOST_OWNER_USER_ID is not set; {} allowed user(s) may prompt",
                    config.allowed_users.len()
                ),
                fix,
            ),
        };
        return (check, None);
    };
    match rest.user(id).await {
        Ok(user) if user.delete_at != 0 => (
            Check::fail(
                OWNER,
                format!("{id} is @{}, whose account is deactivated", user.username),
                fix,
            ),
            None,
        ),
        Ok(user) => (
            Check::pass(OWNER, format!("{id} is @{}", user.username)),
            Some(user),
        ),
        Err(MattermostError::NotFound { .. }) => (
            Check::fail(
                OWNER,
                format!("no user has the id {id} on this server"),
                fix,
            ),
            None,
        ),
        Err(e) => (
            Check::fail(OWNER, format!("looking up {id} failed: {e}"), fix),
            None,
        ),
    }
}

async fn dm_possible(rest: &RestClient, me: &User, owner: &User) -> Check {
    match rest.direct_channel(&me.id, &owner.id).await {
        Ok(channel) => Check::pass(
            DM,
            format!(
                "the DM between @{} and @{} is {}",
                me.username, owner.username, channel.id
            ),
        ),
        Err(e) => Check::fail(
            DM,
            format!("the bot cannot open a DM with @{}: {e}", owner.username),
            "let the bot message the owner: System Console > Users and Teams > Enable users \
             to open Direct Message channels with: Any user on the Mattermost server, or \
             put both in one team",
        ),
    }
}

async fn websocket(config: &Config, token: &Secret) -> Check {
    let Some(url) = &config.ws_url else {
        return Check::fail(
            SOCKET,
            problem(config, "MATTERMOST_WS_URL")
                .unwrap_or_else(|| "no WebSocket URL could be derived".into()),
            "set MATTERMOST_WS_URL, e.g. wss://chat.example.com/api/v4/websocket",
        );
    };
    match probe::websocket(url, token, WAIT).await {
        Ok(hello) => Check::pass(
            SOCKET,
            format!(
                "{url} upgraded and authenticated (hello received, connection {})",
                hello.connection_id
            ),
        ),
        Err(e) => {
            let fix = match e {
                SocketProbeError::Upgrade(_) => {
                    "a proxy in front of Mattermost must pass WebSocket upgrades on \
                     /api/v4/websocket (nginx: `proxy_set_header Upgrade $http_upgrade;` and \
                     `proxy_set_header Connection \"upgrade\";`), or fix MATTERMOST_WS_URL"
                }
                SocketProbeError::HeaderDropped(_) => {
                    "let the proxy pass the Authorization header on /api/v4/websocket"
                }
                SocketProbeError::NotAuthenticated(_) => {
                    "check the token, and that MATTERMOST_WS_URL is this server's"
                }
            };
            Check::fail(SOCKET, e.to_string(), fix)
        }
    }
}

/// The server's `Date` against this machine's clock when it arrived.
fn clock_skew((ping, local): (probe::Ping, DateTime<Utc>)) -> Check {
    let Some(server) = ping.server_time else {
        return Check::skip(CLOCK, "the server sent no Date header");
    };
    // `Date` has whole seconds: compare with ours truncated alike.
    let local = local.timestamp();
    let skew = server.timestamp() - local;
    let side = if skew > 0 { "ahead of" } else { "behind" };
    if skew.unsigned_abs() > MAX_SKEW.as_secs() {
        Check::fail(
            CLOCK,
            format!(
                "the server's clock is {}s {side} this machine's (more than {}s)",
                skew.unsigned_abs(),
                MAX_SKEW.as_secs()
            ),
            "synchronise both clocks with NTP (`timedatectl set-ntp true`): schedules, \
             catch-up windows and instance leases compare times",
        )
    } else {
        Check::pass(
            CLOCK,
            format!(
                "the server's clock is within {}s of this machine's ({skew:+}s)",
                MAX_SKEW.as_secs()
            ),
        )
    }
}
