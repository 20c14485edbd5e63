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
    /// Say something, then call a tool, in one answer (a turn's text before
    /// its tool call).
    TextThenTool {
        text: String,
        name: String,
        arguments: Value,
    },
    /// Fail the request with this HTTP status and error message, as a
    /// provider refusing it does.
    Error { status: u16, message: String },
    /// Start answering, then send nothing more until the client gives up.
    Hang,
    /// Stream this text in `chunk`-character deltas, one every `every`.
    Slow {
        text: String,
        chunk: usize,
        every: Duration,
    },
}

impl Step {
    pub fn text(t: impl Into<String>) -> Self {
        Step::Text(t.into())
    }
    pub fn slow(t: impl Into<String>, chunk: usize, every: Duration) -> Self {
        Step::Slow {
            text: t.into(),
            chunk: chunk.max(1),
            every,
        }
    }
    pub fn text_then_tool(t: impl Into<String>, name: impl Into<String>, arguments: Value) -> Self {
        Step::TextThenTool {
            text: t.into(),
            name: name.into(),
            arguments,
        }
    }
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Step::Error {
            status,
            message: message.into(),
        }
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
    /// When the first text delta of each answer went out, with its prompt.
    first_tokens: Vec<(String, std::time::Instant)>,
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

    /// For each text answer: the prompt it answered and when its first text
    /// delta was sent.
    pub fn first_tokens(&self) -> Vec<(String, std::time::Instant)> {
        self.lock().first_tokens.clone()
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
    let mut prompt_seen = String::new();
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
            prompt_seen = prompt.clone();
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
    if is_title {
        return sse(step, None);
    }
    sse(step, Some((inner, prompt_seen)))
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// Where to record the first text delta's time, for non-title answers.
type FirstToken = Option<(Arc<Mutex<Inner>>, String)>;

fn sse(step: Step, record: FirstToken) -> Response {
    let (text, chunk_chars, every) = match step {
        Step::Error { status, message } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            let body = json!({"error": {"message": message, "type": "invalid_request_error"}});
            return (status, axum::Json(body)).into_response();
        }
        Step::Hang => {
            let head = data_event(&chunk(json!({"role": "assistant", "content": ""}), None));
            let events = futures::StreamExt::chain(
                futures::stream::iter(vec![head]),
                futures::stream::pending(),
            );
            return Sse::new(events).into_response();
        }
        Step::Text(text) => (text, 16, Duration::ZERO),
        Step::Slow { text, chunk, every } => (text, chunk, every),
        Step::ToolCall { name, arguments } => {
            let call = chunk(
                json!({"role": "assistant", "tool_calls": [{"index": 0, "id": format!("call_{name}"),
                    "type": "function", "function": {"name": name, "arguments": arguments.to_string()}}]}),
                None,
            );
            return stream(vec![call], Vec::new(), "tool_calls", Duration::ZERO, record);
        }
        Step::TextThenTool {
            text,
            name,
            arguments,
        } => {
            let head = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
            let mut body: Vec<Value> = text
                .chars()
                .collect::<Vec<_>>()
                .chunks(16)
                .map(|piece| chunk(json!({"content": piece.iter().collect::<String>()}), None))
                .collect();
            body.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": format!("call_{name}"),
                    "type": "function", "function": {"name": name, "arguments": arguments.to_string()}}]}),
                None,
            ));
            return stream(head, body, "tool_calls", Duration::ZERO, record);
        }
    };
    let head = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    // Several deltas, split on char boundaries, so streaming is exercised.
    let chars: Vec<char> = text.chars().collect();
    let body: Vec<Value> = chars
        .chunks(chunk_chars)
        .map(|piece| chunk(json!({"content": piece.iter().collect::<String>()}), None))
        .collect();
    stream(head, body, "stop", every, record)
}

fn data_event(v: &Value) -> Result<Event, std::convert::Infallible> {
    Ok(Event::default().data(v.to_string()))
}

/// Send `head` at once, then `body` frames `every` apart, then the finish,
/// usage and `[DONE]` frames.
fn stream(
    head: Vec<Value>,
    body: Vec<Value>,
    finish: &str,
    every: Duration,
    record: FirstToken,
) -> Response {
    let mut tail = vec![chunk(json!({}), Some(finish))];
    let mut last = chunk(json!({}), None);
    last["choices"] = json!([]);
    last["usage"] = json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120});
    tail.push(last);
    let data = |v: &Value| Ok::<_, std::convert::Infallible>(Event::default().data(v.to_string()));
    let head_events: Vec<_> = head.iter().map(data).collect();
    let tail_events: Vec<_> = tail
        .iter()
        .map(data)
        .chain(std::iter::once(Ok(Event::default().data("[DONE]"))))
        .collect();
    let body_stream = futures::stream::unfold(
        (body.into_iter(), true, record),
        move |(mut frames, first, record)| async move {
            let frame = frames.next()?;
            if !first && !every.is_zero() {
                tokio::time::sleep(every).await;
            }
            if first && let Some((inner, prompt)) = &record {
                let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
                g.first_tokens
                    .push((prompt.clone(), std::time::Instant::now()));
            }
            Some((data(&frame), (frames, false, record)))
        },
    );
    use futures::StreamExt;
    let events = futures::stream::iter(head_events)
        .chain(body_stream)
        .chain(futures::stream::iter(tail_events));
    Sse::new(events).into_response()
}
