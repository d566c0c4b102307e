//! Flow runs: their definition, per-run context, configuration, events and report.

use crate::graph::{FlowGraph, NodeKind};
use crate::handlers;
use crate::results::ResultStore;
use crate::state::{RunKind, State, StateChange, StateHandler, StateKind, TaskRunId};
use crate::store::record::Recorder;
#[cfg(feature = "history")]
use crate::store::{HistoryReport, Store};
use crate::task::TaskRunReport;
use chrono::{DateTime, Utc};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

/// A flow as `#[flow]` defines it: name, options and compile-time graph. `my_flow::definition()`
/// returns it.
///
/// ```
/// use weft::prelude::*;
///
/// #[task] async fn one() -> u32 { 1 }
///
/// #[flow(name = "nightly", fail_fast, max_concurrency = 4)]
/// async fn nightly() -> u32 {
///     let a = one()?;
///     a
/// }
///
/// let def = nightly::definition();
/// assert_eq!((def.name, def.fail_fast, def.max_concurrency), ("nightly", true, Some(4)));
/// assert!(def.state_handlers.is_empty());
/// assert!(std::ptr::eq(def.graph, nightly::graph()));
/// ```
#[derive(Debug)]
pub struct FlowDef {
    /// The flow's name.
    pub name: &'static str,
    /// Stop everything at the first failure.
    pub fail_fast: bool,
    /// Most task runs running at once (None: no limit).
    pub max_concurrency: Option<usize>,
    /// Checkpoint every task's result (those whose output serializes), so a later run under the
    /// same id can resume.
    pub persist: bool,
    /// Called on the flow run's state changes.
    pub state_handlers: &'static [StateHandler],
    /// The version recorded in the run history (None: a hash of the graph).
    pub version: Option<&'static str>,
    /// The graph built by the macro.
    pub graph: &'static FlowGraph,
}

/// One state change of a task run or a flow run, as handed to [`EventSink`]s (see there for an
/// example).
#[derive(Debug, Clone)]
pub struct RunEvent {
    /// The flow run.
    pub flow_run_id: Uuid,
    /// The flow's name.
    pub flow: &'static str,
    /// The task run, for task events.
    pub task_run_id: Option<TaskRunId>,
    /// The task's or flow's name.
    pub name: &'static str,
    /// The state entered.
    pub state: State,
    /// The attempt number (task runs; 0 before the first attempt and for flow events).
    pub attempt: u32,
}

/// Receives every state change of a run, in order, on the engine's thread: keep it short and
/// never block (queue the event and return). Add one to a run with [`RunConfig::sink`].
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use weft::prelude::*;
///
/// #[derive(Default)]
/// struct Collect(Mutex<Vec<String>>);
///
/// impl EventSink for Collect {
///     fn on_event(&self, e: &RunEvent) {
///         self.0.lock().unwrap().push(format!("{} {}", e.name, e.state.kind));
///     }
/// }
///
/// #[task] async fn one() -> u32 { 1 }
///
/// #[flow]
/// async fn small() -> u32 {
///     let a = one()?;
///     a
/// }
///
/// # #[tokio::main] async fn main() {
/// let sink = Arc::new(Collect::default());
/// let run = small::run_with(RunConfig::new().sink(sink.clone())).await;
/// assert!(run.is_successful());
/// let seen = sink.0.lock().unwrap().clone();
/// assert_eq!(seen, ["small Running", "one Pending", "one Running", "one Completed", "small Completed"]);
/// # }
/// ```
pub trait EventSink: Send + Sync {
    /// One state change.
    fn on_event(&self, event: &RunEvent);
}

/// How to run one flow run: overrides of the flow's options and extra event sinks.
///
/// ```
/// use weft::prelude::*;
///
/// #[task]
/// async fn one() -> u32 { 1 }
///
/// #[flow]
/// async fn small() -> u32 {
///     let a = one()?;
///     a
/// }
///
/// # #[tokio::main] async fn main() {
/// let run = small::run_with(RunConfig::new().max_concurrency(1)).await;
/// assert_eq!(run.result.unwrap(), 1);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct RunConfig {
    pub(crate) run_id: Option<Uuid>,
    pub(crate) fail_fast: Option<bool>,
    pub(crate) max_concurrency: Option<Option<usize>>,
    pub(crate) persist: Option<bool>,
    pub(crate) resume: bool,
    pub(crate) max_task_runs: Option<u64>,
    pub(crate) deadline: Option<std::time::Instant>,
    pub(crate) params: Vec<(&'static str, Option<String>)>,
    pub(crate) sinks: Vec<Arc<dyn EventSink>>,
    pub(crate) results: Option<Arc<dyn ResultStore>>,
    pub(crate) history: HistoryChoice,
    pub(crate) params_json: Option<String>,
    pub(crate) cancel: Option<CancelHandle>,
    pub(crate) cancel_grace: Duration,
    /// The parent run and its node, for a subflow's run.
    pub(crate) parent: Option<(Uuid, u32)>,
}

/// Where a run's history goes.
#[derive(Clone, Default)]
pub(crate) enum HistoryChoice {
    /// [`Store::open_default`] unless `WEFT_HISTORY=off`.
    #[default]
    Default,
    Off,
    #[cfg(feature = "history")]
    To(Store),
}

