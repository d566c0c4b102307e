//! Reading the history back: runs, one run in full, flows with their run counts.

use super::record;
use super::{parse_ts, Store, StoreError};
use crate::graph::FlowGraph;
use crate::state::StateKind;
use chrono::{DateTime, Utc};

use super::db;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// Which runs [`Store::runs`] lists: newest first, optionally of one flow or in one state.
///
/// ```
/// use weft::prelude::*;
/// use weft::store::RunFilter;
///
/// let filter = RunFilter::new().flow("etl").state(StateKind::Failed).limit(5);
/// assert_eq!(filter.limit, 5);
/// ```
#[derive(Debug, Clone)]
pub struct RunFilter {
    /// Only runs of this flow.
    pub flow: Option<String>,
    /// Only runs in this state.
    pub state: Option<StateKind>,
    /// At most this many runs (default 20).
    pub limit: u32,
}

impl Default for RunFilter {
    fn default() -> Self {
        RunFilter {
            flow: None,
            state: None,
            limit: 20,
        }
    }
}

impl RunFilter {
    /// The 20 newest runs.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only runs of `flow`.
    pub fn flow(mut self, flow: impl Into<String>) -> Self {
        self.flow = Some(flow.into());
        self
    }
    /// Only runs in `state`.
    pub fn state(mut self, state: StateKind) -> Self {
        self.state = Some(state);
        self
    }
    /// At most `n` runs.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = n;
        self
    }
}

/// A recorded flow run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: Uuid,
    /// The flow's name.
    pub flow: String,
    /// The flow's version (its graph's hash unless `#[flow(version = "..")]` names one).
    pub flow_version: String,
    /// The parameters, as JSON (types without serde appear as their `Display` text or null).
    pub parameters: serde_json::Value,
    /// Its latest state.
    pub state: StateKind,
    /// The state's message.
    pub message: Option<String>,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended (None while running).
    pub ended: Option<DateTime<Utc>>,
    /// For a subflow's run: the parent run and the parent's node that ran it.
    pub parent: Option<(Uuid, u32)>,
    /// The cancellation asked for it ([`Store::request_cancel`]), if any.
    pub cancel_requested: Option<CancelRequest>,
    /// For a run of a deployment served by a work pool: its deployment, pool, worker, due
    /// time and re-runs.
    pub placement: Option<RunPlacement>,
}

/// Where a run of a pooled deployment was queued and who ran it (the run queue module).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunPlacement {
    /// The deployment.
    pub deployment: String,
    /// The work pool.
    pub pool: String,
    /// The worker that claimed it last (None while Scheduled or Late).
    pub worker: Option<String>,
    /// When it was due.
    pub scheduled: DateTime<Utc>,
    /// How many times it was scheduled again after a crash.
    pub tries: u32,
}

/// A cancellation asked for a run ([`Store::request_cancel`]): the process running the run
/// cancels it within about a second.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CancelRequest {
    /// When it was asked.
    pub at: DateTime<Utc>,
    /// The reason given.
    pub reason: Option<String>,
}

impl RunRecord {
    /// True while a cancellation was asked and the run has not ended: Prefect's Cancelling.
    pub fn is_cancelling(&self) -> bool {
        self.cancel_requested.is_some() && !self.state.is_final()
    }

    /// The state as shown to people: `Cancelling` while [`RunRecord::is_cancelling`], else the
    /// state's name.
    pub fn shown_state(&self) -> &'static str {
        if self.is_cancelling() {
            "Cancelling"
        } else {
            self.state.as_str()
        }
    }

    /// Start to end, or to now while running.
    pub fn duration(&self) -> Duration {
        (self.ended.unwrap_or_else(Utc::now) - self.started)
            .to_std()
            .unwrap_or_default()
    }
}

/// A recorded task run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskRunRecord {
    /// Its node in the flow graph.
    pub node: u32,
    /// Its element index, for an element of a mapped task.
    pub map_index: Option<u32>,
    /// The task's name.
    pub task: String,
    /// Its latest state.
    pub state: StateKind,
    /// The state's message (the error of a failed run).
    pub message: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When its first attempt started.
    pub started: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended: Option<DateTime<Utc>>,
    /// Its cache key (tasks with `cache_for`).
    pub cache_key: Option<String>,
    /// Where its result was stored (cache, target or checkpoint key).
    pub result: Option<String>,
}

