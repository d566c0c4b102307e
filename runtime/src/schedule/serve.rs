//! Deployments and `serve`: flows run on their schedules, and on request, until the process is
//! told to stop (Prefect's `flow.serve(...)` and `serve(a, b, c)`).

use super::{FlowHandle, Schedule};
use crate::flow::{CancelHandle, FlowDef, RunConfig};
use crate::state::{State, StateKind};
use crate::store::{RequestState, RunRequest, Store};
use crate::task::BoxFuture;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

type Overrides = serde_json::Map<String, serde_json::Value>;

/// What a deployment does when a run is due while its previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Skip the due run (and log it): runs of one deployment never overlap. The default.
    #[default]
    Skip,
    /// Run it as soon as the previous run ends (at most one waits).
    Queue,
    /// Start it anyway, next to the running one.
    Allow,
}

/// Starts one run of a deployment: its id, and the run to await.
pub(crate) type Start =
    dyn Fn(RunConfig, &Overrides) -> Result<BoxFuture<'static, Finished>, String> + Send + Sync;

/// How a run of a deployment ended.
pub(crate) struct Finished {
    pub(crate) state: State,
    /// For a run recorded in a store (a worker's): false when it did not start at all, because
    /// another process holds its claim in the result store (it resumes the same run), so
    /// nothing was run nor recorded.
    pub(crate) started: bool,
}

/// A flow with its parameters, served on a schedule and on request ([`serve`]).
///
/// ```
/// use weft::prelude::*;
/// use weft::schedule::{Deployment, Overlap, Schedule};
///
/// #[task] async fn check(url: String) -> usize { url.len() }
///
/// #[flow]
/// async fn monitor(url: String) -> usize {
///     let n = check(url)?;
///     n
/// }
///
/// let every_30s = Schedule::interval("30s").unwrap();
/// let deployment = Deployment::new("site-monitor", monitor::flow(), ("http://127.0.0.1/".to_owned(),))
///     .schedule(every_30s)
///     .overlap(Overlap::Skip);
/// assert_eq!((deployment.name(), deployment.flow_name()), ("site-monitor", "monitor"));
/// ```
#[derive(Clone)]
pub struct Deployment {
    pub(crate) name: String,
    pub(crate) flow: &'static FlowDef,
    pub(crate) schedule: Option<Schedule>,
    overlap: Overlap,
    pub(crate) catch_up: bool,
    pub(crate) params: serde_json::Value,
    pub(crate) start: Arc<Start>,
    pub(crate) retries: u32,
    pub(crate) retry_delay: Duration,
    pub(crate) max_active_runs: Option<u32>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("name", &self.name)
            .field("flow", &self.flow.name)
            .field("schedule", &self.schedule)
            .field("overlap", &self.overlap)
            .field("catch_up", &self.catch_up)
            .field("params", &self.params)
            .finish()
    }
}

