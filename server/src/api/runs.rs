//! Flow runs: the list (filtered, paged by cursor), one run, a mapped task's elements, a run's
//! logs and its graph.

use super::params;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use weft_runtime::store::browse::{
    LogCursor, LogQuery, RunCursor, RunQuery, TaskNodeSummary, LEVELS,
};
use weft_runtime::store::{NodeOutputRecord, RunRecord, TaskRunRecord};
use weft_runtime::StateKind;

/// Runs per page by default, and at most.
const RUNS_PAGE: (u32, u32) = (50, 200);
/// Log lines or elements per page by default, and at most.
const LINES_PAGE: (u32, u32) = (200, 1000);

/// A flow run as lists show it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunSummary {
    /// The run's id.
    pub id: Uuid,
    /// The flow's name.
    pub flow: String,
    /// The flow's version.
    pub flow_version: String,
    /// Its latest state: Scheduled, Late, Pending, Running, Retrying, Completed, Cached,
    /// Failed, Crashed, TimedOut, Cancelled, Skipped or NotRun.
    pub state: String,
    /// The state's message.
    pub message: Option<String>,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended (null while running).
    pub ended: Option<DateTime<Utc>>,
    /// Start to end (to now while running), in milliseconds.
    pub duration_ms: u64,
    /// For a subflow's run: the parent run.
    pub parent_run: Option<Uuid>,
    /// For a subflow's run: the parent's node that ran it.
    pub parent_node: Option<u32>,
    /// When a cancellation was asked (null when none was): the run is Cancelling until it
    /// ends.
    pub cancel_requested: Option<DateTime<Utc>>,
    /// The reason given with the cancellation.
    pub cancel_reason: Option<String>,
    /// For a run of a deployment served by a work pool: the deployment.
    pub deployment: Option<String>,
    /// ...its work pool.
    pub work_pool: Option<String>,
    /// ...the worker that claimed it last (null while Scheduled or Late).
    pub worker: Option<String>,
    /// ...when it was due.
    pub scheduled: Option<DateTime<Utc>>,
    /// ...how many times it was scheduled again after a crash.
    pub tries: Option<u32>,
}

