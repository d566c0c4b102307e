//! The history writer: the engine queues compact rows, a thread of the store's own writes them
//! in one transaction per batch (group commit), retrying with backoff while the database is away.
//!
//! - SQLite files are written directly through `rusqlite` on a connection of the writer's own,
//!   with cached prepared statements: no channel to a driver thread per statement.
//! - PostgreSQL (and in-memory SQLite) go through the store's pool with multi-row statements.
//! - The queue is bounded: a producer that finds it full waits for the writer (nothing is
//!   dropped while the writer lives).
//! - A row the database refuses (not a lost connection: a bad value) is dropped alone and
//!   counted as lost; the rest of its batch is written.

use super::checkpoint::Checkpointer;
use super::counts::Ends;
use super::{ts, Backend, Inner, NodeOutputRecord};
use crate::state::StateKind;
use chrono::{DateTime, Utc};

use super::db::{self, Query};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Rows queued before the writer is woken (a flush wakes it at once).
const BATCH: usize = 4096;
/// How often the writer looks at a partial batch when no run is waiting for it.
const TICK: Duration = Duration::from_millis(25);

/// Microseconds since the Unix epoch: how the queue carries timestamps.
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A queued timestamp as stored (RFC 3339 text, as [`ts`] writes it). The writer formats one per
/// row: the text up to the second is kept from the previous call (the calendar arithmetic
/// showed in its profile).
fn ts_micros(m: i64) -> String {
    std::thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let (secs, us) = (m.div_euclid(1_000_000), m.rem_euclid(1_000_000) as u32);
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            let whole = ts(DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default());
            // "...:SS.000000Z" without "000000Z"
            last.1 = whole[..whole.len() - 7].to_owned();
            last.0 = secs;
        }
        let mut s = String::with_capacity(last.1.len() + 7);
        s.push_str(&last.1);
        for d in [100_000, 10_000, 1_000, 100, 10, 1] {
            s.push(char::from(b'0' + (us / d % 10) as u8));
        }
        s.push('Z');
        s
    })
}

/// One thing to write. Fixed vocabulary (states, levels, task names) is carried as enums and
/// `&'static str`, timestamps as integers; rare rows are boxed to keep the queue's slots small.
pub(crate) enum Op {
    Flow(Box<FlowRow>),
    RunStarted(Box<RunStart>),
    RunState {
        run: Uuid,
        state: StateKind,
        message: Option<Box<str>>,
        at: i64,
    },
    /// A state change stored as its own row (one that the task run's row cannot tell).
    Change(Change),
    /// What is known of a task run; later ones update earlier ones.
    Task(TaskOp),
    Log {
        run: Uuid,
        seq: u64,
        at: i64,
        level: &'static str,
        message: Box<str>,
    },
    /// What a node of a pipeline run did.
    #[cfg_attr(not(feature = "pipeline"), allow(dead_code))]
    NodeOutput(Box<NodeOutputRow>),
    /// A pipeline file's version.
    #[cfg_attr(not(feature = "pipeline"), allow(dead_code))]
    Pipeline(Box<PipelineRow>),
    /// Answered once everything queued before it is written or given up.
    Flush {
        run: Uuid,
        done: oneshot::Sender<Tally>,
    },
}

impl Op {
    fn run(&self) -> Option<Uuid> {
        match self {
            Op::Flow(_) | Op::Pipeline(_) => None,
            Op::NodeOutput(o) => Some(o.run),
            Op::RunStarted(r) => Some(r.run),
            Op::RunState { run, .. } | Op::Log { run, .. } | Op::Flush { run, .. } => Some(*run),
            Op::Change(c) => Some(c.run),
            Op::Task(t) => Some(t.run),
        }
    }
}

pub(crate) struct FlowRow {
    pub name: String,
    pub version: String,
    pub graph: String,
    pub at: i64,
}

/// The first row of a flow run.
pub(crate) struct RunStart {
    pub run: Uuid,
    pub flow: String,
    pub version: String,
    pub params: String,
    /// The parent run and node of a subflow's run.
    pub parent: Option<(Uuid, u32)>,
    pub at: i64,
}

/// A state change of a flow run (node None) or task run.
pub(crate) struct Change {
    pub run: Uuid,
    pub seq: u64,
    pub node: Option<u32>,
    pub map_index: Option<u32>,
    pub name: &'static str,
    pub state: StateKind,
    pub message: Option<Box<str>>,
    pub attempt: u32,
    pub at: i64,
}

/// A task run's row, or an update of it: its latest state and message, attempts, lifecycle
/// timestamps (scheduled = Pending, started = first Running, ended = final state).
#[derive(Clone)]
pub(crate) struct TaskOp {
    pub run: Uuid,
    pub node: u32,
    pub map_index: Option<u32>,
    pub task: &'static str,
    pub state: StateKind,
    pub attempts: u32,
    pub message: Option<Box<str>>,
    pub scheduled: Option<i64>,
    pub started: Option<i64>,
    pub ended: Option<i64>,
    /// Cache key and result location (final reports only).
    pub keys: Option<Box<(Option<String>, Option<String>)>>,
    /// What the row stands for besides itself (bits `record::IN_ROW`, `LINE_START`,
    /// `LINE_END`): state changes and log lines read back from its timestamps, not stored.
    pub lifecycle: u8,
    /// True for a state change (false: the engine's final report).
    pub event: bool,
}

impl TaskOp {
    /// Folds `newer` into this row; returns the state change `newer` would hide (a final state
    /// replaced by another one), which then needs a row of its own.
    fn merge(&mut self, newer: TaskOp) -> Option<Change> {
        let hidden = (self.lifecycle & super::record::IN_ROW != 0
            && newer.event
            && self.state.is_final()
            && newer.state.is_final()
            && (self.state, self.ended) != (newer.state, newer.ended))
            .then(|| Change {
                run: self.run,
                // Unique within the run at this instant (state_changes' key on SQLite).
                seq: hidden_seq(self.node, self.map_index),
                node: Some(self.node),
                map_index: self.map_index,
                name: self.task,
                state: self.state,
                message: self.message.clone(),
                attempt: self.attempts,
                at: self.ended.unwrap_or_default(),
            });
        let keys = match (self.keys.take(), newer.keys) {
            (Some(old), Some(new)) => Some(Box::new((new.0.or(old.0), new.1.or(old.1)))),
            (old, new) => new.or(old),
        };
        *self = TaskOp {
            scheduled: self.scheduled.or(newer.scheduled),
            started: self.started.or(newer.started),
            keys,
            lifecycle: self.lifecycle | newer.lifecycle,
            ..newer
        };
        hidden
    }
}