impl RunConfig {
    /// The flow's own options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Use this flow run id instead of a fresh one.
    pub fn run_id(mut self, id: Uuid) -> Self {
        self.run_id = Some(id);
        self
    }
    /// Override `fail_fast`.
    pub fn fail_fast(mut self, on: bool) -> Self {
        self.fail_fast = Some(on);
        self
    }
    /// Continue the run `id`: tasks whose results that run checkpointed are restored (state
    /// Cached) instead of run again; the others run. Checkpoints come from `persist` (task or
    /// flow option), so a flow meant to resume has `#[flow(persist)]`.
    pub fn resume(mut self, id: Uuid) -> Self {
        self.run_id = Some(id);
        self.resume = true;
        self
    }
    /// Continue the run a [`Handoff`] describes.
    pub fn resume_from(self, handoff: &Handoff) -> Self {
        self.resume(handoff.run_id)
    }
    /// Override `persist`.
    pub fn persist(mut self, on: bool) -> Self {
        self.persist = Some(on);
        self
    }
    /// Start at most `n` task runs (restored and cached ones are free); the rest stay Pending
    /// and the run ends Pending, to be resumed (serverless invocations with a time limit).
    pub fn max_task_runs(mut self, n: u64) -> Self {
        self.max_task_runs = Some(n);
        self
    }
    /// Start no task run after `deadline`; the rest stay Pending.
    pub fn deadline(mut self, deadline: std::time::Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }
    /// The flow's parameters as text, for target templates (set by generated code).
    #[doc(hidden)]
    pub fn with_params(mut self, params: Vec<(&'static str, Option<String>)>) -> Self {
        self.params = params;
        self
    }
    /// Override `max_concurrency` (0: no limit). A value beyond what a tokio semaphore can count
    /// (`usize::MAX >> 3`, such as `usize::MAX`) means no limit as well: that many task runs
    /// could never run at once.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some((n > 0).then_some(n));
        self
    }
    /// Keep cached and persisted results in `store` instead of the default
    /// [`LocalStore`](crate::results::LocalStore) under `$WEFT_HOME/.weft/results`.
    pub fn result_store(mut self, store: Arc<dyn ResultStore>) -> Self {
        self.results = Some(store);
        self
    }
    /// Send every state change of the run to `sink` too.
    pub fn sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sinks.push(sink);
        self
    }
    #[cfg(feature = "history")]
    /// Record the run into `store` instead of the default one (`WEFT_DATABASE_URL`, else
    /// `$WEFT_HOME/.weft/weft.db`); see [`crate::store`].
    pub fn history(mut self, store: Store) -> Self {
        self.history = HistoryChoice::To(store);
        self
    }
    /// Let `handle` cancel the run (see [`CancelHandle`]). A body still going `grace` after the
    /// cancel (stuck in glue code) is dropped; tasks it had started are recorded Cancelled.
    pub fn cancel_with(mut self, handle: &CancelHandle) -> Self {
        self.cancel = Some(handle.clone());
        if self.cancel_grace.is_zero() {
            self.cancel_grace = Duration::from_secs(5);
        }
        self
    }
    /// How long a body may go on after a [`CancelHandle`] cancelled it (default 5 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }
    /// Record nothing of this run (as `WEFT_HISTORY=off` does for every run): for tests and
    /// benchmarks.
    pub fn no_history(mut self) -> Self {
        self.history = HistoryChoice::Off;
        self
    }
    /// True when the run will be recorded (generated code encodes the parameters only then).
    #[doc(hidden)]
    pub fn records_history(&self) -> bool {
        match self.history {
            #[cfg(feature = "history")]
            HistoryChoice::Default => crate::store::enabled_by_env(),
            #[cfg(feature = "history")]
            HistoryChoice::To(_) => true,
            _ => false,
        }
    }
    /// The flow's parameters as a JSON object, for the run history (set by generated code).
    #[doc(hidden)]
    pub fn with_params_json(mut self, json: String) -> Self {
        self.params_json = Some(json);
        self
    }
}

impl fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunConfig")
            .field("run_id", &self.run_id)
            .field("fail_fast", &self.fail_fast)
            .field("max_concurrency", &self.max_concurrency)
            .field("resume", &self.resume)
            .field("max_task_runs", &self.max_task_runs)
            .field("sinks", &self.sinks.len())
            .field("results", &self.results)
            .field("history", &self.records_history())
            .finish()
    }
}

/// The semaphore of a `max_concurrency` of `n`; None (no limit) for 0 and for values beyond
/// [`Semaphore::MAX_PERMITS`], which tokio would panic on and which no run could reach.
fn concurrency_limit(n: usize) -> Option<Semaphore> {
    (n > 0 && n <= Semaphore::MAX_PERMITS).then(|| Semaphore::new(n))
}

/// Set once, seen by every running task: fail_fast's or a [`CancelHandle`]'s "stop now".
pub(crate) struct CancelFlag {
    set: AtomicBool,
    notify: Notify,
    reason: Mutex<Option<String>>,
    /// Set from outside the run (a handle), not by fail_fast: the run ends Cancelled.
    from_outside: AtomicBool,
}

/// Cancels a flow run from outside it: `serve` on shutdown, a test, a supervisor. Running task
/// runs end Cancelled (an async body is dropped; a sync body's thread finishes in the
/// background), no new one starts, and the run ends Cancelled. A body stuck in glue code is
/// stopped after a grace period ([`RunConfig::cancel_with`]).
///
/// ```
/// use std::time::Duration;
/// use weft::prelude::*;
/// use weft::CancelHandle;
///
/// #[task]
/// async fn slow() -> u32 {
///     tokio::time::sleep(Duration::from_secs(3600)).await;
///     1
/// }
///
/// #[flow]
/// async fn long() -> u32 {
///     let x = slow()?;
///     x
/// }
///
/// # #[tokio::main] async fn main() {
/// let handle = CancelHandle::new();
/// let stopper = handle.clone();
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_millis(50)).await;
///     stopper.cancel("shutting down");
/// });
/// let run = long::run_with(RunConfig::new().cancel_with(&handle).no_history()).await;
/// assert_eq!(run.state.kind, StateKind::Cancelled);
/// assert_eq!(run.task("slow").unwrap().state.kind, StateKind::Cancelled);
/// # }
/// ```
#[derive(Clone)]
pub struct CancelHandle(Arc<CancelFlag>);

impl CancelHandle {
    /// A handle on an existing flag (a subflow watches its parent's).
    pub(crate) fn from_flag(flag: Arc<CancelFlag>) -> CancelHandle {
        CancelHandle(flag)
    }
    /// A handle that cancels nothing until [`cancel`](Self::cancel) is called.
    pub fn new() -> CancelHandle {
        CancelHandle(Arc::new(CancelFlag::new()))
    }
    /// Cancels the runs configured with this handle (the first reason given is kept).
    pub fn cancel(&self, reason: impl Into<String>) {
        self.0.cancel(reason.into());
    }
    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_set()
    }
    /// Completes once cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        self.0.cancelled().await
    }
}