impl Deployment {
    /// `flow` (from `my_flow::flow()`) with its parameters as a tuple, under `name`. Without a
    /// [`schedule`](Self::schedule) it runs only on request (`weft deployment run NAME`).
    pub fn new<P, R>(name: impl Into<String>, flow: FlowHandle<P, R>, params: P) -> Deployment
    where
        P: Clone + Send + Sync + 'static,
        R: Send + 'static,
    {
        let json = (flow.params_json)(&params);
        let start = move |config: RunConfig, overrides: &Overrides| {
            let params = if overrides.is_empty() {
                params.clone()
            } else {
                (flow.with_overrides)(&params, overrides)?
            };
            let run = (flow.run)(config, params);
            Ok(Box::pin(async move {
                let run = run.await;
                // Given a store, only a run its result store's claim refused has no report.
                let started = run.history.is_some();
                Finished {
                    state: run.state,
                    started,
                }
            }) as BoxFuture<'static, Finished>)
        };
        Deployment {
            name: name.into(),
            flow: flow.def,
            schedule: None,
            overlap: Overlap::Skip,
            catch_up: false,
            params: json,
            start: Arc::new(start),
            retries: 0,
            retry_delay: Duration::ZERO,
            max_active_runs: None,
        }
    }
    /// A deployment of `flow` that starts its runs with `start` (a pipeline's, for workers).
    #[cfg(feature = "pipeline")]
    pub(crate) fn from_parts(
        name: String,
        flow: &'static FlowDef,
        params: serde_json::Value,
        start: Arc<Start>,
    ) -> Deployment {
        Deployment {
            name,
            flow,
            schedule: None,
            overlap: Overlap::Skip,
            catch_up: false,
            params,
            start,
            retries: 0,
            retry_delay: Duration::ZERO,
            max_active_runs: None,
        }
    }
    /// Run on `schedule`.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = Some(schedule);
        self
    }
    /// What to do when a run is due while the previous one still runs (default: skip it).
    pub fn overlap(mut self, overlap: Overlap) -> Self {
        self.overlap = overlap;
        self
    }
    /// After the process slept or was stopped past due runs, run one of them at once
    /// (default: skip them all and wait for the next due time).
    pub fn catch_up(mut self, on: bool) -> Self {
        self.catch_up = on;
        self
    }
    /// Served by a work pool's workers ([`Worker`](crate::worker::Worker)): when the worker
    /// running one of its runs dies, the run (Crashed) is scheduled again under the same id, up
    /// to `n` times, and resumes from its checkpoints (tasks that completed before the crash
    /// are not executed again with `#[flow(persist)]`). Default 0. [`serve`] ignores it.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }
    /// How long after a crash the re-run is due (default: at once).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }
    /// Served by a work pool's workers: at most `n` of its runs at once across all of them
    /// (the others wait, Scheduled or Late). Default: no limit but the pool's. [`serve`] keeps
    /// to its [`overlap`](Self::overlap) policy instead.
    pub fn max_active_runs(mut self, n: u32) -> Self {
        self.max_active_runs = Some(n.max(1));
        self
    }
    /// The deployment's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The flow's name.
    pub fn flow_name(&self) -> &'static str {
        self.flow.name
    }
    /// The default parameters as JSON.
    pub fn parameters(&self) -> &serde_json::Value {
        &self.params
    }
}

/// Why [`Server::run`] could not serve.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServeError {
    /// Two deployments have one name.
    DuplicateName(String),
    /// The store could not be opened or written.
    Store(crate::store::StoreError),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::DuplicateName(n) => {
                write!(f, "two deployments are named {n:?}; give each its own name")
            }
            ServeError::Store(e) => write!(f, "cannot serve: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<crate::store::StoreError> for ServeError {
    fn from(e: crate::store::StoreError) -> Self {
        ServeError::Store(e)
    }
}

/// The time a server schedules by.
#[derive(Clone, Copy)]
enum Clock {
    /// The wall clock, re-read after every sleep (a laptop that slept wakes up late, and knows).
    System,
    /// tokio's clock from a fixed start: follows `tokio::time::pause` in tests.
    Tokio {
        start: DateTime<Utc>,
        at: tokio::time::Instant,
    },
}

impl Clock {
    fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { start, at } => {
                *start + chrono::Duration::from_std(at.elapsed()).unwrap_or_default()
            }
        }
    }
    async fn sleep_until(&self, when: DateTime<Utc>) {
        loop {
            let left = (when - self.now()).to_std().unwrap_or_default();
            if left.is_zero() {
                return;
            }
            // The wall clock may jump (suspend, NTP): sleep in slices and look again.
            let slice = match self {
                Clock::System => left.min(Duration::from_secs(30)),
                Clock::Tokio { .. } => left,
            };
            tokio::time::sleep(slice).await;
        }
    }
}

/// Serves deployments: runs each on its schedule and on request until stopped. See [`serve`]
/// for the usual entry point.
///
/// ```
/// use std::time::Duration;
/// use weft::prelude::*;
/// use weft::schedule::{Deployment, Schedule, Server};
/// use weft::store::Store;
///
/// #[task] async fn ping() -> u32 { 1 }
///
/// #[flow]
/// async fn heartbeat() -> u32 {
///     let p = ping()?;
///     p
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("weft-doc-serve-{}", std::process::id()));
/// let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
/// let beat = Deployment::new("beat", heartbeat::flow(), ())
///     .schedule(Schedule::interval("100ms")?);
/// Server::new([beat])
///     .store(store.clone())
///     .run_until(tokio::time::sleep(Duration::from_millis(450)))
///     .await?;
/// let runs = store.runs(&weft::store::RunFilter::new().flow("heartbeat")).await?;
/// assert!(runs.len() >= 3, "{}", runs.len());
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
pub struct Server {
    deployments: Vec<Deployment>,
    store: Option<Store>,
    history: bool,
    grace: Duration,
    poll: Duration,
    clock: Clock,
    retention: Option<crate::store::Retention>,
}

