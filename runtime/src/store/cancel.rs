//! Cancelling a flow run from any process, through the store.
//!
//! A request ([`Store::request_cancel`]: `weft run cancel`, the server's API and Cancel button)
//! is a timestamp and a reason on the run's row. The process running the run, its *owner*,
//! notices it: each store keeps a registry of the runs it records that are still going, and
//! while it holds any, a watcher on the store's own thread, every [`POLL`]:
//!
//! - claims the runs that have lived [`CLAIM_AFTER`] (a `run_owners` row naming this process,
//!   and the run's lease token, see the reaper module): a run that ends sooner never waits
//!   for, nor writes, anything for cancellation;
//! - refreshes this process's heartbeat (one `processes` row per process, not per run) every
//!   [`HEARTBEAT`];
//! - asks, in one query for all the runs it owns, for their cancel requests, and cancels those
//!   runs through their [`CancelHandle`]: their tasks end Cancelled (a pipeline node's process
//!   group is stopped), the run ends Cancelled; the same query finds the runs another process
//!   took from it (reaped while this one was taken for dead), which it cancels too;
//! - reaps other processes' zombie runs every [`REAP_EVERY`] (the reaper module).
//!
//! A run is owned by a live process when its owner's heartbeat is younger than [`STALE`] and,
//! when the owner ran on this host, its pid is still alive; a run with no owner yet counts as
//! owned while it is younger than [`STALE`] (its process claims it within about 1.5 s). A
//! request for a run no live process owns marks it Cancelled at once, with its unfinished task
//! runs, rather than leaving it Running for ever.

use super::db;
use super::reaper::{mark_ended, Ending, NOT_FINAL, REAP_EVERY};
use super::{parse_ts, record, ts, Inner, Store, StoreError};
use crate::flow::CancelHandle;
use crate::state::StateKind;
use chrono::{DateTime, Utc};
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
    /// The run was Scheduled or Late (no worker had claimed it): it was marked Cancelled and
    /// never starts.
    NotStarted,
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
pub(crate) fn host_name() -> &'static str {
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
pub(super) fn pid_alive(pid: u32) -> bool {
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
    pub(super) process: String,
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
    /// The run's lease token once claimed (`flow_runs.lease`): [`Owners::token`].
    token: i64,
}

/// What one tick of the watcher has to do.
struct Tick {
    /// Runs to claim, with their tokens.
    claim: Vec<(Uuid, i64)>,
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