/// The seq of a replaced final state's row: one per task run, above the process counter's
/// (and still an i64).
fn hidden_seq(node: u32, map_index: Option<u32>) -> u64 {
    let index = map_index.map_or(0, |i| u64::from(i) + 1);
    (1 << 62) + ((u64::from(node & 0x3fff_ffff) << 32) | index)
}

/// A pipeline file's version.
pub(crate) struct PipelineRow {
    pub name: String,
    pub version: String,
    pub source: String,
    pub path: Option<String>,
    pub at: i64,
}

/// A pipeline node's command and outcome (the last attempt's) in flow run `run`.
pub(crate) struct NodeOutputRow {
    pub run: Uuid,
    pub rec: NodeOutputRecord,
}

/// How much of one flow run's history reached the database.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    /// Rows queued for the run and not yet written or given up.
    pub queued: u64,
    pub recorded: u64,
    pub lost: u64,
    pub error: Option<String>,
}

struct QueueState {
    ops: Vec<Op>,
    /// Per run: rows queued, written, lost. Created when a run's first row is queued, removed
    /// when its flush is answered or abandoned.
    tallies: HashMap<Uuid, Tally>,
    /// The writer is gone: producers no longer wait.
    closed: bool,
}

/// Rows waiting for the writer. Bounded: a producer finding `cap` rows waits until the writer
/// has taken them (the writer itself never waits).
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the writer.
    ready: Condvar,
    /// Wakes producers waiting for room.
    room: Condvar,
    pub(crate) cap: usize,
    pub(crate) seq: AtomicU64,
}

