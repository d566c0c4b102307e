//! Workers: processes that run the Scheduled runs of a work pool's deployments, on as many
//! machines as share the store (PostgreSQL; SQLite for several processes on one machine).
//!
//! A [`Worker`] is your own binary: it can only run the flows compiled into it, so it is given
//! the deployments it serves ([`Deployment`]s, as for [`serve`](crate::schedule::serve)). When
//! it starts it registers them in its pool (with their schedules, default parameters and
//! crash re-runs) and itself in the worker registry (`weft workers`). Then, until stopped, it
//!
//! - claims due runs of its deployments ([`Store::claim_runs`]): each goes to one worker, within
//!   the pool's concurrency limit and the worker's own [`limit`](Worker::limit), never while
//!   the pool is paused; it runs each under the run's id, resuming from the run's checkpoints
//!   (a run re-scheduled after a crash does not execute again the tasks that completed);
//! - heartbeats: its runs' leases and cancel requests are the store's, as for any process that
//!   records runs (a cancel request reaches it within a second); its registry row every 2 s;
//! - takes its turn as the **scheduler** ([`Store::lead`]: one process at a time, another takes
//!   over within 10 s when it dies): creates the coming Scheduled runs of every pooled
//!   deployment ([`Store::schedule_due`]), marks overdue ones Late, and reaps the runs of dead
//!   workers ([`Store::reap`]): Crashed, or Scheduled again while their deployment has retries.
//!
//! An idle worker sleeps until the next run of its deployments is due, or for
//! [`poll_every`](Worker::poll_every) if that is sooner; on PostgreSQL a run made for now wakes
//! it at once (LISTEN/NOTIFY).
//!
//! ```
//! use std::time::Duration;
//! use weft::prelude::*;
//! use weft::schedule::Deployment;
//! use weft::store::{Store, WorkPoolSpec};
//! use weft::worker::Worker;
//!
//! #[task] async fn load(n: u32) -> u32 { n * 2 }
//!
//! #[flow]
//! async fn nightly(n: u32) -> u32 {
//!     let x = load(n)?;
//!     x
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("weft-doc-worker-{}", std::process::id()));
//! let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
//! store.create_work_pool(&WorkPoolSpec::new("etl")).await?;
//! let worker = Worker::new("etl")
//!     .deployment(Deployment::new("nightly", nightly::flow(), (21,)).retries(2))
//!     .store(store.clone())
//!     .poll_every(Duration::from_millis(50));
//! let asker = store.clone();
//! worker
//!     .run_until(async move {
//!         // Anyone with the store asks for a run; the worker runs it.
//!         let request = asker.request_run("nightly", Default::default()).await.unwrap();
//!         let run = asker.request(request).await.unwrap().run_id.unwrap();
//!         while !asker.run_record(run).await.is_ok_and(|r| r.state.is_final()) {
//!             tokio::time::sleep(Duration::from_millis(20)).await;
//!         }
//!     })
//!     .await?;
//! let runs = store.runs(&weft::store::RunFilter::new().flow("nightly")).await?;
//! assert_eq!(runs[0].state, StateKind::Completed);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use crate::flow::{CancelHandle, RunConfig};
#[cfg(feature = "pipeline")]
use crate::pipeline::PipelineDeployment;
use crate::schedule::{Deployment, ServeError};
use crate::store::{ClaimedRun, DeploymentRecord, PoolPlacement, Store, WorkerId, WorkerInfo};
use crate::store::{LEAD_TTL, SCHEDULER};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use uuid::Uuid;

/// How often a worker refreshes its registry row and, when it leads, schedules and reaps.
const BEAT: Duration = Duration::from_secs(2);
/// When a claimed run could not start (another process holds it), how long until it is due
/// again.
const AGAIN_AFTER: Duration = Duration::from_secs(3);

/// A worker of a work pool: runs its deployments' Scheduled runs until stopped (see the
/// [module documentation](self)).
#[must_use = "a worker does nothing until `run` or `run_until` is awaited"]
pub struct Worker {
    pool: String,
    name: Option<String>,
    deployments: Vec<Deployment>,
    store: Option<Store>,
    limit: usize,
    poll: Duration,
    grace: Duration,
    #[cfg(feature = "pipeline")]
    pipelines: bool,
}

