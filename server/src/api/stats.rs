//! Counts over a window, for the dashboard: runs by final state, runs per bucket by state.

use super::runs::counts;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use weft_runtime::store::browse::Bucket;
use weft_runtime::store::Store;

/// The window of `GET /api/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// `hour` (buckets of a minute), `day` (of an hour, the default) or `week` (of a day).
    pub window: Option<String>,
}

/// Flow runs that ended in one bucket, by final state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BucketCounts {
    /// The bucket's start.
    pub start: DateTime<Utc>,
    /// Flow runs that ended in it, by final state (empty when none).
    pub counts: BTreeMap<String, u64>,
}

/// Counts over the window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsReport {
    /// `hour`, `day` or `week`.
    pub window: String,
    /// The window's start (runs that ended since then count, to the minute).
    pub since: DateTime<Utc>,
    /// Flow runs that ended in the window, by final state.
    pub flow_runs: BTreeMap<String, u64>,
    /// Task runs that ended in the window, by final state (a mapped task's summary counts as
    /// one too).
    pub task_runs: BTreeMap<String, u64>,
    /// Every bucket of the window, oldest first, empty ones included.
    pub buckets: Vec<BucketCounts>,
}

/// The window's length and bucket, by name.
fn window(name: &str) -> ApiResult<(Duration, Bucket, Duration)> {
    match name {
        "hour" => Ok((Duration::hours(1), Bucket::Minute, Duration::minutes(1))),
        "day" => Ok((Duration::days(1), Bucket::Hour, Duration::hours(1))),
        "week" => Ok((Duration::weeks(1), Bucket::Day, Duration::days(1))),
        other => Err(ApiError::bad_request(format!(
            "invalid window {other:?}: give hour, day or week"
        ))),
    }
}

/// Counts flow runs and task runs that ended in the last hour, day or week.
#[utoipa::path(
    get, path = "/api/stats", tag = "stats", params(StatsParams),
    responses(
        (status = 200, description = "The counts", body = StatsReport),
        (status = 400, description = "An unknown window", body = ErrorBody),
    )
)]
pub(crate) async fn stats(
    State(state): State<AppState>,
    query: Result<Query<StatsParams>, QueryRejection>,
) -> ApiResult<Json<StatsReport>> {
    let Query(p) = query?;
    let name = p.window.unwrap_or_else(|| "day".to_owned());
    Ok(Json(report(&state.store, &name).await?))
}

/// The counts of window `name` (`hour`, `day` or `week`), every bucket filled in.
pub(crate) async fn report(store: &Store, name: &str) -> ApiResult<StatsReport> {
    let (length, bucket, step) = window(name)?;
    let since = Utc::now() - length;
    let stats = store.stats(since, bucket).await?;
    let mut counted: BTreeMap<DateTime<Utc>, BTreeMap<String, u64>> = stats
        .buckets
        .iter()
        .map(|(at, by_state)| (*at, counts(by_state)))
        .collect();
    let mut buckets = Vec::new();
    let mut at = since.duration_trunc(step).unwrap_or(since);
    while at <= Utc::now() {
        let counts = counted.remove(&at).unwrap_or_default();
        buckets.push(BucketCounts { start: at, counts });
        at += step;
    }
    Ok(StatsReport {
        window: name.to_owned(),
        since,
        flow_runs: counts(&stats.flow_runs),
        task_runs: counts(&stats.task_runs),
        buckets,
    })
}
