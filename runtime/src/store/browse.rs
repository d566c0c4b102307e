//! Browsing the history page by page, for the server and its dashboard: runs filtered and paged
//! by keyset (a cursor, never OFFSET), one run's overview with mapped tasks collapsed to counts,
//! a mapped task's elements, a run's logs, flow versions, pipelines and counts over a window.
//!
//! Every query here is one code path for SQLite and PostgreSQL, reads only, and returns at most
//! one page: nothing loads a run's 100,000 elements or log lines at once.
//!
//! ```
//! use weft::prelude::*;
//! use weft::store::browse::RunQuery;
//! use weft::store::Store;
//!
//! #[task] fn one() -> u32 { 1 }
//! #[flow] async fn small() -> u32 { let x = one()?; x }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("weft-doc-browse-{}", std::process::id()));
//! let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
//! for _ in 0..3 {
//!     small::run_with(RunConfig::new().history(store.clone())).await;
//! }
//! let first = store.runs_page(&RunQuery::new().limit(2)).await?;
//! assert_eq!(first.runs.len(), 2);
//! let cursor = first.next.expect("a third run");
//! let second = store.runs_page(&RunQuery::new().limit(2).after(cursor)).await?;
//! assert_eq!((second.runs.len(), second.next), (1, None));
//! let overview = store.run_overview(second.runs[0].id).await?;
//! assert_eq!(overview.tasks[0].task, "one");
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use super::counts::Span;
use super::query::{run_of, state_of, ts_of, u32_of, RUN_COLS};
use super::{ts, NodeOutputRecord, RunRecord, Store, StoreError, TaskRunRecord};
use crate::graph::FlowGraph;
use crate::state::StateKind;
use chrono::{DateTime, DurationRound, Utc};

use super::db;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The most rows one page may hold, whatever a caller asks.
pub const MAX_PAGE: u32 = 1000;

/// Where a page of runs ends: the last run's start and id (runs are ordered newest first by
/// `(started, id)`). Its text form is opaque to clients; [`FromStr`] refuses anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCursor {
    /// The last run's start.
    pub started: DateTime<Utc>,
    /// The last run's id.
    pub id: Uuid,
}

impl fmt::Display for RunCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            self.started.timestamp_micros(),
            self.id.simple()
        )
    }
}

impl FromStr for RunCursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid cursor {s:?}: pass back a next_cursor the server gave");
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        Ok(RunCursor {
            started: micros_of(micros).ok_or_else(bad)?,
            id: Uuid::try_parse(id).map_err(|_| bad())?,
        })
    }
}

/// Where a page of log lines ends: the last line's time and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCursor {
    /// The last line's time.
    pub at: DateTime<Utc>,
    /// The last line's sequence number.
    pub seq: i64,
}

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.at.timestamp_micros(), self.seq)
    }
}

impl FromStr for LogCursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid cursor {s:?}: pass back a next_cursor the server gave");
        let (micros, seq) = s.split_once('.').ok_or_else(bad)?;
        Ok(LogCursor {
            at: micros_of(micros).ok_or_else(bad)?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

fn micros_of(s: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(s.parse().ok()?)
}

/// Which runs [`Store::runs_page`] lists, newest first: filters, page size and where to go on.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Only runs of this flow.
    pub flow: Option<String>,
    /// Only runs in this state.
    pub state: Option<StateKind>,
    /// Only runs of the flow this deployment serves (the history does not yet record which
    /// deployment started a run, so runs of the same flow started otherwise are listed too).
    pub deployment: Option<String>,
    /// Only runs started at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only runs started before this.
    pub until: Option<DateTime<Utc>>,
    /// Runs per page (1 to [`MAX_PAGE`]; default 50).
    pub limit: u32,
    /// Go on after this run (the previous page's [`RunPage::next`]).
    pub after: Option<RunCursor>,
}

impl RunQuery {
    /// The first 50 runs, newest first.
    pub fn new() -> Self {
        RunQuery {
            limit: 50,
            ..Default::default()
        }
    }
    /// At most `n` runs per page (clamped to 1..=[`MAX_PAGE`]).
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = n;
        self
    }
    /// The page after `cursor`.
    pub fn after(mut self, cursor: RunCursor) -> Self {
        self.after = Some(cursor);
        self
    }
}

/// A page of runs and where the next one starts (None on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    /// The runs, newest first.
    pub runs: Vec<RunRecord>,
    /// The cursor of the next page, if there are more runs.
    pub next: Option<RunCursor>,
}

