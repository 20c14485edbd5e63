//! Errors of the Mattermost link, each worded so a user knows what to fix.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum MattermostError {
    #[error(
        "Mattermost rejected the token ({id}): check that MATTERMOST_TOKEN is a valid, \
         enabled bot access token"
    )]
    InvalidToken { id: String },
    #[error(
        "the bot may not {action}: {message} ({id}); add the bot to the team or channel, or grant it the permission"
    )]
    Forbidden {
        action: String,
        id: String,
        message: String,
    },
    #[error("not found in Mattermost ({what}): {message}")]
    NotFound { what: String, message: String },
    #[error("Mattermost refused {action}: {message} ({id})")]
    Rejected {
        action: String,
        status: u16,
        id: String,
        message: String,
    },
    #[error(
        "Mattermost kept answering 429 (rate limited) for {action}; gave up after waiting {waited:?}"
    )]
    RateLimited { action: String, waited: Duration },
    #[error("Mattermost failed {action} with HTTP {status} after {attempts} attempts: {message}")]
    Server {
        action: String,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("cannot reach Mattermost at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("unexpected answer from Mattermost to {action}: {reason}")]
    BadResponse { action: String, reason: String },
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: &'static str, reason: String },
}
