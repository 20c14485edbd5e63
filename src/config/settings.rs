//! The settings table: every key the agent reads, with its default and
//! allowed range, turned into a [`Config`]; then the checks that span
//! several settings (nothing to connect with, nobody allowed to prompt).

use std::path::PathBuf;

use super::sources::{RawSettings, parse_file};
use super::values::{DatabaseUrl, Reader, derive_ws_url};
use super::{CONFIG_FILE_ENV, Config, DEFAULT_ATTACH_OVER, MATTERMOST_MAX_POST_RUNES, Problem};

impl Config {
    /// Build from an environment lookup and the config file's contents (or the
    /// error reading it). Pure, so tests never touch the process environment.
    pub fn from_sources(
        env: &dyn Fn(&str) -> Option<String>,
        file: Option<Result<(PathBuf, String), (PathBuf, String)>>,
    ) -> Self {
        let mut problems = Vec::new();
        let mut raw = RawSettings::new();
        let mut file_path = None;
        match file {
            Some(Ok((path, text))) => {
                parse_file(&path, &text, &mut raw, &mut problems);
                file_path = Some(path);
            }
            Some(Err((path, err))) => problems.push(Problem {
                key: CONFIG_FILE_ENV.into(),
                message: format!("cannot read config file {}: {err}", path.display()),
            }),
            None => {}
        }
        let mut r = Reader {
            raw,
            env,
            problems,
            entries: Vec::new(),
            read: Vec::new(),
        };

        let site_url = r.site_url("MATTERMOST_URL");
        let ws_url = r
            .ws_url("MATTERMOST_WS_URL")
            .or_else(|| site_url.as_ref().and_then(derive_ws_url));
        let token = r.secret("MATTERMOST_TOKEN");
        let bot_username = r.string("MATTERMOST_BOT_USERNAME");
        let owner_user_id = r.user_id("MATTERMOST_OWNER_USER_ID");
        let auto_connect = r.boolean("MATTERMOST_AUTO_CONNECT", false);
        let debug = r.boolean("MATTERMOST_DEBUG", false);
        let reconnect_interval = r.millis("MATTERMOST_RECONNECT_INTERVAL", 5000, 100..=600_000);
        let allowed_users = r.user_ids("OPENCODE_MM_ALLOWED_USERS");
        let allow_integration_posts = r.boolean("OPENCODE_MM_ALLOW_INTEGRATION_POSTS", false);
        let allowed_channel_types = r.channel_types("OPENCODE_MM_ALLOWED_CHANNEL_TYPES");
        let default_channel_id = r.user_id("OPENCODE_MM_DEFAULT_CHANNEL_ID");
        let channel_images = r.boolean("OPENCODE_MM_CHANNEL_IMAGES", false);
        let command_prefix = r.string_or("OPENCODE_MM_COMMAND_PREFIX", "!");
        let buffer_size = r.number("OPENCODE_MM_BUFFER_SIZE", 50, 1..=100_000);
        let max_delay = r.millis("OPENCODE_MM_MAX_DELAY", 500, 0..=60_000);
        let edit_rate_limit = r.number("OPENCODE_MM_EDIT_RATE_LIMIT", 2, 1..=100);
        let max_post_length = r.number(
            "OPENCODE_MM_MAX_POST_LENGTH",
            15000,
            500..=MATTERMOST_MAX_POST_RUNES,
        );
        let notify_completion = r.boolean("OPENCODE_MM_NOTIFY_COMPLETION", true);
        let notify_permission = r.boolean("OPENCODE_MM_NOTIFY_PERMISSION", true);
        let notify_error = r.boolean("OPENCODE_MM_NOTIFY_ERROR", true);
        let notify_status = r.boolean("OPENCODE_MM_NOTIFY_STATUS", true);
        let temp_dir = r.path("OPENCODE_MM_TEMP_DIR");
        let max_file_size = r.number("OPENCODE_MM_MAX_FILE_SIZE", 10_485_760, 1..=1 << 34);
        let allowed_extensions = r.extensions("OPENCODE_MM_ALLOWED_EXTENSIONS");
        let attach_over = r.number(
            "OPENCODE_MM_ATTACH_OVER",
            DEFAULT_ATTACH_OVER,
            0..=100_000_000,
        );
        let log_file = r.path("MM_PLUGIN_LOG_FILE");
        let state_db = r.path("OPENCODE_MM_STATE_DB");
        let (state_db, database_url) = match r.database_url("OPENCODE_MM_DATABASE_URL") {
            Some(DatabaseUrl::Postgres(url)) => {
                if state_db.is_some() {
                    r.problem(
                        "OPENCODE_MM_STATE_DB",
                        "not used: OPENCODE_MM_DATABASE_URL selects PostgreSQL; unset one of \
                         them"
                            .into(),
                    );
                }
                (None, Some(url))
            }
            Some(DatabaseUrl::Sqlite(path)) => {
                if let Some(other) = state_db.filter(|other| *other != path) {
                    r.problem(
                        "OPENCODE_MM_DATABASE_URL",
                        format!(
                            "names {} but OPENCODE_MM_STATE_DB names {}; using {}",
                            path.display(),
                            other.display(),
                            path.display()
                        ),
                    );
                }
                (Some(path), None)
            }
            None => (state_db, None),
        };
        let database_pool_size = r.number("OPENCODE_MM_DATABASE_POOL_SIZE", 8, 1..=100) as usize;
        let database_connect_timeout = r.millis(
            "OPENCODE_MM_DATABASE_CONNECT_TIMEOUT",
            10_000,
            500..=120_000,
        );
        let log_filter = r.string("OPENCODE_MM_LOG");
        let fetch_timeout = r.millis("OPENCODE_MM_FETCH_TIMEOUT", 30_000, 100..=600_000);
        let rate_per_second = r.number("OPENCODE_MM_API_RATE", 50, 1..=1000);
        let rate_burst = r.number("OPENCODE_MM_API_BURST", 100, 1..=1000);
        let timezone = r.timezone("OPENCODE_MM_TIMEZONE");
        let schedule_timeout = r.millis(
            "OPENCODE_MM_SCHEDULE_TIMEOUT",
            1_800_000,
            10_000..=86_400_000,
        );
        let schedule_grace = r.millis("OPENCODE_MM_SCHEDULE_GRACE", 600_000, 60_000..=86_400_000);
        let schedule_min_interval = r.millis(
            "OPENCODE_MM_SCHEDULE_MIN_INTERVAL",
            300_000,
            60_000..=86_400_000,
        );
        let question_timeout = r.millis(
            "OPENCODE_MM_QUESTION_TIMEOUT",
            1_800_000,
            1_000..=604_800_000,
        );
        let guest_approval_timeout = r.millis(
            "OPENCODE_MM_GUEST_APPROVAL_TIMEOUT",
            1_800_000,
            1_000..=604_800_000,
        );
        let team_file = r.path("OPENCODE_MM_TEAM_FILE").filter(|p| {
            // Relative to what? The agent's working directory is OpenCode's.
            let absolute = p.is_absolute();
            if !absolute {
                r.problem(
                    "OPENCODE_MM_TEAM_FILE",
                    format!("`{}` is not an absolute path; not imported", p.display()),
                );
            }
            absolute
        });
        let catch_up_max_age =
            Some(r.millis("OPENCODE_MM_CATCH_UP_MAX_AGE", 3_600_000, 0..=604_800_000))
                .filter(|age| !age.is_zero());

        let context_messages = r.number("OPENCODE_MM_CONTEXT_MESSAGES", 5, 0..=50);
        let context_max_chars = r.number("OPENCODE_MM_CONTEXT_MAX_CHARS", 8000, 500..=200_000);
        let context_summary_timeout = r.millis(
            "OPENCODE_MM_CONTEXT_SUMMARY_TIMEOUT",
            20_000,
            1_000..=120_000,
        );

        let instance_lease = r.millis("OPENCODE_MM_INSTANCE_LEASE", 15_000, 3_000..=600_000);

        for (key, why) in RETIRED {
            r.retired(key, why);
        }
        for (key, url) in [
            ("MATTERMOST_URL", &site_url),
            ("MATTERMOST_WS_URL", &ws_url),
        ] {
            if let Some(url) = url
                && matches!(url.scheme(), "http" | "ws")
                && !is_loopback(url)
            {
                r.problem(
                    key,
                    format!(
                        "`{}` is not encrypted and {} is not this machine: the token and every \
                         message cross the network in clear text; use https://",
                        url.scheme(),
                        url.host_str().unwrap_or("the host")
                    ),
                );
            }
        }
        r.unknown_file_keys();
        let Reader {
            mut problems,
            entries,
            ..
        } = r;
        if token.is_none() {
            problems.push(Problem {
                key: "MATTERMOST_TOKEN".into(),
                message: "not set: create a bot account (System Console > Integrations > Bot \
                          Accounts), copy its access token and set MATTERMOST_TOKEN"
                    .into(),
            });
        }
        if site_url.is_none() && !problems.iter().any(|p| p.key == "MATTERMOST_URL") {
            problems.push(Problem {
                key: "MATTERMOST_URL".into(),
                message: "not set: set MATTERMOST_URL to your server, e.g. \
                          https://chat.example.com"
                    .into(),
            });
        }
        if owner_user_id.is_none() && allowed_users.is_empty() {
            problems.push(Problem {
                key: "MATTERMOST_OWNER_USER_ID".into(),
                message: "nobody may prompt from Mattermost: set MATTERMOST_OWNER_USER_ID to \
                          your user id (Profile > ... > Copy user ID) or list user ids in \
                          OPENCODE_MM_ALLOWED_USERS"
                    .into(),
            });
        }

        Config {
            site_url,
            ws_url,
            token,
            bot_username,
            owner_user_id,
            auto_connect,
            debug,
            reconnect_interval,
            allowed_users,
            allow_integration_posts,
            allowed_channel_types,
            default_channel_id,
            channel_images,
            command_prefix,
            buffer_size,
            max_delay,
            edit_rate_limit,
            max_post_length,
            notify_completion,
            notify_permission,
            notify_error,
            notify_status,
            temp_dir,
            max_file_size,
            allowed_extensions,
            attach_over,
            log_file,
            state_db,
            database_url,
            database_pool_size,
            database_connect_timeout,
            log_filter,
            fetch_timeout,
            rate_per_second,
            rate_burst,
            timezone,
            schedule_timeout,
            question_timeout,
            guest_approval_timeout,
            team_file,
            catch_up_max_age,
            instance_lease,
            context_messages,
            context_max_chars,
            context_summary_timeout,
            schedule_grace,
            schedule_min_interval,
            file: file_path,
            entries,
            problems,
        }
    }
}

