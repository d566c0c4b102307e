//! Cancelling a flow run from any process, through the store.
//!
//! A request ([`Store::request_cancel`]: `weft run cancel`, the server's API and Cancel button)
//! is a timestamp and a reason on the run's row. The process running the run, its *owner*,
//! notices it: each store keeps a registry of the runs it records that are still going, and
//! while it holds any, a watcher on the store's own thread, every [`POLL`]:
//!
//! - claims the runs that have lived [`CLAIM_AFTER`] (a `run_owners` row naming this process):
//!   a run that ends sooner never waits for, nor writes, anything for cancellation;
//! - refreshes this process's heartbeat (one `processes` row per process, not per run) every
//!   [`HEARTBEAT`];
//! - asks, in one query for all the runs it owns, for their cancel requests, and cancels those
//!   runs through their [`CancelHandle`]: their tasks end Cancelled (a pipeline node's process
//!   group is stopped), the run ends Cancelled.
//!
//! A run is owned by a live process when its owner's heartbeat is younger than [`STALE`] and,
//! when the owner ran on this host, its pid is still alive; a run with no owner yet counts as
//! owned while it is younger than [`STALE`] (its process claims it within about 1.5 s). A
//! request for a run no live process owns marks it Cancelled at once, with its unfinished task
//! runs, rather than leaving it Running for ever.

use super::counts::Ends;
use super::{parse_ts, record, ts, Backend, Inner, Store, StoreError};
use crate::flow::CancelHandle;
use crate::state::StateKind;
use chrono::{DateTime, Utc};
use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often the watcher looks for cancel requests while runs are going.
pub(crate) const POLL: Duration = Duration::from_millis(500);
/// How long a run lives before its process records that it owns it.
pub(crate) const CLAIM_AFTER: Duration = Duration::from_secs(1);
/// How often a process owning runs refreshes its heartbeat.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
/// A heartbeat older than this is a process that is gone (or frozen).
pub const STALE: Duration = Duration::from_secs(10);

/// What [`Store::request_cancel`] did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The request is in the store: the process running the run cancels it within about a
    /// second. `owner` is that process, or None for a run started so recently that its process
    /// has not claimed it yet.
    Requested {
        /// The process running the run.
        owner: Option<RunOwner>,
    },
    /// The run had already ended, in `state`: nothing was changed.
    AlreadyFinal {
        /// Its final state.
        state: StateKind,
    },
    /// No live process owned the run (its owner's heartbeat stopped more than 10 s ago,
    /// its pid is gone, or no process ever claimed it): it was marked Cancelled in the store,
    /// with its unfinished task runs.
    NotOwned {
        /// The last process known to run it, if any.
        owner: Option<RunOwner>,
    },
}

/// The process that owns (runs) a flow run, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunOwner {
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// When it last said it was alive.
    pub heartbeat: DateTime<Utc>,
}

impl RunOwner {
    /// True when its heartbeat is fresh and, if it ran on this host, its pid is alive.
    fn is_live(&self, now: DateTime<Utc>) -> bool {
        let fresh = (now - self.heartbeat).to_std().unwrap_or_default() < STALE;
        fresh && (self.host != host_name() || pid_alive(self.pid))
    }
}

impl std::fmt::Display for RunOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} (last heartbeat {})",
            self.pid,
            self.host,
            self.heartbeat.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// This machine's host name.
fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is writable for its whole length, which is passed.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        match rc {
            0 => String::from_utf8_lossy(&buf[..end]).into_owned(),
            _ => "unknown".to_owned(),
        }
    })
}

/// True while process `pid` of this host exists and is not a zombie.
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // A killed child its parent has not reaped yet is a zombie: it runs nothing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// The runs of this process that one store records and that are still going.
pub(crate) struct Owners {
    /// This process (and store) in the `processes` table.
    process: String,
    started: DateTime<Utc>,
    reg: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    runs: HashMap<Uuid, Entry>,
    /// Claimed runs that ended: their `run_owners` rows are deleted at the next tick.
    ended: Vec<Uuid>,
    /// A watcher is running.
    watching: bool,
}

struct Entry {
    handle: CancelHandle,
    since: Instant,
    claimed: bool,
}

/// What one tick of the watcher has to do.
struct Tick {
    claim: Vec<Uuid>,
    ended: Vec<Uuid>,
    /// Some run is claimed: look for requests.
    owns: bool,
}

