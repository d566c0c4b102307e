//! Pipelines defined as files, as recorded by their runs (read-only for now).

use crate::error::{ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
