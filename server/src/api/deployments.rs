//! Deployments: the flows processes serve, on schedules or on request. Listing reads; pausing,
//! resuming and asking for a run change state and need the operator role.

use crate::error::{ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use weft_runtime::store::DeploymentRecord;

/// A deployment as its serving process recorded it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeploymentInfo {
    /// Its name.
    pub name: String,
    /// The flow it runs.
    pub flow: String,
    /// Its schedule (`every 30s`, `cron 0 3 * * * in Europe/Berlin`), null for ad-hoc only.
    pub schedule: Option<String>,
    /// The default parameters.
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    /// True while paused: its schedule starts no runs.
    pub paused: bool,
    /// The last run it started.
    pub last_run: Option<Uuid>,
    /// When that run started.
    pub last_run_at: Option<DateTime<Utc>>,
    /// When the next scheduled run is due.
    pub next_run_at: Option<DateTime<Utc>>,
    /// When its process last updated it.
    pub updated: DateTime<Utc>,
}

impl From<DeploymentRecord> for DeploymentInfo {
    fn from(d: DeploymentRecord) -> Self {
        DeploymentInfo {
            name: d.name,
            flow: d.flow,
            schedule: d.schedule,
            parameters: d.parameters,
            paused: d.paused,
            last_run: d.last_run,
            last_run_at: d.last_run_at,
            next_run_at: d.next_run_at,
            updated: d.updated,
        }
    }
}

/// Lists the deployments, by name.
#[utoipa::path(
    get, path = "/api/deployments", tag = "deployments",
    responses(
        (status = 200, description = "The deployments", body = [DeploymentInfo]),
        (status = 503, description = "The run history does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<DeploymentInfo>>> {
    let all = state.store.deployments().await?;
    Ok(Json(all.into_iter().map(DeploymentInfo::from).collect()))
}

async fn set_paused(state: &AppState, name: &str, paused: bool) -> ApiResult<DeploymentInfo> {
    state.store.set_paused(name, paused).await?;
    Ok(state.store.deployment(name).await?.into())
}

/// Pauses a deployment: its schedule starts no runs until resumed (operator).
#[utoipa::path(
    post, path = "/api/deployments/{name}/pause", tag = "deployments",
    params(("name" = String, Path, description = "The deployment's name")),
    responses(
        (status = 200, description = "The deployment, paused", body = DeploymentInfo),
        (status = 403, description = "Not the operator token, or another origin", body = ErrorBody),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub(crate) async fn pause(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<DeploymentInfo>> {
    let Path(name) = path?;
    Ok(Json(set_paused(&state, &name, true).await?))
}

/// Resumes a paused deployment's schedule (operator).
#[utoipa::path(
    post, path = "/api/deployments/{name}/resume", tag = "deployments",
    params(("name" = String, Path, description = "The deployment's name")),
    responses(
        (status = 200, description = "The deployment, resumed", body = DeploymentInfo),
        (status = 403, description = "Not the operator token, or another origin", body = ErrorBody),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<DeploymentInfo>> {
    let Path(name) = path?;
    Ok(Json(set_paused(&state, &name, false).await?))
}

/// A run asked of a deployment.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RunRequestBody {
    /// Parameters overriding the deployment's defaults, by name. The serving process checks
    /// them against the flow's parameter types before the run starts.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// The request queued for the deployment's serving process.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunRequested {
    /// The request's id.
    pub request: Uuid,
    /// Its state: `Requested` until a serving process claims it.
    pub state: String,
}

/// Asks the process serving a deployment for a run now (operator). The run starts when that
/// process picks the request up (within a second or two while it runs).
#[utoipa::path(
    post, path = "/api/deployments/{name}/runs", tag = "deployments",
    params(("name" = String, Path, description = "The deployment's name")),
    request_body = RunRequestBody,
    responses(
        (status = 202, description = "The request, queued", body = RunRequested),
        (status = 400, description = "A body that is not the expected JSON", body = ErrorBody),
        (status = 403, description = "Not the operator token, or another origin", body = ErrorBody),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 413, description = "A body over the limit (64 KiB)", body = ErrorBody),
    )
)]
pub(crate) async fn request_run(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<RunRequestBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<RunRequested>)> {
    let (Path(name), Json(body)) = (path?, body?);
    let id = state.store.request_run(&name, body.parameters).await?;
    let request = state.store.request(id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunRequested {
            request: id,
            state: request.state.to_string(),
        }),
    ))
}
