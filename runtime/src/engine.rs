//! Runs task runs and flow runs: triggers, retries, timeouts, cancellation, concurrency limits,
//! mapping, state events and the flow report.
//!
//! Internal: the engine runs behind task calls and `#[flow]` functions; nothing here is called
//! by hand.

use crate::flow::{FlowCtx, RunEvent};
use crate::handlers;
use crate::logging::{Finished, Starting, LIFECYCLE};
use crate::state::{RunKind, State, StateChange, StateKind, TaskRunId};
use crate::store::record;
use crate::task::{
    final_state_of, Attempt, BoxFuture, MapCall, Task, TaskBody, TaskCall, TaskError, TaskOptions,
    TaskRun,
};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use tracing::Level;

/// Runs one task run to its final state. `quiet` sends its log lines to DEBUG (elements of a
/// mapped task). `opts` are `D::OPTIONS` for a `#[task]`; a node built at run time (a pipeline
/// file's) brings its own.
pub(crate) async fn execute<D: TaskBody<A>, A: Send>(
    cx: &FlowCtx,
    id: TaskRunId,
    args: A,
    quiet: bool,
    opts: &TaskOptions,
) -> TaskRun<D::Output> {
    execute_in::<D, A>(cx, id, args, quiet, opts, true).await
}

/// [`execute`]; `node` is true for a node of a flow's graph, whose future only weft's driver
/// holds (never leaked), so that a timed async body may be polled on a task of its own (see
/// [`Detached`]). A task call awaited by user code (outside a flow, in glue, in a task body)
/// is polled in place.
async fn execute_in<D: TaskBody<A>, A: Send>(
    cx: &FlowCtx,
    id: TaskRunId,
    args: A,
    quiet: bool,
    opts: &TaskOptions,
    node: bool,
) -> TaskRun<D::Output> {
    let name = opts.name;
    // A timed async body of a graph node on a multi-thread runtime runs on a tokio task of its
    // own: one that never yields cannot then keep its timeout from firing, nor starve the
    // flow's other tasks. Bodies abandoned by a timeout or a cancel are waited for (dropped at
    // their next yield) before the run returns; its state is recorded at once.
    let detach = node && !opts.blocking && opts.timeout.is_some() && on_multi_thread_runtime();
    let mut strays: Vec<Detached<'_>> = Vec::new();
    let mut tracker = Tracker::new(cx, id, name, opts.state_handlers);
    // A run awaited inside another task's body shares that body's permit: taking a second one
    // from the same pool could wait forever.
    let _permit = match cx.limit() {
        Some(sem) if !inside_task_body() => Some(
            sem.acquire()
                .await
                .expect("the flow's semaphore is never closed"),
        ),
        _ => None,
    };
    if cx.is_cancelled() {
        let state = tracker.finish(State::cancelled(cx.cancel_reason()));
        return tracker.into_run(state, None);
    }

    // A resumed run restores what it checkpointed; then its target; then the cache; then the
    // budget. The lookups are boxed: most tasks have none, and their futures stay small.
    let cache_key = cache_key::<D, A>(opts, &args);
    tracker.cache_key.clone_from(&cache_key);
    let (mut reused, mut target) = (None, None);
    if cx.restores() || opts.target.is_some() || cache_key.is_some() {
        match Box::pin(find_reusable::<D>(cx, id, cache_key.as_deref(), opts)).await {
            Ok(found) => (reused, target) = found,
            Err(why) => {
                let state = tracker.finish(State::failed(why));
                log(
                    quiet,
                    Level::ERROR,
                    format_args!(
                        "Task '{name}': Finished task run for task with final state: 'Failed' ({})",
                        state.message.as_deref().unwrap_or("")
                    ),
                );
                return tracker.into_run(state, None);
            }
        }
    }
    if reused.is_none() && !cx.take_budget() {
        let state = State::new(
            StateKind::Pending,
            Some("not started: the run's budget is used up".to_owned()),
        );
        log(
            quiet,
            Level::INFO,
            format_args!("Task '{name}': Not started, the run's budget is used up (Pending)"),
        );
        tracker.correct(state.clone());
        return tracker.into_run(state, None);
    }
    if let Some((v, why, key)) = reused {
        tracker.result_key = Some(key);
        {
            let state = tracker.finish(State::new(StateKind::Cached, Some(why.to_owned())));
            tracker.log_finished(quiet, &state);
            let value = state.is_successful().then_some(v);
            return tracker.into_run(state, value);
        }
    }

    // Global concurrency limits by tag, through the history store: held until the run ends.
    let _slots = match opts.tags.is_empty() {
        true => None,
        false => match Box::pin(tag_slots(cx, id, opts)).await {
            Ok(slots) => slots,
            Err(()) => {
                let state = tracker.finish(State::cancelled(cx.cancel_reason()));
                return tracker.into_run(state, None);
            }
        },
    };
    let mut args = Some(args);
    let max_attempts = opts.retries + 1;
    let mut value = None;
    // A state a handler already settled on (it ended the run from Running or Retrying).
    let mut settled = None;
    let final_state = loop {
        let attempt = tracker.attempts + 1;
        tracker.attempts = attempt;
        if attempt == 1 {
            if log_lifecycle(quiet, Level::INFO, Starting(name)) {
                tracker.lines |= record::LINE_START;
            }
        } else {
            log(
                quiet,
                Level::INFO,
                format_args!("Task '{name}': Starting attempt {attempt} of {max_attempts}..."),
            );
        }
        let running = State::of(StateKind::Running);
        tracker.started.get_or_insert(running.timestamp);
        let now = tracker.transition(running);
        if now.is_final() {
            // A handler ended the run before its body ran (Prefect's `ENDRUN` signal).
            settled = Some(now.clone());
            break now.clone();
        }

        let call_args = D::next_args(&mut args, attempt == max_attempts);
        let outcome = run_attempt(
            cx,
            D::attempt(call_args),
            opts.timeout,
            detach.then_some(&mut strays),
        )
        .await;
        let (retryable, delay) = match &outcome {
            Outcome::Done(Attempt::Fail(_) | Attempt::TimedOut(_)) | Outcome::TimedOut => {
                (true, Some(opts.delay_before_retry(attempt)))
            }
            Outcome::Done(Attempt::Retry(_)) => (true, None),
            _ => (false, None),
        };
        if retryable && attempt < max_attempts {
            let why = outcome.message(opts.timeout);
            let wait = delay.unwrap_or_default();
            tracing::warn!(
                target: "weft",
                "Task '{name}': Attempt {attempt} of {max_attempts} failed: {why}; retrying in {}",
                humanize(wait)
            );
            let now = tracker.transition(State::retrying(why));
            if now.is_final() {
                settled = Some(now.clone());
                break now.clone();
            }
            if !wait.is_zero() && !Box::pin(cx.sleep_unless_cancelled(wait)).await {
                break State::cancelled(cx.cancel_reason());
            }
            continue;
        }
        break match outcome {
            Outcome::Done(Attempt::Ok(v)) => {
                value = Some(v);
                State::of(StateKind::Completed)
            }
            Outcome::Done(a) => final_state_of(&a),
            Outcome::TimedOut => State::timed_out(outcome.message(opts.timeout)),
            Outcome::Cancelled => State::cancelled(cx.cancel_reason()),
        };
    };
    let mut state = match settled {
        Some(s) => s,
        None => tracker.finish(final_state),
    };
    if state.is_successful() && value.is_none() {
        tracing::warn!(
            target: "weft",
            "Task '{name}': a state handler asked for '{}' but the task has no value; keeping 'Failed'",
            state.kind
        );
        state = State::failed("a state handler turned the run successful without a value");
        tracker.correct(state.clone());
    }
    if !state.is_successful() {
        value = None;
    }
    // Encoded here, before any await: the value itself need not be `Sync`.
    let persist = opts.persist || cx.persists();
    let wanted = cache_key.is_some() || persist || target.is_some();
    let payload = value
        .as_ref()
        .and_then(|v| encode_for_store::<D>(opts.name, wanted, v));
    if let Some(payload) = payload {
        let writes = Writes {
            cache_key: cache_key.as_deref(),
            persist,
            target: target.as_deref(),
        };
        tracker.result_key = Box::pin(store_result(cx, id, opts, writes, payload)).await;
    }
    tracker.log_finished(quiet, &state);
    if state.is_failed() {
        cx.note_failure(name, &state);
    }
    let run = tracker.into_run(state, value);
    for stray in strays {
        stray.release().await;
    }
    run
}

