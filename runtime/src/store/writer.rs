//! The history writer: the engine queues rows (never waiting), a task on the store's own thread
//! writes them in batched transactions, retrying with backoff while the database is away.

use super::{ts, Backend, Inner, NodeOutputRecord, TaskRunRecord};
use crate::state::StateKind;
use chrono::{DateTime, Utc};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

/// Rows queued before the writer is woken.
const BATCH: usize = 2048;
/// How often the writer looks at a partial batch.
const TICK: Duration = Duration::from_millis(25);

/// One thing to write.
pub(crate) enum Op {
    Flow {
        name: String,
        version: String,
        graph: String,
        at: DateTime<Utc>,
    },
    RunStarted {
        run: Uuid,
        flow: String,
        version: String,
        params: String,
        /// The parent run and node of a subflow's run.
        parent: Option<(Uuid, u32)>,
        at: DateTime<Utc>,
    },
    RunState {
        run: Uuid,
        state: StateKind,
        message: Option<String>,
        at: DateTime<Utc>,
    },
    Change(Change),
    Task(TaskRow),
    Log {
        run: Uuid,
        seq: u64,
        at: DateTime<Utc>,
        level: &'static str,
        message: String,
    },
    /// What a node of a pipeline run did.
    NodeOutput(NodeOutputRow),
    /// A pipeline file's version.
    Pipeline {
        name: String,
        version: String,
        source: String,
        path: Option<String>,
        at: DateTime<Utc>,
    },
    /// Answered once everything queued before it is written or given up.
    Flush {
        run: Uuid,
        done: oneshot::Sender<Tally>,
    },
}

impl Op {
    fn run(&self) -> Option<Uuid> {
        match self {
            Op::Flow { .. } | Op::Pipeline { .. } => None,
            Op::NodeOutput(o) => Some(o.run),
            Op::RunStarted { run, .. }
            | Op::RunState { run, .. }
            | Op::Log { run, .. }
            | Op::Flush { run, .. } => Some(*run),
            Op::Change(c) => Some(c.run),
            Op::Task(t) => Some(t.run),
        }
    }
}

/// A state change of a flow run (node None) or task run.
pub(crate) struct Change {
    pub run: Uuid,
    pub seq: u64,
    pub node: Option<u32>,
    pub map_index: Option<u32>,
    pub name: String,
    pub state: StateKind,
    pub message: Option<String>,
    pub attempt: u32,
    pub at: DateTime<Utc>,
}

/// What is known of a task run of flow run `run`; later rows of the same task run update
/// earlier ones.
#[derive(Clone)]
pub(crate) struct TaskRow {
    pub run: Uuid,
    pub rec: TaskRunRecord,
}

impl TaskRow {
    fn merge(&mut self, newer: TaskRow) {
        let (old, new) = (&mut self.rec, newer.rec);
        let started = old.started.or(new.started);
        let cache_key = new.cache_key.or(old.cache_key.take());
        let result = new.result.or(old.result.take());
        *old = TaskRunRecord {
            started,
            cache_key,
            result,
            ..new
        };
    }
}

/// A pipeline file's version: name, version, text, path, when first seen.
type PipelineRow = (String, String, String, Option<String>, DateTime<Utc>);

/// A pipeline node's command and outcome (the last attempt's) in flow run `run`.
pub(crate) struct NodeOutputRow {
    pub run: Uuid,
    pub rec: NodeOutputRecord,
}

/// How much of one flow run's history reached the database.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub recorded: u64,
    pub lost: u64,
    pub error: Option<String>,
}

/// Rows waiting for the writer. Bounded: past `cap` rows are dropped (and counted against their
/// run) rather than making the engine wait or grow without end.
pub(crate) struct Queue {
    ops: Mutex<Vec<Op>>,
    ready: Notify,
    cap: usize,
    overflow: Mutex<HashMap<Uuid, u64>>,
    pub(crate) seq: AtomicU64,
}

