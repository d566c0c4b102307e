//! What `#[task]` generates code against: task options, the task-call value, signals and the
//! result of one task run.

use crate::state::{State, StateHandler, StateKind, TaskRunId};
use chrono::{DateTime, Utc};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

/// When a task may run, judged on the final states of its upstream tasks (Prefect's triggers).
/// Set it with `#[task(trigger = all_finished)]` (or `all_successful`, `any_failed`, `always`).
///
/// A task with `all_finished` runs even when its upstream failed, so it can take the upstream
/// output without `?`, as a `Result<T, TaskError>`:
///
/// ```
/// use weft::prelude::*;
///
/// #[task]
/// async fn risky() -> Result<u32, String> { Err("boom".into()) }
///
/// #[task(trigger = all_finished)]
/// async fn cleanup(outcome: Result<u32, TaskError>) -> String {
///     match outcome {
///         Ok(v) => format!("got {v}"),
///         Err(e) => format!("risky ended {}", e.state.kind),
///     }
/// }
///
/// #[flow]
/// async fn guarded() -> String {
///     let r = risky(); // no `?`: `r` is a `Result<u32, TaskError>`
///     let msg = cleanup(r)?;
///     msg
/// }
///
/// # #[tokio::main] async fn main() {
/// let run = guarded().await;
/// assert_eq!(run.result.as_deref(), Ok("risky ended Failed"));
/// assert_eq!(run.task("cleanup").unwrap().state.kind, StateKind::Completed);
/// assert!(!run.is_successful()); // `risky` still failed
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Trigger {
    /// Every upstream task Completed, Cached or Skipped (the default).
    AllSuccessful,
    /// Every upstream task finished, whatever its state.
    AllFinished,
    /// At least one upstream task ended neither Completed, Cached nor Skipped (Failed,
    /// Crashed, TimedOut, Cancelled or NotRun); otherwise the task ends Skipped.
    AnyFailed,
    /// Always run.
    Always,
}

impl Trigger {
    /// `Ok(())` when a task with this trigger may run after upstream tasks in `upstream`
    /// states; otherwise the state it ends in instead: NotRun when an upstream task failed,
    /// Skipped when `any_failed` finds nothing to react to.
    ///
    /// ```
    /// use weft::prelude::*;
    ///
    /// let (ok, bad) = (State::of(StateKind::Completed), State::failed("boom"));
    /// let upstream = [("a", &ok), ("b", &bad)];
    /// assert!(Trigger::AllFinished.check(upstream).is_ok());
    /// let not_run = Trigger::AllSuccessful.check(upstream).unwrap_err();
    /// assert_eq!(not_run.kind, StateKind::NotRun);
    /// assert_eq!(Trigger::AnyFailed.check([("a", &ok)]).unwrap_err().kind, StateKind::Skipped);
    /// ```
    pub fn check<'a>(
        self,
        upstream: impl IntoIterator<Item = (&'a str, &'a State)>,
    ) -> Result<(), State> {
        let mut any_failed = false;
        for (name, state) in upstream {
            let ok = state.is_successful() || state.is_skipped();
            if !ok {
                any_failed = true;
                if self == Trigger::AllSuccessful {
                    return Err(State::not_run(format!(
                        "trigger all_successful: upstream '{name}' ended {}",
                        state.kind
                    )));
                }
            }
        }
        match self {
            Trigger::AnyFailed if !any_failed => Err(State::skipped(
                "trigger any_failed: no upstream task failed",
            )),
            _ => Ok(()),
        }
    }
}

