//! Settings of one simulator instance: server limits and WebSocket timings.

use std::time::Duration;

/// Settings of a simulator. `Default` gives the real server's defaults.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `MaxPostSize` in runes (16383 on current schemas).
    pub max_post_size: usize,
    /// `MaxFileSize` in bytes (100 MiB by default).
    pub max_file_size: u64,
    /// `EnableFileAttachments`.
    pub enable_file_attachments: bool,
    /// `PostEditTimeLimit` in seconds; -1 means unlimited.
    pub post_edit_time_limit: i64,
    /// Interval of server WebSocket pings (real: 60 s).
    pub ws_ping_interval: Duration,
    /// Read deadline that only pongs extend (real: 100 s).
    pub ws_pong_wait: Duration,
    /// How long a socket may stay unauthenticated (real: 5 s).
    pub ws_auth_timeout: Duration,
    /// Events kept per connection for resume (real: 128).
    pub ws_resume_buffer: usize,
    /// Send queue per socket; when full the connection is discarded (real: 256).
    pub ws_send_queue: usize,
    /// Inactive connections older than this are forgotten (real: 5 min).
    pub ws_inactive_reap: Duration,
    /// Window in which a repeated `pending_post_id` returns the first post (real: 30 s).
    pub pending_post_ttl: Duration,
    /// How far the server's clock is off this machine's, in milliseconds
    /// (negative: behind): its `Date` header and the WebSocket ping's
    /// `server_time` read this much ahead. Post times keep the shared,
    /// strictly increasing clock, so the order of posts stays testable.
    pub clock_offset_ms: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            max_post_size: 16383,
            max_file_size: 100 * 1024 * 1024,
            enable_file_attachments: true,
            post_edit_time_limit: -1,
            ws_ping_interval: Duration::from_secs(60),
            ws_pong_wait: Duration::from_secs(100),
            ws_auth_timeout: Duration::from_secs(5),
            ws_resume_buffer: 128,
            ws_send_queue: 256,
            ws_inactive_reap: Duration::from_secs(300),
            pending_post_ttl: Duration::from_secs(30),
            clock_offset_ms: 0,
        }
    }
}