/// One task node of a run: its task run (a mapped node's summary), and for a mapped node its
/// elements counted by state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskNodeSummary {
    /// The node, as in [`TaskRunRecord::node`].
    pub node: u32,
    /// The task's name.
    pub task: String,
    /// The node's state (a mapped node's summary state).
    pub state: StateKind,
    /// Its message.
    pub message: Option<String>,
    /// Attempts made (0 for a mapped node without a summary row).
    pub attempts: u32,
    /// When it (its first element) started.
    pub started: Option<DateTime<Utc>>,
    /// When it (its last element) ended.
    pub ended: Option<DateTime<Utc>>,
    /// Elements of a mapped node by state; empty for a task that is not mapped.
    pub elements: Vec<(StateKind, u64)>,
}

/// A run with what its page shows first: graph, children, task nodes (mapped ones collapsed)
/// and pipeline node outputs; its logs and a mapped node's elements are paged separately.
#[derive(Debug, Clone)]
pub struct RunOverview {
    /// The run.
    pub run: RunRecord,
    /// The flow's graph as it was for this run.
    pub graph: Option<FlowGraph>,
    /// The runs of subflows this run started, by node then start.
    pub children: Vec<RunRecord>,
    /// Each task node, by node.
    pub tasks: Vec<TaskNodeSummary>,
    /// For a pipeline run: each node's command and output, by node.
    pub node_outputs: Vec<NodeOutputRecord>,
}

impl RunOverview {
    /// The state of each task node.
    pub fn node_states(&self) -> HashMap<u32, StateKind> {
        self.tasks.iter().map(|t| (t.node, t.state)).collect()
    }
    /// SVG of the run's graph colored by its nodes' states (feature `viz`).
    #[cfg(feature = "viz")]
    pub fn to_svg(&self) -> String {
        let graph = self.graph.clone().unwrap_or_else(|| FlowGraph {
            name: self.run.flow.clone().into(),
            nodes: Vec::new().into(),
            edges: Vec::new().into(),
        });
        graph.to_svg_with_states(&self.node_states())
    }
}

/// A page of a mapped node's elements, by index.
#[derive(Debug, Clone, PartialEq)]
pub struct ElementPage {
    /// The elements (task runs with a map index), in index order.
    pub elements: Vec<TaskRunRecord>,
    /// The index to go on after, if there are more.
    pub next: Option<u32>,
}

/// Which log lines of a run [`Store::logs_page`] returns, oldest first.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only lines at this level or above (`DEBUG`, `INFO`, `WARN`, `ERROR`).
    pub min_level: Option<String>,
    /// Only weft's lines about this task (those starting `Task '<name>'` or `Task '<name>[`).
    pub task: Option<String>,
    /// Lines per page (1 to [`MAX_PAGE`]).
    pub limit: u32,
    /// Go on after this line.
    pub after: Option<LogCursor>,
}

/// One stored log line with its sequence number.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogLine {
    /// When.
    pub at: DateTime<Utc>,
    /// `INFO`, `WARN`, ...
    pub level: String,
    /// The line.
    pub message: String,
}

/// A page of log lines and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    /// The lines, oldest first.
    pub lines: Vec<LogLine>,
    /// The cursor of the next page, if there are more lines.
    pub next: Option<LogCursor>,
    /// The cursor after this page's last line, whether or not more lines follow yet (to
    /// follow a running run's new lines); None for an empty page.
    pub last: Option<LogCursor>,
}

/// The levels, lowest first, as the history stores them.
pub const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// A version of a flow as first recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FlowVersion {
    /// The flow's name.
    pub flow: String,
    /// The version.
    pub version: String,
    /// When a run of it was first recorded.
    pub first_seen: DateTime<Utc>,
}

/// A version of a pipeline file recorded by a run of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PipelineVersion {
    /// The pipeline's name.
    pub name: String,
    /// The version (a prefix of the file's hash).
    pub version: String,
    /// The file it was read from, if known.
    pub path: Option<String>,
    /// When it was recorded.
    pub registered: DateTime<Utc>,
}

/// How finely [`Store::stats`] cuts its window into buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// One bucket per minute.
    Minute,
    /// One bucket per hour.
    Hour,
    /// One bucket per day (UTC).
    Day,
}

impl Bucket {
    /// A bucket's length.
    fn step(self) -> chrono::TimeDelta {
        match self {
            Bucket::Minute => chrono::TimeDelta::minutes(1),
            Bucket::Hour => chrono::TimeDelta::hours(1),
            Bucket::Day => chrono::TimeDelta::days(1),
        }
    }
}

/// Flow runs per bucket: each bucket's start and its runs by state.
pub type Buckets = Vec<(DateTime<Utc>, Vec<(StateKind, u64)>)>;

/// Runs counted over a window: flow runs and task runs by final state, and flow runs per
/// bucket.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    /// Flow runs that ended in the window, by final state.
    pub flow_runs: Vec<(StateKind, u64)>,
    /// Task runs that ended in the window, by final state (a mapped node's summary counts as
    /// one too).
    pub task_runs: Vec<(StateKind, u64)>,
    /// Flow runs that ended in each bucket that has any, by final state, oldest bucket first.
    pub buckets: Buckets,
}