std::thread_local! {
    static IS_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Queue {
    pub(crate) fn new(cap: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                ops: Vec::with_capacity(BATCH),
                tallies: HashMap::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
            cap,
            seq: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `op`, waiting while the queue is full.
    pub(crate) fn push(&self, op: Op) {
        let flush = matches!(op, Op::Flush { .. });
        let mut st = self.lock();
        if !flush && !IS_WRITER.with(|w| w.get()) {
            while st.ops.len() >= self.cap && !st.closed {
                st = self.room.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        if let (Some(run), false) = (op.run(), flush) {
            let closed = st.closed;
            let t = st.tallies.entry(run).or_default();
            if closed {
                t.lost += 1;
                t.error
                    .get_or_insert_with(|| "the history writer stopped".to_owned());
                return;
            }
            t.queued += 1;
        }
        st.ops.push(op);
        let wake = flush || st.ops.len() == BATCH;
        drop(st);
        if wake {
            self.ready.notify_one();
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Everything queued, waiting at most `tick` for something to arrive.
    fn take(&self, tick: Duration) -> Vec<Op> {
        let mut st = self.lock();
        if st.ops.is_empty() {
            st = self
                .ready
                .wait_timeout(st, tick)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let ops = std::mem::replace(&mut st.ops, Vec::with_capacity(BATCH));
        drop(st);
        self.room.notify_all();
        ops
    }

    /// Records what became of `n` rows of `run`.
    fn settle(&self, outcomes: impl IntoIterator<Item = (Uuid, u64, u64, Option<String>)>) {
        let mut st = self.lock();
        for (run, recorded, lost, error) in outcomes {
            if let Some(t) = st.tallies.get_mut(&run) {
                t.queued = t.queued.saturating_sub(recorded + lost);
                t.recorded += recorded;
                t.lost += lost;
                if error.is_some() {
                    t.error = error;
                }
            }
        }
    }

    /// The run's tally, removed: its flush was answered.
    fn finish(&self, run: Uuid) -> Tally {
        self.lock().tallies.remove(&run).unwrap_or_default()
    }

    /// Gives up waiting for `run`: rows still queued or being written count as lost.
    pub(crate) fn abandon(&self, run: Uuid) -> Tally {
        let mut t = self.finish(run);
        t.lost += std::mem::take(&mut t.queued);
        t
    }

    /// Drops what is left of `run`'s tally (its recorder is gone).
    pub(crate) fn forget(&self, run: Uuid) {
        self.lock().tallies.remove(&run);
    }

    fn close(&self) {
        self.lock().closed = true;
        self.room.notify_all();
    }
}

/// The writer: a thread of its own, until every `Store` handle is gone. Runs on the store's
/// runtime thread, which keeps serving reads (and PostgreSQL writes) meanwhile.
pub(crate) async fn run(inner: Arc<Inner>) {
    let (done, finished) = oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("weft-history-writer".into())
        .spawn(move || {
            IS_WRITER.with(|w| w.set(true));
            write_loop(&inner);
            inner.queue.close();
            let _ = done.send(());
        });
    if spawned.is_ok() {
        let _ = finished.await;
    }
}

/// Where the writer writes.
enum Sink {
    /// A SQLite file, written directly; checkpointed by another thread when it could start.
    Sqlite(Box<rusqlite::Connection>, Option<Checkpointer>),
    /// Through the store's pool (PostgreSQL, in-memory SQLite).
    Pool,
}

/// The file of a `sqlite://` URL (None: in memory, or not SQLite).
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:" && !rest.contains("mode=memory")).then_some(path)
}

pub(super) fn open_sqlite(path: &str) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // A small page cache: SQLite scans all of it at the end of every write transaction
    // (pcache1TruncateUnsafe was the top entry of the profile with 64 MiB), and it is resident.
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -4096")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn write_loop(inner: &Arc<Inner>) {
    let mut sink = match (inner.backend, sqlite_file(&inner.options.url)) {
        (Backend::Sqlite, Some(path)) => match open_sqlite(path) {
            Ok(c) => {
                let checkpointer = Checkpointer::start(path);
                if checkpointer.is_some() {
                    if let Err(e) = c.execute_batch("PRAGMA wal_autocheckpoint = 0") {
                        tracing::debug!(target: "weft::store", "Run history: {e}");
                    }
                }
                Sink::Sqlite(Box::new(c), checkpointer)
            }
            Err(e) => {
                tracing::debug!(target: "weft::store", "Run history: writing through the pool ({e})");
                Sink::Pool
            }
        },
        _ => Sink::Pool,
    };
    let mut flows_seen: std::collections::HashSet<(String, String)> = Default::default();
    // Runs taken from this process (see `reaper`), with why: their rows are refused.
    let mut fenced: HashMap<Uuid, String> = HashMap::new();
    loop {
        let ops = inner.queue.take(TICK);
        if ops.is_empty() {
            if Arc::strong_count(inner) == 1 {
                return; // every Store handle is gone
            }
            continue;
        }
        let (mut batch, flushes, refused_now) = split(ops, &flows_seen, &fenced);
        settle_fenced(inner, &fenced, refused_now);
        if !batch.is_empty() {
            let outcome = write_fenced(inner, &mut sink, &mut batch, &mut fenced);
            let ok = outcome.is_ok();
            let (refused, error) = match outcome {
                Ok(refused) => (refused, None),
                Err(e) => (Refused::default(), Some(e)),
            };
            inner
                .queue
                .settle(batch.per_run.iter().map(|(run, n)| match &error {
                    None => {
                        let lost = refused.per_run.get(run).copied().unwrap_or(0).min(*n);
                        let why = (lost > 0).then(|| refused.error.clone()).flatten();
                        (*run, n - lost, lost, why)
                    }
                    Some(e) => (*run, 0, *n, Some(e.clone())),
                }));
            if ok {
                flows_seen.extend(
                    batch
                        .flows
                        .iter()
                        .map(|f| (f.name.clone(), f.version.clone())),
                );
            }
        }
        for (run, done) in flushes {
            fenced.remove(&run);
            let mut t = inner.queue.finish(run);
            // Rows queued after the flush (none, for a run that ended) are not its history.
            t.queued = 0;
            let _ = done.send(t);
        }
    }
}

/// A flush waiting for its run's rows.
type Flushes = Vec<(Uuid, oneshot::Sender<Tally>)>;

/// The batch of `ops`, the flushes among them, and how many rows of runs taken from this
/// process they held (not in the batch).
fn split(
    ops: Vec<Op>,
    flows_seen: &std::collections::HashSet<(String, String)>,
    fenced: &HashMap<Uuid, String>,
) -> (Batch, Flushes, HashMap<Uuid, u64>) {
    let mut batch = Batch::default();
    let mut flushes = Vec::new();
    let mut refused = HashMap::new();
    for op in ops {
        match op {
            Op::Flush { run, done } => flushes.push((run, done)),
            Op::Flow(f) if flows_seen.contains(&(f.name.clone(), f.version.clone())) => {}
            op if !fenced.is_empty() && op.run().is_some_and(|r| fenced.contains_key(&r)) => {
                *refused.entry(op.run().unwrap_or_default()).or_default() += 1;
            }
            op => batch.add(op),
        }
    }
    (batch, flushes, refused)
}

/// Rows the database refused one by one (a bad value, not a lost connection).
#[derive(Default)]
struct Refused {
    per_run: HashMap<Uuid, u64>,
    error: Option<String>,
    /// Runs whose lease was no longer this process's (another process ended them): with
    /// their stored state and message. When any, nothing of the batch was committed.
    fenced: Vec<Fenced>,
}

/// A run taken from this process: its id, state and message as stored.
type Fenced = (Uuid, String, String);

impl Refused {
    fn add(&mut self, run: Option<Uuid>, ops: u64, error: String) {
        if let Some(run) = run {
            *self.per_run.entry(run).or_default() += ops;
        }
        tracing::warn!(target: "weft::store", "Run history: a row was refused and dropped ({error})");
        self.error = Some(error);
    }
}

/// Counts `rows` of runs taken from this process as lost.
fn settle_fenced(inner: &Inner, fenced: &HashMap<Uuid, String>, rows: HashMap<Uuid, u64>) {
    if rows.is_empty() {
        return;
    }
    inner.queue.settle(rows.into_iter().map(|(run, n)| {
        let why = fenced.get(&run).cloned();
        (run, 0, n, why)
    }));
}

/// Writes the batch, after checking in its transaction that the runs this process claimed are
/// still its own (their lease): the rows of runs taken from it are removed from the batch and
/// counted lost, their copies in this process cancelled, and the rest written.
fn write_fenced(
    inner: &Inner,
    sink: &mut Sink,
    batch: &mut Batch,
    fenced: &mut HashMap<Uuid, String>,
) -> Result<Refused, String> {
    let mut leases = inner.owners.leases(batch.per_run.keys());
    loop {
        let refused = write_with_retry(inner, sink, batch, &mut leases)?;
        if refused.fenced.is_empty() {
            return Ok(refused);
        }
        let mut taken = HashMap::new();
        for (run, state, why) in refused.fenced {
            inner.owners.taken(run, &state, &why);
            let reason = format!(
                "the run was {}: this process was taken for dead, and its rows about the run \
                 are refused",
                super::cancel::taken_why(&state, &why)
            );
            taken.insert(run, reason);
        }
        leases.retain(|(run, _)| !taken.contains_key(run));
        let dropped = batch.drop_runs(&taken);
        fenced.extend(taken);
        settle_fenced(inner, fenced, dropped.into_iter().collect());
        if batch.is_empty() {
            return Ok(Refused::default());
        }
    }
}

/// Writes the batch, trying again while the database is away (up to `retry_for`). A batch that
/// waited is fenced as of when it is written: before each new try `leases` is taken again, now
/// with the runs that grew old enough to have been reaped meanwhile, and those that ended here
/// while their rows waited.
fn write_with_retry(
    inner: &Inner,
    sink: &mut Sink,
    batch: &Batch,
    leases: &mut Vec<(Uuid, i64)>,
) -> Result<Refused, String> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let result = match sink {
            Sink::Sqlite(conn, checkpointer) => {
                let written = write_sqlite(conn, batch, leases).map_err(|e| e.to_string());
                if let (Ok(_), Some(c)) = (&written, checkpointer) {
                    c.committed();
                }
                written
            }
            Sink::Pool => inner
                .runtime
                .block_on(write_pooled(inner, batch, leases))
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(refused) => return Ok(refused),
            Err(e) => {
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
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
                let starting: std::collections::HashSet<Uuid> = batch
                    .runs
                    .iter()
                    .filter(|r| r.start.is_some())
                    .map(|r| r.id)
                    .collect();
                *leases = inner.owners.leases_after_wait(
                    batch
                        .per_run
                        .keys()
                        .map(|run| (*run, starting.contains(run))),
                );
            }
        }
    }
}

/// A task run's row in a batch and how many queued rows it stands for.
struct TaskRow {
    op: TaskOp,
    ops: u64,
}

/// One transaction's worth of rows, coalesced: a run's flow_runs row and each task run's row are
/// written once with their latest values.
#[derive(Default)]
struct Batch {
    flows: Vec<FlowRow>,
    runs: Vec<RunRow>,
    run_index: HashMap<Uuid, usize>,
    tasks: Vec<TaskRow>,
    task_index: HashMap<(Uuid, u32, u32), usize>,
    changes: Vec<Change>,
    logs: Vec<(Uuid, u64, i64, &'static str, Box<str>)>,
    outputs: Vec<NodeOutputRow>,
    pipelines: Vec<PipelineRow>,
    per_run: HashMap<Uuid, u64>,
    /// Flow runs (task false) and task runs that reached a final state, with when.
    ended: Vec<(Uuid, bool, StateKind, i64)>,
}

struct RunRow {
    id: Uuid,
    /// Set when the run started in this batch: the row is inserted, else updated.
    start: Option<RunStart>,
    state: Option<(StateKind, Option<Box<str>>, i64)>,
    ops: u64,
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
            Op::Flow(f) => {
                if !self
                    .flows
                    .iter()
                    .any(|g| g.name == f.name && g.version == f.version)
                {
                    self.flows.push(*f);
                }
            }
            Op::RunStarted(start) => {
                let row = self.run_row(start.run);
                row.ops += 1;
                row.start = Some(*start);
            }
            Op::RunState {
                run,
                state,
                message,
                at,
            } => {
                if state.is_final() {
                    self.ended.push((run, false, state, at));
                }
                let row = self.run_row(run);
                row.ops += 1;
                row.state = Some((state, message, at));
            }
            Op::Change(c) => self.changes.push(c),
            Op::Task(t) => {
                // The engine's final report: one per task run (a mapped node's summary has no
                // state change of its own).
                if !t.event {
                    let at = t.ended.or(t.started).unwrap_or_else(|| micros(Utc::now()));
                    if t.state.is_final() {
                        self.ended.push((t.run, true, t.state, at));
                    }
                }
                let key = (t.run, t.node, t.map_index.unwrap_or(u32::MAX));
                match self.task_index.get(&key) {
                    Some(&i) => {
                        let row = &mut self.tasks[i];
                        row.ops += 1;
                        if let Some(hidden) = row.op.merge(t) {
                            self.changes.push(hidden);
                        }
                    }
                    None => {
                        self.task_index.insert(key, self.tasks.len());
                        self.tasks.push(TaskRow { op: t, ops: 1 });
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
            Op::NodeOutput(o) => self.outputs.push(*o),
            Op::Pipeline(p) => self.pipelines.push(*p),
            Op::Flush { .. } => {}
        }
    }
    /// The batch's ends, to add to the run counts.
    fn ends(&self) -> Ends {
        let mut ends = Ends::default();
        for &(run, task, state, at) in &self.ended {
            match task {
                true => ends.task_runs(state, at, 1),
                false => ends.flow_run(run, state, at),
            }
        }
        ends
    }
    /// Removes every row of the runs in `runs` (their rows are refused): how many queued rows
    /// each stood for.
    fn drop_runs(&mut self, runs: &HashMap<Uuid, String>) -> Vec<(Uuid, u64)> {
        let gone = |r: &Uuid| runs.contains_key(r);
        self.runs.retain(|r| !gone(&r.id));
        self.run_index.clear();
        self.tasks.retain(|t| !gone(&t.op.run));
        self.task_index.clear();
        self.changes.retain(|c| !gone(&c.run));
        self.logs.retain(|l| !gone(&l.0));
        self.outputs.retain(|o| !gone(&o.run));
        self.ended.retain(|e| !gone(&e.0));
        runs.keys()
            .filter_map(|r| self.per_run.remove(r).map(|n| (*r, n)))
            .collect()
    }
    fn run_row(&mut self, id: Uuid) -> &mut RunRow {
        let i = *self.run_index.entry(id).or_insert_with(|| {
            self.runs.push(RunRow {
                id,
                start: None,
                state: None,
                ops: 0,
            });
            self.runs.len() - 1
        });
        &mut self.runs[i]
    }
}

// ---- SQL shared by both writers ----

const INSERT_FLOW: &str =
    "INSERT INTO flows (name, version, graph, first_seen) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (name, version) DO NOTHING";
// A resumed run keeps its first start; it is running again, not claimed yet (no lease). A run
// a worker claimed (Pending, with a worker) keeps the worker's lease and starts now.
const INSERT_RUN: &str =
    "INSERT INTO flow_runs (id, flow, flow_version, parameters, state, message, started, ended, \
     parent_run, parent_node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (id) DO UPDATE SET flow_version = excluded.flow_version, \
     parameters = excluded.parameters, state = excluded.state, \
     message = excluded.message, ended = excluded.ended, \
     started = CASE WHEN flow_runs.worker IS NOT NULL AND flow_runs.state = 'Pending' \
     THEN excluded.started ELSE flow_runs.started END, \
     lease = CASE WHEN flow_runs.worker IS NOT NULL AND flow_runs.state = 'Pending' \
     THEN flow_runs.lease ELSE NULL END";
const UPDATE_RUN: &str = "UPDATE flow_runs SET state = $1, message = $2, ended = $3 WHERE id = $4";
const INSERT_PIPELINE: &str =
    "INSERT INTO pipelines (name, version, source, path, registered) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (name, version) DO NOTHING";
// A retried node keeps its last attempt's output.
const INSERT_OUTPUT: &str =
    "INSERT INTO node_outputs (flow_run_id, node, command, exit_code, signal, stdout, stderr, \
     stdout_total, stderr_total, stdout_key, stderr_key, started, ended) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (flow_run_id, node) DO UPDATE SET command = excluded.command, \
     exit_code = excluded.exit_code, signal = excluded.signal, stdout = excluded.stdout, \
     stderr = excluded.stderr, stdout_total = excluded.stdout_total, \
     stderr_total = excluded.stderr_total, stdout_key = excluded.stdout_key, \
     stderr_key = excluded.stderr_key, started = excluded.started, ended = excluded.ended";
const TASK_HEAD: &str =
    "INSERT INTO task_runs (flow_run_id, node, map_index, task, state, message, attempts, \
     scheduled, started, ended, cache_key, result, lifecycle_in_row)";
const TASK_COLS: usize = 13;
const TASK_TAIL: &str =
    " ON CONFLICT (flow_run_id, node, map_index) DO UPDATE SET task = excluded.task, \
     state = excluded.state, message = excluded.message, attempts = excluded.attempts, \
     scheduled = COALESCE(task_runs.scheduled, excluded.scheduled), \
     started = COALESCE(task_runs.started, excluded.started), ended = excluded.ended, \
     cache_key = COALESCE(excluded.cache_key, task_runs.cache_key), \
     result = COALESCE(excluded.result, task_runs.result), \
     lifecycle_in_row = task_runs.lifecycle_in_row | excluded.lifecycle_in_row";
const CHANGE_HEAD: &str = "INSERT INTO state_changes (flow_run_id, seq, node, map_index, name, state, message, attempt, at)";
const CHANGE_COLS: usize = 9;
const LOG_HEAD: &str = "INSERT INTO logs (flow_run_id, seq, at, level, message)";
const LOG_COLS: usize = 5;

fn single_row(head: &str, cols: usize, tail: &str) -> String {
    values_sql(Backend::Postgres, head, cols, 1, tail)
}

// ---- SQLite, directly ----

/// True for errors of the database as a whole (busy, I/O, full...): the batch is retried. Other
/// errors are the row's own: it is dropped.
fn whole_batch(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            DatabaseBusy
                | DatabaseLocked
                | SystemIoFailure
                | DiskFull
                | CannotOpen
                | ReadOnly
                | OutOfMemory
                | DatabaseCorrupt
                | NotADatabase
                | FileLockingProtocolFailed
                | PermissionDenied
                | SchemaChanged
        ),
        _ => false,
    }
}

/// A row's outcome: refused rows are counted, the batch goes on.
fn row_outcome(
    r: rusqlite::Result<usize>,
    refused: &mut Refused,
    run: Option<Uuid>,
    ops: u64,
) -> rusqlite::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if whole_batch(&e) => Err(e),
        Err(e) => {
            refused.add(run, ops, e.to_string());
            Ok(())
        }
    }
}

/// The runs among `leases` whose stored lease is another process's (in the write transaction).
fn fenced_sqlite(
    tx: &rusqlite::Transaction<'_>,
    leases: &[(Uuid, i64)],
) -> rusqlite::Result<Vec<Fenced>> {
    use rusqlite::OptionalExtension;
    let mut fenced = Vec::new();
    if leases.is_empty() {
        return Ok(fenced);
    }
    let mut st = tx.prepare_cached("SELECT lease, state, message FROM flow_runs WHERE id = ?1")?;
    for (run, token) in leases {
        let row = st
            .query_row([run.to_string()], |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .optional()?;
        if let Some((Some(lease), state, message)) = row {
            if lease != *token {
                fenced.push((*run, state, message.unwrap_or_default()));
            }
        }
    }
    Ok(fenced)
}

fn write_sqlite(
    conn: &mut rusqlite::Connection,
    b: &Batch,
    leases: &[(Uuid, i64)],
) -> rusqlite::Result<Refused> {
    use rusqlite::params;
    let mut refused = Refused::default();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    refused.fenced = fenced_sqlite(&tx, leases)?;
    if !refused.fenced.is_empty() {
        return Ok(refused); // rolled back when dropped
    }
    let ids: HashMap<Uuid, String> = b.per_run.keys().map(|u| (*u, u.to_string())).collect();
    let id = |u: &Uuid| -> Cow<'_, str> {
        ids.get(u)
            .map_or_else(|| Cow::Owned(u.to_string()), |s| Cow::Borrowed(s.as_str()))
    };
    {
        let mut st = tx.prepare_cached(&sqlite_sql(INSERT_FLOW))?;
        for f in &b.flows {
            let r = st.execute(params![f.name, f.version, f.graph, ts_micros(f.at)]);
            row_outcome(r, &mut refused, None, 1)?;
        }
    }
    for r in &b.runs {
        let (kind, message, ended) = run_state(r);
        let res = match &r.start {
            Some(s) => tx.prepare_cached(&sqlite_sql(INSERT_RUN))?.execute(params![
                id(&r.id),
                s.flow,
                s.version,
                s.params,
                kind.unwrap_or(StateKind::Pending.as_str()),
                message,
                ts_micros(s.at),
                ended,
                s.parent.map(|(p, _)| p.to_string()),
                s.parent.map(|(_, n)| i64::from(n)),
            ]),
            None => match kind {
                Some(kind) => tx.prepare_cached(&sqlite_sql(UPDATE_RUN))?.execute(params![
                    kind,
                    message,
                    ended,
                    id(&r.id)
                ]),
                None => Ok(0),
            },
        };
        row_outcome(res, &mut refused, Some(r.id), r.ops)?;
    }
    if !b.pipelines.is_empty() {
        let mut st = tx.prepare_cached(&sqlite_sql(INSERT_PIPELINE))?;
        for p in &b.pipelines {
            let r = st.execute(params![
                p.name,
                p.version,
                p.source,
                p.path,
                ts_micros(p.at)
            ]);
            row_outcome(r, &mut refused, None, 1)?;
        }
    }
    if !b.outputs.is_empty() {
        let mut st = tx.prepare_cached(&sqlite_sql(INSERT_OUTPUT))?;
        for row in &b.outputs {
            let o = &row.rec;
            let r = st.execute(params![
                id(&row.run),
                i64::from(o.node),
                o.command,
                o.exit_code.map(i64::from),
                o.signal.map(i64::from),
                o.stdout,
                o.stderr,
                o.stdout_total as i64,
                o.stderr_total as i64,
                o.stdout_key,
                o.stderr_key,
                ts(o.started),
                ts(o.ended),
            ]);
            row_outcome(r, &mut refused, Some(row.run), 1)?;
        }
    }
    if !b.tasks.is_empty() {
        let mut st =
            tx.prepare_cached(&sqlite_sql(&single_row(TASK_HEAD, TASK_COLS, TASK_TAIL)))?;
        for row in &b.tasks {
            let t = &row.op;
            let (key, result) = t
                .keys
                .as_deref()
                .map_or((None, None), |k| (k.0.as_deref(), k.1.as_deref()));
            let r = st.execute(params![
                id(&t.run),
                i64::from(t.node),
                t.map_index.map_or(-1, i64::from),
                t.task,
                t.state.as_str(),
                t.message.as_deref(),
                i64::from(t.attempts),
                t.scheduled.map(ts_micros),
                t.started.map(ts_micros),
                t.ended.map(ts_micros),
                key,
                result,
                i64::from(t.lifecycle),
            ]);
            row_outcome(r, &mut refused, Some(t.run), row.ops)?;
        }
    }
    if !b.changes.is_empty() {
        let mut st = tx.prepare_cached(&sqlite_sql(&single_row(CHANGE_HEAD, CHANGE_COLS, "")))?;
        for c in &b.changes {
            let r = st.execute(params![
                id(&c.run),
                c.seq as i64,
                c.node.map(i64::from),
                c.map_index.map(i64::from),
                c.name,
                c.state.as_str(),
                c.message.as_deref(),
                i64::from(c.attempt),
                ts_micros(c.at),
            ]);
            row_outcome(r, &mut refused, Some(c.run), 1)?;
        }
    }
    if !b.logs.is_empty() {
        let mut st = tx.prepare_cached(&sqlite_sql(&single_row(LOG_HEAD, LOG_COLS, "")))?;
        for (run, seq, at, level, message) in &b.logs {
            let r = st.execute(params![
                id(run),
                *seq as i64,
                ts_micros(*at),
                level,
                &**message
            ]);
            row_outcome(r, &mut refused, Some(*run), 1)?;
        }
    }
    b.ends().write_sqlite(&tx)?;
    tx.commit()?;
    Ok(refused)
}

/// `$n` placeholders as SQLite's `?n`.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// A run row's state, message and end as stored.
fn run_state(r: &RunRow) -> (Option<&'static str>, Option<&str>, Option<String>) {
    match &r.state {
        Some((k, m, at)) => (
            Some(k.as_str()),
            m.as_deref(),
            k.is_final().then(|| ts_micros(*at)),
        ),
        None => (None, None, None),
    }
}

// ---- through the pool: PostgreSQL, in-memory SQLite ----

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

/// PostgreSQL: task runs upserted from one JSON array (`json_to_recordset`): one statement, one
/// round trip and one parse per batch instead of a statement per 500 rows of 13 placeholders.
fn task_json_sql() -> String {
    const TYPES: [&str; TASK_COLS] = [
        "flow_run_id text",
        "node bigint",
        "map_index bigint",
        "task text",
        "state text",
        "message text",
        "attempts bigint",
        "scheduled text",
        "started text",
        "ended text",
        "cache_key text",
        "result text",
        "lifecycle_in_row bigint",
    ];
    let cols: Vec<&str> = TYPES
        .iter()
        .map(|t| t.split(' ').next().unwrap_or(t))
        .collect();
    format!(
        "{TASK_HEAD} SELECT {} FROM json_to_recordset($1::json) AS r({}){TASK_TAIL}",
        cols.join(", "),
        TYPES.join(", ")
    )
}

/// One task row as `task_json_sql` reads it.
#[derive(serde::Serialize)]
struct TaskJson<'a> {
    flow_run_id: &'a str,
    node: u32,
    map_index: i64,
    task: Cow<'a, str>,
    state: &'static str,
    message: Option<Cow<'a, str>>,
    attempts: u32,
    scheduled: Option<String>,
    started: Option<String>,
    ended: Option<String>,
    cache_key: Option<Cow<'a, str>>,
    result: Option<Cow<'a, str>>,
    lifecycle_in_row: u8,
}

