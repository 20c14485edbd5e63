//! The summariser: OpenCode itself condenses a thread, through a
//! short-lived session on its configured `small_model` (else the session's
//! model), so no extra API key is needed. The session is titled with
//! [`SUMMARY_TITLE_PREFIX`] so that no feature gives it a thread, and it is
//! deleted whatever happens.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, info, warn};

use super::format::{Message, summary_request};
use crate::app::App;
use crate::opencode::{MessageIds, ModelRef, OpenCodeError, Prompt};
use crate::sessions::text::SUMMARY_TITLE_PREFIX;
use crate::store::now_millis;

/// Why no summary came.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("no summary within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("{0}")]
    OpenCode(#[from] OpenCodeError),
}

const SYSTEM: &str = "You condense chat conversations for a coding agent. You never use \
     tools; you answer with a concise summary in plain Markdown bullet points.";

/// Summarise `messages` within the configured time. `fallback_model` is
/// the session's own model, used when OpenCode has no `small_model`.
pub async fn summarise(
    app: &App,
    ids: &MessageIds,
    messages: &[Message],
    purpose: &str,
    fallback_model: Option<ModelRef>,
) -> Result<String, SummaryError> {
    let limit = app.config.context_summary_timeout;
    let made: Arc<Mutex<Option<String>>> = Arc::default();
    let run = run(app, ids, messages, purpose, fallback_model, made.clone());
    let result = match tokio::time::timeout(limit, run).await {
        Ok(r) => r,
        Err(_) => Err(SummaryError::Timeout(limit)),
    };
    let session = made
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(id) = session {
        // Cleaned up in the background: the prompt waits for nothing more.
        let opencode = app.opencode.clone();
        let timed_out = matches!(result, Err(SummaryError::Timeout(_)));
        tokio::spawn(async move {
            if timed_out {
                let _ = opencode.abort(&id).await;
            }
            if let Err(e) = opencode.delete_session(&id).await {
                warn!(session = %id, error = %e, "cannot delete the summariser's session");
            }
        });
    }
    match &result {
        Ok(s) => info!(chars = s.chars().count(), "thread summarised"),
        Err(e) => warn!(error = %e, "summarising the thread failed"),
    }
    result
}

async fn run(
    app: &App,
    ids: &MessageIds,
    messages: &[Message],
    purpose: &str,
    fallback_model: Option<ModelRef>,
    made: Arc<Mutex<Option<String>>>,
) -> Result<String, SummaryError> {
    let opencode = app.opencode();
    let model = match opencode.small_model().await {
        Ok(Some(m)) => Some(m),
        Ok(None) => fallback_model,
        Err(e) => {
            debug!(error = %e, "cannot read OpenCode's small model; using the session's");
            fallback_model
        }
    };
    let title = format!("{SUMMARY_TITLE_PREFIX}{purpose}");
    let session = opencode.create_session(Some(&title)).await?;
    *made.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(session.id.clone());
    let prompt = Prompt {
        message_id: ids.next(now_millis().max(0) as u64),
        text: summary_request(messages),
        model,
        system: Some(SYSTEM.into()),
        tools_off: true,
        ..Prompt::default()
    };
    Ok(opencode.prompt_wait(&session.id, &prompt).await?)
}
