//! A scripted OpenAI-compatible model server.
//!
//! OpenCode talks to it through `@ai-sdk/openai-compatible`. Each turn is
//! scripted by a rule: when the latest user message contains a phrase, the
//! model's n-th call in that turn answers with the rule's n-th step (text or
//! a tool call). Title-generation requests get a fixed title and are recorded
//! apart, so they never consume script steps. Every request is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One answer of the model.
#[derive(Debug, Clone)]
pub enum Step {
    /// Stream this text (in a few chunks).
    Text(String),
    /// Call a tool with these arguments.
    ToolCall { name: String, arguments: Value },
}

impl Step {
    pub fn text(t: impl Into<String>) -> Self {
        Step::Text(t.into())
    }
    pub fn tool(name: impl Into<String>, arguments: Value) -> Self {
        Step::ToolCall {
            name: name.into(),
            arguments,
        }
    }
}

struct Rule {
    phrase: String,
    steps: Vec<Step>,
}

#[derive(Default)]
struct Inner {
    rules: Vec<Rule>,
    requests: Vec<Value>,
    titles: u64,
}

/// Handle on a running scripted model server.
#[derive(Clone)]
pub struct ScriptedModel {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
}

impl ScriptedModel {
    pub async fn start() -> anyhow::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/v1/models", get(models))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { inner, addr })
    }

    /// The `baseURL` for the provider config.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// When the latest user message contains `phrase`, answer with `steps`.
    pub fn on(&self, phrase: &str, steps: Vec<Step>) {
        self.lock().rules.push(Rule {
            phrase: phrase.to_owned(),
            steps,
        });
    }

    /// Every non-title request so far, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.lock().requests.clone()
    }

    /// Wait until a request satisfies `pred`, at most `timeout`.
    pub async fn wait_for_request(
        &self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(r) = self.requests().into_iter().find(|r| pred(r)) {
                return Ok(r);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("no matching model request within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The text of a chat message's `content` (string or list of parts).
pub fn content_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Tool results the request carries (role `tool`), in order.
pub fn tool_results(request: &Value) -> Vec<String> {
    messages(request)
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
        .map(content_text)
        .collect()
}

fn messages(request: &Value) -> Vec<Value> {
    request
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

async fn models() -> impl IntoResponse {
    axum::Json(json!({"object": "list", "data": [{"id": "scripted", "object": "model"}]}))
}

async fn completions(State(inner): State<Arc<Mutex<Inner>>>, body: axum::body::Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad json").into_response();
    };
    let msgs = messages(&request);
    let is_title = msgs.first().is_some_and(|m| {
        m.get("role").and_then(Value::as_str) == Some("system")
            && content_text(m).contains("title generator")
    });
    let step = {
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        if is_title {
            g.titles += 1;
            Step::text("Scripted session")
        } else {
            g.requests.push(request.clone());
            // Position in the turn: assistant messages since the last user message.
            let last_user = msgs
                .iter()
                .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"));
            let (prompt, n) = match last_user {
                Some(i) => (
                    content_text(&msgs[i]),
                    msgs[i + 1..]
                        .iter()
                        .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
                        .count(),
                ),
                None => (String::new(), 0),
            };
            g.rules
                .iter()
                .rev()
                .find(|r| prompt.contains(&r.phrase))
                .map(|r| {
                    r.steps
                        .get(n)
                        .or(r.steps.last())
                        .cloned()
                        .unwrap_or(Step::text(""))
                })
                .unwrap_or_else(|| Step::text("ok"))
        }
    };
    sse(step)
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

fn sse(step: Step) -> Response {
    let mut frames = Vec::new();
    match step {
        Step::Text(text) => {
            frames.push(chunk(json!({"role": "assistant", "content": ""}), None));
            // Several deltas, split on char boundaries, so streaming is exercised.
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(16) {
                frames.push(chunk(
                    json!({"content": piece.iter().collect::<String>()}),
                    None,
                ));
            }
            frames.push(chunk(json!({}), Some("stop")));
        }
        Step::ToolCall { name, arguments } => {
            frames.push(chunk(
                json!({"role": "assistant", "tool_calls": [{"index": 0, "id": format!("call_{name}"),
                    "type": "function", "function": {"name": name, "arguments": arguments.to_string()}}]}),
                None,
            ));
            frames.push(chunk(json!({}), Some("tool_calls")));
        }
    }
    let mut last = chunk(json!({}), None);
    last["choices"] = json!([]);
    last["usage"] = json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120});
    frames.push(last);
    let events = frames
        .into_iter()
        .map(|f| Ok::<_, std::convert::Infallible>(Event::default().data(f.to_string())))
        .chain(std::iter::once(Ok(Event::default().data("[DONE]"))));
    Sse::new(futures::stream::iter(events)).into_response()
}
