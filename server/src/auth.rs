//! Who may do what: Bearer tokens (or a dashboard session) with two roles, the Origin of
//! state-changing requests, and the Host of requests to a server without a token.
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
    let checked = role_of(&state, req.headers()).and_then(|(role, by_cookie)| {
        if changes_state(req.method()) {
            check_origin(&state, req.headers(), by_cookie)?;
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
pub(crate) fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The request's role, and whether a session cookie (rather than a Bearer token) gave it.
/// Without a token on the server, every request that names an allowed Host is an operator.
pub(crate) fn role_of(state: &AppState, headers: &HeaderMap) -> Result<(Role, bool), ApiError> {
    if !state.config.has_token() {
        check_host(state, headers)?;
        return Ok((Role::Operator, false));
    }
    if let Some(given) = bearer(headers) {
        return token_role(state, given).map(|r| (r, false)).ok_or_else(|| {
            ApiError::unauthorized(
                "unknown token: send the operator or the read-only token the server was started \
                 with",
            )
        });
    }
    if let Some(role) = state.sessions.role(headers) {
        return Ok((role, true));
    }
    Err(ApiError::unauthorized(
        "this server needs a token: send `Authorization: Bearer <token>` (the operator or the \
         read-only token the server was started with), or sign in at /signin",
    ))
}

/// The role a token gives, if it is one of the server's.
pub(crate) fn token_role(state: &AppState, given: &[u8]) -> Option<Role> {
    let config = &state.config;
    let operator = config.operator_token.as_ref()?;
    // Both compared, whichever matches, so the time taken tells nothing about which.
    let is_operator = operator.matches(given);
    let is_reader = config.read_token.as_ref().is_some_and(|t| t.matches(given));
    match (is_operator, is_reader) {
        (true, _) => Some(Role::Operator),
        (false, true) => Some(Role::Reader),
        _ => None,
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
pub(crate) fn check_host(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
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
/// it was told to trust). Requests without an `Origin` (curl, scripts) are not from a page,
/// unless they carry a session cookie (`need_origin`): browsers send `Origin` with every POST.
pub(crate) fn check_origin(
    state: &AppState,
    headers: &HeaderMap,
    need_origin: bool,
) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        if need_origin {
            return Err(ApiError::forbidden(
                "a request that changes something with a session cookie must carry the Origin \
                 header a browser sends",
            ));
        }
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