fn count_of(row: &db::Row) -> Result<u64, StoreError> {
    Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
}

/// Clamps a page size to 1..=MAX_PAGE.
fn page_size(limit: u32) -> u32 {
    limit.clamp(1, MAX_PAGE)
}

impl Store {
    /// A page of runs, newest first, by keyset on `(started, id)`.
    pub async fn runs_page(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let q = query.clone();
        let limit = page_size(q.limit);
        self.with_pool(move |pool, _| async move {
            let (sql, binds) = runs_sql(&q, limit);
            let mut query = db::query(&sql);
            for b in binds {
                query = query.bind(b);
            }
            let mut runs = query
                .fetch_all(&pool)
                .await?
                .iter()
                .map(run_of)
                .collect::<Result<Vec<_>, _>>()?;
            let next = (runs.len() > limit as usize).then(|| {
                runs.truncate(limit as usize);
                let last = &runs[runs.len() - 1];
                RunCursor {
                    started: last.started,
                    id: last.id,
                }
            });
            Ok(RunPage { runs, next })
        })
        .await
    }

    /// One run's record.
    pub async fn run_record(&self, id: Uuid) -> Result<RunRecord, StoreError> {
        self.with_pool(move |pool, _| async move {
            let id_text = id.to_string();
            let row = db::query(&format!("SELECT {RUN_COLS} FROM flow_runs WHERE id = $1"))
                .bind(&id_text)
                .fetch_optional(&pool)
                .await?
                .ok_or(StoreError::RunNotFound(id_text))?;
            run_of(&row)
        })
        .await
    }

    /// A run's overview: the run, graph, children, task nodes with mapped ones collapsed, and
    /// pipeline node outputs.
    pub async fn run_overview(&self, id: Uuid) -> Result<RunOverview, StoreError> {
        self.with_pool(move |pool, backend| async move {
            let id_text = id.to_string();
            let row = db::query(&format!("SELECT {RUN_COLS} FROM flow_runs WHERE id = $1"))
                .bind(&id_text)
                .fetch_optional(&pool)
                .await?
                .ok_or_else(|| StoreError::RunNotFound(id_text.clone()))?;
            let run = run_of(&row)?;
            let children = db::query(&children_sql())
                .bind(&id_text)
                .fetch_all(&pool)
                .await?
                .iter()
                .map(run_of)
                .collect::<Result<Vec<_>, _>>()?;
            let graph = flow_graph(&pool, &run).await?;
            let nodes = graph.as_ref().map(|g| g.nodes.len());
            let tasks = task_nodes(&pool, backend, &id_text, nodes).await?;
            let node_outputs = node_outputs(&pool, &id_text).await?;
            Ok(RunOverview {
                run,
                graph,
                children,
                tasks,
                node_outputs,
            })
        })
        .await
    }

    /// A page of the elements of a mapped node of run `id`, by index, after index `after`,
    /// optionally only those in `state`.
    pub async fn task_elements(
        &self,
        id: Uuid,
        node: u32,
        state: Option<StateKind>,
        after: Option<u32>,
        limit: u32,
    ) -> Result<ElementPage, StoreError> {
        let limit = page_size(limit);
        self.with_pool(move |pool, _| async move {
            let state_cond = state.is_some();
            let sql = elements_sql(state_cond, limit);
            let mut q = db::query(&sql)
                .bind(id.to_string())
                .bind(i64::from(node))
                .bind(after.map_or(-1, i64::from));
            if let Some(s) = state {
                q = q.bind(s.to_string());
            }
            let mut elements = q
                .fetch_all(&pool)
                .await?
                .iter()
                .map(task_run_of)
                .collect::<Result<Vec<_>, _>>()?;
            let next = (elements.len() > limit as usize).then(|| {
                elements.truncate(limit as usize);
                elements[elements.len() - 1].map_index.unwrap_or(0)
            });
            Ok(ElementPage { elements, next })
        })
        .await
    }

    /// A page of run `id`'s log lines, oldest first.
    pub async fn logs_page(&self, id: Uuid, query: &LogQuery) -> Result<LogPage, StoreError> {
        let q = query.clone();
        let limit = page_size(q.limit);
        self.with_pool(move |pool, _| async move {
            let (sql, binds) = logs_sql(&q, limit);
            let mut query = db::query(&sql).bind(id.to_string());
            for b in binds {
                query = query.bind(b);
            }
            if let Some(c) = q.after {
                query = query.bind(c.seq);
            }
            let mut rows = Vec::new();
            for r in query.fetch_all(&pool).await? {
                let seq: i64 = r.try_get("seq")?;
                let line = LogLine {
                    at: ts_of(&r, "at")?.unwrap_or_default(),
                    level: r.try_get("level")?,
                    message: r.try_get("message")?,
                };
                rows.push((seq, line));
            }
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            let last = rows.last().map(|(seq, line)| LogCursor {
                at: line.at,
                seq: *seq,
            });
            let next = if more { last } else { None };
            let lines = rows.into_iter().map(|(_, l)| l).collect();
            Ok(LogPage { lines, next, last })
        })
        .await
    }

