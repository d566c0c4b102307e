//! Wrong tokens slow their sender down: a client (by IP address, when the server knows it)
//! that sent [`MAX_FAILURES`] wrong tokens within [`WINDOW`] gets `429 Too Many Requests`, with
//! `Retry-After`, for any request carrying a token (a Bearer header or a sign-in) until the
//! window has passed; the token is then not even compared. Tokens are at least 16 characters, so
//! this is defence in depth, and it keeps a guessing client from filling the log.

use crate::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Wrong tokens a client may send within [`WINDOW`].
pub(crate) const MAX_FAILURES: u32 = 20;
/// How long wrong tokens are remembered.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Clients remembered at most (the oldest windows are dropped first when full).
const MAX_CLIENTS: usize = 10_000;

/// Wrong tokens per client: when its window started, and how many.
#[derive(Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Throttle {
    /// How long `client` must wait, if it sent too many wrong tokens.
    fn wait(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (since, n) = *failures.get(&client)?;
        let left = WINDOW
            .checked_sub(now.duration_since(since))
            .filter(|left| !left.is_zero())?;
        (n >= MAX_FAILURES).then_some(left)
    }

    /// `client` sent a wrong token.
    fn failed(&self, client: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_CLIENTS && !failures.contains_key(&client) {
            failures.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
            if failures.len() >= MAX_CLIENTS {
                return; // a flood of addresses: each is still refused by its wrong token
            }
        }
        let entry = failures.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

/// True when the request offers a token: a Bearer header, or the sign-in form.
fn offers_token(req: &Request) -> bool {
    req.headers().contains_key(header::AUTHORIZATION)
        || (req.method() == Method::POST && req.uri().path() == "/signin")
}

/// The middleware: refuses a throttled client's tokens, counts the wrong ones (answered 401).
pub(crate) async fn guard(
    State(throttle): State<Arc<Throttle>>,
    req: Request,
    next: Next,
) -> Response {
    if !offers_token(&req) {
        return next.run(req).await;
    }
    // Without the peer's address (an embedder serving without connect info) all clients
    // share one count.
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    if let Some(left) = throttle.wait(client, Instant::now()) {
        let secs = left.as_secs() + 1;
        let mut response = ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "{MAX_FAILURES} wrong tokens in a minute from this address: try again in {secs} s"
            ),
        }
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    let response = next.run(req).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        throttle.failed(client, Instant::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_waits_after_too_many_wrong_tokens_and_others_do_not() {
        let t = Throttle::default();
        let (a, b) = (
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        );
        let start = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed(a, start);
        }
        assert_eq!(t.wait(a, start), None);
        t.failed(a, start);
        let later = start + Duration::from_secs(20);
        assert_eq!(t.wait(a, later), Some(Duration::from_secs(40)));
        assert_eq!(t.wait(b, later), None);
        // The window passes: the count starts again.
        let after = start + WINDOW;
        assert_eq!(t.wait(a, after), None);
        t.failed(a, after);
        assert_eq!(t.wait(a, after), None);
    }
}
