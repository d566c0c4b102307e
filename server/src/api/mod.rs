//! The JSON API under `/api`: its routes and its OpenAPI description.

pub mod cancel;
pub mod deployments;
pub mod flows;
pub(crate) mod params;
pub mod pipelines;
pub mod pools;
pub mod runs;
pub mod stats;

use crate::auth;
use crate::error::ApiError;
use crate::AppState;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;

/// The OpenAPI document of the API, served at `/api/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "weft server API",
        description = "Read weft's run history (flow runs, task runs, logs, graphs, flows, \
            deployments, pipelines, work pools and workers) and operate deployments and work \
            pools. Lists are paged by keyset: pass a page's `next_cursor` as `cursor` for the \
            next one. Every error is a JSON object \
            `{\"error\": \"...\"}`. A server started with a token needs `Authorization: Bearer \
            <token>` on every /api route but this document: the read-only token may read, the \
            operator token may also change state (POST routes: pause, resume and run \
            deployments, run pipelines, cancel runs, pause and resume work pools)."
    ),
    paths(
        runs::list, runs::show, runs::elements, runs::logs, runs::graph_svg, cancel::cancel,
        crate::live::run_events,
        flows::list, deployments::list, deployments::pause, deployments::resume,
        deployments::request_run, pipelines::list, pipelines::run, stats::stats,
        pools::list_pools, pools::list_workers, pools::pause, pools::resume,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "runs", description = "Flow runs, their task runs, logs and graphs"),
        (name = "flows", description = "Flows seen in the history"),
        (name = "deployments", description = "Flows served on schedules or on request"),
        (name = "pipelines", description = "Pipelines defined as files"),
        (name = "workers", description = "Work pools and the workers registered in them"),
        (name = "stats", description = "Counts for the dashboard"),
    )
)]
pub struct ApiDoc;

/// Adds the Bearer token scheme to the document.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The `/api` routes (but the document), behind authentication; POST routes need an operator.
pub(crate) fn routes(state: AppState) -> Router<AppState> {
    let operator = Router::new()
        .route("/api/deployments/{name}/pause", post(deployments::pause))
        .route("/api/deployments/{name}/resume", post(deployments::resume))
        .route(
            "/api/deployments/{name}/runs",
            post(deployments::request_run),
        )
        .route("/api/runs/{id}/cancel", post(cancel::cancel))
        .route("/api/pipelines/{name}/runs", post(pipelines::run))
        .route("/api/work-pools/{name}/pause", post(pools::pause))
        .route("/api/work-pools/{name}/resume", post(pools::resume))
        .route_layer(from_fn(auth::require_operator));
    Router::new()
        .route("/api/runs", get(runs::list))
        .route("/api/runs/{id}", get(runs::show))
        .route("/api/runs/{id}/tasks/{node}", get(runs::elements))
        .route("/api/runs/{id}/logs", get(runs::logs))
        .route("/api/runs/{id}/graph.svg", get(runs::graph_svg))
        .route("/api/runs/{id}/events", get(crate::live::run_events))
        .route("/api/flows", get(flows::list))
        .route("/api/deployments", get(deployments::list))
        .route("/api/pipelines", get(pipelines::list))
        .route("/api/stats", get(stats::stats))
        .route("/api/work-pools", get(pools::list_pools))
        .route("/api/workers", get(pools::list_workers))
        .merge(operator)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state, auth::authenticate))
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        message: "this route does not take that method (see /docs)".to_owned(),
    }
}

/// What an unknown path answers.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route: /docs lists the API's routes")
}