    /// This process's lease token for run `run`: the same each time the run is registered
    /// (a queued pipeline run registers again when it starts), another process's differs.
    pub(super) fn token(&self, run: Uuid) -> i64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.process, run).hash(&mut h);
        ((h.finish() >> 1) as i64).max(1)
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
                claim.push((*id, e.token));
            }
        }
        // In the order of their ids, as the writer locks them (`ORDER BY id FOR UPDATE`): the
        // watcher's transaction and the writer's then never hold one run each while waiting
        // for the other's.
        claim.sort_unstable_by_key(|(id, _)| *id);
        Some(Tick {
            claim,
            ended: std::mem::take(&mut reg.ended),
            owns: reg.runs.values().any(|e| e.claimed),
        })
    }

    /// A tick whose writes failed: its claims and releases are tried again at the next one.
    fn retry(&self, tick: Tick) {
        let mut reg = self.lock();
        for (id, _) in &tick.claim {
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

    /// The lease tokens of the runs among `runs` that the writer must check before writing
    /// their rows: those registered here for [`CLAIM_AFTER`] or more (claimed, or about to be;
    /// the reaper may have taken a run never claimed). Younger runs cost a map lookup.
    pub(crate) fn leases<'a>(&self, runs: impl Iterator<Item = &'a Uuid>) -> Vec<(Uuid, i64)> {
        let reg = self.lock();
        if reg.runs.is_empty() {
            return Vec::new();
        }
        runs.filter_map(|id| {
            let e = reg.runs.get(id)?;
            (e.since.elapsed() >= CLAIM_AFTER).then_some((*id, e.token))
        })
        .collect()
    }

    /// True while run `run` is going in this process.
    pub(super) fn runs_here(&self, run: Uuid) -> bool {
        self.lock().runs.contains_key(&run)
    }

    /// As [`Owners::leases`], for a batch that waited (the database was away): also the runs
    /// that ended here meanwhile (no longer registered), which another process may have reaped
    /// while their rows waited; not those whose first row is in the batch (`starting`: the
    /// start row of a run resumed here sets its lease).
    pub(crate) fn leases_after_wait(
        &self,
        runs: impl Iterator<Item = (Uuid, bool)>,
    ) -> Vec<(Uuid, i64)> {
        let reg = self.lock();
        runs.filter_map(|(id, starting)| match reg.runs.get(&id) {
            Some(e) => (e.since.elapsed() >= CLAIM_AFTER).then_some((id, e.token)),
            None => (!starting).then(|| (id, self.token(id))),
        })
        .collect()
    }

    /// Run `id` was taken from this process: another process ended it in `state` (reaped it
    /// Crashed, or cancelled it for want of a live owner) while this one was taken for dead.
    /// Cancels this process's copy, once, with a warning.
    pub(crate) fn taken(&self, id: Uuid, state: &str, why: &str) {
        let handle = self.lock().runs.get(&id).map(|e| e.handle.clone());
        let Some(h) = handle.filter(|h| !h.is_cancelled()) else {
            return;
        };
        let what = taken_why(state, why);
        tracing::warn!(
            target: "weft",
            "Flow run {id} was {what}: this process was taken for dead; cancelling its copy of \
             the run, whose further rows are not recorded"
        );
        h.cancel(format!("the run was {what}"));
    }
}

/// What happened to a run taken from its process, whose row now says `state` and `message`:
/// reaped (Crashed), cancelled for want of a live owner, or reaped and then scheduled again
/// (a deployment's retries) and so in whatever state its re-run is, whose message is not about
/// the taking.
pub(super) fn taken_why(state: &str, message: &str) -> String {
    match state {
        "Crashed" => format!("reaped by another process ({message})"),
        "Cancelled" => format!("ended Cancelled by another process ({message})"),
        rerun => {
            format!("reaped by another process and scheduled again (its re-run is {rerun} now)")
        }
    }
}