    /// The graph of `flow` at `version`, as its first run recorded it.
    pub async fn flow_graph(
        &self,
        flow: &str,
        version: &str,
    ) -> Result<Option<FlowGraph>, StoreError> {
        let (flow, version) = (flow.to_owned(), version.to_owned());
        self.with_pool(move |pool, _| async move {
            let graph: Option<String> =
                db::query_scalar("SELECT graph FROM flows WHERE name = $1 AND version = $2")
                    .bind(flow)
                    .bind(version)
                    .fetch_optional(&pool)
                    .await?;
            Ok(graph.and_then(|g| serde_json::from_str::<FlowGraph>(&g).ok()))
        })
        .await
    }

    /// Every recorded version of every flow, by flow then first seen.
    pub async fn flow_versions(&self) -> Result<Vec<FlowVersion>, StoreError> {
        self.with_pool(move |pool, _| async move {
            db::query("SELECT name, version, first_seen FROM flows ORDER BY name, first_seen")
                .fetch_all(&pool)
                .await?
                .iter()
                .map(|r| {
                    Ok(FlowVersion {
                        flow: r.try_get("name")?,
                        version: r.try_get("version")?,
                        first_seen: ts_of(r, "first_seen")?.unwrap_or_default(),
                    })
                })
                .collect()
        })
        .await
    }

    /// Every recorded version of every pipeline file, by name then registration.
    pub async fn pipelines(&self) -> Result<Vec<PipelineVersion>, StoreError> {
        self.with_pool(move |pool, _| async move {
            db::query(
                "SELECT name, version, path, registered FROM pipelines ORDER BY name, registered",
            )
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| {
                Ok(PipelineVersion {
                    name: r.try_get("name")?,
                    version: r.try_get("version")?,
                    path: r.try_get("path")?,
                    registered: ts_of(r, "registered")?.unwrap_or_default(),
                })
            })
            .collect()
        })
        .await
    }

    /// Runs that ended since `since`: flow runs and task runs by final state, and flow runs
    /// per `bucket` by final state. Read from the counts the writer keeps as runs end, never
    /// from the runs themselves: per minute for minute buckets (`since` counts to the minute),
    /// per hour for hour and day buckets (to the hour), so a week is at most 168 hours' rows.
    pub async fn stats(&self, since: DateTime<Utc>, bucket: Bucket) -> Result<Stats, StoreError> {
        let span = match bucket {
            Bucket::Minute => Span::Minute,
            Bucket::Hour | Bucket::Day => Span::Hour,
        };
        self.with_pool(move |pool, _| async move {
            let rows = db::query(STATS_SQL)
                .bind(span.as_str())
                .bind(span.key(since))
                .fetch_all(&pool)
                .await?;
            let mut counts = Vec::with_capacity(rows.len());
            for r in &rows {
                let start: String = r.try_get("at")?;
                let at = super::parse_ts(&format!("{start}:00Z"))?;
                let kind: String = r.try_get("kind")?;
                counts.push((at, kind == "task", state_of(r, "state")?, count_of(r)?));
            }
            Ok(stats_of(counts, bucket))
        })
        .await
    }
}

/// The counts of span `$1` since the one starting at `$2` (see [`Span::key`]).
const STATS_SQL: &str = "SELECT at, kind, state, n FROM run_counts WHERE span = $1 AND at >= $2";

/// Totals and buckets of per-minute counts: (minute, a task run's?, state, count).
fn stats_of(counts: Vec<(DateTime<Utc>, bool, StateKind, u64)>, bucket: Bucket) -> Stats {
    fn add(to: &mut Vec<(StateKind, u64)>, state: StateKind, n: u64) {
        match to.iter_mut().find(|(k, _)| *k == state) {
            Some((_, total)) => *total += n,
            None => to.push((state, n)),
        }
    }
    let order = |v: &mut Vec<(StateKind, u64)>| {
        v.sort_by_key(|(k, _)| StateKind::ALL.iter().position(|a| a == k));
    };
    let mut stats = Stats::default();
    let mut buckets: std::collections::BTreeMap<DateTime<Utc>, Vec<(StateKind, u64)>> =
        Default::default();
    for (at, task, state, n) in counts {
        if task {
            add(&mut stats.task_runs, state, n);
            continue;
        }
        add(&mut stats.flow_runs, state, n);
        let start = at.duration_trunc(bucket.step()).unwrap_or(at);
        add(buckets.entry(start).or_default(), state, n);
    }
    order(&mut stats.flow_runs);
    order(&mut stats.task_runs);
    stats.buckets = buckets
        .into_iter()
        .map(|(at, mut c)| {
            order(&mut c);
            (at, c)
        })
        .collect();
    stats
}