impl Queue {
    pub(crate) fn new(cap: usize) -> Queue {
        Queue {
            ops: Mutex::new(Vec::with_capacity(BATCH)),
            ready: Notify::new(),
            cap,
            overflow: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        }
    }

    /// Queues `op`; never blocks on the database.
    pub(crate) fn push(&self, op: Op) {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let flush = matches!(op, Op::Flush { .. });
        if ops.len() >= self.cap && !flush {
            drop(ops);
            if let Some(run) = op.run() {
                *self
                    .overflow
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(run)
                    .or_default() += 1;
            }
            return;
        }
        ops.push(op);
        let wake = flush || ops.len() == BATCH;
        drop(ops);
        if wake {
            self.ready.notify_one();
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.ops.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn overflowed(&self, run: Uuid) -> u64 {
        self.overflow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&run)
            .unwrap_or(0)
    }
}

/// The writer task: runs on the store's thread until the store is dropped.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut tallies: HashMap<Uuid, Tally> = HashMap::new();
    let mut flows_seen: std::collections::HashSet<(String, String)> = Default::default();
    loop {
        tokio::select! {
            _ = inner.queue.ready.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        let ops = inner.queue.take();
        if ops.is_empty() {
            if Arc::strong_count(&inner) == 1 {
                return; // every Store handle is gone
            }
            continue;
        }
        let mut batch = Batch::default();
        let mut flushes = Vec::new();
        for op in ops {
            match op {
                Op::Flush { run, done } => flushes.push((run, done)),
                Op::Flow { name, version, .. }
                    if flows_seen.contains(&(name.clone(), version.clone())) => {}
                op => batch.add(op),
            }
        }
        if !batch.is_empty() {
            let outcome = write_with_retry(&inner, &batch).await;
            for (run, n) in &batch.per_run {
                let t = tallies.entry(*run).or_default();
                match &outcome {
                    Ok(()) => t.recorded += n,
                    Err(e) => {
                        t.lost += n;
                        t.error = Some(e.clone());
                    }
                }
            }
            if outcome.is_ok() {
                flows_seen.extend(batch.flows.iter().map(|f| (f.0.clone(), f.1.clone())));
            }
        }
        for (run, done) in flushes {
            let mut t = tallies.remove(&run).unwrap_or_default();
            let over = inner.queue.overflowed(run);
            if over > 0 {
                t.lost += over;
                t.error.get_or_insert_with(|| {
                    format!("the history queue was full ({} rows)", inner.queue.cap)
                });
            }
            let _ = done.send(t);
        }
    }
}

async fn write_with_retry(inner: &Inner, batch: &Batch) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match write(inner, batch).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let e = e.to_string();
                if started.elapsed() + delay > inner.options.retry_for {
                    tracing::warn!(
                        target: "weft::store",
                        "Run history: giving up on {} rows after {:.1?} ({e})",
                        batch.rows(),
                        started.elapsed()
                    );
                    return Err(e);
                }
                tracing::debug!(target: "weft::store", "Run history: write failed ({e}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The first row of a flow run.
struct RunStart {
    flow: String,
    version: String,
    params: String,
    parent: Option<(Uuid, u32)>,
    at: DateTime<Utc>,
}

/// One transaction's worth of rows, coalesced: a run's flow_runs row and each task run's row are
/// written once with their latest values.
#[derive(Default)]
struct Batch {
    flows: Vec<(String, String, String, DateTime<Utc>)>,
    runs: Vec<RunRow>,
    run_index: HashMap<Uuid, usize>,
    tasks: Vec<TaskRow>,
    task_index: HashMap<(Uuid, u32, Option<u32>), usize>,
    changes: Vec<Change>,
    logs: Vec<(Uuid, u64, DateTime<Utc>, &'static str, String)>,
    outputs: Vec<NodeOutputRow>,
    pipelines: Vec<PipelineRow>,
    per_run: HashMap<Uuid, u64>,
}

struct RunRow {
    id: Uuid,
    /// Set when the run started in this batch: the row is inserted, else updated.
    start: Option<RunStart>,
    state: Option<(StateKind, Option<String>, DateTime<Utc>)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.rows() == 0
    }
    fn rows(&self) -> usize {
        self.flows.len()
            + self.runs.len()
            + self.tasks.len()
            + self.changes.len()
            + self.logs.len()
            + self.outputs.len()
            + self.pipelines.len()
    }
    fn add(&mut self, op: Op) {
        if let Some(run) = op.run() {
            *self.per_run.entry(run).or_default() += 1;
        }
        match op {
            Op::Flow {
                name,
                version,
                graph,
                at,
            } => {
                if !self.flows.iter().any(|f| f.0 == name && f.1 == version) {
                    self.flows.push((name, version, graph, at));
                }
            }
            Op::RunStarted {
                run,
                flow,
                version,
                params,
                parent,
                at,
            } => {
                self.run_row(run).start = Some(RunStart {
                    flow,
                    version,
                    params,
                    parent,
                    at,
                })
            }
            Op::RunState {
                run,
                state,
                message,
                at,
            } => self.run_row(run).state = Some((state, message, at)),
            Op::Change(c) => self.changes.push(c),
            Op::Task(row) => {
                let key = (row.run, row.rec.node, row.rec.map_index);
                match self.task_index.get(&key) {
                    Some(&i) => self.tasks[i].merge(row),
                    None => {
                        self.task_index.insert(key, self.tasks.len());
                        self.tasks.push(row);
                    }
                }
            }
            Op::Log {
                run,
                seq,
                at,
                level,
                message,
            } => self.logs.push((run, seq, at, level, message)),
            Op::NodeOutput(o) => self.outputs.push(o),
            Op::Pipeline {
                name,
                version,
                source,
                path,
                at,
            } => self.pipelines.push((name, version, source, path, at)),
            Op::Flush { .. } => {}
        }
    }
    fn run_row(&mut self, id: Uuid) -> &mut RunRow {
        let i = *self.run_index.entry(id).or_insert_with(|| {
            self.runs.push(RunRow {
                id,
                start: None,
                state: None,
            });
            self.runs.len() - 1
        });
        &mut self.runs[i]
    }
}

/// A multi-row statement's SQL: `head` then `rows` groups of `cols` placeholders, numbered
/// (`$1`) for PostgreSQL, anonymous (`?`) for SQLite, whose driver looks each named parameter up
/// by a linear scan (quadratic in a statement of thousands).
fn values_sql(backend: Backend, head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 6);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            n += 1;
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
            }
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// A multi-row insert split into chunks of `rows` rows (under SQLite's and PostgreSQL's limits on
/// bound values): the SQL of a full chunk and of the shorter last one.
struct Statement {
    rows: usize,
    full: String,
    last: String,
}

impl Statement {
    fn new(backend: Backend, head: &str, cols: usize, tail: &str, total: usize) -> Statement {
        let rows = (8000 / cols).min(500);
        let sql = |n| values_sql(backend, head, cols, n, tail);
        Statement {
            rows,
            full: if total >= rows {
                sql(rows)
            } else {
                String::new()
            },
            last: sql(total % rows),
        }
    }
    fn query(&self, rows: usize) -> AnyQuery<'_> {
        sqlx::query(if rows == self.rows {
            &self.full
        } else {
            &self.last
        })
    }
}