impl Default for CancelHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelFlag {
    fn new() -> Self {
        CancelFlag {
            set: AtomicBool::new(false),
            notify: Notify::new(),
            reason: Mutex::new(None),
            from_outside: AtomicBool::new(false),
        }
    }
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }
    fn cancel(&self, reason: String) {
        let mut r = self.reason.lock().unwrap();
        if r.is_none() {
            *r = Some(reason);
        }
        drop(r);
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

tokio::task_local! {
    /// The flow run whose driver is polling: task calls awaited inside it join its report.
    static CURRENT_FLOW: Arc<FlowCtx>;
}

/// The flow run being driven on this tokio task, if any.
pub(crate) fn current() -> Option<Arc<FlowCtx>> {
    CURRENT_FLOW.try_with(Arc::clone).ok()
}

/// `fut` polled as part of the flow run driven on this tokio task (if any), wherever it is
/// polled: for a task body that runs on a tokio task of its own.
pub(crate) fn scoped_to_current<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    use futures_util::future::Either;
    match current() {
        Some(cx) => Either::Left(CURRENT_FLOW.scope(cx, fut)),
        None => Either::Right(fut),
    }
}

/// The history recorder of the flow run being driven on this tokio task, if any.
#[cfg(feature = "history")]
pub(crate) fn current_history() -> Option<Arc<Recorder>> {
    CURRENT_FLOW
        .try_with(|cx| cx.history.clone())
        .ok()
        .flatten()
}

/// A new flow run id: a UUIDv7, whose leading bits are the time. Runs started one after the
/// other get ids in order, so their rows append to the end of every index of the history
/// (keyed by run id first) instead of landing on a random page: half the pages a commit
/// writes at 20,000 runs, and a cost that stays flat as the history grows.
pub(crate) fn new_run_id() -> Uuid {
    Uuid::now_v7()
}

/// The context of one flow run, shared by its driver and its task runs (used by generated
/// code).
#[doc(hidden)]
pub struct FlowCtx {
    name: &'static str,
    graph: Option<&'static FlowGraph>,
    run_id: Uuid,
    cancel: Option<Arc<CancelFlag>>,
    /// How long a body may go on after an outside cancel before it is dropped.
    cancel_grace: Duration,
    /// The handle that may cancel this run from outside (shared with other runs: it is watched,
    /// never set by the run).
    outside: Option<CancelHandle>,
    /// This run's own handle, fired by a cancel request in its history store (see
    /// [`Store::request_cancel`]); None without history.
    requested: Option<CancelHandle>,
    fail_fast: bool,
    persist: bool,
    restore: bool,
    /// Task runs that may still start (None: no budget).
    budget: Option<std::sync::atomic::AtomicU64>,
    deadline: Option<std::time::Instant>,
    params: Vec<(&'static str, Option<String>)>,
    started: chrono::DateTime<chrono::Utc>,
    limit: Option<Semaphore>,
    reports: Mutex<Vec<TaskRunReport>>,
    sinks: Vec<Arc<dyn EventSink>>,
    results: Arc<dyn ResultStore>,
    /// Ids for task runs that are not nodes of the graph (awaited in glue), after the nodes'.
    unplanned: AtomicU32,
    history: Option<Arc<Recorder>>,
    /// The finished child runs (subflows), in the order they ended.
    subflows: Mutex<Vec<FlowRun<()>>>,
}

impl FlowCtx {
    pub(crate) fn new(
        def: &'static FlowDef,
        config: RunConfig,
        history: Option<Arc<Recorder>>,
    ) -> Self {
        let fail_fast = config.fail_fast.unwrap_or(def.fail_fast);
        let limit = config.max_concurrency.unwrap_or(def.max_concurrency);
        // A recorded run may be cancelled through the store, from another process.
        let requested = history.is_some().then(CancelHandle::new);
        let cancellable = fail_fast || config.cancel.is_some() || requested.is_some();
        FlowCtx {
            name: def.name,
            graph: Some(def.graph),
            run_id: config.run_id.unwrap_or_else(new_run_id),
            cancel: cancellable.then(|| Arc::new(CancelFlag::new())),
            cancel_grace: match (config.cancel_grace, &requested) {
                (grace, Some(_)) if grace.is_zero() => Duration::from_secs(5),
                (grace, _) => grace,
            },
            outside: config.cancel,
            requested,
            fail_fast,
            persist: config.persist.unwrap_or(def.persist),
            restore: config.resume,
            budget: config.max_task_runs.map(std::sync::atomic::AtomicU64::new),
            deadline: config.deadline,
            params: config.params,
            started: Utc::now(),
            limit: limit.and_then(concurrency_limit),
            reports: Mutex::new(Vec::new()),
            sinks: config.sinks,
            results: config.results.unwrap_or_else(crate::results::default_store),
            unplanned: AtomicU32::new(def.graph.nodes.len() as u32),
            history,
            subflows: Mutex::new(Vec::new()),
        }
    }

    /// A context for a task called outside any flow.
    pub(crate) fn standalone() -> Self {
        FlowCtx {
            name: "",
            graph: None,
            run_id: new_run_id(),
            cancel: None,
            cancel_grace: Duration::ZERO,
            outside: None,
            requested: None,
            fail_fast: false,
            persist: false,
            restore: false,
            budget: None,
            deadline: None,
            params: Vec::new(),
            started: Utc::now(),
            limit: None,
            reports: Mutex::new(Vec::new()),
            sinks: Vec::new(),
            results: crate::results::default_store(),
            unplanned: AtomicU32::new(1),
            history: None,
            subflows: Mutex::new(Vec::new()),
        }
    }