/// A value to reuse instead of running (and why), with the run's target key; Err when the
/// target template does not render.
type Reusable<T> = (Option<(T, &'static str, String)>, Option<String>);

async fn find_reusable<D: Task>(
    cx: &FlowCtx,
    id: TaskRunId,
    cache_key: Option<&str>,
    opts: &TaskOptions,
) -> Result<Reusable<D::Output>, String> {
    let name = opts.name;
    let mut reused = None;
    if cx.restores() {
        let key = run_result_key(id);
        if let Some(v) = lookup::<D>(cx, &key, name).await {
            reused = Some((v, "restored from this run's checkpoint", key));
        }
    }
    let target = match opts.target {
        Some(t) => Some(cx.render_target(t, name)?),
        None => None,
    };
    if let (None, Some(key)) = (&reused, &target) {
        if let Some(v) = lookup::<D>(cx, key, name).await {
            reused = Some((v, "its target exists", key.clone()));
        }
    }
    if let (None, Some(key)) = (&reused, cache_key) {
        if let Some(v) = lookup::<D>(cx, key, name).await {
            reused = Some((v, "a result of the same inputs was reused", key.to_owned()));
        }
    }
    Ok((reused, target))
}

/// `cache/<task>/<blake3 of name, cache_version and inputs>.bin`, for tasks with `cache_for`.
fn cache_key<D: TaskBody<A>, A>(opts: &TaskOptions, args: &A) -> Option<String> {
    opts.cache_for?;
    match D::cache_inputs(args)? {
        Ok(inputs) => {
            let mut h = blake3::Hasher::new();
            for part in [opts.name, opts.cache_version] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            h.update(&inputs);
            Some(format!(
                "cache/{}/{}.bin",
                file_name(opts.name),
                h.finalize().to_hex()
            ))
        }
        Err(e) => {
            tracing::warn!(target: "weft", "Task '{}': inputs not encodable for the cache ({e}); running without it", opts.name);
            None
        }
    }
}

/// Where a persisted result of run `id` lives.
pub(crate) fn run_result_key(id: TaskRunId) -> String {
    match id.map_index {
        Some(i) => format!("runs/{}/{}-{i}.bin", id.flow_run_id, id.node),
        None => format!("runs/{}/{}.bin", id.flow_run_id, id.node),
    }
}

fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A usable cached value under `key`; anything else (missing, expired, corrupted, undecodable)
/// is a miss, the damaged kinds with a warning.
async fn lookup<D: Task>(cx: &FlowCtx, key: &str, name: &str) -> Option<D::Output> {
    let bytes = match cx.results().get(key).await {
        Ok(found) => found?,
        Err(e) => {
            tracing::warn!(target: "weft", "Task '{name}': cache read of {key} failed ({e}); running the task");
            return None;
        }
    };
    let entry = match crate::results::decode_entry(&bytes) {
        Ok(e) => e,
        Err(why) => {
            tracing::warn!(target: "weft", "Task '{name}': ignoring the damaged cache entry {key} ({why}); running the task");
            return None;
        }
    };
    if entry.is_expired(chrono::Utc::now()) {
        tracing::debug!(target: "weft", "Task '{name}': cache entry {key} expired");
        return None;
    }
    match D::decode_output(&entry.payload)? {
        Ok(v) => Some(v),
        Err(why) => {
            tracing::warn!(target: "weft", "Task '{name}': cache entry {key} does not decode as this task's output ({why}); running the task");
            None
        }
    }
}

/// The encoded result, when it is to be cached or persisted.
fn encode_for_store<D: Task>(name: &str, wanted: bool, value: &D::Output) -> Option<Vec<u8>> {
    if !wanted {
        return None;
    }
    match D::encode_output(value)? {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(target: "weft", "Task '{name}': result not stored ({e})");
            None
        }
    }
}

/// Where a successful result goes.
struct Writes<'a> {
    cache_key: Option<&'a str>,
    persist: bool,
    target: Option<&'a str>,
}