/// Serves `deployments` until Ctrl-C or SIGTERM, recording into the default store
/// ([`Store::open_default`]): `serve([a, b]).await?` (Prefect's `serve(a, b)`).
pub async fn serve(deployments: impl IntoIterator<Item = Deployment>) -> Result<(), ServeError> {
    Server::new(deployments).run().await
}

impl Server {
    /// A server of `deployments`.
    pub fn new(deployments: impl IntoIterator<Item = Deployment>) -> Server {
        Server {
            deployments: deployments.into_iter().collect(),
            store: None,
            history: true,
            grace: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            clock: Clock::System,
            retention: None,
        }
    }
    /// Delete old runs from the store in the background while serving
    /// ([`keep_pruning`](crate::store::keep_pruning)); default: the store's own
    /// [`StoreOptions::retention`](crate::store::StoreOptions::retention), else none.
    pub fn retention(mut self, retention: crate::store::Retention) -> Self {
        self.retention = Some(retention);
        self
    }
    /// Record deployments and runs into `store` (default: [`Store::open_default`]).
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }
    /// Keep no store: runs are not recorded, and requests, pauses and resumes from the CLI are
    /// not seen.
    pub fn no_store(mut self) -> Self {
        self.history = false;
        self
    }
    /// On shutdown, how long running runs may go on before they are cancelled (default 30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
    /// How often the store is asked for requested runs, pauses and resumes (default 1 s).
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }
    /// Schedule by tokio's clock instead of the wall clock: for tests under
    /// `tokio::time::pause`, where scheduled hours pass in milliseconds.
    pub fn tokio_clock(mut self) -> Self {
        self.clock = Clock::Tokio {
            start: Utc::now(),
            at: tokio::time::Instant::now(),
        };
        self
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run(self) -> Result<(), ServeError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes: no new run starts, running ones get the grace period,
    /// then are cancelled (recorded Cancelled); returns when every run has ended.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), ServeError> {
        crate::logging::ensure_default();
        let mut names: Vec<&str> = Vec::new();
        for d in &self.deployments {
            if names.contains(&d.name.as_str()) {
                return Err(ServeError::DuplicateName(d.name.clone()));
            }
            names.push(&d.name);
        }
        let store = match (&self.store, self.history) {
            (_, false) => None,
            (Some(s), true) => Some(s.clone()),
            (None, true) => Some(Store::open_default().await?),
        };
        let now = self.clock.now();
        let cancel = CancelHandle::new();
        let stopping = Arc::new(Stopping::default());
        let mut served = Vec::new();
        for d in &self.deployments {
            let mut paused = false;
            let mut missed = false;
            if let Some(store) = &store {
                let next = d.schedule.as_ref().and_then(|s| s.next_after(now));
                let known = store.deployment(&d.name).await.ok();
                if let Some(k) = &known {
                    paused = k.paused;
                    missed = k.next_run_at.is_some_and(|due| due < now);
                }
                store
                    .register_deployment(&crate::store::DeploymentRecord {
                        paused,
                        next_run_at: next,
                        updated: now,
                        ..crate::store::DeploymentRecord::registered(
                            d.name.clone(),
                            d.flow.name.to_owned(),
                            d.schedule.as_ref(),
                            d.params.clone(),
                        )
                    })
                    .await?;
            }
            tracing::info!(
                target: "weft",
                "Serving deployment '{}' of flow '{}' ({}){}",
                d.name,
                d.flow.name,
                d.schedule
                    .as_ref()
                    .map_or("on request only".to_owned(), |s| s.to_string()),
                if paused { ", paused" } else { "" }
            );
            served.push(Arc::new(Served {
                deployment: d.clone(),
                paused: AtomicBool::new(paused),
                running: AtomicUsize::new(0),
                ended: Notify::new(),
                missed_at_start: missed,
            }));
        }

        let ctx = Arc::new(ServeCtx {
            store: store.clone(),
            clock: self.clock,
            cancel: cancel.clone(),
            stopping: stopping.clone(),
            runs: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
        });
        let mut loops = tokio::task::JoinSet::new();
        let mut inboxes = HashMap::new();
        for s in &served {
            let (tx, rx) = mpsc::unbounded_channel();
            inboxes.insert(s.deployment.name.clone(), tx);
            loops.spawn(schedule_loop(ctx.clone(), s.clone(), rx));
        }
        if let Some(store) = store.clone() {
            loops.spawn(poll_store(
                ctx.clone(),
                store.clone(),
                served.clone(),
                inboxes,
                self.poll,
            ));
            if let Some(retention) = self
                .retention
                .clone()
                .or_else(|| store.retention().cloned())
            {
                loops.spawn(crate::store::keep_pruning(store, retention));
            }
        }

        stop.await;
        tracing::info!(
            target: "weft",
            "Stopping: no new runs; running ones have {:?} to finish",
            self.grace
        );
        stopping.set();
        loops.shutdown().await;
        let mut runs = std::mem::take(&mut *ctx.runs.lock().await);
        if tokio::time::timeout(self.grace, drain(&mut runs))
            .await
            .is_err()
        {
            tracing::warn!(
                target: "weft",
                "{} run(s) still going after {:?}: cancelling them",
                runs.len(),
                self.grace
            );
            cancel.cancel("the server is shutting down");
            drain(&mut runs).await;
        }
        if let Some(store) = &store {
            for s in &served {
                let _ = store.set_next_run(&s.deployment.name, None).await;
            }
        }
        crate::logging::flush();
        Ok(())
    }
}

