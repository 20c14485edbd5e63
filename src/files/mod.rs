//! Files both ways between Mattermost and OpenCode.
//!
//! - [`inbound`]: files attached to a prompt in chat are downloaded into a
//!   per-session temporary directory and handed to OpenCode (images and
//!   PDFs as file parts the model sees, everything else by path);
//! - [`outbound`]: files leave for a session's thread only through
//!   `mattermost_send_file` (after [`safety`] checks) or as a long reply
//!   attached in place of many posts;
//! - [`safety`]: the rules both directions share: names, extensions, sizes,
//!   and which paths may leave the machine.

pub mod inbound;
pub mod outbound;
pub mod safety;

use std::path::{Path, PathBuf};

/// The directory all sessions' inbound files live under: the configured
/// `OPENCODE_MM_TEMP_DIR`, else `opencode-mattermost` in the system's
/// temporary directory.
pub fn temp_root(config: &crate::config::Config) -> PathBuf {
    config
        .temp_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("opencode-mattermost"))
}

/// One session's own temporary directory (not created here). Session ids
/// are OpenCode's `ses_…` tokens; anything else is sanitised so it can
/// never name a path outside the root.
pub fn session_dir(root: &Path, session_id: &str) -> PathBuf {
    root.join(safety::sanitize_name(session_id))
}
