//! Who may do what: Bearer tokens with two roles, the Origin of state-changing requests, and
//! the Host of requests to a server without a token.
//!
//! Tokens are compared in constant time ([`crate::Token::matches`]) and never logged.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May read only (the read token).
    Reader,
    /// May read and change (the operator token, or anyone on a server without tokens).
    Operator,
}

/// Finds the request's role from its `Authorization` header, checks its Host (no token) and
/// the Origin of a state-changing request, then lets it through with the role attached.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let checked = role_of(&state, req.headers()).and_then(|role| {
        if changes_state(req.method()) {
            check_origin(&state, req.headers())?;
        }
        Ok(role)
    });
    match checked {
        Ok(role) => {
            req.extensions_mut().insert(role);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Lets only operators through (a route layer on the state-changing routes).
pub(crate) async fn require_operator(req: Request, next: Next) -> Response {
    match req.extensions().get::<Role>() {
        Some(Role::Operator) => next.run(req).await,
        _ => {
            ApiError::forbidden("this needs the operator token; the read-only token may only read")
                .into_response()
        }
    }
}

/// GET, HEAD and OPTIONS change nothing; every other method may.
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn role_of(state: &AppState, headers: &HeaderMap) -> Result<Role, ApiError> {
    let config = &state.config;
    let Some(operator) = &config.operator_token else {
        check_host(state, headers)?;
        return Ok(Role::Operator);
    };
    let given = bearer(headers).ok_or_else(|| {
        ApiError::unauthorized(
            "this server needs a token: send `Authorization: Bearer <token>` (the operator or \
             the read-only token the server was started with)",
        )
    })?;
    // Both compared, whichever matches, so the time taken tells nothing about which.
    let is_operator = operator.matches(given);
    let is_reader = config.read_token.as_ref().is_some_and(|t| t.matches(given));
    match (is_operator, is_reader) {
        (true, _) => Ok(Role::Operator),
        (false, true) => Ok(Role::Reader),
        _ => Err(ApiError::unauthorized(
            "unknown token: send the operator or the read-only token the server was started with",
        )),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.len().min(7));
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Without a token, only loopback host names reach the server: a web page whose domain was
/// rebound to 127.0.0.1 names its own domain in `Host`.
fn check_host(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let hosts = &state.config.hosts;
    if hosts.is_empty() {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "this server answers requests for {} only (it has no token); use that address",
        hosts.join(" or ")
    )))
}

/// A state-changing request sent by a web page must come from the server's own origin (or one
/// it was told to trust). Requests without an `Origin` (curl, scripts) are not from a page.
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
    let config = &state.config;
    if config
        .origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    // Beyond loopback the server needs a token, and a page served by it names its Host.
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let same_host = host.is_some_and(|h| {
        [format!("http://{h}"), format!("https://{h}")]
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    });
    if config.has_token() && same_host {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "requests that change something are refused from the origin {origin:?}: only pages of \
         this server may send them (allow another origin with --origin)"
    )))
}