    /// This flow run's id.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }
    /// A node id for a task run awaited in glue rather than planned in the graph.
    pub(crate) fn next_unplanned_node(&self) -> u32 {
        self.unplanned.fetch_add(1, Ordering::Relaxed)
    }
    pub(crate) fn persists(&self) -> bool {
        self.persist
    }
    /// Renders a target template: `{date}` / `{date:<strftime>}` (the run's start, UTC),
    /// `{task_name}`, `{flow_name}`, `{flow_run_id}` and the flow's parameters by name.
    pub(crate) fn render_target(&self, template: &str, task: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("target {template:?}: unclosed `{{`"))?;
            let inner = &rest[open + 1..open + close];
            let (name, format) = match inner.split_once(':') {
                Some((n, f)) => (n, Some(f)),
                None => (inner, None),
            };
            match name {
                "date" => {
                    use std::fmt::Write;
                    write!(out, "{}", self.started.format(format.unwrap_or("%Y-%m-%d")))
                        .map_err(|_| format!("target {template:?}: bad date format {format:?}"))?;
                }
                "task_name" => out.push_str(task),
                "flow_name" => out.push_str(self.name),
                "flow_run_id" => out.push_str(&self.run_id.to_string()),
                param => match self.params.iter().find(|(n, _)| *n == param) {
                    Some((_, Some(text))) => out.push_str(text),
                    Some((_, None)) => {
                        return Err(format!(
                            "target {template:?}: parameter `{param}` has no text form (implement Display for its type)"
                        ))
                    }
                    None => {
                        let known: Vec<&str> = ["date", "task_name", "flow_name", "flow_run_id"]
                            .into_iter()
                            .chain(self.params.iter().map(|(n, _)| *n))
                            .collect();
                        return Err(format!(
                            "target {template:?}: `{{{param}}}` is not a placeholder here; use one of {}",
                            known.join(", ")
                        ));
                    }
                },
            }
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
    pub(crate) fn restores(&self) -> bool {
        self.restore
    }
    /// Takes one task run from the budget; false when it is used up or the deadline passed.
    pub(crate) fn take_budget(&self) -> bool {
        if self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return false;
        }
        match &self.budget {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
    pub(crate) fn results(&self) -> &dyn ResultStore {
        &*self.results
    }
    pub(crate) fn results_arc(&self) -> Arc<dyn ResultStore> {
        self.results.clone()
    }
    /// The store this run is recorded into, if any.
    #[cfg(feature = "history")]
    pub(crate) fn history_store(&self) -> Option<Store> {
        self.history.as_ref().map(|h| h.store().clone())
    }
    pub(crate) fn sinks(&self) -> &[Arc<dyn EventSink>] {
        &self.sinks
    }
    pub(crate) fn cancel_arc(&self) -> Option<Arc<CancelFlag>> {
        self.cancel.clone()
    }
    pub(crate) fn grace(&self) -> Duration {
        self.cancel_grace
    }
    pub(crate) fn add_subflow(&self, run: FlowRun<()>) {
        self.subflows.lock().unwrap().push(run);
    }
    pub(crate) fn flow_name(&self) -> &'static str {
        self.name
    }
    pub(crate) fn limit(&self) -> Option<&Semaphore> {
        self.limit.as_ref()
    }
    pub(crate) fn cancel_flag(&self) -> Option<&CancelFlag> {
        self.cancel.as_deref()
    }
    /// Cancelled through a [`CancelHandle`] (rather than by fail_fast).
    pub(crate) fn cancelled_from_outside(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.is_set() && c.from_outside.load(Ordering::Acquire))
    }
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.as_deref().is_some_and(CancelFlag::is_set)
    }
    pub(crate) fn cancel_reason(&self) -> String {
        self.cancel
            .as_ref()
            .and_then(|c| c.reason.lock().unwrap().clone())
            .unwrap_or_else(|| "the flow run was cancelled".to_owned())
    }
    pub(crate) fn has_sinks(&self) -> bool {
        !self.sinks.is_empty() || self.history.is_some()
    }
    pub(crate) fn emit(&self, event: &RunEvent) {
        if let Some(h) = &self.history {
            h.event(event);
        }
        for s in &self.sinks {
            let delivered =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.on_event(event)));
            if let Err(panic) = delivered {
                tracing::error!(
                    target: "weft",
                    "An event sink panicked on '{}' -> {}: {}; the run goes on",
                    event.name,
                    event.state.kind,
                    crate::engine::panic_message(&*panic)
                );
            }
        }
    }
    /// Keeps a task run's final report; `lines`: the lifecycle lines the history took for it.
    pub(crate) fn record(&self, report: TaskRunReport, lines: u8) {
        if self.graph.is_some() {
            if let Some(h) = &self.history {
                h.task_report(&report, lines);
            }
            self.reports.lock().unwrap().push(report);
        }
    }

    /// With fail_fast, the first failure stops the run: running tasks are cancelled and none
    /// starts.
    pub(crate) fn note_failure(&self, task: &str, state: &State) {
        if !self.fail_fast {
            return;
        }
        if let Some(flag) = &self.cancel {
            if !flag.is_set() {
                tracing::warn!(
                    target: "weft",
                    "Flow run '{}': fail_fast: task '{task}' ended {}; cancelling the rest",
                    self.name,
                    state.kind
                );
            }
            flag.cancel(format!("fail_fast: task '{task}' ended {}", state.kind));
        }
    }

    /// Sleeps `d`; false when the run was cancelled meanwhile.
    pub(crate) async fn sleep_unless_cancelled(&self, d: Duration) -> bool {
        match &self.cancel {
            Some(flag) => {
                tokio::select! {
                    _ = flag.cancelled() => false,
                    _ = tokio::time::sleep(d) => true,
                }
            }
            None => {
                tokio::time::sleep(d).await;
                true
            }
        }
    }
}

/// Why a flow run has no return value: the error of [`FlowRun::result`].
///
/// ```
/// use weft::prelude::*;
///
/// #[task] async fn fetch() -> Result<u32, String> { Err("status 503".into()) }
/// #[task] async fn double(x: u32) -> u32 { x * 2 }
///
/// #[flow]
/// async fn pipeline() -> u32 {
///     let x = fetch()?;
///     let y = double(x)?; // NotRun: `fetch` has no value
///     y
/// }
///
/// # #[tokio::main] async fn main() {
/// match pipeline().await.result {
///     Err(FlowError::Upstream { binding, task, state }) => {
///         assert_eq!((binding, task, state.kind), ("y", "double", StateKind::NotRun));
///     }
///     other => panic!("expected a missing upstream value, got {other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum FlowError {
    /// The flow body needed the value of a task that did not produce one (`let x = t()?;`).
    Upstream {
        /// The binding the body needed.
        binding: &'static str,
        /// The task that should have produced it.
        task: &'static str,
        /// That task's final state.
        state: State,
    },
    /// The flow body panicked.
    Panicked(String),
    /// The run was stopped before its body finished.
    Cancelled(String),
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowError::Upstream {
                binding,
                task,
                state,
            } => write!(
                f,
                "the flow needed `{binding}` but task '{task}' ended {state}"
            ),
            FlowError::Panicked(m) => write!(f, "the flow body panicked: {m}"),
            FlowError::Cancelled(m) => write!(f, "the flow run was cancelled: {m}"),
        }
    }
}