/// A value bound to a query whose plan [`Store::query_plans`] shows.
enum Bind {
    Text(String),
    Int(i64),
}

impl Store {
    /// The plan of each query behind the server's pages (`EXPLAIN QUERY PLAN` on SQLite,
    /// `EXPLAIN` on PostgreSQL), bound to real values: `run` an ordinary run, `mapped` a run
    /// whose node `node` is mapped. Each entry is a label, the SQL and the plan's lines. For
    /// benchmarks (the server's `big_history` example), not a stable interface.
    #[doc(hidden)]
    pub async fn query_plans(
        &self,
        run: Uuid,
        mapped: Uuid,
        node: u32,
    ) -> Result<Vec<(String, String, Vec<String>)>, StoreError> {
        let first = self.runs_page(&RunQuery::new()).await?;
        let map_run = self.run_record(mapped).await?;
        let map_nodes = self
            .flow_graph(&map_run.flow, &map_run.flow_version)
            .await?
            .map(|g| g.nodes.len());
        let (run, mapped) = (run.to_string(), mapped.to_string());
        let text = |s: &str| Bind::Text(s.to_owned());
        let mut queries: Vec<(&str, String, Vec<Bind>)> = Vec::new();
        let mut runs = |label, q: RunQuery| {
            let (sql, binds) = runs_sql(&q, page_size(q.limit));
            queries.push((label, sql, binds.into_iter().map(Bind::Text).collect()));
        };
        runs("runs_page: newest first", RunQuery::new());
        runs(
            "runs_page: flow and state",
            RunQuery {
                flow: Some("etl".into()),
                state: Some(StateKind::Failed),
                ..RunQuery::new()
            },
        );
        if let Some(c) = first.next {
            runs("runs_page: next page", RunQuery::new().after(c));
        }
        queries.push((
            "resolve_run: a prefix",
            super::query::RESOLVE_SQL.to_owned(),
            vec![
                text(&run[..13]),
                text(&format!("{}~", &run[..13])),
                text(&format!("{}%", &run[..13])),
            ],
        ));
        queries.push((
            "run_record / run_overview: the run",
            format!("SELECT {RUN_COLS} FROM flow_runs WHERE id = $1"),
            vec![text(&run)],
        ));
        queries.push((
            "run_overview: subflow runs",
            children_sql(),
            vec![text(&run)],
        ));
        queries.push((
            "run_overview: task runs but elements",
            task_summaries_sql(map_nodes),
            vec![text(&mapped)],
        ));
        queries.push((
            "run_overview: elements by node and state (PostgreSQL)",
            ELEMENT_COUNTS_SQL.to_owned(),
            vec![text(&mapped)],
        ));
        queries.push((
            "run_overview: elements by node (SQLite)",
            ELEMENT_TOTALS_SQL.to_owned(),
            vec![text(&mapped)],
        ));
        queries.push((
            "run_overview: elements not completed by node and state (SQLite)",
            ELEMENT_OTHERS_SQL.to_owned(),
            vec![text(&mapped)],
        ));
        queries.push((
            "task_elements: first page",
            elements_sql(false, 200),
            vec![text(&mapped), Bind::Int(node.into()), Bind::Int(-1)],
        ));
        queries.push((
            "task_elements: first page in a state",
            elements_sql(true, 200),
            vec![
                text(&mapped),
                Bind::Int(node.into()),
                Bind::Int(-1),
                text("Failed"),
            ],
        ));
        for (label, id) in [
            ("logs_page: a run", &run),
            ("logs_page: the mapped run", &mapped),
        ] {
            let q = LogQuery {
                limit: 200,
                ..LogQuery::default()
            };
            let (sql, binds) = logs_sql(&q, 200);
            let mut all = vec![text(id)];
            all.extend(binds.into_iter().map(Bind::Text));
            queries.push((label, sql, all));
        }
        queries.push((
            "stats: runs ended by hour and state (a week)",
            STATS_SQL.to_owned(),
            vec![
                text(Span::Hour.as_str()),
                text(&Span::Hour.key(Utc::now() - chrono::Duration::days(7))),
            ],
        ));
        queries.push((
            "flows: runs ended by flow and state",
            super::query::FLOW_COUNTS_SQL.to_owned(),
            vec![],
        ));
        queries.push((
            "flows: versions and the latest start of each flow",
            super::query::FLOWS_SQL.to_owned(),
            vec![],
        ));
        let queries: Vec<(String, String, Vec<Bind>)> = queries
            .into_iter()
            .map(|(l, sql, b)| (l.to_owned(), sql, b))
            .collect();
        self.with_pool(move |pool, backend| async move {
            let mut out = Vec::new();
            for (label, sql, binds) in queries {
                let explain = match backend {
                    super::Backend::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
                    super::Backend::Postgres => format!("EXPLAIN {sql}"),
                };
                let mut q = db::query(&explain);
                for b in binds {
                    q = match b {
                        Bind::Text(t) => q.bind(t),
                        Bind::Int(i) => q.bind(i),
                    };
                }
                let plan = q
                    .fetch_all(&pool)
                    .await?
                    .iter()
                    .map(|r| match backend {
                        super::Backend::Sqlite => r.try_get::<String, _>("detail"),
                        super::Backend::Postgres => r.try_get::<String, _>(0),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.push((label, sql, plan));
            }
            Ok(out)
        })
        .await
    }
}

/// A run's subflow runs.
fn children_sql() -> String {
    format!("SELECT {RUN_COLS} FROM flow_runs WHERE parent_run = $1 ORDER BY parent_node, started")
}

/// A run's task runs that are not elements of a map (a mapped node's summary among them).
fn task_summaries_sql(nodes: Option<usize>) -> String {
    // The nodes named one by one: a seek per node to its summary (map_index -1 sorts before its
    // elements); without them, the run's every row is read to find those below 0.
    let nodes = match nodes {
        Some(n) if (1..=MAX_SEEKS).contains(&n) => {
            let list: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!(" AND node IN ({})", list.join(", "))
        }
        _ => String::new(),
    };
    format!(
        "SELECT node, map_index, task, state, message, attempts, started, ended, cache_key, \
         result FROM task_runs WHERE flow_run_id = $1{nodes} AND map_index < 0 ORDER BY node"
    )
}

/// Graph nodes up to which a run's task summaries are found by one seek per node.
const MAX_SEEKS: usize = 2000;

/// A run's mapped elements counted by node and state (PostgreSQL).
const ELEMENT_COUNTS_SQL: &str = "SELECT node, state, COUNT(*) AS n FROM task_runs \
     WHERE flow_run_id = $1 AND map_index >= 0 GROUP BY node, state";

/// A run's mapped elements counted by node (rows in key order: nothing to sort).
const ELEMENT_TOTALS_SQL: &str = "SELECT node, COUNT(*) AS n FROM task_runs \
     WHERE flow_run_id = $1 AND map_index >= 0 GROUP BY node";

/// A run's mapped elements that did not complete, counted by node and state (Completed ones
/// are the rest of [`ELEMENT_TOTALS_SQL`]'s count).
const ELEMENT_OTHERS_SQL: &str = "SELECT node, state, COUNT(*) AS n FROM task_runs \
     WHERE flow_run_id = $1 AND map_index >= 0 AND state <> 'Completed' GROUP BY node, state";

/// A page of a mapped node's elements after an index (`$3`), in `$4` if `state`.
fn elements_sql(state: bool, limit: u32) -> String {
    format!(
        "SELECT node, map_index, task, state, message, attempts, started, ended, cache_key, \
         result FROM task_runs WHERE flow_run_id = $1 AND node = $2 AND map_index > $3{} \
         ORDER BY map_index LIMIT {}",
        if state { " AND state = $4" } else { "" },
        limit + 1
    )
}

/// The SQL of a page of runs and the texts it binds, in order.
fn runs_sql(q: &RunQuery, limit: u32) -> (String, Vec<String>) {
    let mut conds: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let mut add = |cond: &str, values: Vec<String>| {
        let mut cond = cond.to_owned();
        for v in values {
            binds.push(v);
            cond = cond.replacen('?', &format!("${}", binds.len()), 1);
        }
        conds.push(cond);
    };
    if let Some(f) = &q.flow {
        add("flow = ?", vec![f.clone()]);
    }
    if let Some(s) = q.state {
        add("state = ?", vec![s.to_string()]);
    }
    if let Some(d) = &q.deployment {
        add(
            "flow IN (SELECT flow FROM deployments WHERE name = ?)",
            vec![d.clone()],
        );
    }
    if let Some(t) = q.since {
        add("started >= ?", vec![ts(t)]);
    }
    if let Some(t) = q.until {
        add("started < ?", vec![ts(t)]);
    }
    if let Some(c) = q.after {
        add(
            "(started, id) < (?, ?)",
            vec![ts(c.started), c.id.to_string()],
        );
    }
    let mut sql = format!("SELECT {RUN_COLS} FROM flow_runs");
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(&format!(
        " ORDER BY started DESC, id DESC LIMIT {}",
        limit + 1
    ));
    (sql, binds)
}

/// The SQL of a page of logs and the texts it binds after the run id; a cursor's sequence
/// number is bound last.
fn logs_sql(q: &LogQuery, limit: u32) -> (String, Vec<String>) {
    // run_logs: the stored lines and those task run rows stand for (migration 6).
    let mut sql = "SELECT seq, at, level, message FROM run_logs WHERE flow_run_id = $1".to_owned();
    let mut binds: Vec<String> = Vec::new();
    if let Some(min) = &q.min_level {
        let from = LEVELS.iter().position(|l| l.eq_ignore_ascii_case(min));
        let levels: Vec<String> = LEVELS[from.unwrap_or(0)..]
            .iter()
            .map(|l| format!("'{l}'"))
            .collect();
        sql.push_str(&format!(" AND level IN ({})", levels.join(", ")));
    }
    if let Some(task) = &q.task {
        // Lengths in characters, as substr counts in both databases; inlined, as they are
        // numbers the server computed.
        let whole = format!("Task '{task}'");
        let element = format!("Task '{task}[");
        binds.push(whole.clone());
        binds.push(element.clone());
        sql.push_str(&format!(
            " AND (substr(message, 1, {}) = ${} OR substr(message, 1, {}) = ${})",
            whole.chars().count(),
            binds.len(),
            element.chars().count(),
            binds.len() + 1
        ));
    }
    if let Some(c) = q.after {
        binds.push(ts(c.at));
        sql.push_str(&format!(
            " AND (at, seq) > (${}, ${})",
            binds.len() + 1,
            binds.len() + 2
        ));
    }
    sql.push_str(&format!(" ORDER BY at, seq LIMIT {}", limit + 1));
    (sql, binds)
}

fn task_run_of(r: &db::Row) -> Result<TaskRunRecord, StoreError> {
    let map_index: i64 = r.try_get("map_index")?;
    Ok(TaskRunRecord {
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
    })
}

async fn flow_graph(pool: &db::Pool, run: &RunRecord) -> Result<Option<FlowGraph>, StoreError> {
    let graph: Option<String> =
        db::query_scalar("SELECT graph FROM flows WHERE name = $1 AND version = $2")
            .bind(&run.flow)
            .bind(&run.flow_version)
            .fetch_optional(pool)
            .await?;
    Ok(graph.and_then(|g| serde_json::from_str::<FlowGraph>(&g).ok()))
}

/// Each node's task run (a mapped node's summary), then its elements counted by state.
async fn task_nodes(
    pool: &db::Pool,
    backend: super::Backend,
    id: &str,
    graph_nodes: Option<usize>,
) -> Result<Vec<TaskNodeSummary>, StoreError> {
    let mut nodes: Vec<TaskNodeSummary> = Vec::new();
    let summaries = db::query(&task_summaries_sql(graph_nodes))
        .bind(id)
        .fetch_all(pool)
        .await?;
    for r in &summaries {
        let t = task_run_of(r)?;
        nodes.push(TaskNodeSummary {
            node: t.node,
            task: t.task,
            state: t.state,
            message: t.message,
            attempts: t.attempts,
            started: t.started,
            ended: t.ended,
            elements: Vec::new(),
        });
    }
    for (node, elements) in element_counts(pool, backend, id).await? {
        let i = match nodes.iter().position(|n| n.node == node) {
            Some(i) => i,
            None => {
                // Elements without their node's summary row (the node is still running, or
                // its run ended abruptly): the node in the state of its elements.
                nodes.push(TaskNodeSummary {
                    node,
                    task: String::new(),
                    state: elements.first().map_or(StateKind::Completed, |e| e.0),
                    message: None,
                    attempts: 0,
                    started: None,
                    ended: None,
                    elements: Vec::new(),
                });
                nodes.len() - 1
            }
        };
        let n = &mut nodes[i];
        n.elements = elements;
        if n.started.is_none() || n.ended.is_none() || n.task.is_empty() {
            element_span(pool, id, n).await?;
        }
    }
    nodes.sort_by_key(|n| n.node);
    for n in &mut nodes {
        n.elements
            .sort_by_key(|(k, _)| StateKind::ALL.iter().position(|a| a == k));
    }
    Ok(nodes)
}

/// Each mapped node's elements counted by state. On SQLite, elements per node, then those not
/// Completed by node and state: each a pass over the run's rows in key order that sorts
/// nothing but the (few) elements that did not complete (SQLite groups by sorting).
/// PostgreSQL groups by hashing: one pass, every state counted.
async fn element_counts(
    pool: &db::Pool,
    backend: super::Backend,
    id: &str,
) -> Result<Vec<(u32, Vec<(StateKind, u64)>)>, StoreError> {
    let mut out: Vec<(u32, Vec<(StateKind, u64)>)> = Vec::new();
    if backend == super::Backend::Postgres {
        for r in db::query(ELEMENT_COUNTS_SQL)
            .bind(id)
            .fetch_all(pool)
            .await?
        {
            let node = u32_of(&r, "node")?.unwrap_or(0);
            let entry = (state_of(&r, "state")?, count_of(&r)?);
            match out.iter_mut().find(|(n, _)| *n == node) {
                Some((_, counts)) => counts.push(entry),
                None => out.push((node, vec![entry])),
            }
        }
        return Ok(out);
    }
    let totals = db::query(ELEMENT_TOTALS_SQL)
        .bind(id)
        .fetch_all(pool)
        .await?;
    let others = db::query(ELEMENT_OTHERS_SQL)
        .bind(id)
        .fetch_all(pool)
        .await?;
    for r in &totals {
        let node = u32_of(r, "node")?.unwrap_or(0);
        let mut elements = Vec::new();
        for o in &others {
            if u32_of(o, "node")?.unwrap_or(0) == node {
                elements.push((state_of(o, "state")?, count_of(o)?));
            }
        }
        let rest: u64 = elements.iter().map(|(_, n)| n).sum();
        let completed = count_of(r)?.saturating_sub(rest);
        if completed > 0 {
            elements.push((StateKind::Completed, completed));
        }
        out.push((node, elements));
    }
    Ok(out)
}

/// A node's task name, first start and last end read from its elements, where its summary row
/// does not tell them.
async fn element_span(
    pool: &db::Pool,
    id: &str,
    n: &mut TaskNodeSummary,
) -> Result<(), StoreError> {
    let r = db::query(
        "SELECT MIN(task) AS task, MIN(started) AS started, MAX(ended) AS ended FROM task_runs \
         WHERE flow_run_id = $1 AND node = $2 AND map_index >= 0",
    )
    .bind(id)
    .bind(i64::from(n.node))
    .fetch_one(pool)
    .await?;
    if n.task.is_empty() {
        n.task = r.try_get::<Option<String>, _>("task")?.unwrap_or_default();
    }
    let (started, ended) = (ts_of(&r, "started")?, ts_of(&r, "ended")?);
    n.started = match (n.started, started) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    n.ended = n.ended.max(ended);
    Ok(())
}

async fn node_outputs(pool: &db::Pool, id: &str) -> Result<Vec<NodeOutputRecord>, StoreError> {
    db::query(
        "SELECT node, command, exit_code, signal, stdout, stderr, stdout_total, stderr_total, \
         stdout_key, stderr_key, started, ended FROM node_outputs WHERE flow_run_id = $1 \
         ORDER BY node",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(node_output_of)
    .collect()
}

fn node_output_of(r: &db::Row) -> Result<NodeOutputRecord, StoreError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = RunCursor {
            started: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::from_u128(42),
        };
        assert_eq!(c.to_string().parse::<RunCursor>(), Ok(c));
        let l = LogCursor {
            at: c.started,
            seq: 7,
        };
        assert_eq!(l.to_string().parse::<LogCursor>(), Ok(l));
        for bad in ["", "x", "1.2", "abc.00000000000000000000000000000042", "1"] {
            assert!(bad.parse::<RunCursor>().is_err(), "{bad}");
        }
        assert!("1.x".parse::<LogCursor>().is_err());
    }

    #[test]
    fn run_filters_bind_in_order() {
        let q = RunQuery {
            flow: Some("etl".into()),
            state: Some(StateKind::Failed),
            ..RunQuery::new()
        };
        let (sql, binds) = runs_sql(&q, 50);
        assert!(sql.contains("flow = $1 AND state = $2"), "{sql}");
        assert!(sql.ends_with("LIMIT 51"), "{sql}");
        assert_eq!(binds, ["etl", "Failed"]);
    }

    #[test]
    fn stats_sum_minutes_into_totals_and_buckets() {
        let at = |s: &str| super::super::parse_ts(s).unwrap();
        let counts = vec![
            (at("2026-11-23T21:59:00Z"), false, StateKind::Failed, 2),
            (at("2026-11-23T21:30:00Z"), false, StateKind::Completed, 5),
            (at("2026-11-23T22:00:00Z"), false, StateKind::Completed, 1),
            (at("2026-11-23T21:30:00Z"), true, StateKind::Completed, 40),
            (at("2026-11-23T22:10:00Z"), true, StateKind::NotRun, 3),
        ];
        let stats = stats_of(counts, Bucket::Hour);
        use StateKind::*;
        assert_eq!(stats.flow_runs, [(Completed, 6), (Failed, 2)]);
        assert_eq!(stats.task_runs, [(Completed, 40), (NotRun, 3)]);
        assert_eq!(
            stats.buckets,
            [
                (
                    at("2026-11-23T21:00:00Z"),
                    vec![(Completed, 5), (Failed, 2)]
                ),
                (at("2026-11-23T22:00:00Z"), vec![(Completed, 1)]),
            ]
        );
    }
}