impl Owners {
    pub(crate) fn new() -> Owners {
        Owners {
            process: Uuid::new_v4().to_string(),
            started: Utc::now(),
            reg: Mutex::new(Registry::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.reg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What to do now; None when nothing is left to watch (the watcher stops).
    fn tick(&self) -> Option<Tick> {
        let mut reg = self.lock();
        if reg.runs.is_empty() && reg.ended.is_empty() {
            reg.watching = false;
            return None;
        }
        let mut claim = Vec::new();
        for (id, e) in reg.runs.iter_mut() {
            if !e.claimed && e.since.elapsed() >= CLAIM_AFTER {
                e.claimed = true;
                claim.push(*id);
            }
        }
        Some(Tick {
            claim,
            ended: std::mem::take(&mut reg.ended),
            owns: reg.runs.values().any(|e| e.claimed),
        })
    }

    /// A tick whose writes failed: its claims and releases are tried again at the next one.
    fn retry(&self, tick: Tick) {
        let mut reg = self.lock();
        for id in &tick.claim {
            if let Some(e) = reg.runs.get_mut(id) {
                e.claimed = false;
            }
        }
        reg.ended.extend(tick.ended);
    }

    /// Cancels run `id` if it is still going here.
    fn cancel(&self, id: Uuid, reason: String) {
        let handle = self.lock().runs.get(&id).map(|e| e.handle.clone());
        if let Some(h) = handle.filter(|h| !h.is_cancelled()) {
            tracing::info!(target: "weft", "Flow run {id}: cancellation requested: {reason}");
            h.cancel(reason);
        }
    }
}

/// A run registered with its store's watcher: deregistered when dropped.
pub(crate) struct Owned {
    store: Store,
    run: Uuid,
}

impl Drop for Owned {
    fn drop(&mut self) {
        let mut reg = self.store.inner.owners.lock();
        if reg.runs.remove(&self.run).is_some_and(|e| e.claimed) {
            reg.ended.push(self.run);
        }
    }
}

impl Store {
    /// Registers run `run` of this process: a cancel request for it in the store fires
    /// `handle`. In memory only (a lock and a map insert); the watcher writes to the database
    /// only for runs that live longer than [`CLAIM_AFTER`].
    pub(crate) fn own(&self, run: Uuid, handle: CancelHandle) -> Owned {
        let mut reg = self.inner.owners.lock();
        reg.runs.insert(
            run,
            Entry {
                handle,
                since: Instant::now(),
                claimed: false,
            },
        );
        if !reg.watching {
            reg.watching = true;
            self.inner.runtime.spawn(watch(Arc::downgrade(&self.inner)));
        }
        Owned {
            store: self.clone(),
            run,
        }
    }

    /// Asks for flow run `id` to be cancelled, for `reason`, by whichever process runs it.
    /// A run that no live process owns is marked Cancelled here (see [`CancelOutcome`]).
    ///
    /// ```
    /// use weft::prelude::*;
    /// use weft::store::{CancelOutcome, Store};
    ///
    /// #[task] fn one() -> u32 { 1 }
    /// #[flow] async fn quick() -> u32 { let x = one()?; x }
    ///
    /// # #[tokio::main] async fn main() -> Result<(), weft::store::StoreError> {
    /// let dir = std::env::temp_dir().join(format!("weft-doc-cancel-{}", std::process::id()));
    /// let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
    /// let run = quick::run_with(RunConfig::new().history(store.clone())).await;
    /// let outcome = store.request_cancel(run.id, "too late").await?;
    /// assert_eq!(outcome, CancelOutcome::AlreadyFinal { state: StateKind::Completed });
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn request_cancel(
        &self,
        id: Uuid,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        let reason = record::cap(reason);
        self.with_pool(move |pool, backend| async move {
            let Some((state, started)) = run_state(&pool, id).await? else {
                return Err(StoreError::RunNotFound(id.to_string()));
            };
            if state.is_final() {
                return Ok(CancelOutcome::AlreadyFinal { state });
            }
            let owner = owner_of(&pool, id).await?;
            let now = Utc::now();
            sqlx::query(
                "UPDATE flow_runs SET cancel_requested = $1, cancel_reason = $2 WHERE id = $3",
            )
            .bind(ts(now))
            .bind(&reason)
            .bind(id.to_string())
            .execute(&pool)
            .await?;
            let live = match &owner {
                Some(o) => o.is_live(now),
                None => (now - started).to_std().unwrap_or_default() < STALE,
            };
            if live {
                return Ok(CancelOutcome::Requested { owner });
            }
            let why = match &owner {
                Some(o) => format!("{reason} (no live process owned the run; last owner: {o})"),
                None => format!("{reason} (no live process owned the run)"),
            };
            if !mark_cancelled(&pool, backend, id, &why, now).await? {
                // It ended meanwhile.
                let state = run_state(&pool, id).await?.map_or(state, |(s, _)| s);
                return Ok(CancelOutcome::AlreadyFinal { state });
            }
            Ok(CancelOutcome::NotOwned { owner })
        })
        .await
    }
}

/// The states a run or task run may still leave, as an SQL list.
const NOT_FINAL: &str = "('Scheduled', 'Pending', 'Running', 'Retrying')";

/// A run's state and start.
async fn run_state(
    pool: &AnyPool,
    id: Uuid,
) -> Result<Option<(StateKind, DateTime<Utc>)>, StoreError> {
    let Some(row) = sqlx::query("SELECT state, started FROM flow_runs WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let state: String = row.try_get("state")?;
    let state = StateKind::ALL
        .into_iter()
        .find(|k| k.as_str() == state)
        .ok_or_else(|| StoreError::Query(format!("unknown state {state:?} in the history")))?;
    Ok(Some((
        state,
        parse_ts(&row.try_get::<String, _>("started")?)?,
    )))
}

/// The process that claimed run `id`, if any.
async fn owner_of(pool: &AnyPool, id: Uuid) -> Result<Option<RunOwner>, StoreError> {
    let row = sqlx::query(
        "SELECT p.host, p.pid, p.heartbeat FROM run_owners o JOIN processes p \
         ON p.id = o.process WHERE o.flow_run_id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(RunOwner {
            host: r.try_get("host")?,
            pid: u32::try_from(r.try_get::<i64, _>("pid")?).unwrap_or(0),
            heartbeat: parse_ts(&r.try_get::<String, _>("heartbeat")?)?,
        })
    })
    .transpose()
}

/// Marks run `id`, its unfinished subflow runs (at any depth: their process is the same) and
/// their unfinished task runs Cancelled, each with a state change and a log line saying why;
/// false when the run had ended meanwhile.
async fn mark_cancelled(
    pool: &AnyPool,
    backend: Backend,
    id: Uuid,
    why: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let at = ts(now);
    let mut tx = pool.begin().await?;
    let mut ends = Ends::default();
    let mut runs = vec![id.to_string()];
    let mut next = 0;
    while let Some(parent) = runs.get(next).cloned() {
        let children: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM flow_runs WHERE parent_run = $1 AND state IN {NOT_FINAL}"
        ))
        .bind(&parent)
        .fetch_all(&mut *tx)
        .await?;
        runs.extend(children);
        next += 1;
    }
    for (i, run) in runs.iter().enumerate() {
        let why = match i {
            0 => why.to_owned(),
            _ => format!("its parent run was cancelled: {why}"),
        };
        let Some(tasks) = mark_one(&mut tx, run, &why, &at).await? else {
            if i == 0 {
                return Ok(false);
            }
            continue;
        };
        let micros = now.timestamp_micros();
        ends.flow_run(
            Uuid::parse_str(run).unwrap_or_default(),
            StateKind::Cancelled,
            micros,
        );
        ends.task_runs(StateKind::Cancelled, micros, tasks);
    }
    ends.write_sqlx(&mut tx, backend).await?;
    // The `run_owners` rows stay: an owner wrongly taken for dead (a frozen process that wakes
    // up) still finds the request and cancels the run itself.
    tx.commit().await?;
    Ok(true)
}

