//! Flows seen in the history: versions and runs counted by state.

use super::runs::counts;
use crate::error::{ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A recorded version of a flow.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlowVersionInfo {
    /// The version (the graph's hash unless the flow names one).
    pub version: String,
    /// When a run of it was first recorded.
    pub first_seen: DateTime<Utc>,
}

/// A flow with its versions and its runs that ended counted by final state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlowInfo {
    /// The flow's name.
    pub name: String,
    /// Runs that ended (runs still going are not counted).
    pub runs: u64,
    /// Runs that ended, by final state.
    pub by_state: BTreeMap<String, u64>,
    /// The newest run's start.
    pub last_run: Option<DateTime<Utc>>,
    /// Its versions, oldest first.
    pub versions: Vec<FlowVersionInfo>,
}

/// Lists every flow seen, by name.
#[utoipa::path(
    get, path = "/api/flows", tag = "flows",
    responses(
        (status = 200, description = "The flows", body = [FlowInfo]),
        (status = 503, description = "The run history does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<FlowInfo>>> {
    let summaries = state.store.flows().await?;
    let mut versions = state.store.flow_versions().await?;
    let flows = summaries
        .into_iter()
        .map(|f| {
            let mine = versions
                .iter()
                .filter(|v| v.flow == f.name)
                .map(|v| FlowVersionInfo {
                    version: v.version.clone(),
                    first_seen: v.first_seen,
                })
                .collect();
            versions.retain(|v| v.flow != f.name);
            FlowInfo {
                runs: f.runs,
                by_state: counts(&f.by_state),
                last_run: f.last_run,
                versions: mine,
                name: f.name,
            }
        })
        .collect();
    Ok(Json(flows))
}