/// The rows as a JSON array, NUL characters replaced (PostgreSQL refuses `\u0000` in text).
fn task_rows_json(rows: &[TaskRow], ids: &HashMap<Uuid, String>) -> String {
    fn text(s: &str) -> Cow<'_, str> {
        if s.contains('\0') {
            Cow::Owned(s.replace('\0', "\u{FFFD}"))
        } else {
            Cow::Borrowed(s)
        }
    }
    let json: Vec<TaskJson<'_>> = rows
        .iter()
        .map(|row| {
            let t = &row.op;
            let (key, result) = t
                .keys
                .as_deref()
                .map_or((None, None), |k| (k.0.as_deref(), k.1.as_deref()));
            TaskJson {
                flow_run_id: ids.get(&t.run).map_or("", String::as_str),
                node: t.node,
                map_index: t.map_index.map_or(-1, i64::from),
                task: text(t.task),
                state: t.state.as_str(),
                message: t.message.as_deref().map(text),
                attempts: t.attempts,
                scheduled: t.scheduled.map(ts_micros),
                started: t.started.map(ts_micros),
                ended: t.ended.map(ts_micros),
                cache_key: key.map(text),
                result: result.map(text),
                lifecycle_in_row: t.lifecycle,
            }
        })
        .collect();
    serde_json::to_string(&json).unwrap_or_default()
}