/// A task's options, as written in `#[task(...)]` (validated at compile time). Read a task's
/// through [`Task::OPTIONS`].
///
/// ```
/// use std::time::Duration;
/// use weft::TaskOptions;
///
/// let mut opts = TaskOptions::named("fetch");
/// opts.retry_delay = Duration::from_millis(100);
/// opts.retry_backoff = 2.0;
/// assert_eq!(opts.delay_before_retry(1), Duration::from_millis(100));
/// assert_eq!(opts.delay_before_retry(3), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TaskOptions {
    /// The task's name in logs, graphs and history (default: the function's name).
    pub name: &'static str,
    /// How many times a failed attempt is tried again.
    pub retries: u32,
    /// Wait before the first retry.
    pub retry_delay: Duration,
    /// Each further retry waits `retry_backoff` times longer (1.0: a constant delay).
    pub retry_backoff: f64,
    /// Random spread of each delay, as a fraction of it (0.0..=1.0).
    pub retry_jitter: f64,
    /// Longest an attempt may run.
    pub timeout: Option<Duration>,
    /// When the task may run, given its upstream states.
    pub trigger: Trigger,
    /// Free-form labels.
    pub tags: &'static [&'static str],
    /// Called on every state change of the task's runs.
    pub state_handlers: &'static [StateHandler],
    /// True for a plain `fn` body, which runs on a thread of its own (weft's sync-body pool).
    pub blocking: bool,
    /// Reuse a result computed from the same inputs for this long (`Cached` state).
    pub cache_for: Option<Duration>,
    /// Part of the cache key: change it to invalidate entries after a code change.
    pub cache_version: &'static str,
    /// Checkpoint every successful result in the run's result store.
    pub persist: bool,
    /// Where the result lives, as a template (`"{date:%Y-%m-%d}/{task_name}.bin"`): when it
    /// exists the task is not run and its value is loaded (Cached).
    pub target: Option<&'static str>,
}

impl TaskOptions {
    /// Options with every default and the given name.
    pub const fn named(name: &'static str) -> TaskOptions {
        TaskOptions {
            name,
            retries: 0,
            retry_delay: Duration::ZERO,
            retry_backoff: 1.0,
            retry_jitter: 0.0,
            timeout: None,
            trigger: Trigger::AllSuccessful,
            tags: &[],
            state_handlers: &[],
            blocking: false,
            cache_for: None,
            cache_version: "",
            persist: false,
            target: None,
        }
    }

    /// The delay before retry number `retry` (1-based): `retry_delay * retry_backoff^(retry-1)`,
    /// spread by ± `retry_jitter`.
    pub fn delay_before_retry(&self, retry: u32) -> Duration {
        let base = self.retry_delay.as_secs_f64() * self.retry_backoff.powi(retry as i32 - 1);
        let spread = if self.retry_jitter > 0.0 {
            // 53 random bits (a v4 uuid's, from the OS) as a uniform float in [0, 1).
            let unit = (uuid::Uuid::new_v4().as_u64_pair().0 >> 11) as f64 / (1u64 << 53) as f64;
            1.0 + self.retry_jitter * (unit * 2.0 - 1.0)
        } else {
            1.0
        };
        Duration::from_secs_f64((base * spread).max(0.0))
    }
}

/// A task's companion type, generated by `#[task]`: the task's options. Not implemented by hand.
///
/// ```
/// use weft::prelude::*;
/// use weft::Task;
///
/// #[task(retries = 3, timeout = "1s", tags = ["db"])]
/// async fn load() {}
///
/// let opts = <load as Task>::OPTIONS; // `load` is also the companion type
/// assert_eq!((opts.name, opts.retries, opts.tags), ("load", 3, &["db"][..]));
/// assert_eq!(opts.timeout, Some(std::time::Duration::from_secs(1)));
/// assert!(!opts.blocking); // an `async fn`
/// ```
pub trait Task: Send + Sync + 'static {
    /// The options written in `#[task(...)]`.
    const OPTIONS: TaskOptions;
    /// What a call of it is in a flow's graph: a task, or a subflow (a `#[flow]` called in
    /// another flow's body).
    const KIND: crate::graph::NodeKind = crate::graph::NodeKind::Task;
    /// The value a successful run produces (`T` of a body returning `T` or `Result<T, E>`).
    /// It lives here, free of the arguments' lifetimes, so that futures holding it stay `Send`
    /// for rustc's higher-ranked check.
    type Output: Send;

    /// Encodes an output for the result store (tasks with `cache_for` or `persist`).
    fn encode_output(_value: &Self::Output) -> Option<Result<Vec<u8>, String>> {
        None
    }
    /// Decodes an output from the result store (tasks with `cache_for` or `persist`).
    fn decode_output(_bytes: &[u8]) -> Option<Result<Self::Output, String>> {
        None
    }
}

