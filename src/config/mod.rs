//! Configuration: environment variables (the old plugin's names keep working)
//! over an optional TOML file, validated into typed settings.
//!
//! Loading never fails. Every value that cannot be used becomes a [`Problem`]
//! with a message that says what to fix, and the setting falls back to its
//! default, so `mattermost_status` can always show the whole picture.
//!
//! The parts: `settings` lists every setting with its default and range and
//! builds [`Config`]; `sources` finds the config file and reads it into raw
//! values; `values` parses and checks each value; `report` holds the
//! [`Problem`]s and [`Entry`]s and renders them; `secret` keeps the token out
//! of logs.

mod report;
mod secret;
mod settings;
mod sources;
mod values;

use std::path::PathBuf;
use std::time::Duration;

pub use report::{Entry, Origin, Problem};
pub use secret::Secret;
pub use settings::is_loopback;
use url::Url;
pub use values::is_mattermost_id;

/// Environment variable naming the TOML config file.
pub const CONFIG_FILE_ENV: &str = "OPENCODE_MM_CONFIG";
/// The largest post Mattermost accepts on current schemas, in runes.
pub const MATTERMOST_MAX_POST_RUNES: u64 = 16383;
/// Replies up to four full posts stay inline: past that, a thread of
/// continuation posts is harder to read than one attached file.
pub const DEFAULT_ATTACH_OVER: u64 = 60_000;

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
    /// `OPENCODE_MM_ALLOW_INTEGRATION_POSTS`: posts made by webhooks, slash
    /// commands, plugins and bots may prompt (as the user who set them up).
    /// Off: they carry that user's id but were not typed by them.
    pub allow_integration_posts: bool,
    /// `OPENCODE_MM_ALLOWED_USERS`: user ids besides the owner who may prompt.
    pub allowed_users: Vec<String>,
    /// `OPENCODE_MM_ALLOWED_CHANNEL_TYPES`: D, G, O, P. A value with an
    /// unknown type keeps only the valid ones (possibly none): fail closed.
    pub allowed_channel_types: Vec<ChannelType>,
    /// `OPENCODE_MM_CHANNEL_IMAGES`: remote images in agent text load in
    /// shared channels too (off: they show as links).
    pub channel_images: bool,
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
    /// `MM_PLUGIN_LOG_FILE`: log file; default under the XDG state dir.
    pub log_file: Option<PathBuf>,
    /// `OPENCODE_MM_STATE_DB`: the SQLite state database; default
    /// `$XDG_DATA_HOME/opencode-mattermost/state.db`. A `sqlite:` value of
    /// `OPENCODE_MM_DATABASE_URL` sets it too; `None` with PostgreSQL.
    pub state_db: Option<PathBuf>,
    /// `OPENCODE_MM_DATABASE_URL` when it names PostgreSQL (`postgres://`):
    /// the shared state database. A secret, since the URL may hold the
    /// password; shown redacted.
    pub database_url: Option<Secret>,
    /// `OPENCODE_MM_DATABASE_POOL_SIZE`: the most PostgreSQL connections
    /// one agent opens, so a fleet stays within the server's own limit.
    pub database_pool_size: usize,
    /// `OPENCODE_MM_DATABASE_CONNECT_TIMEOUT`: how long one PostgreSQL
    /// connection attempt (and the wait for a free pooled connection) may
    /// take, so an unreachable server fails calls instead of hanging them.
    pub database_connect_timeout: Duration,
    /// `OPENCODE_MM_FETCH_TIMEOUT`: how long one OpenCode API call through
    /// the shim may take.
    pub fetch_timeout: Duration,
    /// `OPENCODE_MM_API_RATE`: requests per second the agent allows itself
    /// against the Mattermost server (all posts, edits and reads share it)
    /// until the server reports its own limits, which then rule.
    pub rate_per_second: u64,
    /// `OPENCODE_MM_API_BURST`: requests that may go out at once, likewise.
    pub rate_burst: u64,
    /// `OPENCODE_MM_LOG`: log filter, e.g. `info` or `opencode_mattermost=debug`.
    pub log_filter: Option<String>,
    /// `OPENCODE_MM_TIMEZONE`: IANA zone for schedules that name none;
    /// default UTC.
    pub timezone: crate::tz::Zone,
    /// `OPENCODE_MM_SCHEDULE_TIMEOUT`: how long a scheduled prompt may run
    /// before it is stopped and reported as timed out.
    pub schedule_timeout: Duration,
    /// `OPENCODE_MM_SCHEDULE_GRACE`: how late a scheduled time may still run
    /// (after the agent was down or the machine asleep); older ones are
    /// recorded as missed.
    pub schedule_grace: Duration,
    /// `OPENCODE_MM_SCHEDULE_MIN_INTERVAL`: the shortest gap a schedule's
    /// runs may have.
    pub schedule_min_interval: Duration,
    /// `OPENCODE_MM_QUESTION_TIMEOUT`: how long a question from the agent
    /// waits for an answer in chat before it is declined, so the agent is
    /// never stuck on an unattended thread.
    pub question_timeout: Duration,
    /// `OPENCODE_MM_GUEST_APPROVAL_TIMEOUT`: how long a guest's request in
    /// a channel thread waits for the owner or a teammate; then it expires
    /// and the guest's post is never run.
    pub guest_approval_timeout: Duration,
    /// `OPENCODE_MM_TEAM_FILE`: the old plugin's team file, imported once
    /// on first start; unset, its default places are looked at.
    pub team_file: Option<PathBuf>,
    /// `OPENCODE_MM_CATCH_UP_MAX_AGE`: a post found at catch-up (after a
    /// link outage or a restart) older than this is not run but offered,
    /// since a prompt from hours ago may no longer be wanted; `0` (`None`)
    /// runs every post however old.
    pub catch_up_max_age: Option<Duration>,
    /// `OPENCODE_MM_CONTEXT_MESSAGES`: how many earlier messages of a group
    /// or channel thread go with a prompt there, as context; 0 sends none.
    pub context_messages: u64,
    /// `OPENCODE_MM_CONTEXT_MAX_CHARS`: thread context longer than this is
    /// summarised by OpenCode's small model before it goes with the prompt.
    pub context_max_chars: u64,
    /// `OPENCODE_MM_CONTEXT_SUMMARY_TIMEOUT`: how long the summary may take
    /// before the newest messages that fit are sent instead; the prompt
    /// never waits longer.
    pub context_summary_timeout: Duration,
    /// How long an instance counts as online after its last heartbeat.
    pub instance_lease: Duration,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Every known setting with its effective, redacted value.
    pub entries: Vec<Entry>,
    /// Everything that needs fixing.
    pub problems: Vec<Problem>,
}

impl Config {
    /// The REST base, `<site>/api/v4`.
    pub fn api_url(&self) -> Option<String> {
        self.site_url
            .as_ref()
            .map(|u| format!("{}/api/v4", u.as_str().trim_end_matches('/')))
    }
}

#[cfg(test)]
mod tests;