/// A multi-row insert split into chunks of `rows` rows (under SQLite's and PostgreSQL's limits on
/// bound values): the SQL of a full chunk and of the shorter last one. `rows` is 1 when the
/// batch is written row by row (after the database refused a multi-row statement).
struct Statement {
    rows: usize,
    full: String,
    last: String,
}

impl Statement {
    fn new(
        backend: Backend,
        head: &str,
        cols: usize,
        tail: &str,
        total: usize,
        one_by_one: bool,
    ) -> Statement {
        let rows = if one_by_one {
            1
        } else {
            (8000 / cols).min(500)
        };
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
    fn query(&self, rows: usize) -> Query<'_> {
        db::query(if rows == self.rows {
            &self.full
        } else {
            &self.last
        })
    }
}

/// Text as PostgreSQL accepts it: no NUL characters (replaced by U+FFFD). SQLite keeps text as
/// given.
fn clean(backend: Backend, s: &str) -> String {
    if backend == Backend::Postgres && s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

fn clean_opt(backend: Backend, s: Option<&str>) -> Option<String> {
    s.map(|s| clean(backend, s))
}

/// Writes the batch with multi-row statements; when the database refuses one (a bad value, not
/// a lost connection), writes it again row by row, each row behind a savepoint, and drops only
/// the rows refused.
async fn write_pooled(
    inner: &Inner,
    b: &Batch,
    leases: &[(Uuid, i64)],
) -> Result<Refused, db::Error> {
    match write_pooled_mode(inner, b, leases, false).await {
        Err(e) if lost_race(&e) => Err(e),
        Err(db::Error::Database(_)) => write_pooled_mode(inner, b, leases, true).await,
        other => other,
    }
}

/// A deadlock or a serialization failure (PostgreSQL's 40P01 and 40001): the transaction lost
/// a race with another, no row is at fault. The whole batch is tried again (as while the
/// database is away), instead of the row that happened to lose being dropped as refused.
fn lost_race(e: &db::Error) -> bool {
    matches!(e, db::Error::Database(d) if matches!(d.code().as_deref(), Some("40P01" | "40001")))
}

/// The runs among `leases` whose stored lease is another process's. On PostgreSQL their rows
/// are locked until the batch commits, so a reaper marking one waits for it (and the batch
/// waits for a marking under way).
async fn fenced_pooled(
    tx: &mut db::Transaction,
    backend: Backend,
    leases: &[(Uuid, i64)],
) -> Result<Vec<Fenced>, db::Error> {
    let mut fenced = Vec::new();
    let lock = match backend {
        Backend::Postgres => " ORDER BY id FOR UPDATE",
        Backend::Sqlite => "",
    };
    for chunk in leases.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, lease, state, message FROM flow_runs WHERE id IN ({}){lock}",
            marks.join(", ")
        );
        let q = chunk
            .iter()
            .fold(db::query(&sql), |q, (run, _)| q.bind(run.to_string()));
        let tokens: HashMap<String, i64> = chunk.iter().map(|(r, t)| (r.to_string(), *t)).collect();
        for row in q.fetch_all(&mut **tx).await? {
            let id: String = row.try_get("id")?;
            let lease: Option<i64> = row.try_get("lease")?;
            if let (Some(lease), Some(token)) = (lease, tokens.get(&id)) {
                if lease != *token {
                    let message: Option<String> = row.try_get("message")?;
                    let run = Uuid::parse_str(&id).unwrap_or_default();
                    fenced.push((run, row.try_get("state")?, message.unwrap_or_default()));
                }
            }
        }
    }
    Ok(fenced)
}

