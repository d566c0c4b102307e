//! The run queue: runs of deployments served by a work pool exist before they start.
//!
//! A deployment placed in a pool ([`Store::place_deployment`]) is run by that pool's workers
//! (`weft::worker::Worker`), not by the process that registered it. Its runs are rows of
//! `flow_runs` from the start:
//!
//! - **Scheduled**: created ahead of time by the scheduler ([`Store::schedule_due`], run by
//!   whichever process leads, see [`Store::lead`]) for the next hour of the deployment's
//!   schedule (at most 10 runs), one per schedule time even when schedulers race (a unique key
//!   on deployment and time); or asked for ([`Store::schedule_run`], `weft deployment run`).
//! - **Late**: still Scheduled [`LATE_AFTER`] after its time (the scheduler marks it).
//! - **Pending**: claimed by one worker ([`Store::claim_runs`]): in one transaction its owner
//!   and lease are set (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite), within
//!   the pool's concurrency limit and never while the pool is paused.
//! - then Running and final as any run: the worker runs the flow under the run's id.
//!
//! A claimed run belongs to its worker's process as any run belongs to the process running it
//! (heartbeat, lease, fencing, cancellation: the cancel and reaper modules). When that process
//! dies the reaper marks the run Crashed, which frees its slot of the pool's limit; if the
//! deployment has `retries` left, the run is Scheduled again under the same id and resumes from
//! its checkpoints on whichever worker claims it.
//!
//! ```
//! use weft::store::{DeploymentRecord, PoolPlacement, Store, WorkPoolSpec};
//!
//! # #[tokio::main] async fn main() -> Result<(), weft::store::StoreError> {
//! let dir = std::env::temp_dir().join(format!("weft-doc-queue-{}", std::process::id()));
//! let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
//! store.create_work_pool(&WorkPoolSpec::new("etl")).await?;
//! store.register_deployment(&DeploymentRecord {
//!     name: "nightly".into(),
//!     flow: "load".into(),
//!     schedule: None,
//!     parameters: serde_json::json!({ "n": 100 }),
//!     paused: false,
//!     last_run: None,
//!     last_run_at: None,
//!     next_run_at: None,
//!     updated: chrono::Utc::now(),
//! }).await?;
//! store.place_deployment("nightly", &PoolPlacement::new("etl").retries(2)).await?;
//!
//! let mut overrides = serde_json::Map::new();
//! overrides.insert("n".into(), 5.into());
//! let id = store.schedule_run("nightly", overrides, None).await?;
//!
//! // A worker of the pool claims it, once.
//! let claimed = store.claim_runs("etl", "loader-1", &["nightly".to_owned()], 10).await?;
//! assert_eq!((claimed.len(), claimed[0].id), (1, id));
//! assert_eq!(claimed[0].overrides["n"], 5);
//! assert!(store.claim_runs("etl", "loader-2", &["nightly".to_owned()], 10).await?.is_empty());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use super::cancel::Owners;
use super::db;
use super::lost_claims::recover;
use super::pools::pool_exists;
use super::reaper::{mark_ended, Ending};
use super::{parse_ts, ts, Backend, Store, StoreError};
use crate::schedule::Schedule;
use crate::state::StateKind;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// A Scheduled run not started this long after its time is Late (Prefect's default).
pub const LATE_AFTER: Duration = Duration::from_secs(15);
/// How far ahead the scheduler creates a deployment's runs...
const HORIZON: Duration = Duration::from_secs(3600);
/// ...and at most how many (always at least the next one).
const AHEAD: usize = 10;
/// The most missed runs a catching-up deployment gets.
const CATCH_UP_MAX: usize = 100;

type Overrides = serde_json::Map<String, serde_json::Value>;

/// How a deployment is served by a work pool ([`Store::place_deployment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPlacement {
    /// The pool whose workers run it.
    pub pool: String,
    /// How many times a run that crashed (its worker died) is scheduled again.
    pub retries: u32,
    /// How long after the crash the re-run is due.
    pub retry_delay: Duration,
    /// True: the scheduler creates the runs missed while nothing scheduled (at most 100);
    /// false: it starts from now.
    pub catch_up: bool,
    /// The most runs of the deployment running at once across the pool's workers (None: no
    /// limit but the pool's).
    pub max_active_runs: Option<u32>,
}