impl TaskRunRecord {
    /// Start to end (zero when it never started).
    pub fn duration(&self) -> Duration {
        match (self.started, self.ended) {
            (Some(s), Some(e)) => (e - s).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StateChangeRecord {
    /// The task run's node (None: the flow run itself).
    pub node: Option<u32>,
    /// The element index of a mapped task run.
    pub map_index: Option<u32>,
    /// The task's or flow's name.
    pub name: String,
    /// The state entered.
    pub state: StateKind,
    /// Its message.
    pub message: Option<String>,
    /// The attempt number.
    pub attempt: u32,
    /// When.
    pub at: DateTime<Utc>,
}

/// One recorded log line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// `INFO`, `WARN`, ...
    pub level: String,
    /// The line.
    pub message: String,
}

/// What a node of a pipeline run did (its last attempt): the command as rendered, how it
/// exited, and its output as bytes (at most the runner's cap per stream).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeOutputRecord {
    /// The node (as in [`TaskRunRecord::node`]).
    pub node: u32,
    /// The command after parameters were filled in.
    pub command: String,
    /// Its exit code (None when killed by a signal).
    pub exit_code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Standard output as bytes.
    pub stdout: Vec<u8>,
    /// Standard error as bytes.
    pub stderr: Vec<u8>,
    /// Bytes written to stdout, including those beyond the kept part.
    pub stdout_total: u64,
    /// Bytes written to stderr, including those beyond the kept part.
    pub stderr_total: u64,
    /// The result store key of the whole stdout, when it outgrew what the history keeps.
    pub stdout_key: Option<String>,
    /// The result store key of the whole stderr, likewise.
    pub stderr_key: Option<String>,
    /// When the process started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub ended: DateTime<Utc>,
}

impl NodeOutputRecord {
    /// Standard output as text; bytes that are not UTF-8 become `�`.
    pub fn stdout_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }
    /// Standard error as text; bytes that are not UTF-8 become `�`.
    pub fn stderr_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// A recorded run in full: the run, its flow's graph, task runs, state changes and logs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunDetail {
    /// The run.
    pub run: RunRecord,
    /// The flow's graph as it was for this run.
    pub graph: Option<FlowGraph>,
    /// Every task run, by node, a mapped node's summary before its elements.
    pub task_runs: Vec<TaskRunRecord>,
    /// Every state change, in order.
    pub state_changes: Vec<StateChangeRecord>,
    /// The run's log lines, in order.
    pub logs: Vec<LogRecord>,
    /// For a pipeline run: each node's command and output, by node.
    pub node_outputs: Vec<NodeOutputRecord>,
    /// The runs of subflows this run started, by node then start.
    pub children: Vec<RunRecord>,
}

impl RunDetail {
    /// The state of each task node (a mapped node: its summary's).
    pub fn node_states(&self) -> HashMap<u32, StateKind> {
        let mut states = HashMap::new();
        for r in &self.task_runs {
            if r.map_index.is_none() || !states.contains_key(&r.node) {
                states.insert(r.node, r.state);
            }
        }
        states
    }
    fn graph_or_empty(&self) -> FlowGraph {
        self.graph.clone().unwrap_or_else(|| FlowGraph {
            name: self.run.flow.clone().into(),
            nodes: Vec::new().into(),
            edges: Vec::new().into(),
        })
    }
    /// DOT of the run's graph colored by its task runs' states.
    pub fn to_dot(&self) -> String {
        self.graph_or_empty()
            .to_dot_with_states(&self.node_states())
    }
    /// Mermaid of the run's graph colored by state.
    pub fn to_mermaid(&self) -> String {
        self.graph_or_empty()
            .to_mermaid_with_states(&self.node_states())
    }
    /// SVG of the run's graph colored by state (feature `viz`).
    #[cfg(feature = "viz")]
    pub fn to_svg(&self) -> String {
        self.graph_or_empty()
            .to_svg_with_states(&self.node_states())
    }
}

