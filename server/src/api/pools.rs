//! Work pools and the workers registered in them. Listing reads; pausing and resuming a pool
//! changes state and needs the operator role.

use crate::error::{ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use weft_runtime::store::{WorkPool, WorkerRecord};

/// A work pool: the deployments a set of workers serve, and how many of their runs may run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkPoolInfo {
    /// Its name.
    pub name: String,
    /// The most runs of the pool at once across its workers; null: no limit.
    pub concurrency_limit: Option<u32>,
    /// True while paused: its workers start no new runs.
    pub paused: bool,
    /// What it is for.
    pub description: Option<String>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it was last changed.
    pub updated: DateTime<Utc>,
}

impl From<WorkPool> for WorkPoolInfo {
    fn from(p: WorkPool) -> Self {
        WorkPoolInfo {
            name: p.name,
            concurrency_limit: p.concurrency_limit,
            paused: p.paused,
            description: p.description,
            created: p.created,
            updated: p.updated,
        }
    }
}

/// A registered worker, online or offline by its heartbeat.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkerInfo {
    /// Its id.
    pub id: Uuid,
    /// The pool it serves.
    pub pool: String,
    /// Its name.
    pub name: String,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The version it runs.
    pub version: String,
    /// The flows it can run, as `name@version`.
    pub flows: Vec<String>,
    /// When it registered.
    pub started: DateTime<Utc>,
    /// When it last said it was alive.
    pub heartbeat: DateTime<Utc>,
    /// True when its heartbeat is younger than 10 s (and, on the server's host, its process is
    /// alive).
    pub online: bool,
}

impl From<WorkerRecord> for WorkerInfo {
    fn from(w: WorkerRecord) -> Self {
        WorkerInfo {
            id: w.id.0,
            pool: w.pool,
            name: w.name,
            host: w.host,
            pid: w.pid,
            version: w.version,
            flows: w.flows,
            started: w.started,
            heartbeat: w.heartbeat,
            online: w.online,
        }
    }
}

/// Which workers to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkersQuery {
    /// Only the workers of this pool (404 when there is no such pool).
    pub pool: Option<String>,
}

/// Lists the work pools, by name.
#[utoipa::path(
    get, path = "/api/work-pools", tag = "workers",
    responses(
        (status = 200, description = "The work pools", body = [WorkPoolInfo]),
        (status = 503, description = "The run history does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn list_pools(
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<WorkPoolInfo>>> {
    let pools = state.store.work_pools().await?;
    Ok(Json(pools.into_iter().map(WorkPoolInfo::from).collect()))
}

/// Lists the registered workers, by pool and start, each online or offline.
#[utoipa::path(
    get, path = "/api/workers", tag = "workers",
    params(WorkersQuery),
    responses(
        (status = 200, description = "The workers", body = [WorkerInfo]),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 503, description = "The run history does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn list_workers(
    State(state): State<AppState>,
    query: Result<Query<WorkersQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<WorkerInfo>>> {
    let Query(q) = query?;
    let workers = state.store.workers(q.pool.as_deref()).await?;
    Ok(Json(workers.into_iter().map(WorkerInfo::from).collect()))
}

/// Pauses a work pool: its workers start no new runs until resumed (operator).
#[utoipa::path(
    post, path = "/api/work-pools/{name}/pause", tag = "workers",
    params(("name" = String, Path, description = "The pool's name")),
    responses(
        (status = 200, description = "The pool, paused", body = WorkPoolInfo),
        (status = 403, description = "Not the operator token, or another origin", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
    )
)]
pub(crate) async fn pause(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<WorkPoolInfo>> {
    let Path(name) = path?;
    Ok(Json(
        state.store.set_work_pool_paused(&name, true).await?.into(),
    ))
}

/// Resumes a paused work pool (operator).
#[utoipa::path(
    post, path = "/api/work-pools/{name}/resume", tag = "workers",
    params(("name" = String, Path, description = "The pool's name")),
    responses(
        (status = 200, description = "The pool, resumed", body = WorkPoolInfo),
        (status = 403, description = "Not the operator token, or another origin", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<WorkPoolInfo>> {
    let Path(name) = path?;
    Ok(Json(
        state.store.set_work_pool_paused(&name, false).await?.into(),
    ))
}