impl PoolPlacement {
    /// Served by `pool`: no re-runs, no catching up.
    pub fn new(pool: impl Into<String>) -> PoolPlacement {
        PoolPlacement {
            pool: pool.into(),
            retries: 0,
            retry_delay: Duration::ZERO,
            catch_up: false,
            max_active_runs: None,
        }
    }
    /// Schedule a crashed run again, up to `n` times.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }
    /// Due `delay` after the crash.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }
    /// Create missed runs.
    pub fn catch_up(mut self, on: bool) -> Self {
        self.catch_up = on;
        self
    }
    /// At most `n` runs of the deployment at once (0 is taken as 1).
    pub fn max_active_runs(mut self, n: u32) -> Self {
        self.max_active_runs = Some(n.max(1));
        self
    }
}

/// A run a worker claimed ([`Store::claim_runs`]): it runs it under `id`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClaimedRun {
    /// The flow run's id.
    pub id: Uuid,
    /// Its deployment.
    pub deployment: String,
    /// The parameters it was asked with, over the deployment's defaults.
    pub overrides: Overrides,
    /// When it was due.
    pub scheduled: DateTime<Utc>,
    /// How many times it was run before and crashed (0 for a first run).
    pub tries: u32,
}

/// What one pass of the scheduler did ([`Store::schedule_due`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleReport {
    /// Runs created.
    pub created: usize,
    /// Runs marked Late.
    pub late: usize,
}

