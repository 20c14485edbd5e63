//! Configuration: environment variables (the old plugin's names keep working)
//! over an optional TOML file, validated into typed settings.
//!
//! Loading never fails. Every value that cannot be used becomes a [`Problem`]
//! with a message that says what to fix, and the setting falls back to its
//! default, so `mattermost_status` can always show the whole picture.

mod secret;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use secret::Secret;
use url::Url;

/// Environment variable naming the TOML config file.
pub const CONFIG_FILE_ENV: &str = "OPENCODE_MM_CONFIG";
/// The largest post Mattermost accepts on current schemas, in runes.
pub const MATTERMOST_MAX_POST_RUNES: u64 = 16383;
/// Replies up to four full posts stay inline: past that, a thread of
/// continuation posts is harder to read than one attached file.
pub const DEFAULT_ATTACH_OVER: u64 = 60_000;

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Env,
    File,
    Default,
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Origin::Env => "env",
            Origin::File => "file",
            Origin::Default => "default",
        }
    }
}

/// A configuration value that could not be used, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// One line of the effective configuration, safe to show (secrets redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: &'static str,
    pub value: String,
    pub origin: Origin,
}

/// Mattermost channel types the bot may answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChannelType {
    Direct,
    Group,
    Open,
    Private,
}

impl ChannelType {
    pub fn code(self) -> char {
        match self {
            ChannelType::Direct => 'D',
            ChannelType::Group => 'G',
            ChannelType::Open => 'O',
            ChannelType::Private => 'P',
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        match code.to_ascii_uppercase().as_str() {
            "D" => Some(ChannelType::Direct),
            "G" => Some(ChannelType::Group),
            "O" => Some(ChannelType::Open),
            "P" => Some(ChannelType::Private),
            _ => None,
        }
    }
}

/// The validated configuration. Field docs name the variable that sets each.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MATTERMOST_URL`: the site URL, without `/api/v4`.
    pub site_url: Option<Url>,
    /// `MATTERMOST_WS_URL`, else derived from the site URL.
    pub ws_url: Option<Url>,
    /// `MATTERMOST_TOKEN`: the bot's access token.
    pub token: Option<Secret>,
    /// `MATTERMOST_TEAM`: team name or id used for permalinks and lookups.
    pub team: Option<String>,
    /// `MATTERMOST_BOT_USERNAME`: expected bot username (checked at connect).
    pub bot_username: Option<String>,
    /// `MATTERMOST_OWNER_USER_ID`: the user who owns this agent.
    pub owner_user_id: Option<String>,
    /// `MATTERMOST_AUTO_CONNECT`: connect as soon as the agent starts.
    pub auto_connect: bool,
    /// `MATTERMOST_DEBUG`: debug logging (never logs secrets).
    pub debug: bool,
    /// `MATTERMOST_RECONNECT_INTERVAL`: first reconnect delay.
    pub reconnect_interval: Duration,
    /// `MATTERMOST_MAX_RECONNECT_ATTEMPTS`: accepted for compatibility; the
    /// link reconnects forever with a capped backoff.
    pub max_reconnect_attempts: u64,
    /// `OPENCODE_MM_ALLOWED_USERS`: user ids besides the owner who may prompt.
    pub allowed_users: Vec<String>,
    /// `OPENCODE_MM_ALLOWED_CHANNEL_TYPES`: D, G, O, P.
    pub allowed_channel_types: Vec<ChannelType>,
    /// `OPENCODE_MM_DEFAULT_CHANNEL_ID`: channel for threads of TUI sessions.
    pub default_channel_id: Option<String>,
    /// `OPENCODE_MM_COMMAND_PREFIX`.
    pub command_prefix: String,
    /// `OPENCODE_MM_BUFFER_SIZE`: characters buffered before a progress edit.
    pub buffer_size: u64,
    /// `OPENCODE_MM_MAX_DELAY`: longest wait before a progress edit.
    pub max_delay: Duration,
    /// `OPENCODE_MM_EDIT_RATE_LIMIT`: edits per second per post.
    pub edit_rate_limit: u64,
    /// `OPENCODE_MM_MAX_POST_LENGTH`: rollover threshold in characters.
    pub max_post_length: u64,
    /// `OPENCODE_MM_NOTIFY_{COMPLETION,PERMISSION,ERROR,STATUS}`.
    pub notify_completion: bool,
    pub notify_permission: bool,
    pub notify_error: bool,
    pub notify_status: bool,
    /// `OPENCODE_MM_STATUS_INTERVAL`.
    pub status_interval: Duration,
    /// `OPENCODE_MM_SESSION_TIMEOUT`.
    pub session_timeout: Duration,
    /// `OPENCODE_MM_MAX_SESSIONS`.
    pub max_sessions: u64,
    /// `OPENCODE_MM_AUTO_SELECT`.
    pub auto_select: bool,
    /// `OPENCODE_MM_AUTO_CREATE_SESSION`.
    pub auto_create_session: bool,
    /// `OPENCODE_MM_SESSION_REFRESH_INTERVAL`.
    pub session_refresh_interval: Duration,
    /// `OPENCODE_MM_TEMP_DIR`: where inbound files are stored.
    pub temp_dir: Option<PathBuf>,
    /// `OPENCODE_MM_MAX_FILE_SIZE` in bytes.
    pub max_file_size: u64,
    /// `OPENCODE_MM_ALLOWED_EXTENSIONS`: `*` or a list such as `png,txt`.
    pub allowed_extensions: Vec<String>,
    /// `OPENCODE_MM_ATTACH_OVER`: a final reply longer than this many
    /// characters is attached as a Markdown file with a short head inline,
    /// instead of being split across many posts; 0 never attaches.
    pub attach_over: u64,
    /// `OPENCODE_MM_TEAM_FILE`: the old plugin's team file, for import.
    pub team_file: Option<PathBuf>,
    /// `MM_PLUGIN_LOG_FILE`: log file; default under the XDG state dir.
    pub log_file: Option<PathBuf>,
    /// `OPENCODE_MM_STATE_DB`: the SQLite state database; default
    /// `$XDG_DATA_HOME/opencode-mattermost/state.db`.
    pub state_db: Option<PathBuf>,
    /// `OPENCODE_MM_FETCH_TIMEOUT`: how long one OpenCode API call through
    /// the shim may take.
    pub fetch_timeout: Duration,
    /// `OPENCODE_MM_API_RATE`: requests per second the agent allows itself
    /// against the Mattermost server (all posts, edits and reads share it).
    pub rate_per_second: u64,
    /// `OPENCODE_MM_API_BURST`: requests that may go out at once.
    pub rate_burst: u64,
    /// `OPENCODE_MM_LOG`: log filter, e.g. `info` or `opencode_mattermost=debug`.
    pub log_filter: Option<String>,
    /// `OPENCODE_MM_TIMEZONE`: IANA zone for schedules that name none;
    /// default UTC.
    pub timezone: chrono_tz::Tz,
    /// `OPENCODE_MM_SCHEDULE_TIMEOUT`: how long a scheduled prompt may run
    /// before it is stopped and reported as timed out.
    pub schedule_timeout: Duration,
    /// `OPENCODE_MM_SCHEDULE_GRACE`: how late a scheduled time may still run
    /// (after the agent was down or the machine asleep); older ones are
    /// recorded as missed.
    pub schedule_grace: Duration,
    /// `OPENCODE_MM_QUESTION_TIMEOUT`: how long a question from the agent
    /// waits for an answer in chat before it is declined, so the agent is
    /// never stuck on an unattended thread.
    pub question_timeout: Duration,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Every known setting with its effective, redacted value.
    pub entries: Vec<Entry>,
    /// Everything that needs fixing.
    pub problems: Vec<Problem>,
}

