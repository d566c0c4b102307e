//! The zombie reaper: runs whose process died end Crashed instead of staying Running for ever.
//!
//! A run is a zombie when it is not final (Pending, Running, Retrying) and either
//!
//! - its owner (the process that claimed it, see the cancel module) is not live: its heartbeat
//!   is older than [`STALE`], or it ran on this host and its pid is gone; or
//! - no process ever claimed it and it started more than [`STALE`] ago: a process that is alive
//!   and reaches the database claims its runs within about 1.5 s, so its process died (or lost
//!   the database) within the run's first second.
//!
//! [`Store::reap`] marks each zombie Crashed, with its unfinished task runs and subflow runs, a
//! state change, a WARN log line (`Flow run CRASHED: process 4242 on host-a stopped heartbeating
//! at ...`) and the run counts, in one transaction per run. It runs in the watcher of every
//! process that has runs older than a second (every [`REAP_EVERY`]), in `weft server start`
//! ([`keep_reaping`]), and before `weft runs` and `weft run show` print.
//!
//! **Fencing.** Marking a run replaces its lease (`flow_runs.lease`, migration 10) with a new
//! token; the marking itself is guarded by the lease it read, so a run claimed again meanwhile
//! is left alone. A process that was only frozen or cut off from the database, and not dead,
//! finds its token gone: its writer refuses the run's rows (in the batch's transaction, under
//! the row's lock on PostgreSQL and the write lock on SQLite, so never interleaved with a
//! marking) and counts them lost in the run's [`HistoryReport`](super::HistoryReport), and the
//! process cancels its copy of the run. A reaped run stays as the reaper left it.

use super::cancel::{host_name, pid_alive, STALE};
use super::counts::Ends;
use super::db;
use super::queue::requeue;
use super::{parse_ts, ts, Backend, Store, StoreError};
use crate::state::StateKind;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// How often a process with runs going, and `weft server start`, look for zombies.
pub const REAP_EVERY: Duration = Duration::from_secs(3);

/// The states a run or task run may still leave, as an SQL list.
pub(super) const NOT_FINAL: &str = "('Scheduled', 'Late', 'Pending', 'Running', 'Retrying')";
/// The states of a run that has started and not ended (the `flow_runs_unfinished` index's).
const UNFINISHED: &str = "('Pending', 'Running', 'Retrying')";

/// A run [`Store::reap`] marked Crashed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Reaped {
    /// The flow run.
    pub id: Uuid,
    /// Why: which process stopped heartbeating, and when.
    pub message: String,
}

/// A new lease token: random, positive, never 0 (0 stands for "none" in guarded updates).
pub(super) fn new_token() -> i64 {
    ((Uuid::new_v4().as_u128() as u64) >> 1).max(1) as i64
}

impl Store {
    /// Marks Crashed every run whose process is gone: returns them. A run is reaped when it is
    /// not final and its owner's heartbeat is older than 10 s (or its owner ran on this host
    /// and its pid is gone), or when no process ever claimed it and it started more than 10 s
    /// ago. Its unfinished task runs and subflow runs end Crashed with it, with a state change,
    /// a WARN log line and the run counts; its lease is replaced, so that its process, were it
    /// only frozen or cut off, can no longer write about it. Cheap when there is nothing to
    /// reap: two indexed queries.
    ///
    /// ```
    /// use weft::prelude::*;
    /// use weft::store::Store;
    ///
    /// #[task] fn one() -> u32 { 1 }
    /// #[flow] async fn quick() -> u32 { let x = one()?; x }
    ///
    /// # #[tokio::main] async fn main() -> Result<(), weft::store::StoreError> {
    /// let dir = std::env::temp_dir().join(format!("weft-doc-reap-{}", std::process::id()));
    /// let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
    /// let run = quick::run_with(RunConfig::new().history(store.clone())).await;
    /// assert!(store.reap().await?.is_empty(), "a run that ended is no zombie");
    /// assert_eq!(store.run_record(run.id).await?.state, StateKind::Completed);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn reap(&self) -> Result<Vec<Reaped>, StoreError> {
        self.with_pool(|pool, backend| async move { reap(&pool, backend, Utc::now()).await })
            .await
    }
}

/// Reaps zombies every [`REAP_EVERY`], for ever: what `weft server start` runs beside its API.
/// Failures are logged and tried again.
pub async fn keep_reaping(store: Store) {
    loop {
        if let Err(e) = store.reap().await {
            tracing::debug!(target: "weft::store", "Run history: reaper: {e}");
        }
        tokio::time::sleep(REAP_EVERY).await;
    }
}

/// A process in the `processes` table.
struct Process {
    host: String,
    pid: i64,
    heartbeat: DateTime<Utc>,
}

