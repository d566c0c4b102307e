//! Pipelines defined as files, as recorded by their runs: listed, and run by the server in its
//! pool (operator).

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;
use weft_runtime::pipeline::{ParamValues, Pipeline};
use weft_runtime::store::StoreError;

/// A recorded version of a pipeline file.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PipelineVersionInfo {
    /// The version (a prefix of the file's hash).
    pub version: String,
    /// The file it was read from, if known.
    pub path: Option<String>,
    /// When it was recorded.
    pub registered: DateTime<Utc>,
}

/// A pipeline and its recorded versions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PipelineInfo {
    /// The pipeline's name.
    pub name: String,
    /// Its versions, oldest first.
    pub versions: Vec<PipelineVersionInfo>,
}

/// Lists the pipelines whose runs are recorded, by name.
#[utoipa::path(
    get, path = "/api/pipelines", tag = "pipelines",
    responses(
        (status = 200, description = "The pipelines", body = [PipelineInfo]),
        (status = 503, description = "The run history does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<PipelineInfo>>> {
    let mut out: Vec<PipelineInfo> = Vec::new();
    for v in state.store.pipelines().await? {
        let version = PipelineVersionInfo {
            version: v.version,
            path: v.path,
            registered: v.registered,
        };
        match out.last_mut() {
            Some(p) if p.name == v.name => p.versions.push(version),
            _ => out.push(PipelineInfo {
                name: v.name,
                versions: vec![version],
            }),
        }
    }
    Ok(Json(out))
}

/// A run asked of a pipeline.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct PipelineRunBody {
    /// The parameters, by name: JSON values of the declared types, or their text (`"3"` for
    /// an int), checked as `weft pipeline run` checks `--param`s; defaults fill the others.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// The version to run (as `GET /api/pipelines` lists them); the newest when absent.
    #[serde(default)]
    pub version: Option<String>,
}

/// A pipeline run the server queued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PipelineRunQueued {
    /// The flow run's id (`GET /api/runs/{id}`): listed at once, Pending until a worker of
    /// the server's pool starts it.
    pub run: Uuid,
    /// The pipeline.
    pub pipeline: String,
    /// The version that runs.
    pub version: String,
    /// `Pending`.
    pub state: String,
}

/// Values refused: nothing was queued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvalidParameters {
    /// Every reason, one a line.
    pub error: String,
    /// The reason for each refused parameter, by name (an empty name: no parameter in
    /// particular).
    pub parameters: BTreeMap<String, String>,
}

/// Why a pipeline run was not queued.
#[derive(Debug)]
pub(crate) enum RunRefused {
    /// Unknown pipeline, pool full or off, history down...
    Api(ApiError),
    /// Values refused, by parameter.
    Invalid(BTreeMap<String, String>),
}

impl From<ApiError> for RunRefused {
    fn from(e: ApiError) -> Self {
        RunRefused::Api(e)
    }
}

impl From<StoreError> for RunRefused {
    fn from(e: StoreError) -> Self {
        RunRefused::Api(e.into())
    }
}