impl Store {
    /// Places deployment `deployment` in work pool `placement.pool`: from now on the pool's
    /// workers run it (its schedule is kept by the store's scheduler). Its future Scheduled runs
    /// are dropped, for the scheduler to create them again from its current schedule.
    /// [`StoreError::DeploymentNotFound`] or [`StoreError::WorkPoolNotFound`].
    pub async fn place_deployment(
        &self,
        deployment: &str,
        placement: &PoolPlacement,
    ) -> Result<(), StoreError> {
        self.deployment(deployment).await?;
        let (name, p) = (deployment.to_owned(), placement.clone());
        self.with_pool(move |pool, _| async move {
            pool_exists(&pool, &p.pool).await?;
            let delay = i64::try_from(p.retry_delay.as_millis()).unwrap_or(i64::MAX);
            let mut tx = pool.begin().await?;
            db::query(
                "UPDATE deployments SET pool = $1, retries = $2, retry_delay_ms = $3, \
                 catch_up = $4, max_active = $5 WHERE name = $6",
            )
            .bind(&p.pool)
            .bind(i64::from(p.retries))
            .bind(delay)
            .bind(i64::from(p.catch_up))
            .bind(p.max_active_runs.map(i64::from))
            .bind(&name)
            .execute(&mut *tx)
            .await?;
            db::query(
                "DELETE FROM flow_runs WHERE deployment = $1 AND state = 'Scheduled' \
                 AND slot IS NOT NULL AND scheduled > $2",
            )
            .bind(&name)
            .bind(ts(Utc::now()))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Asks for a run of pooled deployment `deployment`, due `at` (None: now), with
    /// `overrides` over its default parameters: a Scheduled run its pool's workers claim.
    /// Returns the run's id. [`StoreError::DeploymentNotFound`]; [`StoreError::Invalid`] when
    /// the deployment is not in a pool.
    pub async fn schedule_run(
        &self,
        deployment: &str,
        overrides: Overrides,
        at: Option<DateTime<Utc>>,
    ) -> Result<Uuid, StoreError> {
        let d = self.deployment(deployment).await?;
        let id = Uuid::now_v7();
        let at = at.unwrap_or_else(Utc::now);
        let done = self
            .with_pool(move |pool, backend| async move {
                let mut tx = pool.begin().await?;
                let n =
                    insert_scheduled(&mut tx, &d.name, &d.flow, &overrides, at, None, id).await?;
                notify(&mut tx, backend).await?;
                tx.commit().await?;
                Ok(n)
            })
            .await?;
        match done {
            0 => Err(StoreError::Invalid(format!(
                "deployment {deployment:?} is not served by a work pool: run it where it is \
                 served, or place it in a pool (a worker serving it does)"
            ))),
            _ => Ok(id),
        }
    }

    /// One pass of the scheduler: creates the coming runs of every pooled, scheduled,
    /// unpaused deployment (the next hour, at most 10 each; missed ones too for a deployment
    /// that catches up) and marks Late the Scheduled runs [`LATE_AFTER`] overdue. Creating a
    /// run twice is impossible (one per deployment and time), so racing schedulers only waste
    /// work; run it where [`Store::lead`] says this process leads.
    pub async fn schedule_due(&self) -> Result<ScheduleReport, StoreError> {
        self.with_pool(move |pool, backend| async move {
            let now = Utc::now();
            let mut report = ScheduleReport::default();
            for d in scheduled_deployments(&pool).await? {
                report.created += schedule_one(&pool, backend, &d, now).await?;
            }
            let late_before = now - chrono::Duration::from_std(LATE_AFTER).unwrap_or_default();
            report.late = db::query(
                "UPDATE flow_runs SET state = 'Late' WHERE state = 'Scheduled' AND scheduled < $1",
            )
            .bind(ts(late_before))
            .execute(&pool)
            .await?
            .rows_affected() as usize;
            Ok(report)
        })
        .await
    }

    /// Claims up to `max` due runs (Scheduled or Late, due first) of `deployments` in pool
    /// `pool` for worker `worker`: each becomes Pending, owned by this process (its lease and
    /// heartbeat, as the runs it starts itself), in one transaction. Of several workers
    /// claiming at once, each run goes to one. Nothing while the pool is paused; never more
    /// runs of the pool at once than its concurrency limit, counted across all its workers.
    /// [`StoreError::WorkPoolNotFound`].
    pub async fn claim_runs(
        &self,
        pool_name: &str,
        worker: &str,
        deployments: &[String],
        max: usize,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        if deployments.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        let (pool_name, worker, deployments) = (
            pool_name.to_owned(),
            worker.to_owned(),
            deployments.to_vec(),
        );
        self.with_pool(move |pool, backend| async move {
            let now = ts(Utc::now());
            let lost = inner.lost_claims.stamps(&pool_name, &worker);
            let claim = async {
                let mut tx = pool.begin().await?;
                // A write first: on SQLite it takes the write lock, so claimers take turns.
                inner.owners.beat(&mut tx, &now).await?;
                let Some(room) = pool_room(&mut tx, backend, &pool_name).await? else {
                    drop(tx);
                    return Err(super::pools::pool_not_found(&pool, pool_name.clone()).await);
                };
                let process = &inner.owners.process;
                let mut claimed = recover(&mut tx, process, &pool_name, &lost, &now).await?;
                claimed.retain(|r| !inner.owners.runs_here(r.id));
                let max = room.map_or(max, |r| r.min(max));
                let max = max.saturating_sub(claimed.len());
                let due = due_runs(&mut tx, backend, &pool_name, &deployments, &now, max).await?;
                let due = within_deployment_limits(&mut tx, backend, due).await?;
                take_all(&mut tx, &inner.owners, due, &worker, &now, &mut claimed).await?;
                tx.commit().await?;
                Ok(claimed)
            };
            let claimed = claim.await;
            if claimed.is_err() {
                // It may have committed all the same: the next claim looks.
                inner.lost_claims.failed(&pool_name, &worker, &now);
            }
            claimed
        })
        .await
    }

    /// When the next Scheduled run of `deployments` in pool `pool_name` that is not due yet is
    /// due (None: none waits). One query on the queue's index.
    pub async fn next_due(
        &self,
        pool_name: &str,
        deployments: &[String],
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        if deployments.is_empty() {
            return Ok(None);
        }
        let (pool_name, deployments) = (pool_name.to_owned(), deployments.to_vec());
        self.with_pool(move |pool, _| async move {
            let marks: Vec<String> = (0..deployments.len())
                .map(|i| format!("${}", i + 3))
                .collect();
            let sql = format!(
                "SELECT MIN(scheduled) FROM flow_runs WHERE pool = $1 AND state = 'Scheduled' \
                 AND scheduled > $2 AND deployment IN ({})",
                marks.join(", ")
            );
            let q = db::query_scalar::<Option<String>>(&sql)
                .bind(pool_name)
                .bind(ts(Utc::now()));
            let q = deployments.iter().fold(q, |q, d| q.bind(d.as_str()));
            let next = q.fetch_one(&pool).await?;
            next.as_deref().map(parse_ts).transpose()
        })
        .await
    }

    /// Holds (or renews) leadership `name` for `holder` during `ttl`: true when `holder`
    /// leads. Another holder takes over once the lease has not been renewed for `ttl`.
    pub async fn lead(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.with_pool(move |pool, _| async move {
            let now = Utc::now();
            let until = now + chrono::Duration::from_std(ttl).unwrap_or_default();
            let done = db::query(
                "INSERT INTO leaders (name, holder, until) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                 WHERE leaders.holder = excluded.holder OR leaders.until < $4",
            )
            .bind(name)
            .bind(holder)
            .bind(ts(until))
            .bind(ts(now))
            .execute(&pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    /// Who holds leadership `name` now (its lease not expired), if anyone: a worker's id for
    /// the scheduler.
    pub async fn leader(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_owned();
        self.with_pool(move |pool, _| async move {
            Ok(
                db::query_scalar("SELECT holder FROM leaders WHERE name = $1 AND until > $2")
                    .bind(name)
                    .bind(ts(Utc::now()))
                    .fetch_optional(&pool)
                    .await?,
            )
        })
        .await
    }

    /// The work pool of each deployment served by one, by deployment name.
    pub async fn deployment_pools(&self) -> Result<HashMap<String, String>, StoreError> {
        self.with_pool(move |pool, _| async move {
            let rows = db::query("SELECT name, pool FROM deployments WHERE pool IS NOT NULL")
                .fetch_all(&pool)
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get("name")?, r.try_get("pool")?)))
                .collect()
        })
        .await
    }

    /// Gives up leadership `name` if `holder` holds it (a worker stopping).
    pub async fn resign(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.with_pool(move |pool, _| async move {
            db::query("DELETE FROM leaders WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// Ends a claimed run that could not start (its parameters do not fit the flow) as Failed
    /// with `why`.
    pub async fn reject_claimed(&self, id: Uuid, why: &str) -> Result<(), StoreError> {
        let why = why.to_owned();
        self.with_pool(move |pool, backend| async move {
            let end = Ending {
                state: StateKind::Failed,
                why: &why,
                lease: None,
                now: Utc::now(),
            };
            mark_ended(&pool, backend, &id.to_string(), &end).await?;
            Ok(())
        })
        .await
    }

    /// Gives claimed run `id` back to the queue, due `after` from now, when it is still Pending
    /// under this process's claim (it did not start: another process on this machine still
    /// holds it in the result store, a worker taken for dead whose copy goes on). It keeps its
    /// tries. True when it was given back.
    pub(crate) async fn unclaim(
        &self,
        id: Uuid,
        after: Duration,
        why: &str,
    ) -> Result<bool, StoreError> {
        let token = self.inner.owners.token(id);
        let due = ts(Utc::now() + chrono::Duration::from_std(after).unwrap_or_default());
        let why = why.to_owned();
        self.with_pool(move |pool, _| async move {
            let done = db::query(
                "UPDATE flow_runs SET state = 'Scheduled', message = $1, scheduled = $2, \
                 started = $2, worker = NULL WHERE id = $3 AND state = 'Pending' AND lease = $4",
            )
            .bind(why)
            .bind(&due)
            .bind(id.to_string())
            .bind(token)
            .execute(&pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    /// Forgets that this process owns run `id` (it ended).
    pub(crate) async fn release_run(&self, id: Uuid) -> Result<(), StoreError> {
        let process = self.inner.owners.process.clone();
        self.with_pool(move |pool, _| async move {
            db::query("DELETE FROM run_owners WHERE flow_run_id = $1 AND process = $2")
                .bind(id.to_string())
                .bind(process)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }
}

/// Inserts a Scheduled run of pooled deployment `deployment` (nothing if it is not pooled, or
/// when `slot` is taken): rows inserted.
async fn insert_scheduled(
    tx: &mut db::Transaction,
    deployment: &str,
    flow: &str,
    overrides: &Overrides,
    at: DateTime<Utc>,
    slot: Option<DateTime<Utc>>,
    id: Uuid,
) -> Result<u64, StoreError> {
    let at = ts(at);
    let overrides = serde_json::Value::Object(overrides.clone()).to_string();
    let done = db::query(
        "INSERT INTO flow_runs (id, flow, flow_version, parameters, state, message, started, \
         deployment, pool, scheduled, slot, overrides, tries) \
         SELECT $1, $2, '', $3, 'Scheduled', NULL, $4, name, pool, $5, $6, $7, 0 \
         FROM deployments WHERE name = $8 AND pool IS NOT NULL ON CONFLICT DO NOTHING",
    )
    .bind(id.to_string())
    .bind(flow)
    .bind(&overrides)
    .bind(&at)
    .bind(&at)
    .bind(slot.map(ts))
    .bind(&overrides)
    .bind(deployment)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Wakes the workers listening on PostgreSQL (polling ones find the run at their next poll).
async fn notify(tx: &mut db::Transaction, backend: Backend) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        db::query("SELECT pg_notify('weft_runs', '')")
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A pooled, scheduled, unpaused deployment.
struct Scheduled {
    name: String,
    flow: String,
    schedule: Schedule,
    catch_up: bool,
}

async fn scheduled_deployments(pool: &db::Pool) -> Result<Vec<Scheduled>, StoreError> {
    let rows = db::query(
        "SELECT name, flow, schedule, catch_up FROM deployments \
         WHERE pool IS NOT NULL AND schedule IS NOT NULL AND paused = 0",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.try_get("name")?;
        let spec: String = r.try_get("schedule")?;
        match spec.parse::<Schedule>() {
            Ok(schedule) => out.push(Scheduled {
                name,
                flow: r.try_get("flow")?,
                schedule,
                catch_up: r.try_get::<i64, _>("catch_up")? != 0,
            }),
            Err(e) => tracing::warn!(
                target: "weft::store",
                "Deployment '{name}': its schedule {spec:?} cannot be read ({e}): not scheduled"
            ),
        }
    }
    Ok(out)
}

/// Creates deployment `d`'s coming runs: how many were new.
async fn schedule_one(
    pool: &db::Pool,
    backend: Backend,
    d: &Scheduled,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let last: Option<String> = db::query_scalar(
        "SELECT MAX(slot) FROM flow_runs WHERE deployment = $1 AND slot IS NOT NULL",
    )
    .bind(&d.name)
    .fetch_one(pool)
    .await?;
    let last = last.as_deref().map(parse_ts).transpose()?;
    let from = match last {
        Some(l) if d.catch_up => l,
        Some(l) => l.max(now),
        None => now,
    };
    let horizon = now + chrono::Duration::from_std(HORIZON).unwrap_or_default();
    let has_future = last.is_some_and(|l| l > now);
    // At most AHEAD waiting in all: each pass only tops them up.
    let waiting: i64 = db::query_scalar(
        "SELECT COUNT(*) FROM flow_runs WHERE deployment = $1 AND slot > $2 \
         AND state = 'Scheduled'",
    )
    .bind(&d.name)
    .bind(ts(now))
    .fetch_one(pool)
    .await?;
    let room = AHEAD.saturating_sub(usize::try_from(waiting).unwrap_or(AHEAD));
    let (missed, coming): (Vec<_>, Vec<_>) = d
        .schedule
        .upcoming(from, CATCH_UP_MAX + AHEAD)
        .into_iter()
        .partition(|t| *t <= now);
    // The next hour (at most AHEAD runs), and at least the next run when none is waiting.
    let coming = coming
        .into_iter()
        .take(room)
        .enumerate()
        .filter(|(i, t)| *t <= horizon || (*i == 0 && !has_future))
        .map(|(_, t)| t);
    let wanted: Vec<_> = missed
        .into_iter()
        .take(CATCH_UP_MAX)
        .chain(coming)
        .collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    let mut created = 0;
    for t in wanted {
        let id = Uuid::now_v7();
        created += insert_scheduled(&mut tx, &d.name, &d.flow, &Overrides::new(), t, Some(t), id)
            .await? as usize;
    }
    if created > 0 {
        notify(&mut tx, backend).await?;
    }
    // `weft deployments` shows the next run waiting.
    db::query(
        "UPDATE deployments SET next_run_at = (SELECT MIN(slot) FROM flow_runs \
         WHERE deployment = $1 AND slot IS NOT NULL AND state IN ('Scheduled', 'Late')) \
         WHERE name = $1",
    )
    .bind(&d.name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(created)
}

/// How many more runs pool `name` may start (None: no limit; Some(0) when paused); None
/// outer when there is no such pool. On PostgreSQL a limited pool's row is locked until the
/// claim commits, so two workers never both take the last slot.
async fn pool_room(
    tx: &mut db::Transaction,
    backend: Backend,
    name: &str,
) -> Result<Option<Option<usize>>, StoreError> {
    let row = db::query("SELECT concurrency_limit, paused FROM work_pools WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.try_get::<i64, _>("paused")? != 0 {
        return Ok(Some(Some(0)));
    }
    let Some(limit) = row.try_get::<Option<i64>, _>("concurrency_limit")? else {
        return Ok(Some(None));
    };
    if backend == Backend::Postgres {
        db::query("SELECT name FROM work_pools WHERE name = $1 FOR UPDATE")
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    let active: i64 = db::query_scalar(
        "SELECT COUNT(*) FROM flow_runs WHERE pool = $1 \
         AND state IN ('Pending', 'Running', 'Retrying')",
    )
    .bind(name)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(Some(usize::try_from(limit - active).unwrap_or(0))))
}

/// The due runs of `deployments` in pool `pool`, due first, at most `max`; on PostgreSQL
/// locked, skipping those another claim holds.
async fn due_runs(
    tx: &mut db::Transaction,
    backend: Backend,
    pool: &str,
    deployments: &[String],
    now: &str,
    max: usize,
) -> Result<Vec<ClaimedRun>, StoreError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..deployments.len())
        .map(|i| format!("${}", i + 4))
        .collect();
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT id, deployment, overrides, scheduled, tries FROM flow_runs \
         WHERE pool = $1 AND state IN ('Scheduled', 'Late') AND scheduled <= $2 \
         AND deployment IN ({}) ORDER BY scheduled LIMIT $3{lock}",
        marks.join(", ")
    );
    let q = db::query(&sql)
        .bind(pool)
        .bind(now)
        .bind(i64::try_from(max).unwrap_or(i64::MAX));
    let q = deployments.iter().fold(q, |q, d| q.bind(d.as_str()));
    q.fetch_all(&mut **tx)
        .await?
        .iter()
        .map(claimed_run)
        .collect()
}

/// A run to claim, from a row of `flow_runs` (id, deployment, overrides, scheduled, tries).
pub(super) fn claimed_run(r: &db::Row) -> Result<ClaimedRun, StoreError> {
    let overrides: Option<String> = r.try_get("overrides")?;
    let overrides = overrides
        .and_then(|o| serde_json::from_str::<Overrides>(&o).ok())
        .unwrap_or_default();
    Ok(ClaimedRun {
        id: Uuid::parse_str(&r.try_get::<String, _>("id")?)
            .map_err(|e| StoreError::Query(format!("a bad run id in the queue: {e}")))?,
        deployment: r.try_get("deployment")?,
        overrides,
        scheduled: parse_ts(&r.try_get::<String, _>("scheduled")?)?,
        tries: u32::try_from(r.try_get::<i64, _>("tries")?).unwrap_or(0),
    })
}

/// The runs among `due` their deployments' `max_active` leaves room for, in order. On
/// PostgreSQL a limited deployment's row is locked until the claim commits.
async fn within_deployment_limits(
    tx: &mut db::Transaction,
    backend: Backend,
    due: Vec<ClaimedRun>,
) -> Result<Vec<ClaimedRun>, StoreError> {
    let mut room: HashMap<String, Option<i64>> = HashMap::new();
    let mut kept = Vec::with_capacity(due.len());
    for run in due {
        if !room.contains_key(&run.deployment) {
            let left = deployment_room(tx, backend, &run.deployment).await?;
            room.insert(run.deployment.clone(), left);
        }
        match room.get_mut(&run.deployment) {
            Some(Some(n)) if *n <= 0 => continue,
            Some(Some(n)) => *n -= 1,
            _ => {}
        }
        kept.push(run);
    }
    Ok(kept)
}

/// How many more runs deployment `name` may start (None: no limit of its own).
async fn deployment_room(
    tx: &mut db::Transaction,
    backend: Backend,
    name: &str,
) -> Result<Option<i64>, StoreError> {
    let max: Option<Option<i64>> =
        db::query_scalar("SELECT max_active FROM deployments WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(max) = max.flatten() else {
        return Ok(None);
    };
    if backend == Backend::Postgres {
        db::query("SELECT name FROM deployments WHERE name = $1 FOR UPDATE")
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    let active: i64 = db::query_scalar(
        "SELECT COUNT(*) FROM flow_runs WHERE deployment = $1 \
         AND state IN ('Pending', 'Running', 'Retrying')",
    )
    .bind(name)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(max - active))
}

/// Claims each run of `due` for `worker` in `tx`, onto `claimed`.
async fn take_all(
    tx: &mut db::Transaction,
    owners: &Owners,
    due: Vec<ClaimedRun>,
    worker: &str,
    now: &str,
    claimed: &mut Vec<ClaimedRun>,
) -> Result<(), StoreError> {
    for run in due {
        // Never a run this process still runs: a copy it was taken for dead with, whose rows
        // its lease token (the same for each claim of the run here) would let through again.
        if owners.runs_here(run.id) {
            continue;
        }
        let token = owners.token(run.id);
        if take(tx, &run, worker, token, &owners.process, now).await? {
            claimed.push(run);
        }
    }
    Ok(())
}

/// Makes `run` Pending, owned by `process` with lease `token`, run by `worker`: false when
/// another claim took it first.
async fn take(
    tx: &mut db::Transaction,
    run: &ClaimedRun,
    worker: &str,
    token: i64,
    process: &str,
    now: &str,
) -> Result<bool, StoreError> {
    let id = run.id.to_string();
    let done = db::query(
        "UPDATE flow_runs SET state = 'Pending', worker = $1, lease = $2, message = NULL \
         WHERE id = $3 AND state IN ('Scheduled', 'Late')",
    )
    .bind(worker)
    .bind(token)
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    db::query(
        "INSERT INTO run_owners (flow_run_id, process, since) VALUES ($1, $2, $3) \
         ON CONFLICT (flow_run_id) DO UPDATE SET process = excluded.process, since = excluded.since",
    )
    .bind(&id)
    .bind(process)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// Schedules crashed run `id` again when it belongs to a pooled deployment with retries left
/// (in the reaper's transaction): why, when it did. The run keeps its id; its lease stays the
/// reaper's, so the process that lost it cannot write; the next claim takes a new one.
pub(super) async fn requeue(
    tx: &mut db::Transaction,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let row = db::query(
        "SELECT f.tries, d.retries, d.retry_delay_ms FROM flow_runs f \
         JOIN deployments d ON d.name = f.deployment WHERE f.id = $1 AND f.pool IS NOT NULL",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (tries, retries): (i64, i64) = (row.try_get("tries")?, row.try_get("retries")?);
    if tries >= retries {
        return Ok(None);
    }
    let delay = chrono::Duration::milliseconds(row.try_get("retry_delay_ms")?);
    let due = ts(now + delay);
    let why = format!(
        "re-run {} of {retries} after a crash (the deployment's retries): it resumes from its \
         checkpoints",
        tries + 1
    );
    db::query(
        "UPDATE flow_runs SET state = 'Scheduled', message = $1, scheduled = $2, started = $2, \
         ended = NULL, tries = tries + 1, worker = NULL WHERE id = $3",
    )
    .bind(&why)
    .bind(&due)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    db::query(
        "INSERT INTO state_changes (flow_run_id, seq, node, map_index, name, state, message, \
         attempt, at) SELECT id, 1, NULL, NULL, flow, 'Scheduled', $1, 0, $2 FROM flow_runs \
         WHERE id = $3",
    )
    .bind(&why)
    .bind(ts(now))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(Some(why))
}

impl Store {
    /// On PostgreSQL, a future that calls `wake` whenever a run is scheduled (LISTEN on the
    /// channel [`Store::schedule_run`] and the scheduler NOTIFY), reconnecting when the
    /// connection drops; None on SQLite, where workers poll.
    pub(crate) fn listen_for_runs(
        &self,
        wake: impl Fn() + Send + 'static,
    ) -> Option<crate::task::BoxFuture<'static, ()>> {
        if self.inner.backend != Backend::Postgres {
            return None;
        }
        #[cfg(feature = "postgres")]
        {
            let url = self.inner.options.url.clone();
            Some(Box::pin(async move {
                loop {
                    if let Ok(mut l) = sqlx::postgres::PgListener::connect(&url).await {
                        if l.listen("weft_runs").await.is_ok() {
                            while l.recv().await.is_ok() {
                                wake();
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }))
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = wake;
            None
        }
    }
}

/// Pipeline deployments: their files are in the store, so any worker of their pool runs them.
#[cfg(feature = "pipeline")]
impl Store {
    /// Keeps version `version` of pipeline `name`'s file (once per version).
    pub(crate) async fn save_pipeline(
        &self,
        name: &str,
        version: &str,
        source: &str,
        path: Option<String>,
    ) -> Result<(), StoreError> {
        let (name, version, source) = (name.to_owned(), version.to_owned(), source.to_owned());
        self.with_pool(move |pool, _| async move {
            db::query(
                "INSERT INTO pipelines (name, version, source, path, registered) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, version) DO NOTHING",
            )
            .bind(name)
            .bind(version)
            .bind(source)
            .bind(path)
            .bind(ts(Utc::now()))
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Marks deployment `name` as running version `version` of its pipeline file.
    pub(crate) async fn set_deployment_pipeline(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.with_pool(move |pool, _| async move {
            db::query("UPDATE deployments SET pipeline_version = $1 WHERE name = $2")
                .bind(version)
                .bind(name)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// The pipeline deployments of work pool `pool`.
    pub(crate) async fn pipeline_deployments(
        &self,
        pool_name: &str,
    ) -> Result<Vec<crate::pipeline::PipelineDeployment>, StoreError> {
        let pool_name = pool_name.to_owned();
        self.with_pool(move |pool, _| async move {
            let rows = db::query(
                "SELECT name, flow, pipeline_version, parameters FROM deployments \
                 WHERE pool = $1 AND pipeline_version IS NOT NULL ORDER BY name",
            )
            .bind(pool_name)
            .fetch_all(&pool)
            .await?;
            rows.iter()
                .map(|r| {
                    let params: String = r.try_get("parameters")?;
                    Ok(crate::pipeline::PipelineDeployment {
                        name: r.try_get("name")?,
                        pipeline: r.try_get("flow")?,
                        version: r.try_get("pipeline_version")?,
                        parameters: serde_json::from_str(&params).unwrap_or_default(),
                    })
                })
                .collect()
        })
        .await
    }
}

/// How often [`keep_scheduling`] tries to lead and, leading, schedules.
const SCHEDULE_EVERY: Duration = Duration::from_secs(2);
/// How long the scheduler's leadership lasts unless renewed.
pub(crate) const LEAD_TTL: Duration = Duration::from_secs(10);

/// Takes part in scheduling for ever (what `weft server start` runs beside its API, and what
/// workers do between claims): every 2 s, if this process leads the scheduler (one process at
/// a time; another takes over within 10 s of the leader's death), creates the coming runs of
/// pooled deployments and marks overdue ones Late ([`Store::schedule_due`]). Failures are
/// logged and tried again.
pub async fn keep_scheduling(store: Store) {
    let holder = format!("scheduler-{}", Uuid::new_v4());
    loop {
        if let Ok(true) = store.lead(SCHEDULER, &holder, LEAD_TTL).await {
            if let Err(e) = store.schedule_due().await {
                tracing::warn!(target: "weft::store", "Scheduler: {e}");
            }
        }
        tokio::time::sleep(SCHEDULE_EVERY).await;
    }
}

/// The scheduler's leadership, in the `leaders` table.
pub(crate) const SCHEDULER: &str = "scheduler";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeploymentRecord, WorkPoolSpec};

    /// Each pass of the scheduler tops the waiting runs up to 10; it does not add 10 more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scheduler_keeps_at_most_ten_runs_waiting() {
        let dir = std::env::temp_dir().join(format!("weft-queue-ahead-{}", Uuid::new_v4()));
        let url = format!("sqlite://{}/weft.db", dir.display());
        let store = Store::connect(&url).await.unwrap();
        store
            .create_work_pool(&WorkPoolSpec::new("p"))
            .await
            .unwrap();
        store
            .register_deployment(&DeploymentRecord {
                name: "every-4s".into(),
                flow: "f".into(),
                schedule: Some(Schedule::interval("4s").unwrap().to_spec()),
                parameters: serde_json::json!({}),
                paused: false,
                last_run: None,
                last_run_at: None,
                next_run_at: None,
                updated: Utc::now(),
            })
            .await
            .unwrap();
        store
            .place_deployment("every-4s", &PoolPlacement::new("p"))
            .await
            .unwrap();
        let created: Vec<usize> = [
            store.schedule_due().await.unwrap().created,
            store.schedule_due().await.unwrap().created,
            store.schedule_due().await.unwrap().created,
        ]
        .into();
        assert_eq!(created, [AHEAD, 0, 0]);
        std::fs::remove_dir_all(dir).ok();
    }
}