impl std::error::Error for FlowError {}

/// The report of a finished flow run: its return value, final state and every task run.
/// Awaiting a `#[flow]` function returns one.
///
/// ```
/// use weft::prelude::*;
/// use StateKind::{Completed, Failed};
///
/// #[task]
/// fn invert(x: i32) -> Result<f64, String> {
///     if x == 0 { Err("division by zero".into()) } else { Ok(1.0 / x as f64) }
/// }
///
/// #[flow]
/// async fn inverses(xs: Vec<i32>) -> usize {
///     let all = invert::map(xs); // no `?`: one `Result` per element
///     all.iter().filter(|r| r.is_ok()).count()
/// }
///
/// # #[tokio::main] async fn main() {
/// let run = inverses(vec![1, 0, 2]).await;
/// assert_eq!(run.result, Ok(2)); // the body's value...
/// assert_eq!(run.state.kind, Failed); // ...but a task run failed
/// assert_eq!(run.task("invert").unwrap().state.kind, Failed); // the mapped node's summary
/// let states: Vec<_> = run.runs_of("invert").map(|r| r.state.kind).collect();
/// assert_eq!(states, [Failed, Completed, Failed, Completed]); // summary, then elements
/// assert!(run.to_dot().contains("fillcolor=\"#dc3545\"")); // drawn red
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a flow run carries the flow's value and its final state"]
pub struct FlowRun<R> {
    /// The flow run's id.
    pub id: Uuid,
    /// The flow's name.
    pub name: &'static str,
    /// Final state: Completed when every task run ended Completed, Cached or Skipped and the
    /// body returned a value; Failed when a task run did not succeed, when the body returned
    /// `Err(e)` (a flow whose return type is a `Result`; the message is `e`'s `Display`) or
    /// panicked; Cancelled when cancelled from outside; Skipped when the body stopped because
    /// it needed the value of a Skipped task (then `result` is `Err(FlowError::Upstream)`).
    pub state: State,
    /// What the flow body returned, or why it could not.
    pub result: Result<R, FlowError>,
    /// Every task run, by node in written order; a mapped node has a summary (no map index)
    /// followed by its elements in input order.
    pub task_runs: Vec<TaskRunReport>,
    /// When the run began.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub ended: DateTime<Utc>,
    /// The compile-time graph of the flow.
    pub graph: &'static FlowGraph,
    /// How much of the run reached the run history (None: history was off).
    #[cfg(feature = "history")]
    pub history: Option<HistoryReport>,
    /// For a subflow's run: the parent run's id and the parent's node that ran it.
    pub parent: Option<(Uuid, u32)>,
    /// The child runs of flows called in this flow's body (subflows), in the order they
    /// ended, each with its own task runs and children.
    pub subflows: Vec<FlowRun<()>>,
}

/// The states of a run, to hand to a later invocation that continues it (serverless runs that
/// continue in the next invocation): serde-serializable, e.g. to JSON for a queue message.
///
/// ```
/// use weft::prelude::*;
/// use weft::Handoff;
///
/// #[task] fn step() -> u32 { 1 }
///
/// #[flow(persist)]
/// async fn job() -> u32 {
///     let a = step()?;
///     a
/// }
///
/// # #[tokio::main] async fn main() {
/// # let store = std::sync::Arc::new(weft::results::MemoryStore::default());
/// let first = job::run_with(RunConfig::new().max_task_runs(0).result_store(store.clone())).await;
/// assert_eq!(first.state.kind, StateKind::Pending);
/// let json = serde_json::to_string(&first.handoff()).unwrap();
/// let handoff: Handoff = serde_json::from_str(&json).unwrap();
/// let next = job::run_with(RunConfig::new().resume_from(&handoff).result_store(store)).await;
/// assert_eq!(next.result, Ok(1));
/// assert_eq!(next.id, first.id);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Handoff {
    /// The run to continue.
    pub run_id: Uuid,
    /// The flow's name.
    pub flow: String,
    /// Every task run's state so far.
    pub tasks: Vec<HandoffTask>,
}

/// One task run in a [`Handoff`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HandoffTask {
    /// The task's name.
    pub task: String,
    /// Its node in the flow graph.
    pub node: u32,
    /// Its element index, for a mapped task.
    pub map_index: Option<u32>,
    /// Its state.
    pub state: State,
}

impl<R> FlowRun<R> {
    /// The run's states, for a later invocation to continue it with
    /// [`RunConfig::resume_from`].
    pub fn handoff(&self) -> Handoff {
        Handoff {
            run_id: self.id,
            flow: self.name.to_owned(),
            tasks: self
                .task_runs
                .iter()
                .map(|r| HandoffTask {
                    task: r.task.to_owned(),
                    node: r.id.node,
                    map_index: r.id.map_index,
                    state: r.state.clone(),
                })
                .collect(),
        }
    }

    /// The same report with the value mapped by `f` (used by front doors whose value is built
    /// after the run, such as a pipeline's outputs).
    pub fn map_value<S>(self, f: impl FnOnce(R) -> S) -> FlowRun<S> {
        FlowRun {
            id: self.id,
            name: self.name,
            state: self.state,
            result: self.result.map(f),
            task_runs: self.task_runs,
            started: self.started,
            ended: self.ended,
            graph: self.graph,
            #[cfg(feature = "history")]
            history: self.history,
            parent: self.parent,
            subflows: self.subflows,
        }
    }

    /// The report without the value (how a parent keeps its children's runs).
    pub fn summary(&self) -> FlowRun<()> {
        FlowRun {
            id: self.id,
            name: self.name,
            state: self.state.clone(),
            result: self.result.as_ref().map(|_| ()).map_err(Clone::clone),
            task_runs: self.task_runs.clone(),
            started: self.started,
            ended: self.ended,
            graph: self.graph,
            #[cfg(feature = "history")]
            history: self.history.clone(),
            parent: self.parent,
            subflows: self.subflows.clone(),
        }
    }