impl Owners {
    /// Refreshes this process's heartbeat (its `processes` row), in `tx`.
    pub(super) async fn beat(&self, tx: &mut db::Transaction, now: &str) -> Result<(), StoreError> {
        db::query(
            "INSERT INTO processes (id, host, pid, started, heartbeat) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat",
        )
        .bind(&self.process)
        .bind(host_name())
        .bind(i64::from(std::process::id()))
        .bind(ts(self.started))
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
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
        let token = self.inner.owners.token(run);
        let mut reg = self.inner.owners.lock();
        // Registered again (a queued pipeline run starting) while claimed, or before its claim
        // was released: the claim (its row) stays.
        let before = reg.ended.len();
        reg.ended.retain(|r| *r != run);
        let claimed = reg.ended.len() < before || reg.runs.get(&run).is_some_and(|e| e.claimed);
        reg.runs.insert(
            run,
            Entry {
                handle,
                since: Instant::now(),
                claimed,
                token,
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

    /// The process that claimed flow run `id` (one that lived longer than about a second),
    /// with its last heartbeat; None for a run never claimed, or whose process released it
    /// when it ended.
    ///
    /// ```
    /// use weft::prelude::*;
    /// use weft::store::Store;
    ///
    /// #[task] fn one() -> u32 { 1 }
    /// #[flow] async fn quick() -> u32 { let x = one()?; x }
    ///
    /// # #[tokio::main] async fn main() -> Result<(), weft::store::StoreError> {
    /// let dir = std::env::temp_dir().join(format!("weft-doc-owner-{}", std::process::id()));
    /// let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
    /// let run = quick::run_with(RunConfig::new().history(store.clone())).await;
    /// assert_eq!(store.run_owner(run.id).await?, None); // too short to be claimed
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn run_owner(&self, id: Uuid) -> Result<Option<RunOwner>, StoreError> {
        self.with_pool(move |pool, _| async move { owner_of(&pool, id).await })
            .await
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
            let now = Utc::now();
            if matches!(state, StateKind::Scheduled | StateKind::Late) {
                return cancel_unstarted(&pool, backend, id, &reason, state, now).await;
            }
            let owner = owner_of(&pool, id).await?;
            db::query(
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
            let end = Ending {
                state: StateKind::Cancelled,
                why: &why,
                lease: None,
                now,
            };
            if !mark_ended(&pool, backend, &id.to_string(), &end)
                .await?
                .any()
            {
                // It ended meanwhile.
                let state = run_state(&pool, id).await?.map_or(state, |(s, _)| s);
                return Ok(CancelOutcome::AlreadyFinal { state });
            }
            Ok(CancelOutcome::NotOwned { owner })
        })
        .await
    }
}

/// Cancels a run that no worker claimed yet (Scheduled or Late): it never starts.
async fn cancel_unstarted(
    pool: &db::Pool,
    backend: super::Backend,
    id: Uuid,
    reason: &str,
    state: StateKind,
    now: DateTime<Utc>,
) -> Result<CancelOutcome, StoreError> {
    let end = Ending {
        state: StateKind::Cancelled,
        why: &format!("{reason} (before it started)"),
        lease: None,
        now,
    };
    if mark_ended(pool, backend, &id.to_string(), &end)
        .await?
        .any()
    {
        return Ok(CancelOutcome::NotStarted);
    }
    // A worker claimed it meanwhile: ask its owner, as for any running run.
    let (state, _) = run_state(pool, id).await?.unwrap_or((state, now));
    if state.is_final() {
        return Ok(CancelOutcome::AlreadyFinal { state });
    }
    db::query("UPDATE flow_runs SET cancel_requested = $1, cancel_reason = $2 WHERE id = $3")
        .bind(ts(now))
        .bind(reason)
        .bind(id.to_string())
        .execute(pool)
        .await?;
    Ok(CancelOutcome::Requested {
        owner: owner_of(pool, id).await?,
    })
}

/// A run's state and start.
async fn run_state(
    pool: &db::Pool,
    id: Uuid,
) -> Result<Option<(StateKind, DateTime<Utc>)>, StoreError> {
    let Some(row) = db::query("SELECT state, started FROM flow_runs WHERE id = $1")
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
async fn owner_of(pool: &db::Pool, id: Uuid) -> Result<Option<RunOwner>, StoreError> {
    let row = db::query(
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

/// The watcher of one store: runs on the store's thread while this process has runs going.
async fn watch(inner: Weak<Inner>) {
    let mut last_beat: Option<Instant> = None;
    let mut last_reap: Option<Instant> = None;
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
            continue;
        }
        // With a fresh heartbeat of its own, a process owning runs reaps other processes'.
        if tick.owns && last_reap.is_none_or(|t| t.elapsed() >= REAP_EVERY) {
            last_reap = Some(Instant::now());
            let reaped = super::reaper::reap(&inner.pool, inner.backend, Utc::now()).await;
            if let Err(e) = reaped {
                tracing::debug!(target: "weft::store", "Run history: reaper: {e}");
            }
        }
    }
}

/// One tick: heartbeat and claims, deletes the ended runs' claims, then one query for the
/// cancel requests of every run this process owns, and for those taken from it.
async fn step(
    inner: &Inner,
    tick: &Tick,
    last_beat: &mut Option<Instant>,
) -> Result<(), StoreError> {
    let beat_due = last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT);
    if (tick.owns && beat_due) || !tick.claim.is_empty() || !tick.ended.is_empty() {
        let taken = beat_and_claim(inner, tick, last_beat.is_none()).await?;
        *last_beat = Some(Instant::now());
        for (id, state, why) in taken {
            inner.owners.taken(id, &state, &why);
        }
    }
    if !tick.owns {
        return Ok(());
    }
    requests(inner).await
}

/// In one transaction: refreshes this process's heartbeat, claims the runs of `tick.claim`
/// (their lease and `run_owners` row) and releases the ended ones. Returns the runs it could
/// not claim because another process had ended them (state and message).
async fn beat_and_claim(
    inner: &Inner,
    tick: &Tick,
    first: bool,
) -> Result<Vec<(Uuid, String, String)>, StoreError> {
    let owners = &inner.owners;
    let now = ts(Utc::now());
    let mut tx = inner.pool.begin().await?;
    if first {
        // Once per watcher: forget processes silent for a day, and what they owned.
        let day_ago = ts(Utc::now() - chrono::Duration::days(1));
        db::query("DELETE FROM processes WHERE heartbeat < $1")
            .bind(day_ago)
            .execute(&mut *tx)
            .await?;
        db::query("DELETE FROM run_owners WHERE process NOT IN (SELECT id FROM processes)")
            .execute(&mut *tx)
            .await?;
    }
    owners.beat(&mut tx, &now).await?;
    let mut taken = Vec::new();
    for (id, token) in &tick.claim {
        if let Some((state, why)) = claim(&mut tx, *id, *token).await? {
            taken.push((*id, state, why));
            continue;
        }
        db::query(
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
        db::query("DELETE FROM run_owners WHERE flow_run_id = $1 AND process = $2")
            .bind(id.to_string())
            .bind(&owners.process)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(taken)
}

/// Sets run `id`'s lease to `token` unless another process took the run (reaped it, or
/// cancelled it for want of a live owner): then its state and message. A run whose row is not
/// written yet has nothing to take.
async fn claim(
    tx: &mut db::Transaction,
    id: Uuid,
    token: i64,
) -> Result<Option<(String, String)>, StoreError> {
    let done = db::query(
        "UPDATE flow_runs SET lease = $1 WHERE id = $2 AND (lease IS NULL OR lease = $1)",
    )
    .bind(token)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() > 0 {
        return Ok(None);
    }
    let row = db::query("SELECT state, message FROM flow_runs WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| {
        Ok((
            r.try_get("state")?,
            r.try_get::<Option<String>, _>("message")?
                .unwrap_or_default(),
        ))
    })
    .transpose()
}

/// One query for this process's claimed runs that have a cancel request or were ended by
/// another process; cancels them.
async fn requests(inner: &Inner) -> Result<(), StoreError> {
    let owners = &inner.owners;
    let rows = db::query(&format!(
        "SELECT f.id, f.cancel_reason, f.cancel_requested, f.lease, f.state, f.message \
         FROM run_owners o JOIN flow_runs f ON f.id = o.flow_run_id \
         WHERE o.process = $1 AND (f.cancel_requested IS NOT NULL OR f.state NOT IN {NOT_FINAL})"
    ))
    .bind(&owners.process)
    .fetch_all(&inner.pool)
    .await?;
    for row in rows {
        let Ok(id) = row.try_get::<String, _>("id")?.parse::<Uuid>() else {
            continue;
        };
        let lease: Option<i64> = row.try_get("lease")?;
        let mine = owners.lock().runs.get(&id).map(|e| e.token);
        if let (Some(lease), Some(mine)) = (lease, mine) {
            if lease != mine {
                let state: String = row.try_get("state")?;
                let why: Option<String> = row.try_get("message")?;
                owners.taken(id, &state, &why.unwrap_or_default());
                continue;
            }
        }
        if row
            .try_get::<Option<String>, _>("cancel_requested")?
            .is_some()
        {
            let reason: Option<String> = row.try_get("cancel_reason")?;
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