/// Writes a successful result to the cache, its target and, with `persist`, as the run's
/// checkpoint. Returns the first key written.
async fn store_result(
    cx: &FlowCtx,
    id: TaskRunId,
    opts: &TaskOptions,
    to: Writes<'_>,
    payload: Vec<u8>,
) -> Option<String> {
    let mut writes = Vec::new();
    if let Some(key) = to.target {
        writes.push((key.to_owned(), crate::results::encode_entry(&payload, None)));
    }
    let (cache_key, persist) = (to.cache_key, to.persist);
    if let (Some(key), Some(ttl)) = (cache_key, opts.cache_for) {
        let expires =
            chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX);
        writes.push((
            key.to_owned(),
            crate::results::encode_entry(&payload, Some(expires)),
        ));
    }
    if persist {
        writes.push((
            run_result_key(id),
            crate::results::encode_entry(&payload, None),
        ));
    }
    let mut written = None;
    for (key, bytes) in writes {
        match cx.results().put(&key, bytes).await {
            Ok(()) => {
                written.get_or_insert(key);
            }
            Err(e) => {
                tracing::warn!(target: "weft", "Task '{}': could not store its result at {key} ({e})", opts.name)
            }
        }
    }
    written
}

enum Outcome<T> {
    Done(Attempt<T>),
    TimedOut,
    Cancelled,
}

