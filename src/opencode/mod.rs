//! Access to OpenCode's HTTP API.
//!
//! [`OpenCode`] is what the rest of the agent uses. [`Client`] implements it
//! over any [`Fetch`]: [`ShimFetch`] sends each request through the shim's
//! `opencode/fetch` (OpenCode serves its API in-process in TUI and `opencode
//! run` mode, so nothing listens on `serverUrl`); a direct HTTP fetch for
//! headless mode fits the same trait.

pub mod events;
mod shim;
mod types;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

pub use shim::ShimFetch;
pub use types::{Health, Session, SessionTime};

/// An HTTP request against OpenCode's API, relative to its root.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

impl HttpRequest {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: "GET".into(),
            path: path.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenCodeError {
    #[error("OpenCode API is unreachable: {0}")]
    Unreachable(String),
    #[error("OpenCode has no {what} `{id}`")]
    NotFound { what: &'static str, id: String },
    #[error("OpenCode answered {method} {path} with HTTP {status}: {message}")]
    Http {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("OpenCode's answer to {path} did not parse: {source}")]
    Decode {
        path: String,
        source: serde_json::Error,
    },
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: &'static str, reason: String },
}

/// Executes one HTTP request against OpenCode.
#[async_trait]
pub trait Fetch: Send + Sync {
    async fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, OpenCodeError>;
}

/// The OpenCode operations the agent needs.
#[async_trait]
pub trait OpenCode: Send + Sync {
    /// Sessions of this OpenCode instance's project, newest first.
    async fn list_sessions(&self) -> Result<Vec<Session>, OpenCodeError>;
    /// One session by id.
    async fn get_session(&self, id: &str) -> Result<Session, OpenCodeError>;
    /// OpenCode's health answer, which carries its version.
    async fn health(&self) -> Result<Health, OpenCodeError>;
}

/// Typed OpenCode calls over a [`Fetch`].
pub struct Client<F> {
    fetch: F,
}

impl<F: Fetch> Client<F> {
    pub fn new(fetch: F) -> Self {
        Self { fetch }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        request: HttpRequest,
        not_found: Option<(&'static str, &str)>,
    ) -> Result<T, OpenCodeError> {
        let path = request.path.clone();
        let method = request.method.clone();
        let response = self.fetch.fetch(request).await?;
        if response.status == 404
            && let Some((what, id)) = not_found
        {
            return Err(OpenCodeError::NotFound {
                what,
                id: id.to_owned(),
            });
        }
        if !(200..300).contains(&response.status) {
            return Err(OpenCodeError::Http {
                method,
                path,
                status: response.status,
                message: error_message(&response.body),
            });
        }
        serde_json::from_slice(&response.body)
            .map_err(|source| OpenCodeError::Decode { path, source })
    }
}

/// OpenCode's error bodies are JSON with a `data.message` or `message`; fall
/// back to the start of the raw body.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let found = parsed.as_ref().and_then(|v| {
        v.pointer("/data/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.pointer("/error/message"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
    });
    found.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        text.chars().take(300).collect()
    })
}

/// OpenCode ids are short ASCII tokens (`ses_…`); anything else would let a
/// caller steer the request path.
fn check_id(what: &'static str, id: &str) -> Result<(), OpenCodeError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(OpenCodeError::InvalidInput {
            what,
            reason: format!("`{}` is not an OpenCode id", id.escape_debug()),
        })
    }
}

#[async_trait]
impl<F: Fetch> OpenCode for Client<F> {
    async fn list_sessions(&self) -> Result<Vec<Session>, OpenCodeError> {
        let mut sessions: Vec<Session> = self.get_json(HttpRequest::get("/session"), None).await?;
        sessions.sort_by(|a, b| b.time.updated.total_cmp(&a.time.updated));
        Ok(sessions)
    }

    async fn get_session(&self, id: &str) -> Result<Session, OpenCodeError> {
        check_id("session id", id)?;
        self.get_json(
            HttpRequest::get(format!("/session/{id}")),
            Some(("session", id)),
        )
        .await
    }

    async fn health(&self) -> Result<Health, OpenCodeError> {
        self.get_json(HttpRequest::get("/global/health"), None)
            .await
    }
}

#[cfg(test)]
mod tests;
