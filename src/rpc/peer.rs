//! The agent's handle on the shim: outgoing requests with a pending map and
//! timeouts, and outgoing notifications. Cloneable; every frame goes through
//! the single writer task, so frames never interleave.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// What became of a request the agent sent to the shim.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the shim connection is closed")]
    Closed,
    #[error("the shim did not answer `{method}` within {after:?}")]
    Timeout { method: String, after: Duration },
    #[error("the shim answered `{method}` with error {code}: {message}")]
    Remote {
        method: String,
        code: i64,
        message: String,
    },
    #[error("cannot encode `{method}` params: {source}")]
    Encode {
        method: String,
        source: serde_json::Error,
    },
    #[error("unexpected answer to `{method}`: {source}")]
    Decode {
        method: String,
        source: serde_json::Error,
    },
}

type Waiter = oneshot::Sender<Result<Value, (i64, String)>>;

struct Inner {
    out: mpsc::Sender<String>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<String, Waiter>>,
    closed: AtomicBool,
}

#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

impl Peer {
    /// A peer writing into `out`, which the transport's writer task drains.
    pub fn new(out: mpsc::Sender<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                out,
                next_id: AtomicU64::new(1),
                pending: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
            }),
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, Waiter>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove calls), so a poisoned lock is still usable.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queue a raw frame for the writer.
    pub(crate) async fn send_frame(&self, frame: String) -> Result<(), PeerError> {
        self.inner
            .out
            .send(frame)
            .await
            .map_err(|_| PeerError::Closed)
    }

    /// Send a request and wait for its answer, at most `timeout`.
    pub async fn request<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, PeerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(PeerError::Closed);
        }
        let params = serde_json::to_value(params).map_err(|source| PeerError::Encode {
            method: method.to_owned(),
            source,
        })?;
        let id = format!(
            "agent-{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id.clone(), tx);
        // `close` may have cleared the map between the check above and the insert.
        if self.inner.closed.load(Ordering::Acquire) {
            self.pending().remove(&id);
            return Err(PeerError::Closed);
        }
        let frame = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if self.send_frame(frame.to_string()).await.is_err() {
            self.pending().remove(&id);
            return Err(PeerError::Closed);
        }
        let answer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(PeerError::Closed),
            Err(_) => {
                self.pending().remove(&id);
                return Err(PeerError::Timeout {
                    method: method.to_owned(),
                    after: timeout,
                });
            }
        };
        match answer {
            Ok(value) => serde_json::from_value(value).map_err(|source| PeerError::Decode {
                method: method.to_owned(),
                source,
            }),
            Err((code, message)) => Err(PeerError::Remote {
                method: method.to_owned(),
                code,
                message,
            }),
        }
    }

    /// Send a notification; no answer is expected.
    pub async fn notify<P: Serialize>(&self, method: &str, params: &P) -> Result<(), PeerError> {
        let params = serde_json::to_value(params).map_err(|source| PeerError::Encode {
            method: method.to_owned(),
            source,
        })?;
        let frame = json!({"jsonrpc": "2.0", "method": method, "params": params});
        self.send_frame(frame.to_string()).await
    }

    /// Deliver a response frame to whoever waits for `id`. Returns false for
    /// ids we never sent or already gave up on (late answers after a timeout).
    pub(crate) fn complete(&self, id: &Value, answer: Result<Value, (i64, String)>) -> bool {
        let key = match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match self.pending().remove(&key) {
            Some(waiter) => {
                // The waiter may have timed out between lookup and send.
                let _ = waiter.send(answer);
                true
            }
            None => false,
        }
    }

    /// Fail every pending request and refuse new ones (stdin closed).
    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.pending().clear();
    }

    /// Number of requests waiting for an answer (for status and tests).
    pub fn pending_count(&self) -> usize {
        self.pending().len()
    }
}