async fn drain(runs: &mut tokio::task::JoinSet<()>) {
    while runs.join_next().await.is_some() {}
}

/// Waits for Ctrl-C or (on Unix) SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[derive(Default)]
struct Stopping {
    set: AtomicBool,
    notify: Notify,
}

impl Stopping {
    fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
    fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }
}

struct ServeCtx {
    store: Option<Store>,
    clock: Clock,
    cancel: CancelHandle,
    stopping: Arc<Stopping>,
    runs: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
}

struct Served {
    deployment: Deployment,
    paused: AtomicBool,
    running: AtomicUsize,
    ended: Notify,
    missed_at_start: bool,
}

/// Why a run starts.
enum Reason {
    Scheduled(DateTime<Utc>),
    Requested(RunRequest),
}

/// One deployment's schedule: waits for each due time, starts its run (or skips it).
async fn schedule_loop(
    ctx: Arc<ServeCtx>,
    s: Arc<Served>,
    mut inbox: mpsc::UnboundedReceiver<RunRequest>,
) {
    let d = &s.deployment;
    let mut next = d
        .schedule
        .as_ref()
        .and_then(|sch| sch.next_after(ctx.clock.now()));
    if s.missed_at_start && d.catch_up {
        tracing::info!(target: "weft", "Deployment '{}': catching up one missed run", d.name);
        start_run(&ctx, &s, Reason::Scheduled(ctx.clock.now())).await;
    }
    loop {
        if let (Some(due), Some(store)) = (next, &ctx.store) {
            let _ = store.set_next_run(&d.name, Some(due)).await;
        }
        if let Some(due) = next {
            tracing::info!(
                target: "weft",
                "Waiting for next scheduled run at {}",
                due.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            );
        }
        let slept_from = ctx.clock.now();
        let sleep = async {
            match next {
                Some(due) => ctx.clock.sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {
                let due = next.expect("a sleep only ends when something is due");
                let now = ctx.clock.now();
                let schedule = d.schedule.as_ref().expect("due times come from a schedule");
                next = schedule.next_after(now.max(due));
                // Woken long after the due time (a suspended machine): the run was missed. (Due
                // while a queued run waited is not missed: the queue is why it is late.)
                let late = (now - due).to_std().unwrap_or_default();
                if slept_from < due && late > Duration::from_secs(5) && !d.catch_up {
                    tracing::warn!(
                        target: "weft",
                        "Deployment '{}': the run due at {} was missed ({:?} late); skipped",
                        d.name,
                        due.to_rfc3339(),
                        late
                    );
                    continue;
                }
                if s.paused.load(Ordering::Acquire) {
                    tracing::info!(target: "weft", "Deployment '{}' is paused: skipping the run due at {}", d.name, due.to_rfc3339());
                    continue;
                }
                start_run(&ctx, &s, Reason::Scheduled(due)).await;
            }
            req = inbox.recv() => match req {
                Some(req) => start_run(&ctx, &s, Reason::Requested(req)).await,
                None => std::future::pending::<()>().await,
            },
        }
    }
}

/// Starts a run unless the overlap policy says no; returns once it is started (or queued and
/// started).
async fn start_run(ctx: &Arc<ServeCtx>, s: &Arc<Served>, reason: Reason) {
    let d = &s.deployment;
    if ctx.stopping.is_set() {
        return;
    }
    if s.running.load(Ordering::Acquire) > 0 {
        match d.overlap {
            Overlap::Allow => {}
            Overlap::Skip => {
                if let Reason::Scheduled(due) = &reason {
                    tracing::warn!(
                        target: "weft",
                        "Deployment '{}': the run due at {} is skipped: the previous run is still going",
                        d.name,
                        due.to_rfc3339()
                    );
                    return;
                }
            }
            Overlap::Queue => {
                while s.running.load(Ordering::Acquire) > 0 {
                    let ended = s.ended.notified();
                    tokio::pin!(ended);
                    ended.as_mut().enable();
                    if s.running.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    ended.await;
                }
            }
        }
    }
    let run_id = crate::flow::new_run_id();
    let mut config = RunConfig::new()
        .run_id(run_id)
        .cancel_with(&ctx.cancel)
        .cancel_grace(Duration::from_secs(2));
    config = match &ctx.store {
        Some(store) => config.history(store.clone()),
        None => config.no_history(),
    };
    let empty = Overrides::new();
    let overrides = match &reason {
        Reason::Requested(r) => &r.parameters,
        Reason::Scheduled(_) => &empty,
    };
    let run = match (d.start)(config, overrides) {
        Ok(run) => run,
        Err(why) => {
            tracing::warn!(target: "weft", "Deployment '{}': request refused: {why}", d.name);
            if let (Reason::Requested(r), Some(store)) = (&reason, &ctx.store) {
                let _ = store
                    .finish_request(r.id, RequestState::Rejected, Some(why), None)
                    .await;
            }
            return;
        }
    };
    if let (Reason::Requested(r), Some(store)) = (&reason, &ctx.store) {
        let _ = store
            .finish_request(r.id, RequestState::Started, None, Some(run_id))
            .await;
    }
    let at = ctx.clock.now();
    if let Some(store) = &ctx.store {
        let _ = store.note_deployment_run(&d.name, run_id, at).await;
    }
    s.running.fetch_add(1, Ordering::AcqRel);
    let (s2, name) = (s.clone(), d.name.clone());
    let mut runs = ctx.runs.lock().await;
    while runs.try_join_next().is_some() {} // forget runs that ended
    runs.spawn(async move {
        // A run that panics outside its body still frees the deployment.
        let finished = tokio::spawn(run).await;
        s2.running.fetch_sub(1, Ordering::AcqRel);
        s2.ended.notify_waiters();
        match finished {
            Ok(f) if f.state.kind != StateKind::Completed => tracing::warn!(
                target: "weft",
                "Deployment '{name}': run {run_id} ended {}",
                f.state
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(
                target: "weft",
                "Deployment '{name}': run {run_id} crashed: {e}"
            ),
        }
    });
}

/// Asks the store, every `poll`, for requested runs and for pauses and resumes.
async fn poll_store(
    ctx: Arc<ServeCtx>,
    store: Store,
    served: Vec<Arc<Served>>,
    inboxes: HashMap<String, mpsc::UnboundedSender<RunRequest>>,
    poll: Duration,
) {
    let names: Vec<String> = served.iter().map(|s| s.deployment.name.clone()).collect();
    loop {
        if ctx.stopping.is_set() {
            return;
        }
        match store.claim_requests(&names).await {
            Ok(requests) => {
                for r in requests {
                    if let Some(tx) = inboxes.get(&r.deployment) {
                        let _ = tx.send(r);
                    }
                }
            }
            Err(e) => tracing::warn!(target: "weft", "Cannot read requested runs: {e}"),
        }
        if let Ok(all) = store.deployments().await {
            for rec in all {
                if let Some(s) = served.iter().find(|s| s.deployment.name == rec.name) {
                    let was = s.paused.swap(rec.paused, Ordering::AcqRel);
                    if was != rec.paused {
                        tracing::info!(
                            target: "weft",
                            "Deployment '{}' {}",
                            rec.name,
                            if rec.paused { "paused" } else { "resumed" }
                        );
                    }
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
}
