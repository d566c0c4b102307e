//! Signing in (`/signin`) with the operator or the read-only token: a right token gives the
//! browser a session cookie (a random id the server maps to the role; never the token), a
//! wrong one shows the form again with an error and sets nothing. `/signout` ends the session.

use super::{layout, respond, Nav, PageError, PageResult};
use crate::{auth, session, AppState};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;

/// Where to go after signing in.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct SignIn {
    token: String,
    next: Option<String>,
}

/// `next` if it is a path of this server, else `/` (no open redirect, no `javascript:`).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn form_page(status: StatusCode, next: &str, error: Option<&str>) -> axum::response::Response {
    let body = html! {
        h1 { "Sign in" }
        p { "This server needs a token: the operator token, or the read-only one." }
        @if let Some(e) = error { p.error #signin-error { (e) } }
        form.signin method="post" action="/signin" {
            input type="hidden" name="next" value=(next);
            label for="token" { "Token" }
            input type="password" id="token" name="token" autocomplete="current-password" required autofocus;
            button type="submit" { "Sign in" }
        }
    };
    respond(status, layout("Sign in", None, Nav::None, body))
}

/// `GET /signin`.
pub(crate) async fn form(
    State(state): State<AppState>,
    query: Result<Query<Next>, QueryRejection>,
) -> PageResult {
    let Query(n) = query?;
    if !state.config.has_token() {
        return Ok(Redirect::to("/").into_response());
    }
    Ok(form_page(
        StatusCode::OK,
        &local_path(n.next.as_deref()),
        None,
    ))
}

/// `POST /signin`.
pub(crate) async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> PageResult {
    auth::check_origin(&state, &headers, false).map_err(PageError::from)?;
    let Form(f) = form?;
    let next = local_path(f.next.as_deref());
    let role = state
        .config
        .has_token()
        .then(|| auth::token_role(&state, f.token.trim().as_bytes()))
        .flatten();
    let Some(role) = role else {
        return Ok(form_page(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("Unknown token: give the operator or the read-only token this server was started with."),
        ));
    };
    let id = state.sessions.create(role);
    Ok((
        [(header::SET_COOKIE, session::set_cookie(&id))],
        Redirect::to(&next),
    )
        .into_response())
}

/// `POST /signout`.
pub(crate) async fn signout(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    auth::check_origin(&state, &headers, false).map_err(PageError::from)?;
    state.sessions.remove(&headers);
    Ok((
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/signin"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/runs?flow=a")), "/runs?flow=a");
        for bad in [
            "javascript:alert(1)",
            "//evil.example",
            "https://evil.example",
            "/\\evil",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
    }
}
