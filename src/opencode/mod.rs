//! Access to OpenCode's HTTP API.
//!
//! [`OpenCode`] is what the rest of the agent uses. [`Client`] implements it
//! over any [`Fetch`]: [`ShimFetch`] sends each request through the shim's
//! `opencode/fetch` (OpenCode serves its API in-process in TUI and `opencode
//! run` mode, so nothing listens on `serverUrl`); a direct HTTP fetch for
//! headless mode fits the same trait.

pub mod events;
pub mod message;
mod shim;
mod types;
pub mod version;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use events::{PermissionAsked, QuestionAsked};
pub use shim::ShimFetch;
pub use types::{Health, Provider, ProviderModel, Providers, Session, SessionTime};

use message::MessageWithParts;

/// A model choice as OpenCode names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelRef {
    #[serde(rename = "providerID")]
    pub provider_id: String,
    #[serde(rename = "modelID")]
    pub model_id: String,
}

impl ModelRef {
    /// Parse `provider/model` (the model part may itself contain `/`).
    pub fn parse(text: &str) -> Option<ModelRef> {
        let (provider, model) = text.trim().split_once('/')?;
        (!provider.is_empty() && !model.is_empty()).then(|| ModelRef {
            provider_id: provider.to_owned(),
            model_id: model.to_owned(),
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider_id, self.model_id)
    }
}

/// One `prompt_async` call: a text prompt under a message id we chose, so a
/// retry after a crash can ask OpenCode whether the prompt already landed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub message_id: String,
    pub text: String,
    pub model: Option<ModelRef>,
    pub agent: Option<String>,
    /// Files the model is shown with the text (images, PDFs), after it.
    pub files: Vec<FilePart>,
    /// Store the message without starting a reply turn (`noReply`): context
    /// handed to a session for its next turns.
    pub no_reply: bool,
    /// A system prompt for this turn only.
    pub system: Option<String>,
    /// Every tool off for this turn: a side task such as summarising must
    /// not act on the project.
    pub tools_off: bool,
}

impl Prompt {
    /// The JSON body OpenCode's prompt endpoints take.
    fn body(&self) -> serde_json::Value {
        let mut parts = vec![serde_json::json!({ "type": "text", "text": self.text })];
        for file in &self.files {
            parts.push(serde_json::json!({
                "type": "file",
                "mime": file.mime,
                "url": file.url,
                "filename": file.filename,
            }));
        }
        let mut body = serde_json::json!({
            "messageID": self.message_id,
            "parts": parts,
        });
        if let Some(model) = &self.model {
            body["model"] = serde_json::json!(model);
        }
        if let Some(agent) = &self.agent {
            body["agent"] = serde_json::json!(agent);
        }
        if self.no_reply {
            body["noReply"] = serde_json::json!(true);
        }
        if let Some(system) = &self.system {
            body["system"] = serde_json::json!(system);
        }
        if self.tools_off {
            body["tools"] = serde_json::json!({ "*": false });
        }
        body
    }
}

/// A file part of a prompt (OpenCode's `FilePartInput`). The URL is a
/// `file://` URL of a file on this machine: OpenCode reads it itself, so a
/// 10 MB image never travels through the shim's stdio as base64.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FilePart {
    pub mime: String,
    pub url: String,
    pub filename: String,
}

/// `GET /session/status` per session: idle sessions are usually absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    Idle,
    Busy,
    Retry { attempt: u64, message: String },
}

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

    pub fn post_json(path: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method: "POST".into(),
            path: path.into(),
            headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
            body: Some(body.to_string()),
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
    /// The turn ran but the model failed (OpenCode recorded an error on the
    /// assistant message), or gave no text.
    #[error("the model failed: {0}")]
    ModelFailed(String),
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
    /// A new session in this instance's project.
    async fn create_session(&self, title: Option<&str>) -> Result<Session, OpenCodeError>;
    /// Start a turn without waiting for it (`prompt_async`).
    async fn prompt_async(&self, session_id: &str, prompt: &Prompt) -> Result<(), OpenCodeError>;
    /// Run one prompt and wait for the model's answer: the text of its
    /// reply. For short side tasks (the thread-context summariser); chat
    /// turns use [`OpenCode::prompt_async`] and stream.
    async fn prompt_wait(&self, session_id: &str, prompt: &Prompt)
    -> Result<String, OpenCodeError>;
    /// Delete a session and its messages.
    async fn delete_session(&self, id: &str) -> Result<(), OpenCodeError>;
    /// OpenCode's configured `small_model`, if any.
    async fn small_model(&self) -> Result<Option<ModelRef>, OpenCodeError>;
    /// Every message of a session with its parts, oldest first.
    async fn messages(&self, session_id: &str) -> Result<Vec<MessageWithParts>, OpenCodeError>;
    /// What each non-idle session is doing.
    async fn activity(&self) -> Result<Vec<(String, Activity)>, OpenCodeError>;
    /// Abort the running turn of a session.
    async fn abort(&self, session_id: &str) -> Result<bool, OpenCodeError>;
    /// The configured providers and their models.
    async fn providers(&self) -> Result<Providers, OpenCodeError>;
    /// Answer a permission request; `NotFound` when it is no longer pending.
    async fn reply_permission(
        &self,
        request_id: &str,
        reply: PermissionReply,
    ) -> Result<(), OpenCodeError>;
    /// Answer a question request: one list of labels (or typed text) per
    /// question, in order.
    async fn reply_question(
        &self,
        request_id: &str,
        answers: &[Vec<String>],
    ) -> Result<(), OpenCodeError>;
    /// Decline a question request so the agent goes on without an answer.
    async fn reject_question(&self, request_id: &str) -> Result<(), OpenCodeError>;
    /// Permission requests waiting for an answer, in all sessions.
    async fn pending_permissions(&self) -> Result<Vec<PermissionAsked>, OpenCodeError>;
    /// Question requests waiting for an answer, in all sessions.
    async fn pending_questions(&self) -> Result<Vec<QuestionAsked>, OpenCodeError>;
}