/// Raw settings before validation: name → (value, origin).
type RawSettings = BTreeMap<String, (String, Origin)>;

impl Config {
    /// Load from the process environment and the config file it names (or the
    /// default one under `$XDG_CONFIG_HOME/opencode-mattermost/config.toml`).
    pub fn load() -> Self {
        let env = |k: &str| std::env::var(k).ok();
        let path = env(CONFIG_FILE_ENV)
            .map(PathBuf::from)
            .or_else(|| default_config_file(&env));
        let explicit = env(CONFIG_FILE_ENV).is_some();
        let file = match path {
            Some(p) => match std::fs::read_to_string(&p) {
                Ok(text) => Some(Ok((p, text))),
                Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some(Err((p, e.to_string()))),
            },
            None => None,
        };
        Self::from_sources(&env, file)
    }

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
        let team = r.string("MATTERMOST_TEAM");
        let bot_username = r.string("MATTERMOST_BOT_USERNAME");
        let owner_user_id = r.user_id("MATTERMOST_OWNER_USER_ID");
        let auto_connect = r.boolean("MATTERMOST_AUTO_CONNECT", false);
        let debug = r.boolean("MATTERMOST_DEBUG", false);
        let reconnect_interval = r.millis("MATTERMOST_RECONNECT_INTERVAL", 5000, 100..=600_000);
        let max_reconnect_attempts =
            r.number("MATTERMOST_MAX_RECONNECT_ATTEMPTS", 10, 0..=u64::MAX);
        let allowed_users = r.user_ids("OPENCODE_MM_ALLOWED_USERS");
        let allowed_channel_types = r.channel_types("OPENCODE_MM_ALLOWED_CHANNEL_TYPES");
        let default_channel_id = r.user_id("OPENCODE_MM_DEFAULT_CHANNEL_ID");
        let command_prefix = r.string_or("OPENCODE_MM_COMMAND_PREFIX", "!");
        let buffer_size = r.number("OPENCODE_MM_BUFFER_SIZE", 50, 1..=100_000);
        let max_delay = r.millis("OPENCODE_MM_MAX_DELAY", 500, 0..=60_000);
        let edit_rate_limit = r.number("OPENCODE_MM_EDIT_RATE_LIMIT", 10, 1..=100);
        let max_post_length = r.number(
            "OPENCODE_MM_MAX_POST_LENGTH",
            15000,
            500..=MATTERMOST_MAX_POST_RUNES,
        );
        let notify_completion = r.boolean("OPENCODE_MM_NOTIFY_COMPLETION", true);
        let notify_permission = r.boolean("OPENCODE_MM_NOTIFY_PERMISSION", true);
        let notify_error = r.boolean("OPENCODE_MM_NOTIFY_ERROR", true);
        let notify_status = r.boolean("OPENCODE_MM_NOTIFY_STATUS", true);
        let status_interval = r.millis("OPENCODE_MM_STATUS_INTERVAL", 30_000, 1000..=3_600_000);
        let session_timeout =
            r.millis("OPENCODE_MM_SESSION_TIMEOUT", 3_600_000, 1000..=604_800_000);
        let max_sessions = r.number("OPENCODE_MM_MAX_SESSIONS", 50, 1..=10_000);
        let auto_select = r.boolean("OPENCODE_MM_AUTO_SELECT", true);
        let auto_create_session = r.boolean("OPENCODE_MM_AUTO_CREATE_SESSION", true);
        let session_refresh_interval = r.millis(
            "OPENCODE_MM_SESSION_REFRESH_INTERVAL",
            60_000,
            1000..=3_600_000,
        );
        let temp_dir = r.path("OPENCODE_MM_TEMP_DIR");
        let max_file_size = r.number("OPENCODE_MM_MAX_FILE_SIZE", 10_485_760, 1..=1 << 34);
        let allowed_extensions = r.extensions("OPENCODE_MM_ALLOWED_EXTENSIONS");
        let attach_over = r.number(
            "OPENCODE_MM_ATTACH_OVER",
            DEFAULT_ATTACH_OVER,
            0..=100_000_000,
        );
        let team_file = r.path("OPENCODE_MM_TEAM_FILE");
        let log_file = r.path("MM_PLUGIN_LOG_FILE");
        let state_db = r.path("OPENCODE_MM_STATE_DB");
        let log_filter = r.string("OPENCODE_MM_LOG");
        let fetch_timeout = r.millis("OPENCODE_MM_FETCH_TIMEOUT", 30_000, 100..=600_000);
        let rate_per_second = r.number("OPENCODE_MM_API_RATE", 10, 1..=1000);
        let rate_burst = r.number("OPENCODE_MM_API_BURST", 20, 1..=1000);
        let timezone = r.timezone("OPENCODE_MM_TIMEZONE");
        let schedule_timeout = r.millis(
            "OPENCODE_MM_SCHEDULE_TIMEOUT",
            1_800_000,
            10_000..=86_400_000,
        );
        let schedule_grace = r.millis("OPENCODE_MM_SCHEDULE_GRACE", 600_000, 60_000..=86_400_000);
        let question_timeout = r.millis(
            "OPENCODE_MM_QUESTION_TIMEOUT",
            1_800_000,
            1_000..=604_800_000,
        );

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
            team,
            bot_username,
            owner_user_id,
            auto_connect,
            debug,
            reconnect_interval,
            max_reconnect_attempts,
            allowed_users,
            allowed_channel_types,
            default_channel_id,
            command_prefix,
            buffer_size,
            max_delay,
            edit_rate_limit,
            max_post_length,
            notify_completion,
            notify_permission,
            notify_error,
            notify_status,
            status_interval,
            session_timeout,
            max_sessions,
            auto_select,
            auto_create_session,
            session_refresh_interval,
            temp_dir,
            max_file_size,
            allowed_extensions,
            attach_over,
            team_file,
            log_file,
            state_db,
            log_filter,
            fetch_timeout,
            rate_per_second,
            rate_burst,
            timezone,
            schedule_timeout,
            question_timeout,
            schedule_grace,
            file: file_path,
            entries,
            problems,
        }
    }

    /// The REST base, `<site>/api/v4`.
    pub fn api_url(&self) -> Option<String> {
        self.site_url
            .as_ref()
            .map(|u| format!("{}/api/v4", u.as_str().trim_end_matches('/')))
    }

    /// Render the effective configuration as `KEY = value (origin)` lines.
    pub fn describe(&self) -> String {
        let width = self.entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&format!(
                "  {:width$} = {} ({})\n",
                e.key,
                e.value,
                e.origin.label()
            ));
        }
        out
    }
}