    /// The flow's return value, or why there is none.
    pub fn into_result(self) -> Result<R, FlowError> {
        self.result
    }
    /// True when the run Completed (the body may still have no value: see [`FlowRun::state`]).
    pub fn is_successful(&self) -> bool {
        self.state.is_successful()
    }
    /// The (first, for mapped tasks: the summary) run of the task named `name`.
    pub fn task(&self, name: &str) -> Option<&TaskRunReport> {
        self.task_runs
            .iter()
            .find(|r| r.task == name && r.id.map_index.is_none())
            .or_else(|| self.task_runs.iter().find(|r| r.task == name))
    }
    /// Every run of the task named `name` (one per element for a mapped task).
    pub fn runs_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TaskRunReport> + 'a {
        self.task_runs.iter().filter(move |r| r.task == name)
    }
    /// Wall time of the run.
    pub fn duration(&self) -> Duration {
        (self.ended - self.started).to_std().unwrap_or_default()
    }
}

/// A spawned driver that stops when the flow's future is dropped (a timeout, a `select!`).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a flow: spawns the driver on a tokio worker, then builds the report. `failure` tells
/// whether the body's value is a failure (an `Err` returned by a body whose return type is a
/// `Result`), and why.
pub(crate) async fn run_flow<R, F, Fut>(
    def: &'static FlowDef,
    mut config: RunConfig,
    failure: fn(&R) -> Option<String>,
    driver: F,
) -> FlowRun<R>
where
    F: FnOnce(Arc<FlowCtx>) -> Fut,
    Fut: Future<Output = Result<R, FlowError>> + Send + 'static,
    R: Send + 'static,
{
    crate::logging::ensure_default();
    if tokio::runtime::Handle::try_current().is_err() {
        panic!(
            "flow '{}' was called outside a tokio runtime: weft flows run on tokio, so call them from \
             #[tokio::main] (or inside Runtime::block_on)",
            def.name
        );
    }
    let run_id = *config.run_id.get_or_insert_with(new_run_id);
    let parent = config.parent;
    // Held until the run's report is built: a second resume of this run meanwhile is refused.
    let _claim = match claim_resumed_run(def, &config, run_id) {
        Ok(claim) => claim,
        Err(refused) => return *refused,
    };
    let mut unrecorded = None;
    let history = start_history(def, &mut config, run_id, &mut unrecorded).await;
    let cx = Arc::new(FlowCtx::new(def, config, history));
    // Until the report is built: a cancel request in the store cancels this run.
    #[cfg(feature = "history")]
    let _owned = match (&cx.history, &cx.requested) {
        (Some(h), Some(handle)) => Some(h.store().own(cx.run_id, handle.clone())),
        _ => None,
    };
    let started = Utc::now();
    // Lines logged here, outside the driver, belong to the run's history too.
    let in_run = |f: &mut dyn FnMut()| crate::store::record::on_this_thread(cx.history.clone(), f);
    let mut flow_state = State::of(StateKind::Pending);
    in_run(&mut || {
        tracing::info!(target: "weft", "Beginning Flow run for '{}'", def.name);
        flow_state = flow_transition(&cx, def, flow_state.clone(), State::of(StateKind::Running));
    });

    // On a runtime worker the driver runs in place; from `block_on` (a `#[tokio::main]` body)
    // it is spawned onto a worker, where node wake-ups stay on one thread.
    // On a runtime worker the driver runs in place; from `block_on` (a `#[tokio::main]` body)
    // it is spawned onto a worker, where node wake-ups stay on one thread. Either way, task runs
    // awaited inside it find this run through CURRENT_FLOW, and dropping the flow's future
    // stops the run.
    let driven = stop_on_cancel(
        cx.clone(),
        CURRENT_FLOW.scope(cx.clone(), driver(cx.clone())),
    );
    let result = if tokio::task::try_id().is_some() {
        use futures_util::FutureExt;
        match std::panic::AssertUnwindSafe(driven).catch_unwind().await {
            Ok(r) => r,
            Err(panic) => Err(FlowError::Panicked(crate::engine::panic_message(&*panic))),
        }
    } else {
        let mut spawned = AbortOnDrop(tokio::spawn(driven));
        match (&mut spawned.0).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(FlowError::Panicked(crate::engine::panic_message(
                &*e.into_panic(),
            ))),
            Err(_) => Err(FlowError::Cancelled("the runtime shut down".to_owned())),
        }
    };

    let mut reports = std::mem::take(&mut *cx.reports.lock().unwrap());
    // Tasks the driver never reached: the body stopped (a missing `?` value) or fail_fast.
    let mut reached = vec![false; def.graph.nodes.len()];
    for r in &reports {
        if let Some(slot) = reached.get_mut(r.id.node as usize) {
            *slot = true;
        }
    }
    // Why a task was never reached decides its state: a body that returned early or stopped on
    // a skipped value skipped it; one that stopped on a failure did not run it.
    let unreached = || match &result {
        _ if cx.is_cancelled() => State::cancelled(cx.cancel_reason()),
        Ok(_) => State::skipped("the flow body returned before reaching it"),
        Err(FlowError::Upstream { task, state, .. }) if state.is_skipped() => State::skipped(
            format!("the flow body stopped: it needed the value of '{task}', which was skipped"),
        ),
        Err(FlowError::Upstream { task, state, .. }) if state.kind == StateKind::Pending => {
            State::new(
                StateKind::Pending,
                Some(format!("the flow body waits for '{task}'")),
            )
        }
        Err(e) => State::not_run(e.to_string()),
    };
    for node in def.graph.nodes.iter() {
        if node.kind != NodeKind::Glue && !reached[node.id as usize] {
            let state = unreached();
            let report = TaskRunReport::never_ran(
                TaskRunId {
                    flow_run_id: cx.run_id,
                    node: node.id,
                    map_index: None,
                },
                node.task_static(),
                state,
            );
            if let Some(h) = &cx.history {
                h.task_report(&report, 0);
            }
            reports.push(report);
        }
    }

    // Report by node, a mapped node's summary before its elements in input order.
    reports.sort_by_key(|r| (r.id.node, r.id.map_index.map_or(0, |i| i as u64 + 1)));
    // A mapped node's summary is not a task run of its own: count its elements.
    let is_summary = |r: &TaskRunReport| {
        r.id.map_index.is_none()
            && def
                .graph
                .nodes
                .get(r.id.node as usize)
                .is_some_and(|n| n.kind == NodeKind::Map)
            && reports
                .iter()
                .any(|e| e.id.node == r.id.node && e.id.map_index.is_some())
    };
    let counted: Vec<&TaskRunReport> = reports.iter().filter(|r| !is_summary(r)).collect();
    let pending = counted
        .iter()
        .filter(|r| r.state.kind == StateKind::Pending)
        .count();
    let failed: Vec<&TaskRunReport> = counted
        .iter()
        .copied()
        .filter(|r| {
            !(r.state.is_successful() || r.state.is_skipped() || r.state.kind == StateKind::Pending)
        })
        .collect();
    let body_failure = result.as_ref().ok().and_then(failure);
    let proposed = match (&result, failed.first()) {
        // Stopped from outside: whatever the tasks ended as, the run was cancelled.
        _ if cx.cancelled_from_outside() => State::cancelled(cx.cancel_reason()),
        // The body returned `Err(e)`: the flow failed, as a Prefect flow that raises.
        _ if body_failure.is_some() => State::failed(body_failure.clone().unwrap_or_default()),
        // A budget stopped the run: it is not over, resume it under the same id.
        (_, None) if pending > 0 => State::new(
            StateKind::Pending,
            Some(format!(
                "{pending} of {} task runs not started yet; resume run {} to continue",
                counted.len(),
                cx.run_id
            )),
        ),
        // A value the body needed is missing and nothing failed: it was skipped, so the run
        // was skipped too (no value, and no failure).
        (Err(e @ FlowError::Upstream { .. }), None) => State::skipped(e.to_string()),
        (Err(e), _) => State::failed(e.to_string()),
        (Ok(_), Some(first)) => State::failed(format!(
            "{} of {} task runs did not succeed; first: '{}' ended {}",
            failed.len(),
            counted.len(),
            first.task,
            first.state
        )),
        (Ok(_), None) => State::new(
            StateKind::Completed,
            Some("All reference tasks succeeded.".to_owned()),
        ),
    };
    let body_failed = body_failure.is_some() && proposed.is_failed();
    let mut proposed = Some(proposed);
    in_run(&mut || {
        let Some(proposed) = proposed.take() else {
            return;
        };
        flow_state = flow_transition(&cx, def, flow_state.clone(), proposed);
        if flow_state.is_successful() {
            tracing::info!(target: "weft", "Flow run SUCCESS: all reference tasks succeeded");
        } else if flow_state.kind == StateKind::Skipped {
            tracing::info!(
                target: "weft",
                "Flow run SKIPPED: {}",
                flow_state.message.as_deref().unwrap_or("")
            );
        } else if flow_state.kind == StateKind::Pending {
            tracing::info!(
                target: "weft",
                "Flow run PENDING: {}",
                flow_state.message.as_deref().unwrap_or("")
            );
        } else if flow_state.kind == StateKind::Cancelled {
            tracing::warn!(
                target: "weft",
                "Flow run CANCELLED: {}",
                flow_state.message.as_deref().unwrap_or("")
            );
        } else if body_failed {
            tracing::error!(
                target: "weft",
                "Flow run FAILED: the flow returned an error: {}",
                flow_state.message.as_deref().unwrap_or("")
            );
        } else {
            tracing::error!(
                target: "weft",
                "Flow run FAILED: some reference tasks failed ({})",
                flow_state.message.as_deref().unwrap_or("")
            );
        }
    });
    let ended = Utc::now();
    #[cfg(feature = "history")]
    let history = match &cx.history {
        Some(h) => {
            let report = h.finish().await;
            if !report.is_complete() {
                tracing::warn!(
                    target: "weft",
                    "Flow run '{}': run history in {} is incomplete: {} rows recorded, {} lost{}",
                    def.name,
                    report.store,
                    report.recorded,
                    report.lost,
                    report.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
                );
            }
            Some(report)
        }
        None => unrecorded,
    };
    crate::logging::flush();
    let subflows = std::mem::take(&mut *cx.subflows.lock().unwrap());
    FlowRun {
        id: cx.run_id,
        name: def.name,
        state: flow_state,
        result,
        task_runs: reports,
        started,
        ended,
        graph: def.graph,
        #[cfg(feature = "history")]
        history,
        parent,
        subflows,
    }
}