impl Process {
    fn is_live(&self, now: DateTime<Utc>) -> bool {
        let fresh = (now - self.heartbeat).to_std().unwrap_or_default() < STALE;
        fresh && (self.host != host_name() || pid_alive(u32::try_from(self.pid).unwrap_or(0)))
    }
}

/// The registered processes by id.
async fn processes(pool: &db::Pool) -> Result<HashMap<String, Process>, StoreError> {
    let rows = db::query("SELECT id, host, pid, heartbeat FROM processes")
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|r| {
            let p = Process {
                host: r.try_get("host")?,
                pid: r.try_get("pid")?,
                heartbeat: parse_ts(&r.try_get::<String, _>("heartbeat")?)?,
            };
            Ok((r.try_get("id")?, p))
        })
        .collect()
}

/// A zombie found: its id, the lease read, its owner's process id (None: never claimed).
struct Candidate {
    id: String,
    /// The worker that claimed it, for a run of a pooled deployment.
    worker: Option<String>,
    lease: i64,
    started: String,
    owner: Option<String>,
}

/// The unfinished runs owned by no live process, top-level runs first.
async fn candidates(
    pool: &db::Pool,
    live: &[&String],
    now: DateTime<Utc>,
) -> Result<Vec<Candidate>, StoreError> {
    let marks: Vec<String> = (0..live.len()).map(|i| format!("${}", i + 2)).collect();
    let not_live = match marks.is_empty() {
        true => "o.process IS NOT NULL".to_owned(),
        false => format!("o.process NOT IN ({})", marks.join(", ")),
    };
    let sql = format!(
        "SELECT f.id, f.lease, f.started, f.worker, o.process FROM flow_runs f \
         LEFT JOIN run_owners o ON o.flow_run_id = f.id \
         WHERE f.state IN {UNFINISHED} AND ((o.process IS NULL AND f.started < $1) OR {not_live}) \
         ORDER BY (CASE WHEN f.parent_run IS NULL THEN 0 ELSE 1 END), f.started"
    );
    let q = live
        .iter()
        .fold(db::query(&sql).bind(ts(now - STALE)), |q, id| {
            q.bind(id.as_str())
        });
    q.fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| {
            Ok(Candidate {
                id: r.try_get("id")?,
                worker: r.try_get("worker")?,
                lease: r.try_get::<Option<i64>, _>("lease")?.unwrap_or(0),
                started: r.try_get("started")?,
                owner: r.try_get("process")?,
            })
        })
        .collect()
}

/// Why a candidate is a zombie, in words.
fn why(c: &Candidate, procs: &HashMap<String, Process>) -> String {
    let who = match &c.worker {
        Some(w) => format!("worker {w:?} ("),
        None => String::new(),
    };
    let end = if who.is_empty() { "" } else { ")" };
    match c.owner.as_ref().map(|o| procs.get(o)) {
        Some(Some(p)) => format!(
            "{who}process {} on {}{end} stopped heartbeating at {}",
            p.pid,
            p.host,
            p.heartbeat.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        Some(None) => "its process stopped heartbeating more than a day ago".to_owned(),
        None => format!(
            "no process ever claimed it: its process never claimed the run, which started at \
             {}, so it stopped (or lost the database) within the run's first second",
            parse_ts(&c.started).map_or(c.started.clone(), |t| t
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string())
        ),
    }
}

/// Finds the zombies and marks each Crashed (see [`Store::reap`]).
pub(super) async fn reap(
    pool: &db::Pool,
    backend: Backend,
    now: DateTime<Utc>,
) -> Result<Vec<Reaped>, StoreError> {
    let procs = processes(pool).await?;
    let live: Vec<&String> = procs
        .iter()
        .filter(|(_, p)| p.is_live(now))
        .map(|(id, _)| id)
        .collect();
    let mut reaped = Vec::new();
    for c in candidates(pool, &live, now).await? {
        let message = why(&c, &procs);
        let end = Ending {
            state: StateKind::Crashed,
            why: &message,
            lease: Some(c.lease),
            now,
        };
        let marked = mark_ended(pool, backend, &c.id, &end).await?;
        if marked.any() {
            tracing::warn!(target: "weft::store", "Flow run {} CRASHED: {message}", c.id);
            if let Marked::ScheduledAgain(why) = &marked {
                tracing::warn!(target: "weft::store", "Flow run {}: {why}", c.id);
            }
            let id = Uuid::parse_str(&c.id).unwrap_or_default();
            reaped.push(Reaped { id, message });
        }
    }
    Ok(reaped)
}

/// How a run is ended by another process than its own: cancelled (no live process owned it) or
/// crashed (reaped).
pub(super) struct Ending<'a> {
    pub state: StateKind,
    pub why: &'a str,
    /// The lease the run must still have (0: none) for the marking to happen; None: any.
    pub lease: Option<i64>,
    pub now: DateTime<Utc>,
}