/// Settings of the plugin this agent replaces that nothing here reads.
/// Setting one is reported (never silently ignored), with why.
const RETIRED: &[(&str, &str)] = &[
    (
        "MATTERMOST_TEAM",
        "the bot answers in every team it belongs to; permalinks use the post's own team",
    ),
    (
        "MATTERMOST_MAX_RECONNECT_ATTEMPTS",
        "the link reconnects forever with a capped backoff; a rejected token stops it",
    ),
    (
        "OPENCODE_MM_STATUS_INTERVAL",
        "the status line of a running turn updates with the turn",
    ),
    (
        "OPENCODE_MM_SESSION_TIMEOUT",
        "sessions live as long as OpenCode keeps them",
    ),
    (
        "OPENCODE_MM_SESSION_REFRESH_INTERVAL",
        "sessions are read from OpenCode when needed",
    ),
    (
        "OPENCODE_MM_MAX_SESSIONS",
        "sessions are OpenCode's; there is no per-user cap",
    ),
    (
        "OPENCODE_MM_AUTO_SELECT",
        "a thread always talks to its own session; `!use` attaches a DM",
    ),
    (
        "OPENCODE_MM_AUTO_CREATE_SESSION",
        "a new top-level DM always starts a session",
    ),
];

/// Whether a URL's host is this machine.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