impl Worker {
    /// A worker of pool `pool` (which must exist: `weft work-pool create NAME`), named after
    /// its host and pid, running at most 10 runs at once, polling every second.
    pub fn new(pool: impl Into<String>) -> Worker {
        Worker {
            pool: pool.into(),
            name: None,
            deployments: Vec::new(),
            store: None,
            limit: 10,
            poll: Duration::from_secs(1),
            grace: Duration::from_secs(30),
            #[cfg(feature = "pipeline")]
            pipelines: false,
        }
    }
    /// Serves `deployment`: registers it in the pool, and runs its runs.
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.deployments.push(deployment);
        self
    }
    /// Serves each of `deployments`.
    pub fn deployments(mut self, deployments: impl IntoIterator<Item = Deployment>) -> Self {
        self.deployments.extend(deployments);
        self
    }
    /// Also runs the pool's pipeline deployments (feature `pipeline`) ([`Pipeline::deploy`]): their files are in
    /// the store, so any worker can (what `weft worker --pool NAME` does). It looks for new or
    /// changed ones every 2 s.
    ///
    /// [`Pipeline::deploy`]: crate::pipeline::Pipeline::deploy
    #[cfg(feature = "pipeline")]
    pub fn pipelines(mut self, on: bool) -> Self {
        self.pipelines = on;
        self
    }
    /// Its name in `weft workers` and on the runs it runs (default: `host:pid`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Runs at most `n` runs at once (default 10; at least 1).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n.max(1);
        self
    }
    /// Records into `store` (default: [`Store::open_default`]).
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }
    /// Looks for due runs this often when nothing wakes it (default 1 s).
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }
    /// When stopped, how long its running runs have to finish before they are cancelled
    /// (default 30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Works until Ctrl-C or SIGTERM.
    pub async fn run(self) -> Result<(), ServeError> {
        self.run_until(crate::schedule::shutdown_signal()).await
    }

    /// Works until `stop` completes: claims no more runs, gives running ones the grace period,
    /// cancels the rest (they end Cancelled), leaves the registry.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), ServeError> {
        crate::logging::ensure_default();
        let store = match &self.store {
            Some(s) => s.clone(),
            None => Store::open_default().await?,
        };
        let served = self.register(&store).await?;
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", crate::store::host_name(), std::process::id()));
        let flows = self.deployments.iter().map(flow_label).collect();
        let info = WorkerInfo::this_process(&self.pool, &name, flows);
        let id = store.register_worker(&info).await?;
        tracing::info!(
            target: "weft",
            "Worker '{name}' of pool '{}' started: deployments {}",
            self.pool,
            served.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        let mut work = Work {
            store: store.clone(),
            pool: self.pool.clone(),
            name,
            id,
            info,
            served,
            running: JoinSet::new(),
            cancels: HashMap::new(),
            wake: Arc::new(Notify::new()),
            #[cfg(feature = "pipeline")]
            pipelines: self.pipelines.then(HashMap::new),
            noted: HashMap::new(),
        };
        let listener = work.listen();
        tokio::pin!(stop);
        work.serve(&mut stop, self.limit, self.poll).await;
        if let Some(l) = listener {
            l.abort();
        }
        work.stop(self.grace).await;
        Ok(())
    }

    /// Records each deployment in the store, placed in the pool: the deployments by name.
    async fn register(&self, store: &Store) -> Result<HashMap<String, Deployment>, ServeError> {
        let mut served = HashMap::new();
        for d in &self.deployments {
            if served.insert(d.name.clone(), d.clone()).is_some() {
                return Err(ServeError::DuplicateName(d.name.clone()));
            }
            store
                .register_deployment(&DeploymentRecord::registered(
                    d.name.clone(),
                    d.flow.name.to_owned(),
                    d.schedule.as_ref(),
                    d.params.clone(),
                ))
                .await?;
            let mut placement = PoolPlacement::new(&self.pool)
                .retries(d.retries)
                .retry_delay(d.retry_delay)
                .catch_up(d.catch_up);
            placement.max_active_runs = d.max_active_runs;
            store.place_deployment(&d.name, &placement).await?;
        }
        Ok(served)
    }
}

/// `name@version` of a deployment's flow (`name` when it has no version).
fn flow_label(d: &Deployment) -> String {
    match d.flow.version {
        Some(v) => format!("{}@{v}", d.flow.name),
        None => d.flow.name.to_owned(),
    }
}

