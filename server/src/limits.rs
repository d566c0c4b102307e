//! Bounds on every request and headers on every response.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The longest query string accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

/// Refuses an over-long query string; marks every response not to be sniffed, framed, cached
/// or given a referrer.
pub(crate) async fn guard(req: Request, next: Next) -> Response {
    let query_len = req.uri().query().map_or(0, str::len);
    let mut response = if query_len > MAX_QUERY_BYTES {
        ApiError {
            status: StatusCode::URI_TOO_LONG,
            message: format!(
                "the query string is {query_len} bytes; at most {MAX_QUERY_BYTES} are accepted"
            ),
        }
        .into_response()
    } else {
        next.run(req).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        // A page may set its own referrer policy (see `pages::security_headers`).
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}
