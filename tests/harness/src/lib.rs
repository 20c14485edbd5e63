//! Test harness for opencode-mattermost's end-to-end tests.
//!
//! - [`model`]: a scripted OpenAI-compatible model server (chat completions
//!   with SSE streaming) that scripts text and tool calls and records requests;
//! - [`opencode`]: launches the pinned, real `opencode-ai` package with
//!   isolated HOME/XDG dirs, our shim as a plugin and the scripted model as
//!   its provider;
//! - [`agent`]: drives the agent binary directly over its stdio;
//! - [`registry`]: a private npm registry (verdaccio) on loopback.

pub mod agent;
pub mod model;
pub mod opencode;
pub mod registry;

use std::path::PathBuf;

/// The repository root (this crate lives in `tests/harness`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