/// Does `write` until it succeeds, every second for up to a minute: a run the worker gives
/// up must not stay Pending under its live process because the database was away a moment.
/// The writes it is used for are guarded, so doing one again is harmless.
async fn until_done<T, F, Fut>(mut write: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, crate::store::StoreError>>,
{
    for _ in 0..60 {
        match write().await {
            Ok(done) => return Some(done),
            Err(e) => tracing::debug!(target: "weft", "Worker: {e}; trying again in 1 s"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}

/// A started worker's state.
struct Work {
    store: Store,
    pool: String,
    name: String,
    id: WorkerId,
    info: WorkerInfo,
    served: HashMap<String, Deployment>,
    running: JoinSet<Uuid>,
    cancels: HashMap<Uuid, CancelHandle>,
    wake: Arc<Notify>,
    /// When serving pipelines: the pipeline deployments loaded, by name.
    #[cfg(feature = "pipeline")]
    pipelines: Option<HashMap<String, PipelineDeployment>>,
    /// When each deployment's last run was last recorded.
    noted: HashMap<String, Instant>,
}

impl Work {
    /// Claims and starts runs until `stop`.
    async fn serve(
        &mut self,
        stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        limit: usize,
        poll: Duration,
    ) {
        let mut names: Vec<String> = self.served.keys().cloned().collect();
        let mut last_beat: Option<Instant> = None;
        loop {
            if last_beat.is_none_or(|t| t.elapsed() >= BEAT) {
                self.beat().await;
                if self.load_pipelines().await {
                    names = self.served.keys().cloned().collect();
                }
                last_beat = Some(Instant::now());
            }
            // Every run that ended frees its slot now, so that one claim takes them all.
            while let Some(done) = self.running.try_join_next() {
                if let Ok(id) = done {
                    self.cancels.remove(&id);
                }
            }
            let room = limit.saturating_sub(self.running.len());
            let mut full = false;
            if room > 0 {
                match self
                    .store
                    .claim_runs(&self.pool, &self.name, &names, room)
                    .await
                {
                    Ok(runs) => {
                        full = runs.len() == room;
                        for run in runs {
                            self.start(run).await;
                        }
                    }
                    Err(e) => tracing::warn!(target: "weft", "Worker '{}': claim: {e}", self.name),
                }
            }
            if full && self.running.len() < limit {
                continue; // more may be due
            }
            let nap = self.until_next_due(&names, poll).await;
            tokio::select! {
                _ = stop.as_mut() => return,
                Some(done) = self.running.join_next(), if !self.running.is_empty() => {
                    if let Ok(id) = done {
                        self.cancels.remove(&id);
                    }
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Records the deployment's last run for `weft deployments`, at most every [`BEAT`] per
    /// deployment: a row update per run would serialize the workers of a busy deployment.
    async fn note_last_run(&mut self, run: &ClaimedRun) {
        let due = self
            .noted
            .get(&run.deployment)
            .is_none_or(|t| t.elapsed() >= BEAT);
        if due {
            self.noted.insert(run.deployment.clone(), Instant::now());
            let now = chrono::Utc::now();
            let _ = self
                .store
                .note_deployment_run(&run.deployment, run.id, now)
                .await;
        }
    }

    /// How long to sleep before looking again: until the next run of its deployments is due,
    /// if that is sooner than `poll` (runs made ahead by the scheduler start on time; NOTIFY
    /// only says a run was made).
    async fn until_next_due(&self, names: &[String], poll: Duration) -> Duration {
        let next = self.store.next_due(&self.pool, names).await.ok().flatten();
        let left = next.and_then(|t| (t - chrono::Utc::now()).to_std().ok());
        // Due already (waiting on a limit or a pause): polling is what finds room.
        left.filter(|d| !d.is_zero()).map_or(poll, |d| d.min(poll))
    }

    /// Starts claimed run `run` in the background.
    async fn start(&mut self, run: ClaimedRun) {
        let Some(d) = self.served.get(&run.deployment) else {
            return; // only its own deployments are claimed
        };
        let late = (chrono::Utc::now() - run.scheduled)
            .to_std()
            .unwrap_or_default();
        let again = match run.tries {
            0 => String::new(),
            n => format!(", re-run {n} after a crash, resuming from its checkpoints"),
        };
        tracing::info!(
            target: "weft",
            "Worker '{}' runs flow run {} of deployment '{}' ({:.1?} after it was due{again})",
            self.name,
            run.id,
            run.deployment,
            late
        );
        let cancel = CancelHandle::new();
        let config = RunConfig::new()
            .resume(run.id)
            .history(self.store.clone())
            .cancel_with(&cancel)
            .cancel_grace(Duration::from_secs(2));
        let started = match (d.start)(config, &run.overrides) {
            Ok(f) => f,
            Err(why) => {
                let why = format!("its parameters do not fit flow '{}': {why}", d.flow.name);
                tracing::warn!(target: "weft", "Flow run {}: {why}", run.id);
                let (store, id) = (self.store.clone(), run.id);
                tokio::spawn(until_done(move || {
                    let (store, why) = (store.clone(), why.clone());
                    async move { store.reject_claimed(id, &why).await }
                }));
                return;
            }
        };
        self.note_last_run(&run).await;
        self.cancels.insert(run.id, cancel);
        let (store, id) = (self.store.clone(), run.id);
        self.running.spawn(async move {
            let finished = tokio::spawn(started).await;
            if finished.is_ok_and(|f| !f.started) {
                // Another process on this machine still runs it (a worker taken for dead, its
                // copy not cancelled yet): the run waits in the queue for that copy to end.
                let why = "not started: another process on this machine still holds the run \
                           (a worker taken for dead); scheduled again";
                if let Some(true) = until_done(|| store.unclaim(id, AGAIN_AFTER, why)).await {
                    tracing::warn!(
                        target: "weft",
                        "Flow run {id}: {why}, due in {AGAIN_AFTER:?}"
                    );
                }
            }
            until_done(|| store.release_run(id)).await;
            id
        });
    }

    /// When serving pipelines, loads the pool's new or changed pipeline deployments: true when
    /// the deployments served changed.
    #[cfg(feature = "pipeline")]
    async fn load_pipelines(&mut self) -> bool {
        let Some(loaded) = &self.pipelines else {
            return false;
        };
        let found = match self.store.pipeline_deployments(&self.pool).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(target: "weft", "Worker '{}': pipelines: {e}", self.name);
                return false;
            }
        };
        let fresh: Vec<_> = found
            .into_iter()
            .filter(|p| loaded.get(&p.name) != Some(p))
            .collect();
        for p in &fresh {
            match p.load(&self.store).await {
                Ok(d) => {
                    tracing::info!(
                        target: "weft",
                        "Worker '{}' serves pipeline deployment '{}' ({} version {})",
                        self.name, p.name, p.pipeline, p.version
                    );
                    self.served.insert(p.name.clone(), d);
                }
                Err(why) => tracing::warn!(
                    target: "weft",
                    "Worker '{}': pipeline deployment '{}' cannot be served: {why}",
                    self.name, p.name
                ),
            }
        }
        let changed = !fresh.is_empty();
        if let Some(loaded) = &mut self.pipelines {
            loaded.extend(fresh.into_iter().map(|p| (p.name.clone(), p)));
        }
        changed
    }

    /// Without the `pipeline` feature a worker serves its own deployments only.
    #[cfg(not(feature = "pipeline"))]
    async fn load_pipelines(&mut self) -> bool {
        false
    }

    /// Refreshes the registry row; leads the scheduler when it can: schedules and reaps.
    async fn beat(&mut self) {
        match self.store.worker_heartbeat(self.id).await {
            Err(crate::store::StoreError::WorkerNotFound(_)) => {
                // Removed from the registry (`weft work-pool rm`, a long pause): join again.
                if let Ok(id) = self.store.register_worker(&self.info).await {
                    self.id = id;
                }
            }
            Err(e) => tracing::debug!(target: "weft", "Worker '{}': heartbeat: {e}", self.name),
            Ok(()) => {}
        }
        let holder = self.id.to_string();
        if !matches!(
            self.store.lead(SCHEDULER, &holder, LEAD_TTL).await,
            Ok(true)
        ) {
            return;
        }
        match self.store.schedule_due().await {
            Ok(r) if r.created > 0 || r.late > 0 => tracing::debug!(
                target: "weft",
                "Scheduler (worker '{}'): {} run(s) scheduled, {} late",
                self.name,
                r.created,
                r.late
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(target: "weft", "Scheduler: {e}"),
        }
        if let Err(e) = self.store.reap().await {
            tracing::debug!(target: "weft", "Scheduler: reaper: {e}");
        }
    }

    /// On PostgreSQL, a task that wakes the worker when a run is scheduled.
    fn listen(&self) -> Option<tokio::task::JoinHandle<()>> {
        let wake = self.wake.clone();
        let listening = self.store.listen_for_runs(move || wake.notify_one())?;
        Some(tokio::spawn(listening))
    }

    /// Stops: waits up to `grace` for the running runs, cancels the rest, leaves.
    async fn stop(mut self, grace: Duration) {
        tracing::info!(
            target: "weft",
            "Worker '{}' stopping: {} run(s) going have {grace:?} to finish",
            self.name,
            self.running.len()
        );
        let drain = async { while self.running.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            for c in self.cancels.values() {
                c.cancel("the worker is shutting down");
            }
            while self.running.join_next().await.is_some() {}
        }
        let _ = self.store.resign(SCHEDULER, &self.id.to_string()).await;
        let _ = self.store.deregister_worker(self.id).await;
        crate::logging::flush();
    }
}