/// What [`mark_ended`] did.
pub(super) enum Marked {
    /// Nothing: the run had ended (or was claimed again) meanwhile.
    No,
    /// The run ended in the state asked.
    Ended,
    /// The run crashed and was scheduled again (its deployment's retries), for this reason.
    ScheduledAgain(String),
}

impl Marked {
    /// The run was marked.
    pub(super) fn any(&self) -> bool {
        !matches!(self, Marked::No)
    }
}

/// Marks run `id`, its unfinished subflow runs (at any depth: their process is the same) and
/// their unfinished task runs in `end.state`, each with a state change and a WARN log line
/// saying why, their leases replaced (fencing their process out); [`Marked::No`] when the run
/// had ended (or, with `end.lease`, was claimed again) meanwhile. One transaction, the counts
/// included.
pub(super) async fn mark_ended(
    pool: &db::Pool,
    backend: Backend,
    id: &str,
    end: &Ending<'_>,
) -> Result<Marked, StoreError> {
    let mut tx = pool.begin().await?;
    let mut ends = Ends::default();
    let micros = end.now.timestamp_micros();
    // The run itself first: its row's lock (the write lock on SQLite) is taken before anything
    // is read.
    let Some(tasks) = mark_one(&mut tx, id, end, end.why, end.lease).await? else {
        return Ok(Marked::No);
    };
    // A crashed run of a deployment with retries left is scheduled again: it has not ended.
    let requeued = match end.state {
        StateKind::Crashed => requeue(&mut tx, id, end.now).await?,
        _ => None,
    };
    if requeued.is_none() {
        ends.flow_run(Uuid::parse_str(id).unwrap_or_default(), end.state, micros);
    }
    ends.task_runs(end.state, micros, tasks);
    let verb = match end.state {
        StateKind::Crashed => "crashed",
        _ => "was cancelled",
    };
    let why = format!("its parent run {verb}: {}", end.why);
    let mut parents = vec![id.to_owned()];
    while let Some(parent) = parents.pop() {
        let children: Vec<String> = db::query_scalar(&format!(
            "SELECT id FROM flow_runs WHERE parent_run = $1 AND state IN {NOT_FINAL}"
        ))
        .bind(&parent)
        .fetch_all(&mut *tx)
        .await?;
        for child in children {
            if let Some(tasks) = mark_one(&mut tx, &child, end, &why, None).await? {
                ends.flow_run(
                    Uuid::parse_str(&child).unwrap_or_default(),
                    end.state,
                    micros,
                );
                ends.task_runs(end.state, micros, tasks);
            }
            parents.push(child);
        }
    }
    ends.write_pooled(&mut tx, backend).await?;
    // The `run_owners` rows stay: an owner wrongly taken for dead (a frozen process that wakes
    // up) finds its run taken (or its cancel request) and cancels its copy itself.
    tx.commit().await?;
    Ok(requeued.map_or(Marked::Ended, Marked::ScheduledAgain))
}

/// Marks one run and its unfinished task runs: how many task runs, or None when the run had
/// ended (or its lease is not `lease`).
async fn mark_one(
    tx: &mut db::Transaction,
    id: &str,
    end: &Ending<'_>,
    why: &str,
    lease: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    let at = ts(end.now);
    let state = end.state.as_str();
    let guard = match lease {
        Some(_) => " AND COALESCE(lease, 0) = $6",
        None => "",
    };
    let sql = format!(
        "UPDATE flow_runs SET state = $1, message = $2, ended = $3, lease = $4 \
         WHERE id = $5 AND state IN {NOT_FINAL}{guard}"
    );
    let q = db::query(&sql)
        .bind(state)
        .bind(why)
        .bind(&at)
        .bind(new_token())
        .bind(id);
    let q = match lease {
        Some(l) => q.bind(l),
        None => q,
    };
    if q.execute(&mut **tx).await?.rows_affected() == 0 {
        return Ok(None);
    }
    let tasks = db::query(&format!(
        "UPDATE task_runs SET state = $1, message = $2, ended = $3 \
         WHERE flow_run_id = $4 AND state IN {NOT_FINAL}"
    ))
    .bind(state)
    .bind(why)
    .bind(&at)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    db::query(
        "INSERT INTO state_changes (flow_run_id, seq, node, map_index, name, state, message, \
         attempt, at) SELECT id, 0, NULL, NULL, flow, $1, $2, 0, $3 FROM flow_runs WHERE id = $4",
    )
    .bind(state)
    .bind(why)
    .bind(&at)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    db::query(
        "INSERT INTO logs (flow_run_id, seq, at, level, message) VALUES ($1, 0, $2, 'WARN', $3)",
    )
    .bind(id)
    .bind(&at)
    .bind(format!("Flow run {}: {why}", state.to_uppercase()))
    .execute(&mut **tx)
    .await?;
    Ok(Some(i64::try_from(tasks).unwrap_or(i64::MAX)))
}