impl IntoResponse for RunRefused {
    fn into_response(self) -> Response {
        match self {
            RunRefused::Api(e) => e.into_response(),
            RunRefused::Invalid(parameters) => {
                let lines: Vec<&str> = parameters.values().map(String::as_str).collect();
                let body = InvalidParameters {
                    error: format!("nothing was queued: {}", lines.join("\n")),
                    parameters,
                };
                (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
            }
        }
    }
}

/// Version `version` (the newest when None) of pipeline `name` as recorded, read again from
/// its text; 404 when there is no such pipeline or version.
pub(crate) async fn load(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> ApiResult<(Pipeline, String)> {
    let versions = state.store.pipelines().await?;
    let known: Vec<_> = versions.iter().filter(|v| v.name == name).collect();
    let chosen = match version.filter(|v| !v.is_empty()) {
        Some(v) => known.iter().find(|k| k.version == v),
        None => known.last(),
    };
    let Some(chosen) = chosen else {
        return Err(ApiError::not_found(match (known.is_empty(), version) {
            (true, _) => {
                format!("no pipeline {name:?} has run here: GET /api/pipelines lists them")
            }
            (false, v) => {
                format!("pipeline {name:?} has no version {v:?}: GET /api/pipelines lists them")
            }
        }));
    };
    let text = state.store.pipeline_source(name, &chosen.version).await?;
    let text = text.ok_or_else(|| {
        ApiError::not_found(format!(
            "the text of {name:?} version {} was not recorded",
            chosen.version
        ))
    })?;
    let origin = chosen.path.clone().unwrap_or_else(|| name.to_owned());
    let p = Pipeline::from_toml(&text, &origin).map_err(|e| ApiError {
        status: StatusCode::CONFLICT,
        message: format!("this version no longer reads: {e}"),
    })?;
    Ok((p, chosen.version.clone()))
}

/// Checks `given` exactly as `weft pipeline run` checks its `--param`s
/// ([`Pipeline::values_for`]): the values, or each refused parameter's reason.
pub(crate) fn check(
    p: &Pipeline,
    given: &[(String, serde_json::Value)],
) -> Result<ParamValues, BTreeMap<String, String>> {
    p.values_for(given, None).map_err(|e| {
        let mut by_name: BTreeMap<String, String> = BTreeMap::new();
        for (name, message) in e.by_parameter() {
            let entry = by_name.entry(name.unwrap_or_default()).or_default();
            if !entry.is_empty() {
                entry.push_str("; ");
            }
            entry.push_str(&message);
        }
        by_name
    })
}

/// Loads, checks and queues a run in the server's pool; `door` says who asked (its first log
/// line). Its id and version.
pub(crate) async fn start(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    given: &[(String, serde_json::Value)],
    door: &str,
) -> Result<(Uuid, String), RunRefused> {
    if let Some(e) = state.pool.refusal() {
        return Err(e.into());
    }
    let (p, version) = load(state, name, version).await?;
    let values = check(&p, given).map_err(RunRefused::Invalid)?;
    let note = format!(
        "Queued from the weft server's {door}: pipeline '{name}' version {version}, commands run \
         in the server's working directory{}",
        working_dir().map(|d| format!(" ({d})")).unwrap_or_default()
    );
    let id = state.pool.start(&state.store, p, values, &note).await?;
    Ok((id, version))
}

/// The server's working directory, where pipeline commands run.
pub(crate) fn working_dir() -> Option<String> {
    std::env::current_dir()
        .ok()
        .map(|d| d.display().to_string())
}

/// Runs a recorded pipeline on the server (operator): checks the values as `weft pipeline run`
/// does, records the run Pending and queues it in the server's pool (`--pipeline-workers` run
/// at once, 4 per worker wait). Its commands run in the server's working directory. Cancel it
/// with `POST /api/runs/{id}/cancel`.
#[utoipa::path(
    post, path = "/api/pipelines/{name}/runs", tag = "pipelines",
    params(("name" = String, Path, description = "The pipeline's name")),
    request_body = PipelineRunBody,
    responses(
        (status = 202, description = "The run, queued (listed at once)", body = PipelineRunQueued),
        (status = 400, description = "A body that is not the expected JSON", body = ErrorBody),
        (status = 403, description = "Not the operator token, or another origin", body = ErrorBody),
        (status = 404, description = "No such pipeline or version", body = ErrorBody),
        (status = 422, description = "Values refused, by parameter; nothing was queued", body = InvalidParameters),
        (status = 503, description = "The pool is full or off, or the history does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn run(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<PipelineRunBody>, JsonRejection>,
) -> Result<(StatusCode, Json<PipelineRunQueued>), RunRefused> {
    let (Path(name), Json(body)) = (path.map_err(ApiError::from)?, body.map_err(ApiError::from)?);
    let given: Vec<_> = body.parameters.into_iter().collect();
    let (id, version) = start(&state, &name, body.version.as_deref(), &given, "API").await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PipelineRunQueued {
            run: id,
            pipeline: name,
            version,
            state: "Pending".to_owned(),
        }),
    ))
}