impl<T> Outcome<T> {
    fn message(&self, timeout: Option<std::time::Duration>) -> String {
        match self {
            Outcome::Done(
                Attempt::Fail(m) | Attempt::Retry(m) | Attempt::Skip(m) | Attempt::TimedOut(m),
            ) => m.clone(),
            Outcome::Done(Attempt::Panic(m)) => format!("panicked: {m}"),
            Outcome::Done(Attempt::Ok(_)) => String::new(),
            Outcome::TimedOut => {
                format!("timed out after {}", humanize(timeout.unwrap_or_default()))
            }
            Outcome::Cancelled => "cancelled".to_owned(),
        }
    }
}

/// Without the `history` feature no tag is limited.
#[cfg(not(feature = "history"))]
async fn tag_slots(_: &FlowCtx, _: TaskRunId, _: &TaskOptions) -> Result<Option<()>, ()> {
    Ok(None)
}

/// The slots of task run `id`'s limited tags, once it holds them (None without a history
/// store or a limited tag); Err when the run was cancelled while waiting.
#[cfg(feature = "history")]
async fn tag_slots(
    cx: &FlowCtx,
    id: TaskRunId,
    opts: &TaskOptions,
) -> Result<Option<crate::store::Slots>, ()> {
    let Some(store) = cx.history_store() else {
        return Ok(None);
    };
    let key = id.to_string();
    crate::store::wait_for_slots(&store, opts.tags, key, opts.name, || cx.is_cancelled()).await
}

tokio::task_local! {
    /// Set while a task body runs under a concurrency limit.
    static IN_TASK_BODY: ();
}

fn inside_task_body() -> bool {
    IN_TASK_BODY.try_with(|_| ()).is_ok()
}

async fn run_attempt<'a, T: Send + 'a>(
    cx: &FlowCtx,
    body: BoxFuture<'a, Attempt<T>>,
    timeout: Option<std::time::Duration>,
    detach: Option<&mut Vec<Detached<'a>>>,
) -> Outcome<T> {
    // The plain path stays small; timers, cancellation and the permit marker are boxed, since
    // every task run's future is sized for the largest path it could take.
    let body: BoxFuture<'a, Attempt<T>> = if cx.limit().is_some() {
        Box::pin(IN_TASK_BODY.scope((), body))
    } else {
        body
    };
    let guarded = AssertUnwindSafe(body).catch_unwind().map(|r| match r {
        Ok(a) => a,
        Err(panic) => Attempt::Panic(panic_message(&*panic)),
    });
    let timed: BoxFuture<'_, Outcome<T>> = match (timeout, detach) {
        (Some(d), Some(strays)) => Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            // Task runs awaited inside the body still belong to this flow run.
            let job = crate::flow::scoped_to_current(async move {
                let _ = tx.send(guarded.await);
            });
            let detached = Detached::spawn(Box::pin(job));
            match tokio::time::timeout(d, rx).await {
                Ok(Ok(a)) => Outcome::Done(a),
                Ok(Err(_)) => Outcome::Done(Attempt::Fail(
                    "the task body was dropped before it finished".to_owned(),
                )),
                Err(_) => {
                    if let Some(stray) = detached.abandon() {
                        strays.push(stray);
                    }
                    Outcome::TimedOut
                }
            }
        }),
        (Some(d), None) => Box::pin(async move {
            let start = std::time::Instant::now();
            match tokio::time::timeout(d, guarded).await {
                // A body that computed past its deadline without yielding: its poll returned
                // too late for the timer, but it still ran out of time.
                Ok(_) if start.elapsed() > d => Outcome::TimedOut,
                Ok(a) => Outcome::Done(a),
                Err(_) => Outcome::TimedOut,
            }
        }),
        (None, _) if cx.cancel_flag().is_none() => return Outcome::Done(guarded.await),
        (None, _) => Box::pin(guarded.map(Outcome::Done)),
    };
    match cx.cancel_flag() {
        Some(flag) => {
            Box::pin(async move {
                tokio::select! {
                    biased;
                    _ = flag.cancelled() => Outcome::Cancelled,
                    out = timed => out,
                }
            })
            .await
        }
        None => timed.await,
    }
}

fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// A task body's future, lifetime erased, shared by the tokio task polling it and the task run
/// that owns it. `None` once finished or dropped.
type BodySlot = std::sync::Mutex<Option<BoxFuture<'static, ()>>>;

/// An async task body polled on a tokio task of its own ([`Detached::spawn`]) although it may
/// borrow from the flow (`'a`). Sound because the body never outlives this value: dropping it
/// drops the body, waiting for a poll in progress on another worker to return first (the
/// slot's lock is held while polling), and it is only made for graph nodes, whose futures the
/// flow's driver owns and never leaks.
struct Detached<'a> {
    slot: std::sync::Arc<BodySlot>,
    poller: tokio::task::JoinHandle<()>,
    _borrows: std::marker::PhantomData<BoxFuture<'a, ()>>,
}

/// Polls a [`Detached`] body on its own tokio task.
struct Poller(std::sync::Arc<BodySlot>);

impl std::future::Future for Poller {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let mut body = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(f) = body.as_mut() else {
            return std::task::Poll::Ready(());
        };
        if f.as_mut().poll(cx).is_ready() {
            *body = None; // dropped under the lock: the owner may be waiting for it
            return std::task::Poll::Ready(());
        }
        std::task::Poll::Pending
    }
}

impl<'a> Detached<'a> {
    fn spawn(body: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>) -> Self {
        // SAFETY: only the lifetime changes. The body is dropped before `'a` ends: `Detached`
        // carries `'a` (dropck keeps borrowed data alive while it exists) and its `Drop` empties
        // the slot under the lock the poller holds while polling, so no poll is running or can
        // start once it returns; it is never leaked (see the type's comment).
        let body: BoxFuture<'static, ()> = unsafe {
            std::mem::transmute::<
                std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>,
                BoxFuture<'static, ()>,
            >(body)
        };
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(body)));
        let poller = tokio::spawn(Poller(slot.clone()));
        Detached {
            slot,
            poller,
            _borrows: std::marker::PhantomData,
        }
    }

    /// Drops the body unless a poll of it is in progress right now; true once it is gone.
    fn try_drop_body(&self) -> bool {
        match self.slot.try_lock() {
            Ok(mut body) => {
                *body = None;
                true
            }
            Err(std::sync::TryLockError::Poisoned(p)) => {
                *p.into_inner() = None;
                true
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }

    /// Gives the body up (timeout, cancel): dropped now, or, while a poll of it is still
    /// running (a body that does not yield), returned to be released later.
    fn abandon(self) -> Option<Self> {
        if self.try_drop_body() {
            None
        } else {
            Some(self)
        }
    }

    /// Waits, without blocking the flow, until the body's poll in progress returns, and drops
    /// the body.
    async fn release(self) {
        while !self.try_drop_body() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        // Blocks only while a poll of the body is in progress on another worker.
        *self
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.poller.abort();
    }
}

/// Text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

pub(crate) fn humanize(d: std::time::Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    // Whole milliseconds read better than humantime's nanosecond tails.
    let d = std::time::Duration::from_millis(d.as_millis().max(1) as u64);
    humantime_like(d)
}

fn humantime_like(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// Logs one of a task run's two ordinary lines; true when the run history took it (the task
/// run's row then stands for it). Quiet lines go to DEBUG as any other.
fn log_lifecycle(quiet: bool, level: Level, line: impl std::fmt::Display) -> bool {
    if quiet {
        tracing::debug!(target: "weft", "{line}");
        return false;
    }
    match level {
        Level::ERROR => tracing::error!(target: LIFECYCLE, "{line}"),
        _ => tracing::info!(target: LIFECYCLE, "{line}"),
    }
    record::line_taken()
}

fn log(quiet: bool, level: Level, args: std::fmt::Arguments<'_>) {
    if quiet {
        tracing::debug!(target: "weft", "{}", args);
        return;
    }
    match level {
        Level::ERROR => tracing::error!(target: "weft", "{}", args),
        Level::WARN => tracing::warn!(target: "weft", "{}", args),
        _ => tracing::info!(target: "weft", "{}", args),
    }
}

/// Follows one task run's state: handlers, events, attempts, timing.
struct Tracker<'a> {
    cx: &'a FlowCtx,
    id: TaskRunId,
    name: &'static str,
    handlers: &'static [crate::state::StateHandler],
    current: State,
    attempts: u32,
    started: Option<chrono::DateTime<chrono::Utc>>,
    cache_key: Option<String>,
    result_key: Option<String>,
    /// The lifecycle lines the history took (`record::LINE_START`, `LINE_END`).
    lines: u8,
}

impl<'a> Tracker<'a> {
    fn new(
        cx: &'a FlowCtx,
        id: TaskRunId,
        name: &'static str,
        handlers: &'static [crate::state::StateHandler],
    ) -> Self {
        let t = Tracker {
            cx,
            id,
            name,
            handlers,
            current: State::of(StateKind::Pending),
            attempts: 0,
            started: None,
            cache_key: None,
            result_key: None,
            lines: 0,
        };
        t.emit();
        t
    }

    fn emit(&self) {
        if self.cx.has_sinks() {
            self.cx.emit(&RunEvent {
                flow_run_id: self.cx.run_id(),
                flow: self.cx.flow_name(),
                task_run_id: Some(self.id),
                name: self.name,
                state: self.current.clone(),
                attempt: self.attempts,
            });
        }
    }

    /// The change from the current state to `new`, as handlers see it.
    fn change_to(&self, new: State) -> StateChange {
        StateChange {
            kind: RunKind::Task,
            name: self.name,
            flow_run_id: self.cx.run_id(),
            task_run_id: Some(self.id),
            old: self.current.clone(),
            new,
        }
    }

    /// Moves to `new` (or what a handler replaces it with) and reports it.
    fn transition(&mut self, new: State) -> &State {
        let new = if self.handlers.is_empty() {
            new
        } else {
            handlers::apply(self.handlers, self.change_to(new))
        };
        self.current = new;
        self.emit();
        &self.current
    }

    /// Moves to the final state `state`; a handler may replace it with another final state
    /// only (see [`handlers::apply_final`]).
    fn finish(&mut self, state: State) -> State {
        if !self.handlers.is_empty() && state.is_final() {
            self.current = handlers::apply_final(self.handlers, self.change_to(state));
            self.emit();
            return self.current.clone();
        }
        self.transition(state).clone()
    }

    /// Logs "Finished task run ..." for the final `state`.
    fn log_finished(&mut self, quiet: bool, state: &State) {
        let line = Finished {
            task: self.name,
            kind: state.kind,
            message: state.message.as_deref(),
        };
        if log_lifecycle(quiet, line.level(), line) {
            self.lines |= record::LINE_END;
        }
    }

    /// Overrides a handler's choice the engine cannot honour; sinks see it, handlers do not
    /// (they would only ask again).
    fn correct(&mut self, state: State) {
        self.current = state;
        self.emit();
    }

    fn into_run<T>(self, state: State, value: Option<T>) -> TaskRun<T> {
        let run = TaskRun {
            id: self.id,
            task: self.name,
            ended: state.timestamp,
            started: self.started,
            attempts: self.attempts,
            result: match value {
                Some(v) => Ok(v),
                None => Err(TaskError {
                    task: self.name,
                    state: state.clone(),
                }),
            },
            state,
        };
        let mut report = run.report();
        report.cache_key = self.cache_key;
        report.result_key = self.result_key;
        self.cx.record(report, self.lines);
        run
    }
}

/// A task run that never started (trigger not met, upstream failed, flow stopped).
pub(crate) fn never_run<T>(
    cx: &FlowCtx,
    id: TaskRunId,
    name: &'static str,
    handlers: &'static [crate::state::StateHandler],
    state: State,
) -> TaskRun<T> {
    let mut tracker = Tracker::new(cx, id, name, handlers);
    if state.kind == StateKind::Pending {
        // Not a change: it simply has not started (a budgeted run will resume it).
        log(
            false,
            Level::INFO,
            format_args!(
                "Task '{name}': Not started, {} (Pending)",
                state.message.as_deref().unwrap_or("")
            ),
        );
        tracker.correct(state.clone());
        return tracker.into_run(state, None);
    }
    let proposed = state.clone();
    let mut state = tracker.finish(state);
    if state.is_successful() {
        tracing::warn!(
            target: "weft",
            "Task '{name}': a state handler asked for '{}' but the task never ran; keeping '{}'",
            state.kind,
            proposed.kind
        );
        state = proposed;
        tracker.correct(state.clone());
    }
    let level = if state.kind == StateKind::Skipped {
        Level::INFO
    } else {
        Level::WARN
    };
    log(
        false,
        level,
        format_args!(
            "Task '{name}': Finished task run for task with final state: '{}' ({})",
            state.kind,
            state.message.as_deref().unwrap_or_default()
        ),
    );
    tracker.into_run(state, None)
}

/// Runs every element of a mapped call as its own task run; results in input order.
pub(crate) async fn execute_map<D: TaskBody<A>, A: Send>(
    cx: &FlowCtx,
    node: u32,
    items: Vec<A>,
) -> Vec<TaskRun<D::Output>> {
    execute_map_in::<D, A>(cx, node, items, true).await
}

/// [`execute_map`]; `node_map` as `node` of [`execute_in`].
async fn execute_map_in<D: TaskBody<A>, A: Send>(
    cx: &FlowCtx,
    node: u32,
    items: Vec<A>,
    node_map: bool,
) -> Vec<TaskRun<D::Output>> {
    let name = D::OPTIONS.name;
    let n = items.len();
    tracing::info!(target: "weft", "Task '{name}': Starting mapped task run over {n} elements...");
    let mut running: FuturesUnordered<_> = items
        .into_iter()
        .enumerate()
        .map(|(i, args)| {
            let id = TaskRunId {
                flow_run_id: cx.run_id(),
                node,
                map_index: Some(i as u32),
            };
            execute_in::<D, A>(cx, id, args, true, &D::OPTIONS, node_map).map(move |run| (i, run))
        })
        .collect();
    let mut slots: Vec<Option<TaskRun<D::Output>>> = (0..n).map(|_| None).collect();
    while let Some((i, run)) = running.next().await {
        slots[i] = Some(run);
    }
    let runs: Vec<_> = slots
        .into_iter()
        .map(|r| r.expect("every element reports"))
        .collect();
    let mut counts: Vec<(StateKind, usize)> = Vec::new();
    for r in &runs {
        match counts.iter_mut().find(|(k, _)| *k == r.state.kind) {
            Some((_, c)) => *c += 1,
            None => counts.push((r.state.kind, 1)),
        }
    }
    let summary = counts
        .iter()
        .map(|(k, c)| format!("{c} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let failed = runs.iter().any(|r| r.state.is_failed());
    if failed {
        tracing::error!(target: "weft", "Task '{name}': Finished mapped task run: {summary}");
    } else {
        tracing::info!(target: "weft", "Task '{name}': Finished mapped task run: {summary}");
    }
    runs
}

/// Runs a task call outside any flow.
pub(crate) async fn run_standalone<D: TaskBody<A>, A: Send>(
    call: TaskCall<'_, D, A>,
) -> TaskRun<D::Output> {
    if let Some(cx) = crate::flow::current() {
        // Awaited inside a flow run (glue, or an async task's body): a task run of that flow.
        let id = TaskRunId {
            flow_run_id: cx.run_id(),
            node: cx.next_unplanned_node(),
            map_index: None,
        };
        return execute_in::<D, A>(&cx, id, call.args, false, &D::OPTIONS, false).await;
    }
    crate::logging::ensure_default();
    let cx = FlowCtx::standalone_recorded(D::OPTIONS.name, false).await;
    let id = TaskRunId {
        flow_run_id: cx.run_id(),
        node: 0,
        map_index: None,
    };
    let run = execute_in::<D, A>(&cx, id, call.args, false, &D::OPTIONS, false).await;
    cx.finish_standalone(run.state.clone()).await;
    crate::logging::flush();
    run
}

/// Runs a mapped call outside any flow.
pub(crate) async fn run_standalone_map<D: TaskBody<A>, A: Send>(
    call: MapCall<'_, D, A>,
) -> Vec<TaskRun<D::Output>> {
    if let Some(cx) = crate::flow::current() {
        let node = cx.next_unplanned_node();
        return execute_map_in::<D, A>(&cx, node, call.items, false).await;
    }
    crate::logging::ensure_default();
    let cx = FlowCtx::standalone_recorded(D::OPTIONS.name, true).await;
    let runs = execute_map_in::<D, A>(&cx, 0, call.items, false).await;
    let failed = runs.iter().filter(|r| r.state.is_failed()).count();
    cx.finish_standalone(if failed > 0 {
        State::failed(format!("{failed} of {} mapped runs failed", runs.len()))
    } else {
        State::of(StateKind::Completed)
    })
    .await;
    crate::logging::flush();
    runs
}

/// Runs a sync task body on a thread of weft's own pool (see [`sync_pool`]) and hands its
/// result back. Its thread cannot be stopped: on timeout or cancellation the run ends, and the
/// thread finishes the body in the background, detached: nothing waits for it, so neither a
/// tokio runtime's shutdown nor the process's exit is held by it. Called by the code `#[task]`
/// generates for a plain `fn`; not meant to be called by hand.
#[doc(hidden)]
pub async fn blocking<T: Send + 'static>(
    body: impl FnOnce() -> Attempt<T> + Send + 'static,
) -> Attempt<T> {
    // Log lines of the body belong to the run's history, though its thread is not the flow's.
    let history = crate::store::record::current();
    // The body may use tokio (`Handle::current()`, timers), as on tokio's blocking pool.
    let runtime = tokio::runtime::Handle::try_current().ok();
    let (tx, rx) = tokio::sync::oneshot::channel();
    sync_pool::submit(Box::new(move || {
        let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
        let run = AssertUnwindSafe(|| crate::store::record::on_this_thread(history, body));
        let attempt = match std::panic::catch_unwind(run) {
            Ok(a) => a,
            Err(panic) => Attempt::Panic(panic_message(&*panic)),
        };
        // The run may have ended already (timeout, cancel): then nobody listens.
        let _ = tx.send(attempt);
    }));
    match rx.await {
        Ok(a) => a,
        Err(_) => Attempt::Fail("the sync body's thread ended without a result".to_owned()),
    }
}

/// The threads sync task bodies run on: plain `std::thread`s, started on demand (at most
/// [`MAX_THREADS`](sync_pool::MAX_THREADS) at once; more bodies wait in a queue) and ended
/// after 10 s idle. They are never joined: tokio's blocking pool makes a runtime's shutdown wait
/// for every body still running, these do not, so a body abandoned by its run (timeout,
/// cancel) cannot keep `main` from returning or `serve` from stopping.
pub(crate) mod sync_pool {
    use std::collections::VecDeque;
    use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
    use std::time::Duration;

    /// Most threads at once (tokio's blocking pool has the same default).
    pub(crate) const MAX_THREADS: usize = 512;
    const KEEP_ALIVE: Duration = Duration::from_secs(10);

    pub(crate) type Job = Box<dyn FnOnce() + Send>;

    struct Pool {
        state: Mutex<State>,
        wake: Condvar,
    }

    #[derive(Default)]
    struct State {
        queue: VecDeque<Job>,
        threads: usize,
        /// Threads waiting for work, not yet claimed by a submitter.
        idle: usize,
        /// Wake-ups handed to idle threads and not yet taken.
        notified: usize,
    }

    fn pool() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        })
    }

    fn lock(p: &Pool) -> MutexGuard<'_, State> {
        p.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `job` on a pool thread: an idle one, a new one, or the next one free.
    pub(crate) fn submit(job: Job) {
        let p = pool();
        let mut s = lock(p);
        s.queue.push_back(job);
        if s.idle > 0 {
            s.idle -= 1;
            s.notified += 1;
            drop(s);
            p.wake.notify_one();
            return;
        }
        if s.threads >= MAX_THREADS {
            return; // a busy thread takes it when done
        }
        s.threads += 1;
        drop(s);
        let spawned = std::thread::Builder::new()
            .name("weft-sync".to_owned())
            .spawn(move || work(p));
        if let Err(e) = spawned {
            let mut s = lock(p);
            s.threads -= 1;
            if s.threads > 0 {
                return; // the threads there are take the queue
            }
            // No thread at all: run what is queued here rather than never.
            tracing::error!(target: "weft", "could not start a thread for a sync task body ({e}); running it on the caller's thread");
            while let Some(job) = s.queue.pop_front() {
                drop(s);
                job();
                s = lock(p);
            }
        }
    }

    fn work(p: &'static Pool) {
        let mut s = lock(p);
        loop {
            if let Some(job) = s.queue.pop_front() {
                drop(s);
                // Jobs catch their body's panic; this keeps the count right if one does not.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                s = lock(p);
                continue;
            }
            s.idle += 1;
            loop {
                let (guard, waited) = p
                    .wake
                    .wait_timeout(s, KEEP_ALIVE)
                    .unwrap_or_else(PoisonError::into_inner);
                s = guard;
                if s.notified > 0 {
                    s.notified -= 1; // claimed: the submitter took it off `idle`
                    break;
                }
                if waited.timed_out() {
                    s.idle -= 1;
                    s.threads -= 1;
                    return;
                }
            }
        }
    }
}