fn default_config_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("opencode-mattermost").join("config.toml"))
}

/// The file's keys are the environment variables' names in lower case; values
/// may be strings, numbers, booleans or arrays of strings (joined with commas).
fn parse_file(path: &Path, text: &str, raw: &mut RawSettings, problems: &mut Vec<Problem>) {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem {
                key: CONFIG_FILE_ENV.into(),
                message: format!("{} is not valid TOML: {}", path.display(), e.message()),
            });
            return;
        }
    };
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                let mut parts = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) => parts.push(s),
                        other => parts.push(other.to_string()),
                    }
                }
                parts.join(",")
            }
            other => {
                problems.push(Problem {
                    key: name,
                    message: format!(
                        "in {}: `{key}` must be a string, number, boolean or list, not {}",
                        path.display(),
                        other.type_str()
                    ),
                });
                continue;
            }
        };
        raw.insert(name, (text, Origin::File));
    }
}

fn derive_ws_url(site: &Url) -> Option<Url> {
    let scheme = if site.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    let text = format!(
        "{scheme}://{}/api/v4/websocket",
        site.as_str()
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .trim_end_matches('/')
    );
    Url::parse(&text).ok()
}

/// Reads typed values, recording each entry and problem as it goes.
struct Reader<'a> {
    raw: RawSettings,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
    entries: Vec<Entry>,
    read: Vec<&'static str>,
}