fn opt_i64(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

async fn write(inner: &Inner, b: &Batch) -> Result<(), sqlx::Error> {
    let mut tx = inner.pool.begin().await?;
    for (name, version, graph, at) in &b.flows {
        sqlx::query(
            "INSERT INTO flows (name, version, graph, first_seen) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name, version) DO NOTHING",
        )
        .bind(name)
        .bind(version)
        .bind(graph)
        .bind(ts(*at))
        .execute(&mut *tx)
        .await?;
    }
    for r in &b.runs {
        let state = r.state.as_ref();
        let (kind, message, ended) = match state {
            Some((k, m, at)) => (
                Some(k.to_string()),
                m.clone(),
                k.is_final().then(|| ts(*at)),
            ),
            None => (None, None, None),
        };
        match &r.start {
            Some(RunStart {
                flow,
                version,
                params,
                parent,
                at,
            }) => {
                // A resumed run keeps its first start; it is running again.
                sqlx::query(
                    "INSERT INTO flow_runs (id, flow, flow_version, parameters, state, message, started, ended, \
                     parent_run, parent_node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (id) DO UPDATE SET flow_version = excluded.flow_version, \
                     parameters = excluded.parameters, state = excluded.state, \
                     message = excluded.message, ended = excluded.ended",
                )
                .bind(r.id.to_string())
                .bind(flow)
                .bind(version)
                .bind(params)
                .bind(kind.unwrap_or_else(|| StateKind::Pending.to_string()))
                .bind(message)
                .bind(ts(*at))
                .bind(ended)
                .bind(parent.map(|(p, _)| p.to_string()))
                .bind(parent.map(|(_, n)| i64::from(n)))
                .execute(&mut *tx)
                .await?;
            }
            None => {
                if let Some(kind) = kind {
                    sqlx::query(
                        "UPDATE flow_runs SET state = $1, message = $2, ended = $3 WHERE id = $4",
                    )
                    .bind(kind)
                    .bind(message)
                    .bind(ended)
                    .bind(r.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
    }
    for (name, version, source, path, at) in &b.pipelines {
        sqlx::query(
            "INSERT INTO pipelines (name, version, source, path, registered) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name, version) DO NOTHING",
        )
        .bind(name)
        .bind(version)
        .bind(source)
        .bind(path.as_deref())
        .bind(ts(*at))
        .execute(&mut *tx)
        .await?;
    }
    for row in &b.outputs {
        let o = &row.rec;
        // A retried node keeps its last attempt's output.
        sqlx::query(
            "INSERT INTO node_outputs (flow_run_id, node, command, exit_code, signal, stdout, stderr, \
             stdout_total, stderr_total, stdout_key, stderr_key, started, ended) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (flow_run_id, node) DO UPDATE SET command = excluded.command, \
             exit_code = excluded.exit_code, signal = excluded.signal, stdout = excluded.stdout, \
             stderr = excluded.stderr, stdout_total = excluded.stdout_total, \
             stderr_total = excluded.stderr_total, stdout_key = excluded.stdout_key, \
             stderr_key = excluded.stderr_key, started = excluded.started, ended = excluded.ended",
        )
        .bind(row.run.to_string())
        .bind(i64::from(o.node))
        .bind(o.command.as_str())
        .bind(o.exit_code.map(i64::from))
        .bind(o.signal.map(i64::from))
        .bind(o.stdout.as_slice())
        .bind(o.stderr.as_slice())
        .bind(o.stdout_total as i64)
        .bind(o.stderr_total as i64)
        .bind(o.stdout_key.as_deref())
        .bind(o.stderr_key.as_deref())
        .bind(ts(o.started))
        .bind(ts(o.ended))
        .execute(&mut *tx)
        .await?;
    }
    // The multi-row statements, built one ahead: binding the next chunk's values here overlaps
    // with the database executing the current one.
    let ids: HashMap<Uuid, String> = b.per_run.keys().map(|u| (*u, u.to_string())).collect();
    let id = |u: &Uuid| ids.get(u).cloned().unwrap_or_else(|| u.to_string());
    let tasks = Statement::new(
        inner.backend,
        "INSERT INTO task_runs (flow_run_id, node, map_index, task, state, message, attempts, started, ended, cache_key, result)",
        11,
        " ON CONFLICT (flow_run_id, node, map_index) DO UPDATE SET task = excluded.task, \
         state = excluded.state, message = excluded.message, attempts = excluded.attempts, \
         started = COALESCE(task_runs.started, excluded.started), ended = excluded.ended, \
         cache_key = COALESCE(excluded.cache_key, task_runs.cache_key), \
         result = COALESCE(excluded.result, task_runs.result)",
        b.tasks.len(),
    );
    let changes = Statement::new(
        inner.backend,
        "INSERT INTO state_changes (flow_run_id, seq, node, map_index, name, state, message, attempt, at)",
        9,
        "",
        b.changes.len(),
    );
    let logs = Statement::new(
        inner.backend,
        "INSERT INTO logs (flow_run_id, seq, at, level, message)",
        5,
        "",
        b.logs.len(),
    );
    let task_queries = b.tasks.chunks(tasks.rows).map(|rows| {
        rows.iter().fold(tasks.query(rows.len()), |q, row| {
            let t = &row.rec;
            q.bind(id(&row.run))
                .bind(i64::from(t.node))
                .bind(t.map_index.map_or(-1, i64::from))
                .bind(t.task.as_str())
                .bind(t.state.as_str())
                .bind(t.message.as_deref())
                .bind(i64::from(t.attempts))
                .bind(t.started.map(ts))
                .bind(t.ended.map(ts))
                .bind(t.cache_key.as_deref())
                .bind(t.result.as_deref())
        })
    });
    let change_queries = b.changes.chunks(changes.rows).map(|rows| {
        rows.iter().fold(changes.query(rows.len()), |q, c| {
            q.bind(id(&c.run))
                .bind(c.seq as i64)
                .bind(opt_i64(c.node))
                .bind(opt_i64(c.map_index))
                .bind(c.name.as_str())
                .bind(c.state.as_str())
                .bind(c.message.as_deref())
                .bind(i64::from(c.attempt))
                .bind(ts(c.at))
        })
    });
    let log_queries = b.logs.chunks(logs.rows).map(|rows| {
        rows.iter().fold(
            logs.query(rows.len()),
            |q, (run, seq, at, level, message)| {
                q.bind(id(run))
                    .bind(*seq as i64)
                    .bind(ts(*at))
                    .bind(*level)
                    .bind(message.as_str())
            },
        )
    });
    let mut queries = task_queries.chain(change_queries).chain(log_queries);
    let mut next = queries.next();
    while let Some(q) = next {
        let (done, following) = tokio::join!(q.execute(&mut *tx), async { queries.next() });
        done?;
        next = following;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sql_numbers_placeholders_across_rows() {
        assert_eq!(
            values_sql(
                Backend::Postgres,
                "INSERT INTO t (a, b)",
                2,
                2,
                " ON CONFLICT DO NOTHING"
            ),
            "INSERT INTO t (a, b) VALUES ($1,$2),($3,$4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            values_sql(Backend::Sqlite, "INSERT INTO t (a)", 1, 2, ""),
            "INSERT INTO t (a) VALUES (?),(?)"
        );
    }

    #[test]
    fn later_task_rows_update_earlier_ones_but_keep_start_and_keys() {
        let t0 = Utc::now();
        let row = |state, started, key: Option<&str>| TaskRow {
            run: Uuid::nil(),
            rec: TaskRunRecord {
                node: 1,
                map_index: None,
                task: "t".into(),
                state,
                message: None,
                attempts: 1,
                started,
                ended: None,
                cache_key: key.map(str::to_owned),
                result: None,
            },
        };
        let mut b = Batch::default();
        b.add(Op::Task(row(StateKind::Running, Some(t0), Some("k"))));
        b.add(Op::Task(row(StateKind::Completed, None, None)));
        assert_eq!(b.tasks.len(), 1);
        let rec = &b.tasks[0].rec;
        assert_eq!(rec.state, StateKind::Completed);
        assert_eq!(rec.started, Some(t0));
        assert_eq!(rec.cache_key.as_deref(), Some("k"));
        assert_eq!(b.per_run[&Uuid::nil()], 2);
    }
}