/// How a task body is called with arguments `A` (a tuple of its parameters). Generated by
/// `#[task]`; not implemented by hand.
#[doc(hidden)]
pub trait TaskBody<A>: Task {
    /// The arguments of the next attempt: moved out on the last possible attempt, cloned before.
    fn next_args(args: &mut Option<A>, last: bool) -> A;
    /// Runs the body once. (Boxed: an opaque future over borrowed arguments trips rustc's
    /// higher-ranked `Send` check once the flow is spawned.)
    fn attempt<'a>(args: A) -> BoxFuture<'a, Attempt<Self::Output>>
    where
        A: 'a;
    /// What identifies the inputs in a cache key (tasks with `cache_for`): their encoding, or
    /// the text of the task's `cache_key` function.
    fn cache_inputs(_args: &A) -> Option<Result<Vec<u8>, String>> {
        None
    }
}

/// A boxed, sendable future (what [`TaskBody::attempt`] returns).
#[doc(hidden)]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How one attempt of a task body ended (built by generated code from the body's return
/// value).
#[derive(Debug)]
#[doc(hidden)]
pub enum Attempt<T> {
    /// The body returned a value.
    Ok(T),
    /// The body returned an error (retried if retries remain).
    Fail(String),
    /// The body asked to be skipped.
    Skip(String),
    /// The body asked for another attempt now.
    Retry(String),
    /// The body panicked.
    Panic(String),
    /// The body ran out of time by its own clock (a shell node kills its process group at its
    /// timeout); retried like a failure, ends TimedOut.
    TimedOut(String),
}

/// A task body's way to end its run without panicking (Prefect's `return Failed(message=...)`,
/// or raising a signal).
///
/// Return it as the error of a task returning `Result<T, Signal>`:
/// ```
/// use weft::prelude::*;
///
/// #[task]
/// fn check(status: u16) -> Result<(), Signal> {
///     if status != 200 {
///         return Err(Signal::fail(format!("Server not available. Status code: {status}")));
///     }
///     Ok(())
/// }
/// # let _ = check;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// End the attempt Failed with this message (retried if retries remain).
    Fail(String),
    /// End the run Skipped with this reason; data dependents are skipped too.
    Skip(String),
    /// Try again at once, without waiting for `retry_delay` (counts against `retries`).
    Retry(String),
}