/// Runs the driver; when its [`CancelHandle`] (or a cancel request in the store) fires, cancels
/// the run (its tasks end Cancelled at once) and gives the body the grace period to wind down,
/// then drops it.
async fn stop_on_cancel<R>(
    cx: Arc<FlowCtx>,
    driven: impl Future<Output = Result<R, FlowError>>,
) -> Result<R, FlowError> {
    let Some(flag) = &cx.cancel else {
        return driven.await;
    };
    if cx.outside.is_none() && cx.requested.is_none() {
        return driven.await;
    }
    async fn fired(handle: &Option<CancelHandle>) -> &CancelHandle {
        match handle {
            Some(h) => {
                h.0.cancelled().await;
                h
            }
            None => std::future::pending().await,
        }
    }
    tokio::pin!(driven);
    let by = tokio::select! {
        biased;
        r = &mut driven => return r,
        h = fired(&cx.outside) => h,
        h = fired(&cx.requested) => h,
    };
    let reason =
        by.0.reason
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| "cancelled from outside".to_owned());
    flag.from_outside.store(true, Ordering::Release);
    flag.cancel(reason);
    match tokio::time::timeout(cx.cancel_grace, &mut driven).await {
        Ok(r) => r,
        Err(_) => Err(FlowError::Cancelled(cx.cancel_reason())),
    }
}

