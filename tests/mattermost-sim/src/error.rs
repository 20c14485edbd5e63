//! Errors: the AppError responses REST clients see, and the simulator's own
//! start-up and control errors.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::model::AppErrorBody;

tokio::task_local! {
    /// Request id of the REST request being served, so that error bodies can
    /// carry the same `request_id` as the `X-Request-ID` header.
    pub static REQUEST_ID: String;
}

/// An error answered to a REST client as the real AppError JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {id}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Translation id, e.g. `api.context.session_expired.app_error`.
    pub id: String,
    /// English message.
    pub message: String,
}

impl ApiError {
    /// Any error with an explicit status, id and message.
    pub fn new(status: StatusCode, id: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            id: id.to_owned(),
            message: message.into(),
        }
    }

    /// 401 for a missing, unknown or revoked token.
    pub fn session_expired() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "api.context.session_expired.app_error",
            "Invalid or expired session, please login again.",
        )
    }

    /// 403 for a permission the session lacks.
    pub fn permissions() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "api.context.permissions.app_error",
            "You do not have the appropriate permissions.",
        )
    }

    /// 404 for a route the server does not have.
    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "api.context.404.app_error",
            "Sorry, we could not find the page.",
        )
    }

    /// 400 for a body that is not valid JSON, or lacks a required field.
    pub fn invalid_body(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "api.context.invalid_body_param.app_error",
            format!("Invalid or missing {name} in request body."),
        )
    }

    /// 400 for a bad value in a request (`SetInvalidParam`).
    pub fn invalid_param(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "api.context.invalid_param.app_error",
            format!("Invalid {name} parameter."),
        )
    }

    /// 400 for a malformed path or query parameter.
    pub fn invalid_url(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "api.context.invalid_url_param.app_error",
            format!("Invalid or missing {name} parameter in request URL."),
        )
    }

    /// 404 for an id that names nothing.
    pub fn not_found(id: &str, message: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, id, message)
    }

    /// The JSON body, with the request id of the current REST request.
    pub fn body(&self) -> AppErrorBody {
        AppErrorBody {
            id: self.id.clone(),
            message: self.message.clone(),
            detailed_error: String::new(),
            // Control routes have no request scope; they still get an id.
            request_id: REQUEST_ID
                .try_with(Clone::clone)
                .unwrap_or_else(|_| crate::ids::new_id()),
            status_code: self.status.as_u16(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// Errors of the simulator itself (start-up, control API misuse).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listener could not be bound.
    #[error("cannot bind the simulator listener: {0}")]
    Bind(#[from] std::io::Error),
    /// A control call was rejected by the same rules the REST API applies.
    #[error("rejected: {0}")]
    Api(#[from] ApiError),
}