impl Signal {
    /// See [`Signal::Fail`].
    pub fn fail(message: impl Into<String>) -> Signal {
        Signal::Fail(message.into())
    }
    /// See [`Signal::Skip`].
    pub fn skip(reason: impl Into<String>) -> Signal {
        Signal::Skip(reason.into())
    }
    /// See [`Signal::Retry`].
    pub fn retry(reason: impl Into<String>) -> Signal {
        Signal::Retry(reason.into())
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::Fail(m) | Signal::Skip(m) | Signal::Retry(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Signal {}

/// Why a task run produced no value: its final state and the task's name. It is the error of
/// [`TaskRun::result`], and what a flow body sees for a task output read without `?`.
///
/// ```
/// use weft::prelude::*;
///
/// #[task]
/// async fn connect() -> Result<(), String> { Err("refused".into()) }
///
/// # #[tokio::main] async fn main() {
/// let err = connect().await.result.unwrap_err();
/// assert_eq!(err.task, "connect");
/// assert_eq!(err.state.kind, StateKind::Failed);
/// assert_eq!(err.to_string(), "task 'connect' ended Failed('refused')");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    /// The task's name.
    pub task: &'static str,
    /// Its final state (Failed, Crashed, TimedOut, Cancelled, Skipped or NotRun).
    pub state: State,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task '{}' ended {}", self.task, self.state)
    }
}

impl std::error::Error for TaskError {}

/// The report of one finished task run: its final state, attempts, timing and value. Awaiting a
/// task call outside a flow returns one.
///
/// ```
/// use weft::prelude::*;
///
/// #[task]
/// fn parse(s: String) -> Result<i64, std::num::ParseIntError> { s.trim().parse() }
///
/// # #[tokio::main] async fn main() {
/// let run = parse(" 42 ".into()).await;
/// assert_eq!((run.task, run.attempts), ("parse", 1));
/// assert!(run.state.is_successful() && run.started.is_some());
/// assert_eq!(run.report().state.kind, StateKind::Completed); // the same run, without the value
/// assert_eq!(run.into_result(), Ok(42));
///
/// let bad = parse("x".into()).await;
/// assert_eq!(bad.state.to_string(), "Failed('invalid digit found in string')");
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a task run carries the task's value or its error"]
pub struct TaskRun<T> {
    /// Which run.
    pub id: TaskRunId,
    /// The task's name.
    pub task: &'static str,
    /// Final state.
    pub state: State,
    /// Attempts made (0 when the body never ran).
    pub attempts: u32,
    /// When the first attempt started.
    pub started: Option<DateTime<Utc>>,
    /// When the run ended.
    pub ended: DateTime<Utc>,
    /// The value, or why there is none.
    pub result: Result<T, TaskError>,
}

impl<T> TaskRun<T> {
    /// The value, or the error saying how the run ended.
    pub fn into_result(self) -> Result<T, TaskError> {
        self.result
    }
    /// Time from the first attempt's start to the end (zero when the body never ran).
    pub fn duration(&self) -> Duration {
        self.started
            .map(|s| (self.ended - s).to_std().unwrap_or_default())
            .unwrap_or_default()
    }
    /// The report without the value.
    pub fn report(&self) -> TaskRunReport {
        TaskRunReport {
            id: self.id,
            task: self.task,
            state: self.state.clone(),
            attempts: self.attempts,
            started: self.started,
            ended: Some(self.ended),
            cache_key: None,
            result_key: None,
        }
    }
}

/// One task run in a flow run's report ([`FlowRun::task_runs`](crate::FlowRun::task_runs)),
/// or [`TaskRun::report`]. Serializes with serde, for run history.
///
/// ```
/// use weft::prelude::*;
///
/// #[task] async fn ping() -> u8 { 1 }
///
/// #[flow]
/// async fn check() -> u8 {
///     let p = ping()?;
///     p
/// }
///
/// # #[tokio::main] async fn main() {
/// let run = check().await;
/// let report: &TaskRunReport = run.task("ping").unwrap();
/// assert_eq!((report.state.kind, report.attempts), (StateKind::Completed, 1));
/// assert_eq!(report.id.flow_run_id, run.id);
/// assert!(report.ended >= report.started);
/// let json = serde_json::to_string(report).unwrap();
/// assert!(json.contains(r#""task":"ping""#));
/// # }
/// ```
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskRunReport {
    /// Which run.
    pub id: TaskRunId,
    /// The task's name.
    pub task: &'static str,
    /// Final state.
    pub state: State,
    /// Attempts made.
    pub attempts: u32,
    /// When the first attempt started.
    pub started: Option<DateTime<Utc>>,
    /// When it ended (for a task the flow never reached: when the flow marked it NotRun or
    /// Cancelled).
    pub ended: Option<DateTime<Utc>>,
    /// Its cache key, for a task with `cache_for`.
    pub cache_key: Option<String>,
    /// Where its result was stored in the result store (its target, checkpoint or cache key).
    pub result_key: Option<String>,
}

impl TaskRunReport {
    /// Time from start to end (zero when the body never ran).
    pub fn duration(&self) -> Duration {
        match (self.started, self.ended) {
            (Some(s), Some(e)) => (e - s).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }
    pub(crate) fn never_ran(id: TaskRunId, task: &'static str, state: State) -> TaskRunReport {
        TaskRunReport {
            id,
            task,
            ended: Some(state.timestamp),
            state,
            attempts: 0,
            started: None,
            cache_key: None,
            result_key: None,
        }
    }
}

/// Ties a call to its task `D` and to the lifetime `'w` of borrowed arguments.
type CallMarker<'w, D> = PhantomData<(fn() -> D, &'w ())>;

/// A call of a task with its arguments, not yet run. Await it (or `.run()` it) to run it as one
/// orchestrated task run outside a flow; inside a `#[flow]` body it becomes a node of the graph.
///
/// ```
/// use weft::prelude::*;
///
/// #[task(retries = 2)]
/// async fn double(x: u32) -> u32 { x * 2 }
///
/// # #[tokio::main] async fn main() {
/// let run = double(21).await;
/// assert_eq!(run.state.kind, StateKind::Completed);
/// assert_eq!(run.result.unwrap(), 42);
/// assert_eq!(double::body(4).await, 8); // the undecorated body, for unit tests
/// # }
/// ```
#[must_use = "a task call does nothing until it is awaited or used in a #[flow] body"]
pub struct TaskCall<'w, D, A> {
    pub(crate) args: A,
    _marker: CallMarker<'w, D>,
}