/// Claims a resumed run in its result store ([`ResultStore::claim_run`]), so that two resumes
/// of one run at the same time cannot both run its unfinished tasks. Err: the refused run's
/// report (Cancelled, nothing run, nothing recorded: the history belongs to the resume that
/// holds the claim).
fn claim_resumed_run<R>(
    def: &'static FlowDef,
    config: &RunConfig,
    run_id: Uuid,
) -> Result<Option<crate::results::RunClaim>, Box<FlowRun<R>>> {
    if !config.resume {
        return Ok(None);
    }
    let store = config
        .results
        .clone()
        .unwrap_or_else(crate::results::default_store);
    match store.claim_run(run_id) {
        Ok(Some(claim)) => Ok(Some(claim)),
        Ok(None) => {
            let why = format!(
                "run {run_id} is already being resumed by another process (or task); not resuming it twice"
            );
            tracing::warn!(target: "weft", "Flow run '{}': {why}", def.name);
            let now = Utc::now();
            Err(Box::new(FlowRun {
                id: run_id,
                name: def.name,
                state: State::cancelled(why.clone()),
                result: Err(FlowError::Cancelled(why)),
                task_runs: Vec::new(),
                started: now,
                ended: now,
                graph: def.graph,
                #[cfg(feature = "history")]
                history: None,
                parent: config.parent,
                subflows: Vec::new(),
            }))
        }
        Err(e) => {
            tracing::warn!(
                target: "weft",
                "Flow run '{}': could not claim run {run_id} in its result store ({e}); resuming without a guard against a concurrent resume",
                def.name
            );
            Ok(None)
        }
    }
}

#[cfg(feature = "history")]
/// Opens the run's history store and records its start; None when history is off or the store
/// cannot be opened (the run goes on, and says so: in the log, and in `unrecorded`, the run's
/// [`FlowRun::history`] with the reason).
async fn start_history(
    def: &'static FlowDef,
    config: &mut RunConfig,
    run_id: Uuid,
    unrecorded: &mut Option<HistoryReport>,
) -> Option<Arc<Recorder>> {
    if !config.records_history() {
        return None;
    }
    let store = match std::mem::take(&mut config.history) {
        HistoryChoice::To(store) => store,
        _ => match Store::open_default().await {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!(
                    target: "weft",
                    "Flow run '{}': not recorded in the run history: {e}",
                    def.name
                );
                *unrecorded = Some(HistoryReport::unrecorded(&e));
                return None;
            }
        },
    };
    let params = config.params_json.take().unwrap_or_else(|| "{}".to_owned());
    Some(Recorder::start(
        store,
        run_id,
        def.graph,
        def.version,
        params,
        config.parent,
    ))
}

/// Without the `history` feature nothing is recorded.
#[cfg(not(feature = "history"))]
async fn start_history(
    _: &'static FlowDef,
    _: &mut RunConfig,
    _: Uuid,
    _: &mut Option<std::convert::Infallible>,
) -> Option<Arc<Recorder>> {
    None
}

fn flow_transition(cx: &FlowCtx, def: &'static FlowDef, old: State, new: State) -> State {
    // Into a final state, a handler may only pick another final one.
    let apply = if new.is_final() {
        handlers::apply_final
    } else {
        handlers::apply
    };
    let new = if def.state_handlers.is_empty() {
        new
    } else {
        apply(
            def.state_handlers,
            StateChange {
                kind: RunKind::Flow,
                name: def.name,
                flow_run_id: cx.run_id,
                task_run_id: None,
                old,
                new,
            },
        )
    };
    if cx.has_sinks() {
        cx.emit(&RunEvent {
            flow_run_id: cx.run_id,
            flow: def.name,
            task_run_id: None,
            name: def.name,
            state: new.clone(),
            attempt: 0,
        });
    }
    new
}

impl FlowCtx {
    /// A context for a task (or a mapped task) awaited outside any flow: recorded in the run
    /// history as a run of its own, named after the task, as Prefect records a task called
    /// outside a flow (unless history is off).
    #[cfg(feature = "history")]
    pub(crate) async fn standalone_recorded(task: &'static str, mapped: bool) -> Self {
        let mut cx = FlowCtx::standalone();
        if !crate::store::enabled_by_env() {
            return cx;
        }
        let store = match Store::open_default().await {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!(target: "weft", "Task '{task}': not recorded in the run history: {e}");
                return cx;
            }
        };
        let graph = standalone_graph(task, mapped);
        cx.name = task;
        cx.graph = Some(graph);
        cx.history = Some(Recorder::start(
            store,
            cx.run_id,
            graph,
            None,
            "{}".to_owned(),
            None,
        ));
        cx.emit_run_state(State::of(StateKind::Running));
        cx
    }

    /// Without the `history` feature: a context recorded nowhere.
    #[cfg(not(feature = "history"))]
    pub(crate) async fn standalone_recorded(_: &'static str, _: bool) -> Self {
        FlowCtx::standalone()
    }

    /// Ends a standalone run's record with the task's final state and waits for it to be
    /// confirmed (at most the store's flush timeout).
    #[cfg(feature = "history")]
    pub(crate) async fn finish_standalone(&self, state: State) {
        let Some(h) = &self.history else {
            return;
        };
        self.emit_run_state(state);
        let report = h.finish().await;
        if !report.is_complete() {
            tracing::warn!(
                target: "weft",
                "Task '{}': run history in {} is incomplete: {} rows recorded, {} lost",
                self.name,
                report.store,
                report.recorded,
                report.lost
            );
        }
    }

    /// Without the `history` feature: nothing to end.
    #[cfg(not(feature = "history"))]
    pub(crate) async fn finish_standalone(&self, _: State) {}

    #[cfg(feature = "history")]
    fn emit_run_state(&self, state: State) {
        self.emit(&RunEvent {
            flow_run_id: self.run_id,
            flow: self.name,
            task_run_id: None,
            name: self.name,
            state,
            attempt: 0,
        });
    }
}

#[cfg(feature = "history")]
/// The one-node graph of a task run awaited outside any flow (one per task, kept for the
/// process's life like a `#[flow]`'s).
fn standalone_graph(task: &'static str, mapped: bool) -> &'static FlowGraph {
    type Graphs = Mutex<std::collections::HashMap<(&'static str, bool), &'static FlowGraph>>;
    static GRAPHS: std::sync::OnceLock<Graphs> = std::sync::OnceLock::new();
    let mut graphs = GRAPHS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    graphs.entry((task, mapped)).or_insert_with(|| {
        let node = crate::graph::Node {
            id: 0,
            kind: if mapped {
                NodeKind::Map
            } else {
                NodeKind::Task
            },
            task: task.into(),
            binding: None,
            statement: if mapped {
                format!("{task}::map(..)").into()
            } else {
                format!("{task}(..)").into()
            },
            line: 0,
        };
        Box::leak(Box::new(FlowGraph {
            name: task.into(),
            nodes: vec![node].into(),
            edges: Vec::new().into(),
        }))
    })
}
