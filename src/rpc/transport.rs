//! Newline-delimited JSON-RPC 2.0 over a byte stream (stdin/stdout in
//! production, in-memory pipes in tests).
//!
//! jsonrpsee's `RpcModule` dispatches incoming requests; everything it cannot
//! do is here: framing with a line cap, notifications, responses to the
//! agent's own requests, batches and malformed frames. stdout is owned by one
//! writer task and carries protocol frames only.

use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::Methods;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info_span, warn};

use super::peer::Peer;
use super::protocol::{code, method};

/// Longest accepted frame. OpenCode events carrying whole tool outputs can be
/// large, so this is generous; longer lines are answered and skipped.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Outgoing frames queued before senders wait.
pub const OUT_QUEUE: usize = 1024;
/// Requests handled at once; the reader waits when all are busy.
const MAX_IN_FLIGHT: usize = 64;
/// How long in-flight requests may finish after stdin closes.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Receives the notifications the transport does not handle itself.
pub trait NotificationSink: Send + Sync {
    fn notification(&self, method: &str, params: Value);
}

/// Why the serve loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// The input closed: the shim or OpenCode went away.
    Eof,
    /// The shim sent `exit`.
    Exit,
}

/// A channel to the writer plus the peer handle built on it. Create this first
/// so request handlers can hold the peer.
pub fn channel() -> (Peer, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    (Peer::new(tx), rx)
}

/// One line read from the input.
enum Line {
    Text(String),
    TooLong(usize),
    NotUtf8,
    Eof,
}

/// Read one `\n`-terminated line of at most `cap` bytes. Longer lines are
/// consumed and discarded without buffering them, so a hostile peer cannot
/// make us allocate without bound.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut total = 0usize;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            if total == 0 {
                return Ok(Line::Eof);
            }
            break;
        }
        let (part, found) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        total += part.len();
        if total <= cap {
            buf.extend_from_slice(part);
        }
        let consumed = found.unwrap_or(chunk.len());
        reader.consume(consumed);
        if found.is_some() {
            break;
        }
    }
    if total > cap {
        buf.clear();
        return Ok(Line::TooLong(total));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    match String::from_utf8(std::mem::take(buf)) {
        Ok(s) => Ok(Line::Text(s)),
        Err(_) => Ok(Line::NotUtf8),
    }
}

fn error_frame(id: &Value, code: i32, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// What a parsed frame is.
enum Frame {
    /// A request and its method name.
    Request(String, String),
    Notification(String, Value),
    Response(Value, Result<Value, (i64, String)>),
    /// Answer with this error frame.
    Reject(String),
    /// Log and drop: invalid responses cannot be answered.
    Ignore(&'static str),
}

fn is_valid_id(id: &Value) -> bool {
    matches!(id, Value::String(_) | Value::Number(_) | Value::Null)
}

fn classify(line: &str) -> Frame {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Frame::Reject(error_frame(
                &Value::Null,
                code::PARSE_ERROR,
                &format!("Parse error: {e}"),
            ));
        }
    };
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return Frame::Reject(error_frame(
                &Value::Null,
                code::INVALID_REQUEST,
                "Invalid request: batches are not supported",
            ));
        }
        _ => {
            return Frame::Reject(error_frame(
                &Value::Null,
                code::INVALID_REQUEST,
                "Invalid request: a frame must be a JSON object",
            ));
        }
    };
    let id = obj.get("id").cloned();
    let reply_id = id.clone().filter(is_valid_id).unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        if id.is_some() && obj.get("method").is_none() {
            return Frame::Ignore("response without jsonrpc 2.0");
        }
        return Frame::Reject(error_frame(
            &reply_id,
            code::INVALID_REQUEST,
            "Invalid request: `jsonrpc` must be \"2.0\"",
        ));
    }
    if let Some(id) = &id
        && !is_valid_id(id)
    {
        return Frame::Reject(error_frame(
            &Value::Null,
            code::INVALID_REQUEST,
            "Invalid request: `id` must be a string, a number or null",
        ));
    }
    match obj.get("method") {
        Some(Value::String(method)) => {
            if let Some(params) = obj.get("params")
                && !matches!(params, Value::Object(_) | Value::Array(_))
            {
                return match id {
                    Some(_) => Frame::Reject(error_frame(
                        &reply_id,
                        code::INVALID_REQUEST,
                        "Invalid request: `params` must be an object or an array",
                    )),
                    None => Frame::Ignore("notification with scalar params"),
                };
            }
            match id {
                Some(_) => Frame::Request(method.clone(), line.to_owned()),
                None => Frame::Notification(
                    method.clone(),
                    obj.get("params").cloned().unwrap_or(Value::Null),
                ),
            }
        }
        Some(_) => Frame::Reject(error_frame(
            &reply_id,
            code::INVALID_REQUEST,
            "Invalid request: `method` must be a string",
        )),
        None => {
            let Some(id) = id else {
                return Frame::Reject(error_frame(
                    &Value::Null,
                    code::INVALID_REQUEST,
                    "Invalid request: neither `method` nor `id`",
                ));
            };
            match (obj.get("result"), obj.get("error")) {
                (Some(result), None) => Frame::Response(id, Ok(result.clone())),
                (None, Some(error)) => {
                    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
                    let message = error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("(no message)")
                        .to_owned();
                    Frame::Response(id, Err((code, message)))
                }
                _ => Frame::Ignore("response needs exactly one of `result` and `error`"),
            }
        }
    }
}