/// How a permission request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionReply {
    Once,
    /// Allow this and what the request's `always` patterns cover, for the
    /// rest of OpenCode's run.
    Always,
    Reject,
}

impl PermissionReply {
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionReply::Once => "once",
            PermissionReply::Always => "always",
            PermissionReply::Reject => "reject",
        }
    }

    pub fn parse(text: &str) -> Option<PermissionReply> {
        match text {
            "once" => Some(PermissionReply::Once),
            "always" => Some(PermissionReply::Always),
            "reject" => Some(PermissionReply::Reject),
            _ => None,
        }
    }
}

/// OpenCode message ids sort by creation time (`msg_` + 12 hex digits of
/// `millis * 4096 + counter` + 14 random base62 characters). Ours follow the
/// same shape so that OpenCode orders the message correctly. Each maker
/// keeps its own counter, so ids made within one millisecond still sort in
/// the order they were made.
#[derive(Debug, Default)]
pub struct MessageIds {
    counter: std::sync::atomic::AtomicU64,
}

impl MessageIds {
    pub fn next(&self, now_millis: u64) -> String {
        const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let counter = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % 4096;
        let stamp = (now_millis.wrapping_mul(4096).wrapping_add(counter)) & 0xffff_ffff_ffff;
        let mut id = format!("msg_{stamp:012x}");
        for _ in 0..14 {
            id.push(char::from(BASE62[fastrand::usize(..BASE62.len())]));
        }
        id
    }
}

/// Typed OpenCode calls over a [`Fetch`].
pub struct Client<F> {
    fetch: F,
}

impl<F: Fetch> Client<F> {
    pub fn new(fetch: F) -> Self {
        Self { fetch }
    }