/// Marks one run and its unfinished task runs Cancelled: how many task runs, or None when the
/// run had ended.
async fn mark_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    why: &str,
    at: &str,
) -> Result<Option<i64>, StoreError> {
    let done = sqlx::query(&format!(
        "UPDATE flow_runs SET state = 'Cancelled', message = $1, ended = $2 \
         WHERE id = $3 AND state IN {NOT_FINAL}"
    ))
    .bind(why)
    .bind(at)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    let statements = [
        format!(
            "UPDATE task_runs SET state = 'Cancelled', message = $1, ended = $2 \
             WHERE flow_run_id = $3 AND state IN {NOT_FINAL}"
        ),
        "INSERT INTO state_changes (flow_run_id, seq, node, map_index, name, state, message, \
         attempt, at) SELECT id, 0, NULL, NULL, flow, 'Cancelled', $1, 0, $2 FROM flow_runs \
         WHERE id = $3"
            .to_owned(),
        "INSERT INTO logs (flow_run_id, seq, at, level, message) \
         VALUES ($3, 0, $2, 'WARN', 'Flow run CANCELLED: ' || CAST($1 AS TEXT))"
            .to_owned(),
    ];
    let mut tasks = 0;
    for (i, sql) in statements.iter().enumerate() {
        let done = sqlx::query(sql)
            .bind(why)
            .bind(at)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        if i == 0 {
            tasks = i64::try_from(done.rows_affected()).unwrap_or(i64::MAX);
        }
    }
    Ok(Some(tasks))
}