impl<'w, D: TaskBody<A>, A: Send + 'w> TaskCall<'w, D, A> {
    #[doc(hidden)]
    pub fn new(args: A) -> Self {
        TaskCall {
            args,
            _marker: PhantomData,
        }
    }

    /// Runs the call as one orchestrated task run outside any flow.
    pub async fn run(self) -> TaskRun<D::Output> {
        crate::engine::run_standalone(self).await
    }
}

impl<'w, D: TaskBody<A>, A: Send + 'w> IntoFuture for TaskCall<'w, D, A> {
    type Output = TaskRun<D::Output>;
    type IntoFuture = Pin<Box<dyn Future<Output = TaskRun<D::Output>> + Send + 'w>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// A task mapped over a list of arguments: one task run per element, made by the `my_task::map`
/// function that `#[task]` generates. Await it outside a flow; inside a `#[flow]` body it becomes
/// one node of the graph.
///
/// ```
/// use weft::prelude::*;
///
/// #[task]
/// async fn add(a: u32, b: u32) -> u32 { a + b }
///
/// # #[tokio::main] async fn main() {
/// let runs = add::map([(1, 2), (3, 4)]).await; // several parameters: a tuple per element
/// let sums: Vec<u32> = runs.into_iter().map(|r| r.result.unwrap()).collect();
/// assert_eq!(sums, [3, 7]);
/// # }
/// ```
#[must_use = "a mapped call does nothing until it is awaited or used in a #[flow] body"]
pub struct MapCall<'w, D, A> {
    pub(crate) items: Vec<A>,
    _marker: CallMarker<'w, D>,
}

impl<'w, D: TaskBody<A>, A: Send + 'w> MapCall<'w, D, A> {
    #[doc(hidden)]
    pub fn new(items: Vec<A>) -> Self {
        MapCall {
            items,
            _marker: PhantomData,
        }
    }

    /// Runs every element as its own task run outside any flow, all at once; results in input
    /// order.
    pub async fn run(self) -> Vec<TaskRun<D::Output>> {
        crate::engine::run_standalone_map(self).await
    }
}

impl<'w, D: TaskBody<A>, A: Send + 'w> IntoFuture for MapCall<'w, D, A> {
    type Output = Vec<TaskRun<D::Output>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'w>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The final state of an attempt outcome that is not retried.
pub(crate) fn final_state_of<T>(a: &Attempt<T>) -> State {
    match a {
        Attempt::Ok(_) => State::of(StateKind::Completed),
        Attempt::Fail(m) | Attempt::Retry(m) => State::failed(m.clone()),
        Attempt::Skip(m) => State::skipped(m.clone()),
        Attempt::Panic(m) => State::crashed(m.clone()),
        Attempt::TimedOut(m) => State::timed_out(m.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_multiplies_and_jitter_stays_in_range() {
        let mut o = TaskOptions::named("t");
        o.retry_delay = Duration::from_millis(100);
        o.retry_backoff = 2.0;
        assert_eq!(o.delay_before_retry(1), Duration::from_millis(100));
        assert_eq!(o.delay_before_retry(3), Duration::from_millis(400));
        o.retry_jitter = 0.5;
        for _ in 0..200 {
            let d = o.delay_before_retry(1).as_secs_f64();
            assert!((0.05..=0.15).contains(&d), "{d}");
        }
    }

    #[test]
    fn triggers_judge_upstream_states() {
        let ok = State::of(StateKind::Completed);
        let bad = State::failed("boom");
        let skip = State::skipped("nothing");
        let up = [("a", &ok), ("b", &bad)];
        let not_run = Trigger::AllSuccessful.check(up).unwrap_err();
        assert_eq!(not_run.kind, StateKind::NotRun);
        assert!(not_run.message.unwrap().contains("'b' ended Failed"));
        assert!(Trigger::AllFinished.check(up).is_ok());
        assert!(Trigger::AnyFailed.check(up).is_ok());
        let quiet = Trigger::AnyFailed
            .check([("a", &ok), ("s", &skip)])
            .unwrap_err();
        assert_eq!(
            quiet.kind,
            StateKind::Skipped,
            "nothing to react to is no failure"
        );
        assert!(Trigger::AllSuccessful
            .check([("a", &ok), ("s", &skip)])
            .is_ok());
        assert!(Trigger::Always.check(up).is_ok());
    }
}