/// A flow seen in the history, with its runs that ended counted by final state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FlowSummary {
    /// The flow's name.
    pub name: String,
    /// Versions recorded.
    pub versions: u64,
    /// Runs that ended (a resumed run that ended again counts again; runs still going are not
    /// counted).
    pub runs: u64,
    /// Runs that ended, by final state.
    pub by_state: Vec<(StateKind, u64)>,
    /// The newest run's start.
    pub last_run: Option<DateTime<Utc>>,
}

impl FlowSummary {
    /// Runs that ended in `kind`.
    pub fn count(&self, kind: StateKind) -> u64 {
        self.by_state
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

/// Characters of a run id shown at least by [`short_ids`].
pub const SHORT_ID: usize = 8;

/// Short forms of run ids listed together: their first [`SHORT_ID`] characters, more where two
/// ids would otherwise look the same (as git shortens commit ids). Run ids begin with their
/// start time (UUIDv7), so runs started within a minute of each other show longer prefixes;
/// each is a prefix [`Store::resolve_run`] accepts.
///
/// ```
/// use weft_runtime::store::short_ids;
///
/// let ids = [
///     "01a22cce-d637-730a-bb03-6728e2e65638".parse().unwrap(),
///     "01a22cce-d640-7a1c-8c2e-1f5e0d9b7a41".parse().unwrap(),
///     "01b00000-0000-7000-8000-000000000000".parse().unwrap(),
/// ];
/// assert_eq!(short_ids(&ids), ["01a22cce-d63", "01a22cce-d64", "01b00000"]);
/// ```
pub fn short_ids(ids: &[Uuid]) -> Vec<String> {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    ids.iter()
        .map(|id| {
            let mut len = SHORT_ID.min(id.len());
            while len < id.len()
                && ids
                    .iter()
                    .any(|other| other != id && other.get(..len) == id.get(..len))
            {
                len += 1;
            }
            id.get(..len).unwrap_or(id).to_owned()
        })
        .collect()
}

pub(super) fn state_of(row: &db::Row, col: &str) -> Result<StateKind, StoreError> {
    let s: String = row.try_get(col)?;
    s.parse().map_err(StoreError::Query)
}

pub(super) fn ts_of(row: &db::Row, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let s: Option<String> = row.try_get(col)?;
    s.as_deref().map(parse_ts).transpose()
}

pub(super) fn u32_of(row: &db::Row, col: &str) -> Result<Option<u32>, StoreError> {
    let v: Option<i64> = row.try_get(col)?;
    Ok(v.and_then(|v| u32::try_from(v).ok()))
}

pub(super) fn run_of(row: &db::Row) -> Result<RunRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let params: String = row.try_get("parameters")?;
    Ok(RunRecord {
        id: id
            .parse()
            .map_err(|e| StoreError::Query(format!("bad run id {id:?}: {e}")))?,
        flow: row.try_get("flow")?,
        flow_version: row.try_get("flow_version")?,
        parameters: serde_json::from_str(&params).unwrap_or(serde_json::Value::String(params)),
        state: state_of(row, "state")?,
        message: row.try_get("message")?,
        started: ts_of(row, "started")?
            .ok_or_else(|| StoreError::Query("a run without a start".to_owned()))?,
        ended: ts_of(row, "ended")?,
        parent: match (
            row.try_get::<Option<String>, _>("parent_run")?,
            u32_of(row, "parent_node")?,
        ) {
            (Some(p), Some(node)) => p.parse().ok().map(|p| (p, node)),
            _ => None,
        },
        cancel_requested: ts_of(row, "cancel_requested")?.map(|at| CancelRequest {
            at,
            reason: row.try_get("cancel_reason").ok().flatten(),
        }),
        placement: placement_of(row)?,
    })
}

fn placement_of(row: &db::Row) -> Result<Option<RunPlacement>, StoreError> {
    let (Some(deployment), Some(pool), Some(scheduled)) = (
        row.try_get::<Option<String>, _>("deployment")?,
        row.try_get::<Option<String>, _>("pool")?,
        ts_of(row, "scheduled")?,
    ) else {
        return Ok(None);
    };
    Ok(Some(RunPlacement {
        deployment,
        pool,
        worker: row.try_get("worker")?,
        scheduled,
        tries: u32_of(row, "tries")?.unwrap_or(0),
    }))
}

/// Where a change read back from a task run's row goes among changes at the same instant:
/// Pending, then the first Running, then stored changes, then the final state.
const SCHEDULED: u8 = 0;
const STARTED: u8 = 1;
const STORED: u8 = 2;
const ENDED: u8 = 3;

/// The state changes a task run's row stands for (see migration 5): Pending at `scheduled`,
/// Running (attempt 1) at `started`, its final state at `ended`.
fn lifecycle_changes(
    t: &TaskRunRecord,
    scheduled: Option<DateTime<Utc>>,
    out: &mut Vec<(DateTime<Utc>, u8, i64, StateChangeRecord)>,
) {
    let change = |state, message: Option<String>, attempt, at| StateChangeRecord {
        node: Some(t.node),
        map_index: t.map_index,
        name: t.task.clone(),
        state,
        message,
        attempt,
        at,
    };
    if let Some(at) = scheduled {
        out.push((at, SCHEDULED, 0, change(StateKind::Pending, None, 0, at)));
    }
    if let Some(at) = t.started {
        out.push((at, STARTED, 0, change(StateKind::Running, None, 1, at)));
    }
    if let (Some(at), true) = (t.ended, t.state.is_final()) {
        out.push((
            at,
            ENDED,
            0,
            change(t.state, t.message.clone(), t.attempts, at),
        ));
    }
}

/// The runs whose id starts with a prefix: `$1` the prefix, `$2` the prefix and `~` (after
/// every character of an id), a range of the key (SQLite does not use an index for `LIKE` on
/// a column of the default collation); `$3` the prefix and `%`, to be sure.
pub(super) const RESOLVE_SQL: &str =
    "SELECT id FROM flow_runs WHERE id >= $1 AND id < $2 AND id LIKE $3 ORDER BY id LIMIT 5";

/// Flow runs that ended, by flow and final state (kept by the writer, migration 9).
pub(super) const FLOW_COUNTS_SQL: &str = "SELECT flow, state, n FROM flow_counts";

/// Each flow's versions and its newest run's start (one seek of the index on
/// `(flow, started, state)` per flow).
pub(super) const FLOWS_SQL: &str = "SELECT name, COUNT(*) AS versions, \
     (SELECT MAX(r.started) FROM flow_runs r WHERE r.flow = flows.name) AS last_run \
     FROM flows GROUP BY name ORDER BY name";

pub(super) const RUN_COLS: &str = "id, flow, flow_version, parameters, state, message, started, \
     ended, parent_run, parent_node, cancel_requested, cancel_reason, deployment, pool, worker, \
     scheduled, tries";

impl Store {
    /// Recorded runs, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let filter = filter.clone();
        self.with_pool(move |pool, _| async move {
            let mut sql = format!("SELECT {RUN_COLS} FROM flow_runs");
            let mut conds = Vec::new();
            if filter.flow.is_some() {
                conds.push(format!("flow = ${}", conds.len() + 1));
            }
            if filter.state.is_some() {
                conds.push(format!("state = ${}", conds.len() + 1));
            }
            if !conds.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conds.join(" AND "));
            }
            sql.push_str(&format!(" ORDER BY started DESC LIMIT {}", filter.limit));
            let mut q = db::query(&sql);
            if let Some(f) = &filter.flow {
                q = q.bind(f.clone());
            }
            if let Some(s) = filter.state {
                q = q.bind(s.to_string());
            }
            q.fetch_all(&pool).await?.iter().map(run_of).collect()
        })
        .await
    }

    /// The full id of the run whose id is or starts with `prefix` (at least 4 characters).
    pub async fn resolve_run(&self, prefix: &str) -> Result<Uuid, StoreError> {
        let prefix = prefix.trim().to_lowercase();
        if let Ok(id) = prefix.parse::<Uuid>() {
            return Ok(id);
        }
        if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(StoreError::RunNotFound(prefix));
        }
        self.with_pool(move |pool, _| async move {
            let rows = db::query(RESOLVE_SQL)
                .bind(&prefix)
                .bind(format!("{prefix}~"))
                .bind(format!("{prefix}%"))
                .fetch_all(&pool)
                .await?;
            let ids: Vec<Uuid> = rows
                .iter()
                .filter_map(|r| r.try_get::<String, _>("id").ok()?.parse().ok())
                .collect();
            match ids.as_slice() {
                [] => Err(StoreError::RunNotFound(prefix)),
                [one] => Ok(*one),
                _ => Err(StoreError::AmbiguousRun {
                    prefix,
                    matches: ids,
                }),
            }
        })
        .await
    }

    /// One run in full: its record, graph, task runs, state changes and logs.
    pub async fn run(&self, id: Uuid) -> Result<RunDetail, StoreError> {
        self.with_pool(move |pool, _| async move {
            let id_text = id.to_string();
            let row = db::query(&format!("SELECT {RUN_COLS} FROM flow_runs WHERE id = $1"))
                .bind(&id_text)
                .fetch_optional(&pool)
                .await?
                .ok_or_else(|| StoreError::RunNotFound(id_text.clone()))?;
            let run = run_of(&row)?;
            let children = db::query(&format!(
                "SELECT {RUN_COLS} FROM flow_runs WHERE parent_run = $1 ORDER BY parent_node, started"
            ))
            .bind(&id_text)
            .fetch_all(&pool)
            .await?
            .iter()
            .map(run_of)
            .collect::<Result<Vec<_>, StoreError>>()?;
            let graph: Option<String> =
                db::query_scalar("SELECT graph FROM flows WHERE name = $1 AND version = $2")
                    .bind(&run.flow)
                    .bind(&run.flow_version)
                    .fetch_optional(&pool)
                    .await?;
            let graph = graph.and_then(|g| serde_json::from_str::<FlowGraph>(&g).ok());
            let task_rows = db::query(
                "SELECT node, map_index, task, state, message, attempts, scheduled, started, ended, \
                 cache_key, result, lifecycle_in_row \
                 FROM task_runs WHERE flow_run_id = $1 ORDER BY node, map_index",
            )
            .bind(&id_text)
            .fetch_all(&pool)
            .await?;
            // (at, place among changes at the same instant, seq, change)
            let mut changes: Vec<(DateTime<Utc>, u8, i64, StateChangeRecord)> = Vec::new();
            let mut task_runs = Vec::with_capacity(task_rows.len());
            for r in &task_rows {
                let map_index: i64 = r.try_get("map_index")?;
                let rec = TaskRunRecord {
                    node: u32_of(r, "node")?.unwrap_or(0),
                    map_index: u32::try_from(map_index).ok(),
                    task: r.try_get("task")?,
                    state: state_of(r, "state")?,
                    message: r.try_get("message")?,
                    attempts: u32_of(r, "attempts")?.unwrap_or(0),
                    started: ts_of(r, "started")?,
                    ended: ts_of(r, "ended")?,
                    cache_key: r.try_get("cache_key")?,
                    result: r.try_get("result")?,
                };
                let bits = r.try_get::<i64, _>("lifecycle_in_row")?;
                if bits & i64::from(record::IN_ROW) != 0 {
                    lifecycle_changes(&rec, ts_of(r, "scheduled")?, &mut changes);
                }
                task_runs.push(rec);
            }
            let stored = db::query(
                "SELECT seq, node, map_index, name, state, message, attempt, at FROM state_changes \
                 WHERE flow_run_id = $1 ORDER BY at, seq",
            )
            .bind(&id_text)
            .fetch_all(&pool)
            .await?;
            for r in &stored {
                let at = ts_of(r, "at")?.unwrap_or_default();
                changes.push((
                    at,
                    STORED,
                    r.try_get("seq")?,
                    StateChangeRecord {
                        node: u32_of(r, "node")?,
                        map_index: u32_of(r, "map_index")?,
                        name: r.try_get("name")?,
                        state: state_of(r, "state")?,
                        message: r.try_get("message")?,
                        attempt: u32_of(r, "attempt")?.unwrap_or(0),
                        at,
                    },
                ));
            }
            // A lifecycle change also stored (it carried a message the row does not tell, say)
            // is read back once.
            type Key = (Option<u32>, Option<u32>, StateKind, Option<DateTime<Utc>>);
            let key = |c: &StateChangeRecord| -> Option<Key> {
                match c.state {
                    StateKind::Pending | StateKind::Running if c.attempt <= 1 => {
                        Some((c.node, c.map_index, c.state, None))
                    }
                    k if k.is_final() => Some((c.node, c.map_index, c.state, Some(c.at))),
                    _ => None,
                }
            };
            let stored_keys: std::collections::HashSet<Key> = changes
                .iter()
                .filter(|c| c.1 == STORED && c.3.node.is_some())
                .filter_map(|c| key(&c.3))
                .collect();
            if !stored_keys.is_empty() {
                changes.retain(|(_, place, _, c)| {
                    *place == STORED || !key(c).is_some_and(|k| stored_keys.contains(&k))
                });
            }
            // Stable: rows read back from one task run keep their order at one instant.
            changes.sort_by_key(|c| (c.0, c.1, c.2));
            let state_changes: Vec<StateChangeRecord> =
                changes.into_iter().map(|c| c.3).collect();
            // With the lines task run rows stand for (migration 6).
            let logs = db::query(
                "SELECT at, level, message FROM run_logs WHERE flow_run_id = $1 ORDER BY at, seq",
            )
            .bind(&id_text)
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| {
                Ok(LogRecord {
                    at: ts_of(r, "at")?.unwrap_or_default(),
                    level: r.try_get("level")?,
                    message: r.try_get("message")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
            let node_outputs = db::query(
                "SELECT node, command, exit_code, signal, stdout, stderr, stdout_total, stderr_total, \
                 stdout_key, stderr_key, started, ended FROM node_outputs WHERE flow_run_id = $1 ORDER BY node",
            )
            .bind(&id_text)
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| {
                let code: Option<i64> = r.try_get("exit_code")?;
                let signal: Option<i64> = r.try_get("signal")?;
                Ok(NodeOutputRecord {
                    node: u32_of(r, "node")?.unwrap_or(0),
                    command: r.try_get("command")?,
                    exit_code: code.and_then(|c| i32::try_from(c).ok()),
                    signal: signal.and_then(|c| i32::try_from(c).ok()),
                    stdout: r.try_get("stdout")?,
                    stderr: r.try_get("stderr")?,
                    stdout_total: r.try_get::<i64, _>("stdout_total")?.max(0) as u64,
                    stderr_total: r.try_get::<i64, _>("stderr_total")?.max(0) as u64,
                    stdout_key: r.try_get("stdout_key")?,
                    stderr_key: r.try_get("stderr_key")?,
                    started: ts_of(r, "started")?.unwrap_or_default(),
                    ended: ts_of(r, "ended")?.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(RunDetail {
                run,
                graph,
                task_runs,
                state_changes,
                logs,
                node_outputs,
                children,
            })
        })
        .await
    }

    /// The text of a pipeline file as it was at `version` (what its runs ran), if recorded.
    pub async fn pipeline_source(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<String>, StoreError> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.with_pool(move |pool, _| async move {
            Ok(
                db::query_scalar("SELECT source FROM pipelines WHERE name = $1 AND version = $2")
                    .bind(name)
                    .bind(version)
                    .fetch_optional(&pool)
                    .await?,
            )
        })
        .await
    }

    /// Every flow seen, by name, with its runs that ended counted by final state.
    pub async fn flows(&self) -> Result<Vec<FlowSummary>, StoreError> {
        self.with_pool(move |pool, _| async move {
            let mut flows: Vec<FlowSummary> = Vec::new();
            for r in db::query(FLOWS_SQL).fetch_all(&pool).await? {
                flows.push(FlowSummary {
                    name: r.try_get("name")?,
                    versions: r.try_get::<i64, _>("versions")?.max(0) as u64,
                    runs: 0,
                    by_state: Vec::new(),
                    last_run: ts_of(&r, "last_run")?,
                });
            }
            for r in db::query(FLOW_COUNTS_SQL).fetch_all(&pool).await? {
                let name: String = r.try_get("flow")?;
                let i = match flows.iter().position(|f| f.name == name) {
                    Some(i) => i,
                    None => {
                        flows.push(FlowSummary {
                            name,
                            versions: 0,
                            runs: 0,
                            by_state: Vec::new(),
                            last_run: None,
                        });
                        flows.len() - 1
                    }
                };
                let n = r.try_get::<i64, _>("n")?.max(0) as u64;
                flows[i].runs += n;
                flows[i].by_state.push((state_of(&r, "state")?, n));
            }
            for f in &mut flows {
                f.by_state
                    .sort_by_key(|(k, _)| StateKind::ALL.iter().position(|a| a == k));
            }
            flows.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(flows)
        })
        .await
    }
}