    /// Send one request; a non-2xx answer becomes a clear error.
    async fn send(
        &self,
        request: HttpRequest,
        not_found: Option<(&'static str, &str)>,
    ) -> Result<HttpResponse, OpenCodeError> {
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
        Ok(response)
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        request: HttpRequest,
        not_found: Option<(&'static str, &str)>,
    ) -> Result<T, OpenCodeError> {
        let path = request.path.clone();
        let response = self.send(request, not_found).await?;
        serde_json::from_slice(&response.body)
            .map_err(|source| OpenCodeError::Decode { path, source })
    }

    /// For endpoints whose success body carries nothing we need.
    async fn expect_ok(
        &self,
        request: HttpRequest,
        not_found: Option<(&'static str, &str)>,
    ) -> Result<(), OpenCodeError> {
        self.send(request, not_found).await.map(drop)
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

/// The text of a finished turn as `POST /session/{id}/message` returns it
/// (`{info, parts}`): its text parts, or the error OpenCode recorded.
fn reply_text(answer: &serde_json::Value) -> Result<String, OpenCodeError> {
    if let Some(error) = answer.pointer("/info/error").filter(|e| !e.is_null()) {
        let message = error
            .pointer("/data/message")
            .or_else(|| error.get("message"))
            .and_then(|m| m.as_str())
            .or_else(|| error.get("name").and_then(|n| n.as_str()))
            .unwrap_or("unknown error");
        return Err(OpenCodeError::ModelFailed(message.to_owned()));
    }
    let text: String = answer
        .get("parts")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter(|p| p.get("type").and_then(|t| t.as_str()) == Some("text"))
        .filter(|p| p.get("synthetic").and_then(|s| s.as_bool()) != Some(true))
        .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
        .collect::<Vec<_>>()
        .join("");
    if text.trim().is_empty() {
        return Err(OpenCodeError::ModelFailed("no text in the answer".into()));
    }
    Ok(text)
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

    async fn create_session(&self, title: Option<&str>) -> Result<Session, OpenCodeError> {
        let body = match title {
            Some(t) => serde_json::json!({ "title": t }),
            None => serde_json::json!({}),
        };
        self.get_json(HttpRequest::post_json("/session", &body), None)
            .await
    }

    async fn prompt_async(&self, session_id: &str, prompt: &Prompt) -> Result<(), OpenCodeError> {
        check_id("session id", session_id)?;
        check_id("message id", &prompt.message_id)?;
        let body = prompt.body();
        let request = HttpRequest::post_json(format!("/session/{session_id}/prompt_async"), &body);
        self.expect_ok(request, Some(("session", session_id))).await
    }

    async fn prompt_wait(
        &self,
        session_id: &str,
        prompt: &Prompt,
    ) -> Result<String, OpenCodeError> {
        check_id("session id", session_id)?;
        check_id("message id", &prompt.message_id)?;
        let request =
            HttpRequest::post_json(format!("/session/{session_id}/message"), &prompt.body());
        let answer: serde_json::Value = self
            .get_json(request, Some(("session", session_id)))
            .await?;
        reply_text(&answer)
    }

    async fn delete_session(&self, id: &str) -> Result<(), OpenCodeError> {
        check_id("session id", id)?;
        let request = HttpRequest {
            method: "DELETE".into(),
            path: format!("/session/{id}"),
            ..HttpRequest::default()
        };
        self.expect_ok(request, Some(("session", id))).await
    }

    async fn small_model(&self) -> Result<Option<ModelRef>, OpenCodeError> {
        let config: serde_json::Value = self.get_json(HttpRequest::get("/config"), None).await?;
        Ok(config
            .get("small_model")
            .and_then(|m| m.as_str())
            .and_then(ModelRef::parse))
    }

    async fn messages(&self, session_id: &str) -> Result<Vec<MessageWithParts>, OpenCodeError> {
        check_id("session id", session_id)?;
        self.get_json(
            HttpRequest::get(format!("/session/{session_id}/message")),
            Some(("session", session_id)),
        )
        .await
    }

    async fn activity(&self) -> Result<Vec<(String, Activity)>, OpenCodeError> {
        let map: BTreeMap<String, serde_json::Value> = self
            .get_json(HttpRequest::get("/session/status"), None)
            .await?;
        Ok(map
            .into_iter()
            .map(|(id, status)| {
                let activity = match status.get("type").and_then(|t| t.as_str()) {
                    Some("busy") => Activity::Busy,
                    Some("retry") => Activity::Retry {
                        attempt: status.get("attempt").and_then(|a| a.as_u64()).unwrap_or(0),
                        message: status
                            .get("message")
                            .and_then(|m| m.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                    },
                    _ => Activity::Idle,
                };
                (id, activity)
            })
            .collect())
    }

    async fn abort(&self, session_id: &str) -> Result<bool, OpenCodeError> {
        check_id("session id", session_id)?;
        self.get_json(
            HttpRequest::post_json(
                format!("/session/{session_id}/abort"),
                &serde_json::json!({}),
            ),
            Some(("session", session_id)),
        )
        .await
    }

    async fn providers(&self) -> Result<Providers, OpenCodeError> {
        self.get_json(HttpRequest::get("/config/providers"), None)
            .await
    }

    async fn reply_permission(
        &self,
        request_id: &str,
        reply: PermissionReply,
    ) -> Result<(), OpenCodeError> {
        check_id("permission request id", request_id)?;
        let request = HttpRequest::post_json(
            format!("/permission/{request_id}/reply"),
            &serde_json::json!({ "reply": reply.as_str() }),
        );
        self.expect_ok(request, Some(("permission request", request_id)))
            .await
    }

    async fn reply_question(
        &self,
        request_id: &str,
        answers: &[Vec<String>],
    ) -> Result<(), OpenCodeError> {
        check_id("question request id", request_id)?;
        let request = HttpRequest::post_json(
            format!("/question/{request_id}/reply"),
            &serde_json::json!({ "answers": answers }),
        );
        self.expect_ok(request, Some(("question request", request_id)))
            .await
    }

    async fn reject_question(&self, request_id: &str) -> Result<(), OpenCodeError> {
        check_id("question request id", request_id)?;
        let request = HttpRequest::post_json(
            format!("/question/{request_id}/reject"),
            &serde_json::json!({}),
        );
        self.expect_ok(request, Some(("question request", request_id)))
            .await
    }

    async fn pending_permissions(&self) -> Result<Vec<PermissionAsked>, OpenCodeError> {
        self.get_json(HttpRequest::get("/permission"), None).await
    }

    async fn pending_questions(&self) -> Result<Vec<QuestionAsked>, OpenCodeError> {
        self.get_json(HttpRequest::get("/question"), None).await
    }
}

#[cfg(test)]
mod tests;