/// One statement's outcome in row-by-row mode: a refused row is rolled back to its savepoint.
async fn guarded(
    tx: &mut db::Transaction,
    one_by_one: bool,
    q: Query<'_>,
    refused: &mut Refused,
    run: Option<Uuid>,
    ops: u64,
) -> Result<(), db::Error> {
    if !one_by_one {
        q.execute(&mut **tx).await?;
        return Ok(());
    }
    tx.execute_batch("SAVEPOINT weft_row").await?;
    match q.execute(&mut **tx).await {
        Ok(_) => {
            tx.execute_batch("RELEASE SAVEPOINT weft_row").await?;
        }
        Err(e) if lost_race(&e) => return Err(e),
        Err(db::Error::Database(e)) => {
            tx.execute_batch("ROLLBACK TO SAVEPOINT weft_row").await?;
            refused.add(run, ops, e.to_string());
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

async fn write_pooled_mode(
    inner: &Inner,
    b: &Batch,
    leases: &[(Uuid, i64)],
    one_by_one: bool,
) -> Result<Refused, db::Error> {
    let be = inner.backend;
    let mut refused = Refused::default();
    let mut tx = inner.pool.begin().await?;
    refused.fenced = fenced_pooled(&mut tx, be, leases).await?;
    if !refused.fenced.is_empty() {
        tx.rollback().await?;
        return Ok(refused);
    }
    let sql = |s: &str| match be {
        Backend::Sqlite => sqlite_sql(s),
        Backend::Postgres => s.to_owned(),
    };
    let (flow_sql, run_sql, update_sql, pipe_sql, out_sql) = (
        sql(INSERT_FLOW),
        sql(INSERT_RUN),
        sql(UPDATE_RUN),
        sql(INSERT_PIPELINE),
        sql(INSERT_OUTPUT),
    );
    for f in &b.flows {
        let q = db::query(&flow_sql)
            .bind(clean(be, &f.name))
            .bind(clean(be, &f.version))
            .bind(clean(be, &f.graph))
            .bind(ts_micros(f.at));
        guarded(&mut tx, one_by_one, q, &mut refused, None, 1).await?;
    }
    for r in &b.runs {
        let (kind, message, ended) = run_state(r);
        let q = match &r.start {
            Some(s) => db::query(&run_sql)
                .bind(r.id.to_string())
                .bind(clean(be, &s.flow))
                .bind(clean(be, &s.version))
                .bind(clean(be, &s.params))
                .bind(kind.unwrap_or(StateKind::Pending.as_str()))
                .bind(clean_opt(be, message))
                .bind(ts_micros(s.at))
                .bind(ended)
                .bind(s.parent.map(|(p, _)| p.to_string()))
                .bind(s.parent.map(|(_, n)| i64::from(n))),
            None => match kind {
                Some(kind) => db::query(&update_sql)
                    .bind(kind)
                    .bind(clean_opt(be, message))
                    .bind(ended)
                    .bind(r.id.to_string()),
                None => continue,
            },
        };
        guarded(&mut tx, one_by_one, q, &mut refused, Some(r.id), r.ops).await?;
    }
    for p in &b.pipelines {
        let q = db::query(&pipe_sql)
            .bind(clean(be, &p.name))
            .bind(clean(be, &p.version))
            .bind(clean(be, &p.source))
            .bind(clean_opt(be, p.path.as_deref()))
            .bind(ts_micros(p.at));
        guarded(&mut tx, one_by_one, q, &mut refused, None, 1).await?;
    }
    for row in &b.outputs {
        let o = &row.rec;
        let q = db::query(&out_sql)
            .bind(row.run.to_string())
            .bind(i64::from(o.node))
            .bind(clean(be, &o.command))
            .bind(o.exit_code.map(i64::from))
            .bind(o.signal.map(i64::from))
            .bind(o.stdout.as_slice())
            .bind(o.stderr.as_slice())
            .bind(o.stdout_total as i64)
            .bind(o.stderr_total as i64)
            .bind(clean_opt(be, o.stdout_key.as_deref()))
            .bind(clean_opt(be, o.stderr_key.as_deref()))
            .bind(ts(o.started))
            .bind(ts(o.ended));
        guarded(&mut tx, one_by_one, q, &mut refused, Some(row.run), 1).await?;
    }
    // The multi-row statements, built one ahead: binding the next chunk's values here overlaps
    // with the database executing the current one.
    let ids: HashMap<Uuid, String> = b.per_run.keys().map(|u| (*u, u.to_string())).collect();
    let id = |u: &Uuid| ids.get(u).cloned().unwrap_or_else(|| u.to_string());
    // PostgreSQL takes the batch's task runs as one JSON document in one statement.
    let as_json = be == Backend::Postgres && !one_by_one && !b.tasks.is_empty();
    if as_json {
        db::query(&task_json_sql())
            .bind(task_rows_json(&b.tasks, &ids))
            .execute(&mut *tx)
            .await?;
    }
    let task_rows: &[TaskRow] = if as_json { &[] } else { &b.tasks };
    let tasks = Statement::new(
        be,
        TASK_HEAD,
        TASK_COLS,
        TASK_TAIL,
        task_rows.len(),
        one_by_one,
    );
    let changes = Statement::new(
        be,
        CHANGE_HEAD,
        CHANGE_COLS,
        "",
        b.changes.len(),
        one_by_one,
    );
    let logs = Statement::new(be, LOG_HEAD, LOG_COLS, "", b.logs.len(), one_by_one);
    // Each chunk with the run of its first row and the queued rows it stands for (row by row:
    // exactly its row's).
    type Chunk<'q> = (Query<'q>, Option<Uuid>, u64);
    let task_queries = task_rows.chunks(tasks.rows).map(|rows| -> Chunk<'_> {
        let q = rows.iter().fold(tasks.query(rows.len()), |q, row| {
            let t = &row.op;
            let (key, result) = t
                .keys
                .as_deref()
                .map_or((None, None), |k| (k.0.as_deref(), k.1.as_deref()));
            q.bind(id(&t.run))
                .bind(i64::from(t.node))
                .bind(t.map_index.map_or(-1, i64::from))
                .bind(clean(be, t.task))
                .bind(t.state.as_str())
                .bind(clean_opt(be, t.message.as_deref()))
                .bind(i64::from(t.attempts))
                .bind(t.scheduled.map(ts_micros))
                .bind(t.started.map(ts_micros))
                .bind(t.ended.map(ts_micros))
                .bind(clean_opt(be, key))
                .bind(clean_opt(be, result))
                .bind(i64::from(t.lifecycle))
        });
        (q, Some(rows[0].op.run), rows.iter().map(|r| r.ops).sum())
    });
    let change_queries = b.changes.chunks(changes.rows).map(|rows| -> Chunk<'_> {
        let q = rows.iter().fold(changes.query(rows.len()), |q, c| {
            q.bind(id(&c.run))
                .bind(c.seq as i64)
                .bind(c.node.map(i64::from))
                .bind(c.map_index.map(i64::from))
                .bind(clean(be, c.name))
                .bind(c.state.as_str())
                .bind(clean_opt(be, c.message.as_deref()))
                .bind(i64::from(c.attempt))
                .bind(ts_micros(c.at))
        });
        (q, Some(rows[0].run), rows.len() as u64)
    });
    let log_queries = b.logs.chunks(logs.rows).map(|rows| -> Chunk<'_> {
        let q = rows.iter().fold(
            logs.query(rows.len()),
            |q, (run, seq, at, level, message)| {
                q.bind(id(run))
                    .bind(*seq as i64)
                    .bind(ts_micros(*at))
                    .bind(*level)
                    .bind(clean(be, message))
            },
        );
        (q, Some(rows[0].0), rows.len() as u64)
    });
    let mut queries = task_queries.chain(change_queries).chain(log_queries);
    if one_by_one {
        for (q, run, ops) in queries {
            guarded(&mut tx, true, q, &mut refused, run, ops).await?;
        }
    } else {
        let mut next = queries.next();
        while let Some((q, _, _)) = next {
            let (done, following) = tokio::join!(q.execute(&mut *tx), async { queries.next() });
            done?;
            next = following;
        }
    }
    b.ends().write_pooled(&mut tx, be).await?;
    tx.commit().await?;
    Ok(refused)
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

    fn op(state: StateKind, started: Option<i64>, ended: Option<i64>, event: bool) -> Op {
        Op::Task(TaskOp {
            run: Uuid::nil(),
            node: 1,
            map_index: None,
            task: "t",
            state,
            attempts: 1,
            message: None,
            scheduled: None,
            started,
            ended,
            keys: (!event).then(|| Box::new((Some("k".to_owned()), None))),
            lifecycle: if event {
                crate::store::record::IN_ROW
            } else {
                0
            },
            event,
        })
    }

    #[test]
    fn later_task_rows_update_earlier_ones_but_keep_start_and_keys() {
        let mut b = Batch::default();
        b.add(op(StateKind::Running, Some(5), None, true));
        b.add(op(StateKind::Completed, None, Some(9), false));
        b.add(op(StateKind::Completed, None, Some(9), true));
        assert_eq!(b.tasks.len(), 1);
        let t = &b.tasks[0].op;
        assert_eq!(t.state, StateKind::Completed);
        assert_eq!((t.started, t.ended), (Some(5), Some(9)));
        assert_eq!(t.keys.as_ref().unwrap().0.as_deref(), Some("k"));
        assert_eq!(t.lifecycle, crate::store::record::IN_ROW);
        assert_eq!(b.tasks[0].ops, 3);
        assert_eq!(b.per_run[&Uuid::nil()], 3);
        assert!(b.changes.is_empty());
    }

    #[test]
    fn a_final_state_replaced_by_another_keeps_a_row_of_its_own() {
        let mut b = Batch::default();
        b.add(op(StateKind::Completed, Some(5), Some(9), true));
        b.add(op(StateKind::Failed, None, Some(10), true));
        assert_eq!(b.tasks[0].op.state, StateKind::Failed);
        assert_eq!(b.changes.len(), 1);
        assert_eq!(
            (b.changes[0].state, b.changes[0].at),
            (StateKind::Completed, 9)
        );
    }

    #[test]
    fn queued_timestamps_are_stored_as_ts_writes_them() {
        let now = Utc::now();
        for at in [
            now,
            now + chrono::Duration::microseconds(7),
            now + chrono::Duration::seconds(61),
        ] {
            assert_eq!(ts_micros(micros(at)), ts(at));
        }
        let old = DateTime::<Utc>::from_timestamp(-86_400 * 365 * 3000, 123_456_000).unwrap();
        assert_eq!(ts_micros(micros(old)), ts(old));
    }

    #[test]
    fn sqlite_files_of_urls() {
        assert_eq!(sqlite_file("sqlite:///a/b.db?mode=rwc"), Some("/a/b.db"));
        assert_eq!(sqlite_file("sqlite:rel.db"), Some("rel.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x/y"), None);
    }

    #[test]
    fn nul_is_replaced_for_postgres_only() {
        assert_eq!(clean(Backend::Postgres, "a\0b"), "a\u{FFFD}b");
        assert_eq!(clean(Backend::Sqlite, "a\0b"), "a\0b");
    }
}
