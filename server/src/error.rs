//! Errors as the API answers them: a status and `{ "error": "...what to do..." }`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use weft_runtime::store::StoreError;

/// The body of every error the API answers.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
}

/// An error answered as JSON with its status: 4xx for what the client can fix, 503 when the
/// run history database does not answer. Never a 500 for a bad id, filter or cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message, saying what to do.
    pub message: String,
}

impl ApiError {
    /// 400: a parameter the client can fix.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    /// 404: nothing there.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    /// 401: no or an unknown token.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }
    /// 403: a token that may not do this, or a request from another origin.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"weft\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match &e {
            StoreError::RunNotFound(_)
            | StoreError::DeploymentNotFound { .. }
            | StoreError::RequestNotFound(_)
            | StoreError::WorkPoolNotFound { .. }
            | StoreError::WorkerNotFound(_) => StatusCode::NOT_FOUND,
            StoreError::AmbiguousRun { .. } | StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::WorkPoolExists(_) => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(target: "weft::server", "run history query failed: {e}");
        }
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError::bad_request(format!(
            "{} (see /docs for this route's parameters)",
            e.body_text()
        ))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> ApiError {
        ApiError::bad_request(e.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        ApiError {
            status: e.status(),
            message: format!("{} (send a JSON body; see /docs)", e.body_text()),
        }
    }
}

/// What a handler returns: a value, or an [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;