impl From<&RunRecord> for RunSummary {
    fn from(r: &RunRecord) -> Self {
        RunSummary {
            id: r.id,
            flow: r.flow.clone(),
            flow_version: r.flow_version.clone(),
            state: r.state.to_string(),
            message: r.message.clone(),
            started: r.started,
            ended: r.ended,
            duration_ms: r.duration().as_millis() as u64,
            parent_run: r.parent.map(|p| p.0),
            parent_node: r.parent.map(|p| p.1),
            cancel_requested: r.cancel_requested.as_ref().map(|c| c.at),
            cancel_reason: r.cancel_requested.as_ref().and_then(|c| c.reason.clone()),
            deployment: r.placement.as_ref().map(|p| p.deployment.clone()),
            work_pool: r.placement.as_ref().map(|p| p.pool.clone()),
            worker: r.placement.as_ref().and_then(|p| p.worker.clone()),
            scheduled: r.placement.as_ref().map(|p| p.scheduled),
            tries: r.placement.as_ref().map(|p| p.tries),
        }
    }
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    /// The runs.
    pub runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Filters and paging of `GET /api/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    /// Only runs of this flow (its name).
    pub flow: Option<String>,
    /// Only runs in this state (`failed`, `completed`, `running`, ...).
    pub state: Option<String>,
    /// Only runs of the flow this deployment serves.
    pub deployment: Option<String>,
    /// Only runs started at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only runs started before this RFC 3339 time.
    pub until: Option<String>,
    /// Runs per page: 1 to 200, default 50.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Lists flow runs, newest first, a page at a time.
#[utoipa::path(
    get, path = "/api/runs", tag = "runs", params(RunsParams),
    responses(
        (status = 200, description = "A page of runs", body = RunList),
        (status = 400, description = "A bad filter or cursor", body = ErrorBody),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<RunsParams>, QueryRejection>,
) -> ApiResult<Json<RunList>> {
    let Query(p) = query?;
    let q = RunQuery {
        flow: p.flow.filter(|f| !f.is_empty()),
        state: params::state(p.state.as_deref())?,
        deployment: p.deployment.filter(|d| !d.is_empty()),
        since: params::time("since", p.since.as_deref())?,
        until: params::time("until", p.until.as_deref())?,
        limit: params::limit(p.limit, RUNS_PAGE.0, RUNS_PAGE.1)?,
        after: params::cursor::<RunCursor>(p.cursor.as_deref())?,
    };
    if let Some(name) = &q.deployment {
        state.store.deployment(name).await?; // 404 naming the known ones
    }
    let page = state.store.runs_page(&q).await?;
    Ok(Json(RunList {
        runs: page.runs.iter().map(RunSummary::from).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// A task node of a run; a mapped node is one row with its elements counted by state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskNode {
    /// The node (`GET /api/runs/{id}/tasks/{node}` lists a mapped node's elements).
    pub node: u32,
    /// The task's name.
    pub task: String,
    /// Its state (a mapped node's summary state).
    pub state: String,
    /// Its message.
    pub message: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When it started.
    pub started: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended: Option<DateTime<Utc>>,
    /// Start to end, in milliseconds (0 if it never started or has not ended).
    pub duration_ms: u64,
    /// True for a mapped task.
    pub mapped: bool,
    /// A mapped task's elements by state (empty otherwise).
    pub elements: BTreeMap<String, u64>,
}

fn millis(started: Option<DateTime<Utc>>, ended: Option<DateTime<Utc>>) -> u64 {
    match (started, ended) {
        (Some(s), Some(e)) => (e - s).num_milliseconds().max(0) as u64,
        _ => 0,
    }
}

/// Counts by state as a JSON object.
pub(crate) fn counts(by_state: &[(StateKind, u64)]) -> BTreeMap<String, u64> {
    by_state.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

impl From<TaskNodeSummary> for TaskNode {
    fn from(t: TaskNodeSummary) -> Self {
        TaskNode {
            duration_ms: millis(t.started, t.ended),
            node: t.node,
            task: t.task,
            state: t.state.to_string(),
            message: t.message,
            attempts: t.attempts,
            started: t.started,
            ended: t.ended,
            mapped: !t.elements.is_empty(),
            elements: counts(&t.elements),
        }
    }
}

/// What a pipeline node ran and printed (its last attempt).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeOutput {
    /// The node.
    pub node: u32,
    /// The command after parameters were filled in.
    pub command: String,
    /// Its exit code (null when a signal ended it).
    pub exit_code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// Standard output as kept (bytes that are not UTF-8 shown as U+FFFD).
    pub stdout: String,
    /// Standard error as kept.
    pub stderr: String,
    /// Bytes written to stdout, including those beyond the kept part.
    pub stdout_total: u64,
    /// Bytes written to stderr, likewise.
    pub stderr_total: u64,
    /// When the process started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub ended: DateTime<Utc>,
}

impl From<&NodeOutputRecord> for NodeOutput {
    fn from(o: &NodeOutputRecord) -> Self {
        NodeOutput {
            node: o.node,
            command: o.command.clone(),
            exit_code: o.exit_code,
            signal: o.signal,
            stdout: o.stdout_lossy().into_owned(),
            stderr: o.stderr_lossy().into_owned(),
            stdout_total: o.stdout_total,
            stderr_total: o.stderr_total,
            started: o.started,
            ended: o.ended,
        }
    }
}

/// One flow run: its record, parameters, subflow runs, task nodes and pipeline outputs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    pub run: RunSummary,
    /// Its parameters as JSON.
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    /// The runs of subflows it started.
    pub children: Vec<RunSummary>,
    /// Its task nodes, mapped ones collapsed.
    pub tasks: Vec<TaskNode>,
    /// For a pipeline run: each node's command and output.
    pub node_outputs: Vec<NodeOutput>,
}

/// Shows one flow run.
#[utoipa::path(
    get, path = "/api/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "The run's id or a unique prefix (4+ characters)")),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = 400, description = "A malformed or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<RunDetail>> {
    let Path(raw) = path?;
    let id = params::run_id(&state.store, &raw).await?;
    let o = state.store.run_overview(id).await?;
    Ok(Json(RunDetail {
        run: RunSummary::from(&o.run),
        parameters: o.run.parameters.clone(),
        children: o.children.iter().map(RunSummary::from).collect(),
        node_outputs: o.node_outputs.iter().map(NodeOutput::from).collect(),
        tasks: o.tasks.into_iter().map(TaskNode::from).collect(),
    }))
}

/// One element of a mapped task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Element {
    /// Its index in the mapped input.
    pub map_index: u32,
    /// Its state.
    pub state: String,
    /// Its message (the error of a failed element).
    pub message: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When it started.
    pub started: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended: Option<DateTime<Utc>>,
    /// Start to end, in milliseconds.
    pub duration_ms: u64,
}

impl From<&TaskRunRecord> for Element {
    fn from(t: &TaskRunRecord) -> Self {
        Element {
            map_index: t.map_index.unwrap_or(0),
            state: t.state.to_string(),
            message: t.message.clone(),
            attempts: t.attempts,
            started: t.started,
            ended: t.ended,
            duration_ms: millis(t.started, t.ended),
        }
    }
}

/// A page of a mapped task's elements, by index.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ElementList {
    /// The elements.
    pub elements: Vec<Element>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Paging of a mapped task's elements.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ElementsParams {
    /// Only elements in this state.
    pub state: Option<String>,
    /// Elements per page: 1 to 1000, default 200.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Lists the elements of a mapped task of a run, by index, a page at a time.
#[utoipa::path(
    get, path = "/api/runs/{id}/tasks/{node}", tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id or a unique prefix"),
        ("node" = u32, Path, description = "The task's node, as the run's `tasks` list it"),
        ElementsParams,
    ),
    responses(
        (status = 200, description = "A page of elements", body = ElementList),
        (status = 400, description = "A bad id, node, filter or cursor", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub(crate) async fn elements(
    State(state): State<AppState>,
    path: Result<Path<(String, u32)>, PathRejection>,
    query: Result<Query<ElementsParams>, QueryRejection>,
) -> ApiResult<Json<ElementList>> {
    let (Path((raw, node)), Query(p)) = (path?, query?);
    let id = params::run_id(&state.store, &raw).await?;
    let after = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(c.parse::<u32>().map_err(|_| {
            ApiError::bad_request(format!("invalid cursor {c:?}: pass back a next_cursor"))
        })?),
        None => None,
    };
    let limit = params::limit(p.limit, LINES_PAGE.0, LINES_PAGE.1)?;
    let kind = params::state(p.state.as_deref())?;
    state.store.run_record(id).await?; // 404 for an unknown full id
    let page = state
        .store
        .task_elements(id, node, kind, after, limit)
        .await?;
    Ok(Json(ElementList {
        elements: page.elements.iter().map(Element::from).collect(),
        next_cursor: page.next.map(|i| i.to_string()),
    }))
}

/// A run's log line.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// TRACE, DEBUG, INFO, WARN or ERROR.
    pub level: String,
    /// The line.
    pub message: String,
}

/// A page of a run's log lines, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogList {
    /// The lines.
    pub logs: Vec<LogEntry>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Filters and paging of a run's logs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsParams {
    /// Only lines at this level or above: debug, info, warn or error.
    pub level: Option<String>,
    /// Only weft's lines about this task (by its name).
    pub task: Option<String>,
    /// Lines per page: 1 to 1000, default 200.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Lists a run's log lines, oldest first, a page at a time.
#[utoipa::path(
    get, path = "/api/runs/{id}/logs", tag = "runs",
    params(("id" = String, Path, description = "The run's id or a unique prefix"), LogsParams),
    responses(
        (status = 200, description = "A page of log lines", body = LogList),
        (status = 400, description = "A bad id, level or cursor", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub(crate) async fn logs(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LogsParams>, QueryRejection>,
) -> ApiResult<Json<LogList>> {
    let (Path(raw), Query(p)) = (path?, query?);
    let min_level = match p.level.as_deref().filter(|l| !l.is_empty()) {
        Some(l) if LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l)) => Some(l.to_uppercase()),
        Some(l) => {
            return Err(ApiError::bad_request(format!(
                "invalid level {l:?}: give one of trace, debug, info, warn, error"
            )))
        }
        None => None,
    };
    let q = LogQuery {
        min_level,
        task: p.task.filter(|t| !t.is_empty()),
        limit: params::limit(p.limit, LINES_PAGE.0, LINES_PAGE.1)?,
        after: params::cursor::<LogCursor>(p.cursor.as_deref())?,
    };
    let id = params::run_id(&state.store, &raw).await?;
    state.store.run_record(id).await?; // 404 for an unknown full id
    let page = state.store.logs_page(id, &q).await?;
    Ok(Json(LogList {
        logs: page
            .lines
            .into_iter()
            .map(|l| LogEntry {
                at: l.at,
                level: l.level,
                message: l.message,
            })
            .collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// Draws a run's graph as SVG, each task colored by its state.
#[utoipa::path(
    get, path = "/api/runs/{id}/graph.svg", tag = "runs",
    params(("id" = String, Path, description = "The run's id or a unique prefix")),
    responses(
        (status = 200, description = "The graph", content_type = "image/svg+xml", body = String),
        (status = 400, description = "A malformed or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub(crate) async fn graph_svg(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<impl IntoResponse> {
    let Path(raw) = path?;
    let id = params::run_id(&state.store, &raw).await?;
    let svg = state.store.run_overview(id).await?.to_svg();
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            // Opened on its own, the picture may not run scripts.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        svg,
    ))
}