impl Reader<'_> {
    /// The raw value (env wins over file); empty strings count as unset.
    fn get(&mut self, key: &'static str) -> Option<(String, Origin)> {
        self.read.push(key);
        if let Some(v) = (self.env)(key).filter(|v| !v.trim().is_empty()) {
            return Some((v.trim().to_owned(), Origin::Env));
        }
        self.raw
            .get(key)
            .filter(|(v, _)| !v.trim().is_empty())
            .map(|(v, o)| (v.trim().to_owned(), *o))
    }

    fn record(&mut self, key: &'static str, value: String, origin: Origin) {
        self.entries.push(Entry { key, value, origin });
    }

    fn problem(&mut self, key: &'static str, message: String) {
        self.problems.push(Problem {
            key: key.into(),
            message,
        });
    }

    fn string(&mut self, key: &'static str) -> Option<String> {
        match self.get(key) {
            Some((v, o)) => {
                self.record(key, v.clone(), o);
                Some(v)
            }
            None => {
                self.record(key, "(unset)".into(), Origin::Default);
                None
            }
        }
    }

    fn string_or(&mut self, key: &'static str, default: &str) -> String {
        match self.get(key) {
            Some((v, o)) => {
                self.record(key, v.clone(), o);
                v
            }
            None => {
                self.record(key, default.to_owned(), Origin::Default);
                default.to_owned()
            }
        }
    }

    fn secret(&mut self, key: &'static str) -> Option<Secret> {
        match self.get(key) {
            Some((v, o)) => {
                self.record(key, "[redacted]".into(), o);
                Some(Secret::new(v))
            }
            None => {
                self.record(key, "(unset)".into(), Origin::Default);
                None
            }
        }
    }

    fn path(&mut self, key: &'static str) -> Option<PathBuf> {
        self.string(key).map(PathBuf::from)
    }

    fn parse_url(&mut self, key: &'static str, schemes: &[&str], example: &str) -> Option<Url> {
        let (v, o) = match self.get(key) {
            Some(x) => x,
            None => {
                self.record(key, "(unset)".into(), Origin::Default);
                return None;
            }
        };
        self.record(key, v.clone(), o);
        match Url::parse(&v) {
            Ok(u) if schemes.contains(&u.scheme()) && u.host_str().is_some() => Some(u),
            Ok(u) => {
                self.problem(
                    key,
                    format!(
                        "`{v}` has scheme `{}`; expected {} (e.g. {example})",
                        u.scheme(),
                        schemes.join(" or ")
                    ),
                );
                None
            }
            Err(e) => {
                self.problem(
                    key,
                    format!("`{v}` is not a valid URL ({e}); e.g. {example}"),
                );
                None
            }
        }
    }

    /// The site URL; a trailing `/api/v4` (as the old plugin accepted) is removed.
    fn site_url(&mut self, key: &'static str) -> Option<Url> {
        let mut url = self.parse_url(key, &["http", "https"], "https://chat.example.com")?;
        let path = url.path().trim_end_matches('/').to_owned();
        let path = path.strip_suffix("/api/v4").unwrap_or(&path).to_owned();
        url.set_path(&path);
        url.set_query(None);
        url.set_fragment(None);
        Some(url)
    }

    /// The WebSocket URL; `/api/v4/websocket` is appended when missing.
    fn ws_url(&mut self, key: &'static str) -> Option<Url> {
        let mut url = self.parse_url(
            key,
            &["ws", "wss", "http", "https"],
            "wss://chat.example.com/api/v4/websocket",
        )?;
        let scheme = match url.scheme() {
            "http" => "ws",
            "https" => "wss",
            s => s,
        }
        .to_owned();
        let path = url.path().trim_end_matches('/').to_owned();
        if !path.ends_with("/api/v4/websocket") {
            let base = path.strip_suffix("/api/v4").unwrap_or(&path);
            url.set_path(&format!("{base}/api/v4/websocket"));
        }
        let text = url.as_str().replacen(url.scheme(), &scheme, 1);
        Url::parse(&text).ok()
    }

    fn boolean(&mut self, key: &'static str, default: bool) -> bool {
        let Some((v, o)) = self.get(key) else {
            self.record(key, default.to_string(), Origin::Default);
            return default;
        };
        let parsed = match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        };
        match parsed {
            Some(b) => {
                self.record(key, b.to_string(), o);
                b
            }
            None => {
                self.problem(
                    key,
                    format!("`{v}` is not a boolean; use true or false (using {default})"),
                );
                self.record(key, default.to_string(), Origin::Default);
                default
            }
        }
    }

    fn number(
        &mut self,
        key: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        let Some((v, o)) = self.get(key) else {
            self.record(key, default.to_string(), Origin::Default);
            return default;
        };
        match v.parse::<u64>() {
            Ok(n) if range.contains(&n) => {
                self.record(key, n.to_string(), o);
                n
            }
            Ok(n) => {
                self.problem(
                    key,
                    format!(
                        "{n} is out of range; use a number from {} to {} (using {default})",
                        range.start(),
                        range.end()
                    ),
                );
                self.record(key, default.to_string(), Origin::Default);
                default
            }
            Err(_) => {
                self.problem(
                    key,
                    format!("`{v}` is not a whole number (using {default})"),
                );
                self.record(key, default.to_string(), Origin::Default);
                default
            }
        }
    }

    fn millis(
        &mut self,
        key: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Duration {
        Duration::from_millis(self.number(key, default, range))
    }

    /// An IANA time zone name; UTC when unset or unknown.
    fn timezone(&mut self, key: &'static str) -> chrono_tz::Tz {
        let Some(v) = self.string(key) else {
            if let Some(e) = self.entries.last_mut() {
                e.value = "UTC".into();
            }
            return chrono_tz::Tz::UTC;
        };
        match v.parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                self.problem(
                    key,
                    format!(
                        "`{v}` is not an IANA time zone; use a name such as \
                         America/New_York, Europe/Berlin or UTC (using UTC)"
                    ),
                );
                chrono_tz::Tz::UTC
            }
        }
    }

    fn user_id(&mut self, key: &'static str) -> Option<String> {
        let v = self.string(key)?;
        if is_mattermost_id(&v) {
            Some(v)
        } else {
            self.problem(
                key,
                format!(
                    "`{v}` is not a Mattermost id (26 lowercase letters and digits); \
                     copy it from the profile menu, not the username"
                ),
            );
            None
        }
    }

    fn user_ids(&mut self, key: &'static str) -> Vec<String> {
        let Some(v) = self.string(key) else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if is_mattermost_id(part) {
                ids.push(part.to_owned());
            } else {
                self.problem(
                    key,
                    format!(
                        "`{part}` is not a Mattermost user id (26 lowercase letters and digits); \
                         list ids separated by commas"
                    ),
                );
            }
        }
        ids
    }

    fn channel_types(&mut self, key: &'static str) -> Vec<ChannelType> {
        let all = vec![
            ChannelType::Direct,
            ChannelType::Group,
            ChannelType::Open,
            ChannelType::Private,
        ];
        let Some((v, o)) = self.get(key) else {
            self.record(key, "D,G,O,P".into(), Origin::Default);
            return all;
        };
        let mut types = Vec::new();
        let mut bad = Vec::new();
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match ChannelType::from_code(part) {
                Some(t) if !types.contains(&t) => types.push(t),
                Some(_) => {}
                None => bad.push(part.to_owned()),
            }
        }
        if !bad.is_empty() || types.is_empty() {
            self.problem(
                key,
                format!(
                    "`{v}` must list channel types from D (direct), G (group), O (public), \
                     P (private), e.g. D,G (using D,G,O,P)"
                ),
            );
            self.record(key, "D,G,O,P".into(), Origin::Default);
            return all;
        }
        types.sort();
        let shown: Vec<String> = types.iter().map(|t| t.code().to_string()).collect();
        self.record(key, shown.join(","), o);
        types
    }

    fn extensions(&mut self, key: &'static str) -> Vec<String> {
        match self.string_or(key, "*").as_str() {
            "*" => vec!["*".into()],
            v => v
                .split(',')
                .map(|p| p.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    /// File keys that no reader asked for are typos or unsupported settings.
    fn unknown_file_keys(&mut self) {
        let unknown: Vec<String> = self
            .raw
            .iter()
            .filter(|(k, (_, o))| *o == Origin::File && !self.read.contains(&k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in unknown {
            let hint = closest(&key, &self.read)
                .map(|k| format!(" (did you mean `{}`?)", k.to_ascii_lowercase()))
                .unwrap_or_default();
            self.problems.push(Problem {
                message: format!(
                    "unknown key `{}` in the config file{hint}",
                    key.to_ascii_lowercase()
                ),
                key,
            });
        }
    }
}

/// Mattermost ids are 26 characters of lowercase ASCII letters and digits.
pub fn is_mattermost_id(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The known key with the smallest edit distance, if it is close enough.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let v = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            cur.push(v);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
