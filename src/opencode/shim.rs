//! [`Fetch`] through the shim's `opencode/fetch`: the shim runs the request
//! with the fetch of the SDK client OpenCode handed the plugin.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;

use super::{Fetch, HttpRequest, HttpResponse, OpenCodeError};
use crate::rpc::Peer;
use crate::rpc::protocol::{FetchParams, FetchResponse, method};

pub struct ShimFetch {
    peer: Peer,
    timeout: Duration,
}

impl ShimFetch {
    pub fn new(peer: Peer, timeout: Duration) -> Self {
        Self { peer, timeout }
    }
}

#[async_trait]
impl Fetch for ShimFetch {
    async fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, OpenCodeError> {
        let params = FetchParams {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        };
        let answer: FetchResponse = self
            .peer
            .request(method::OPENCODE_FETCH, &params, self.timeout)
            .await
            .map_err(|e| OpenCodeError::Unreachable(e.to_string()))?;
        let body = match answer.body_encoding.as_deref() {
            None | Some("utf8") => answer.body.into_bytes(),
            Some("base64") => base64::engine::general_purpose::STANDARD
                .decode(answer.body.as_bytes())
                .map_err(|e| OpenCodeError::Unreachable(format!("shim sent bad base64: {e}")))?,
            Some(other) => {
                return Err(OpenCodeError::Unreachable(format!(
                    "shim sent unknown body encoding `{other}`"
                )));
            }
        };
        Ok(HttpResponse {
            status: answer.status,
            headers: answer.headers,
            body,
        })
    }
}