/// The watcher of one store: runs on the store's thread while this process has runs going.
async fn watch(inner: Weak<Inner>) {
    let mut last_beat: Option<Instant> = None;
    loop {
        tokio::time::sleep(POLL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let Some(tick) = inner.owners.tick() else {
            return;
        };
        if let Err(e) = step(&inner, &tick, &mut last_beat).await {
            tracing::debug!(target: "weft::store", "Run history: cancellation watcher: {e}");
            inner.owners.retry(tick);
        }
    }
}

/// One tick: heartbeat and claims, deletes the ended runs' claims, then one query for the
/// cancel requests of every run this process owns.
async fn step(
    inner: &Inner,
    tick: &Tick,
    last_beat: &mut Option<Instant>,
) -> Result<(), StoreError> {
    let owners = &inner.owners;
    let pool = &inner.pool;
    let now = ts(Utc::now());
    let beat_due = last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT);
    if (tick.owns && beat_due) || !tick.claim.is_empty() || !tick.ended.is_empty() {
        let mut tx = pool.begin().await?;
        if last_beat.is_none() {
            // Once per watcher: forget processes silent for a day, and what they owned.
            let day_ago = ts(Utc::now() - chrono::Duration::days(1));
            sqlx::query("DELETE FROM processes WHERE heartbeat < $1")
                .bind(day_ago)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM run_owners WHERE process NOT IN (SELECT id FROM processes)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO processes (id, host, pid, started, heartbeat) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat",
        )
        .bind(&owners.process)
        .bind(host_name())
        .bind(i64::from(std::process::id()))
        .bind(ts(owners.started))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        for id in &tick.claim {
            sqlx::query(
                "INSERT INTO run_owners (flow_run_id, process, since) VALUES ($1, $2, $3) \
                 ON CONFLICT (flow_run_id) DO UPDATE SET process = excluded.process, \
                 since = excluded.since",
            )
            .bind(id.to_string())
            .bind(&owners.process)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        for id in &tick.ended {
            sqlx::query("DELETE FROM run_owners WHERE flow_run_id = $1 AND process = $2")
                .bind(id.to_string())
                .bind(&owners.process)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        *last_beat = Some(Instant::now());
    }
    if !tick.owns {
        return Ok(());
    }
    let requests = sqlx::query(
        "SELECT f.id, f.cancel_reason FROM run_owners o JOIN flow_runs f ON f.id = o.flow_run_id \
         WHERE o.process = $1 AND f.cancel_requested IS NOT NULL",
    )
    .bind(&owners.process)
    .fetch_all(pool)
    .await?;
    for row in requests {
        let id: String = row.try_get("id")?;
        let reason: Option<String> = row.try_get("cancel_reason")?;
        if let Ok(id) = id.parse() {
            owners.cancel(
                id,
                reason.unwrap_or_else(|| "cancellation requested".to_owned()),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_stale_owner_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
        let now = Utc::now();
        let me = RunOwner {
            host: host_name().to_owned(),
            pid: std::process::id(),
            heartbeat: now,
        };
        assert!(me.is_live(now));
        let old = RunOwner {
            heartbeat: now - chrono::Duration::seconds(STALE.as_secs() as i64 + 1),
            ..me.clone()
        };
        assert!(!old.is_live(now));
        let elsewhere = RunOwner {
            host: format!("{}-elsewhere", host_name()),
            pid: u32::MAX,
            ..me
        };
        assert!(
            elsewhere.is_live(now),
            "another host's pid cannot be checked"
        );
    }
}
