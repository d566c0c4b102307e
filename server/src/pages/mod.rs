//! The dashboard: HTML pages rendered on the server with maud (every value escaped unless it is
//! weft's own SVG), a stylesheet and a small script embedded in the binary and served from
//! `/static/`, under a Content-Security-Policy that allows no inline script. Each page reads
//! through the same store calls as its JSON counterpart under `/api`.

mod charts;
mod dashboard;
mod deployments;
mod flows;
pub(crate) mod format;
mod pipeline_run;
mod pipelines;
mod run;
mod runs;
mod signin;
mod workers;

use crate::auth::{self, Role};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use weft_runtime::store::StoreError;

/// The pages' Content-Security-Policy: scripts, styles and everything else from this server
/// only, no inline script or style, no plugins, forms posting only here, never framed.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Who is looking at a page: the role, and whether they signed in (so may sign out).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Viewer {
    pub(crate) role: Role,
    pub(crate) session: bool,
}

impl Viewer {
    /// True when the viewer may change state (pause, resume, run).
    pub(crate) fn operator(&self) -> bool {
        self.role == Role::Operator
    }
}

/// The pages (behind a session when the server has a token), sign-in and the static files.
pub(crate) fn routes(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(dashboard::page))
        .route("/runs", get(runs::page))
        .route("/runs/{id}", get(run::page))
        .route("/runs/{id}/cancel", post(run::cancel))
        .route("/runs/{id}/logs", get(run::logs_page))
        .route("/runs/{id}/tasks/{node}", get(run::elements_page))
        .route("/flows", get(flows::page))
        .route("/deployments", get(deployments::page))
        .route("/deployments/{name}/pause", post(deployments::pause))
        .route("/deployments/{name}/resume", post(deployments::resume))
        .route(
            "/deployments/{name}/run",
            get(deployments::run_form).post(deployments::run_submit),
        )
        .route("/pipelines", get(pipelines::page))
        .route("/workers", get(workers::page))
        .route("/workers/pools/{name}/pause", post(workers::pause))
        .route("/workers/pools/{name}/resume", post(workers::resume))
        .route(
            "/pipelines/{name}/run",
            get(pipeline_run::form).post(pipeline_run::submit),
        )
        .layer(from_fn_with_state(state, guard));
    Router::new()
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::signout))
        .route("/static/app.css", get(stylesheet))
        .route("/static/app.js", get(script))
        .merge(pages)
        .layer(from_fn(security_headers))
}

/// Lets a request through with its [`Viewer`]: on a server with a token, a signed-in session
/// (or a Bearer token) is needed, else the browser is sent to `/signin`; a state-changing
/// request must come from this server's pages (its Origin).
async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let viewer = match auth::role_of(&state, req.headers()) {
        Ok((role, session)) => Viewer {
            role,
            session: session || state.sessions.role(req.headers()).is_some(),
        },
        Err(e) if e.status == StatusCode::UNAUTHORIZED && !auth::changes_state(req.method()) => {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            return Redirect::to(&format!("/signin?next={}", format::enc(&path))).into_response();
        }
        Err(e) => return PageError::from(e).into_response(),
    };
    if auth::changes_state(req.method()) {
        let by_cookie = state.config.has_token() && viewer.session;
        if let Err(e) = auth::check_origin(&state, req.headers(), by_cookie) {
            return PageError::from(e).into_response();
        }
    }
    req.extensions_mut().insert(viewer);
    next.run(req).await
}

/// Adds the Content-Security-Policy to every page, and a referrer policy of `same-origin`:
/// under `no-referrer` a browser sends `Origin: null` with a form's POST, which the Origin
/// check must refuse; `same-origin` sends the page's own origin to this server and nothing to
/// others.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/app.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/app.js"),
    )
}

/// Which section of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Dashboard,
    Runs,
    Flows,
    Deployments,
    Pipelines,
    Workers,
    None,
}

/// A whole page: head, navigation, `body`.
pub(crate) fn layout(title: &str, viewer: Option<Viewer>, nav: Nav, body: Markup) -> Markup {
    let links = [
        (Nav::Dashboard, "/", "Dashboard"),
        (Nav::Runs, "/runs", "Flow runs"),
        (Nav::Flows, "/flows", "Flows"),
        (Nav::Deployments, "/deployments", "Deployments"),
        (Nav::Pipelines, "/pipelines", "Pipelines"),
        (Nav::Workers, "/workers", "Workers"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · weft" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "weft" }
                    @if viewer.is_some() {
                        nav {
                            @for (n, href, label) in links {
                                a href=(href) class=[(n == nav).then_some("active")] { (label) }
                            }
                        }
                    }
                    @if let Some(v) = viewer {
                        span.who { @if v.operator() { "operator" } @else { "read-only" } }
                        @if v.session {
                            form.signout method="post" action="/signout" {
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An HTML response with its status.
pub(crate) fn respond(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

/// An error shown as a page: the status and what to do (4xx; 503 when the database does not
/// answer; never a 500 for bad input).
#[derive(Debug)]
pub(crate) struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    /// 400 with `message`.
    pub(crate) fn bad_request(message: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError {
            status: e.status,
            message: e.message,
        }
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> PageError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            h1 { (self.status.as_u16()) " " (reason) }
            p.error { (self.message) }
            p { a href="/" { "Back to the dashboard" } }
        };
        respond(self.status, layout(reason, None, Nav::None, body))
    }
}

/// What a page handler returns.
pub(crate) type PageResult = Result<Response, PageError>;

/// A page answered 200.
pub(crate) fn ok(page: Markup) -> PageResult {
    Ok(respond(StatusCode::OK, page))
}

impl From<axum::extract::rejection::QueryRejection> for PageError {
    fn from(e: axum::extract::rejection::QueryRejection) -> PageError {
        ApiError::from(e).into()
    }
}

impl From<axum::extract::rejection::PathRejection> for PageError {
    fn from(e: axum::extract::rejection::PathRejection) -> PageError {
        ApiError::from(e).into()
    }
}

impl From<axum::extract::rejection::FormRejection> for PageError {
    fn from(e: axum::extract::rejection::FormRejection) -> PageError {
        PageError {
            status: e.status(),
            message: e.body_text(),
        }
    }
}