/// Run one request through jsonrpsee and queue its response.
async fn dispatch(methods: Methods, peer: Peer, raw: String) {
    match methods.raw_json_request(&raw, 1).await {
        Ok((response, _subscriptions)) => {
            let _ = peer.send_frame(response.get().to_owned()).await;
        }
        Err(e) => {
            // Shapes jsonrpsee refuses that passed our own checks.
            let id = serde_json::from_str::<Value>(&raw)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .unwrap_or(Value::Null);
            let msg = format!("Invalid request: {e}");
            let _ = peer
                .send_frame(error_frame(&id, code::INVALID_REQUEST, &msg))
                .await;
        }
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(out: &mut W, frame: &str) -> std::io::Result<()> {
    out.write_all(frame.as_bytes()).await?;
    out.write_all(b"\n").await?;
    out.flush().await
}

/// Serve until the input closes or `exit` arrives. Drains the writer before
/// returning so every answer already computed reaches the shim.
pub async fn serve<R, W>(
    input: R,
    mut output: W,
    methods: impl Into<Methods>,
    peer: Peer,
    mut out_rx: mpsc::Receiver<String>,
    sink: Arc<dyn NotificationSink>,
) -> std::io::Result<Shutdown>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let methods: Methods = methods.into();
    // Handlers keep peer clones alive, so the writer cannot wait for the
    // channel to close; it is told to stop and then drains what is queued.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                frame = out_rx.recv() => frame,
                _ = &mut stop_rx => {
                    while let Ok(frame) = out_rx.try_recv() {
                        write_frame(&mut output, &frame).await?;
                    }
                    None
                }
            };
            match frame {
                Some(frame) => write_frame(&mut output, &frame).await?,
                None => break,
            }
        }
        Ok::<_, std::io::Error>(())
    });

    let mut input = input;
    let mut buf = Vec::new();
    let mut tasks = JoinSet::new();
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let reason = loop {
        // Reap finished request tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        let line = match read_line(&mut input, &mut buf, MAX_LINE_BYTES).await {
            Ok(line) => line,
            Err(e) => {
                warn!(error = %e, "reading stdin failed; shutting down");
                break Shutdown::Eof;
            }
        };
        let text = match line {
            Line::Eof => break Shutdown::Eof,
            Line::TooLong(n) => {
                warn!(bytes = n, "dropped an oversized frame");
                let msg = format!("Invalid request: frame of {n} bytes exceeds {MAX_LINE_BYTES}");
                let _ = peer
                    .send_frame(error_frame(&Value::Null, code::INVALID_REQUEST, &msg))
                    .await;
                continue;
            }
            Line::NotUtf8 => {
                let _ = peer
                    .send_frame(error_frame(
                        &Value::Null,
                        code::PARSE_ERROR,
                        "Parse error: frame is not valid UTF-8",
                    ))
                    .await;
                continue;
            }
            Line::Text(t) => t,
        };
        if text.trim().is_empty() {
            continue;
        }
        match classify(&text) {
            Frame::Request(name, raw) => {
                let call = dispatch(methods.clone(), peer.clone(), raw)
                    .instrument(info_span!("rpc_request", method = %name));
                if name == method::INITIALIZE {
                    // The handshake completes before the next frame is read, so
                    // calls that follow it never race it.
                    call.await;
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break Shutdown::Eof;
                };
                tasks.spawn(async move {
                    let _permit = permit;
                    call.await;
                });
            }
            Frame::Notification(name, params) => {
                if name == method::EXIT {
                    break Shutdown::Exit;
                }
                sink.notification(&name, params);
            }
            Frame::Response(id, answer) => {
                if !peer.complete(&id, answer) {
                    debug!(%id, "response to an unknown or expired request id; dropped");
                }
            }
            Frame::Reject(frame) => {
                debug!("rejected a malformed frame");
                let _ = peer.send_frame(frame).await;
            }
            Frame::Ignore(why) => debug!(why, "ignored a frame"),
        }
    };

    peer.close();
    // Let requests already running answer, then stop the rest.
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.shutdown().await;
    }
    drop(peer);
    let _ = stop_tx.send(());
    match writer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "writer stopped early"),
        Err(e) => warn!(error = %e, "writer task failed"),
    }
    Ok(reason)
}

#[cfg(test)]
mod tests;
