//! The pieces a `#[flow]` driver is generated from: handles that carry task outputs between node
//! futures, the set of running nodes, and the call routing that tells tasks from plain functions.
//! Generated code reaches these through `weft::__private`; users never name them.

use crate::engine;
use crate::flow::{FlowCtx, FlowError};
use crate::graph::{Edge, EdgeKind, Node, NodeKind};
use crate::state::{State, StateKind, TaskRunId};
use crate::task::{MapCall, TaskBody, TaskCall, TaskError, TaskOptions, TaskRun};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::borrow::Cow;
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use tokio::sync::Notify;

/// Completion of one node: its final state, and a way to wait for it.
pub struct Done {
    task: &'static str,
    state: OnceLock<State>,
    notify: Notify,
}

impl Done {
    fn new(task: &'static str) -> Self {
        Done {
            task,
            state: OnceLock::new(),
            notify: Notify::new(),
        }
    }

    async fn wait(&self) -> &State {
        loop {
            let notified = self.notify.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            if let Some(s) = self.state.get() {
                return s;
            }
            notified.await;
        }
    }

    fn finish(&self, state: State) {
        let _ = self.state.set(state);
        self.notify.notify_waiters();
    }

    fn upstream(&self) -> (&'static str, &State) {
        (
            self.task,
            self.state.get().expect("upstream read after it finished"),
        )
    }
}

/// A task output read by value: moved into its one reader, or cloned for all but the last.
pub struct Owned<T> {
    done: Done,
    value: Mutex<Option<T>>,
    readers: AtomicU32,
}

/// A task output that some node borrows. Borrowing nodes share it; the flow body, if it reads
/// the output, takes it once every reading node has finished (as Rust lets you move a value
/// once its borrows end).
pub struct Shared<T> {
    done: Done,
    value: Mutex<Option<Arc<T>>>,
    readers: AtomicU32,
    released: Notify,
}

/// Held by a node reading a [`Shared`] output; dropping it tells the flow body the node is done.
pub struct ReaderGuard<'a> {
    readers: &'a AtomicU32,
    released: &'a Notify,
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        self.readers.fetch_sub(1, Ordering::AcqRel);
        self.released.notify_waiters();
    }
}

/// The clone function of a task output moved into several nodes (generated code computes it
/// once, at the second reader, so that a missing `Clone` is one error there).
pub fn output_type<T>(_: &Owned<T>) -> PhantomData<T> {
    PhantomData
}

/// The output type of a borrowed task output.
pub fn shared_type<T>(_: &Shared<T>) -> PhantomData<T> {
    PhantomData
}

/// The type of a value, for the rules' checks.
pub fn type_of<T>(_: &T) -> PhantomData<T> {
    PhantomData
}

macro_rules! handle_common {
    ($ty:ident) => {
        impl<T> $ty<T> {
            /// `new` with its type named by the producer (`TaskFn::value_type`): a handle typed
            /// where it is declared leaves rustc no inference to carry through the rest of the body.
            pub fn typed(_: PhantomData<T>, task: &'static str, readers: u32) -> Self {
                Self::new(task, readers)
            }
            /// Waits until the producing node finished.
            pub async fn finished(&self) -> &State {
                self.done.wait().await
            }
            /// The producer's name and final state (after it finished).
            pub fn upstream(&self) -> (&'static str, &State) {
                self.done.upstream()
            }
            /// The error the flow body returns when it needed this value and it is missing.
            pub fn missing(&self, binding: &'static str) -> FlowError {
                let (task, state) = self.done.upstream();
                FlowError::Upstream {
                    binding,
                    task,
                    state: state.clone(),
                }
            }
        }
        impl<T> $ty<T> {
            /// Stores what the node produced: its state and, if it succeeded, its value.
            pub fn ran<R: NodeRun<Value = T>>(&self, (state, run): (State, R)) {
                self.set(state, run.value());
            }
            /// Stores the state and the value or error, whatever happened (read without `?`).
            pub fn ran_full<R: NodeRun<Full = T>>(&self, (state, run): (State, R)) {
                self.set(state, Some(run.full()));
            }
            /// Stores the state alone: nobody reads the value.
            pub fn ran_unread<R>(&self, (state, _): (State, R)) {
                self.set(state, None);
            }
        }
        impl<T> $ty<Result<T, TaskError>> {
            /// Records a producer that never ran; readers of the `Result` see its error.
            pub fn set_never_ran_result(&self, state: State) {
                let err = TaskError {
                    task: self.done.task,
                    state: state.clone(),
                };
                self.set(state, Some(Err(err)));
            }
        }
    };
}
handle_common!(Owned);
handle_common!(Shared);

impl<T> Owned<T> {
    /// A handle for the output of `task`, read by `readers` nodes.
    pub fn new(task: &'static str, readers: u32) -> Self {
        Owned {
            done: Done::new(task),
            value: Mutex::new(None),
            readers: AtomicU32::new(readers),
        }
    }
    /// Stores the producer's final state and value (None: no value).
    pub fn set(&self, state: State, value: Option<T>) {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) = value;
        self.done.finish(state);
    }
    /// Records a producer that never ran: no value.
    pub fn set_never_ran(&self, state: State) {
        self.set(state, None);
    }
    /// The value, moved out (the only reader).
    pub async fn take(&self) -> Option<T> {
        self.done.wait().await;
        self.value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
    /// The value, cloned (with `clone`, from [`moved_twice`]) for every reader but the last,
    /// which takes it.
    pub async fn take_or_clone(&self, clone: fn(&T) -> T) -> Option<T> {
        self.done.wait().await;
        let mut slot = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        if self.readers.fetch_sub(1, Ordering::AcqRel) <= 1 {
            slot.take()
        } else {
            slot.as_ref().map(clone)
        }
    }
}

impl<T> Shared<T> {
    /// A handle for the output of `task`, read by `readers` task nodes.
    pub fn new(task: &'static str, readers: u32) -> Self {
        Shared {
            done: Done::new(task),
            value: Mutex::new(None),
            readers: AtomicU32::new(readers),
            released: Notify::new(),
        }
    }
    /// Stores the producer's final state and value (None: no value).
    pub fn set(&self, state: State, value: Option<T>) {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) = value.map(Arc::new);
        self.done.finish(state);
    }
    /// Records a producer that never ran: no value.
    pub fn set_never_ran(&self, state: State) {
        self.set(state, None);
    }
    /// Marks a reading node; the guard releases it when the node ends, however it ends.
    pub fn reader(&self) -> ReaderGuard<'_> {
        ReaderGuard {
            readers: &self.readers,
            released: &self.released,
        }
    }
    /// The value, shared.
    pub async fn get(&self) -> Option<Arc<T>> {
        self.done.wait().await;
        self.value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    /// A clone of the value (`clone` from [`borrowed_and_moved`]).
    pub async fn get_cloned(&self, clone: fn(&T) -> T) -> Option<T> {
        self.get().await.map(|v| clone(&v))
    }
    /// The value, moved out once every reading node has finished (the flow body's read).
    pub async fn take_after_readers(&self) -> Option<T> {
        self.done.wait().await;
        loop {
            let released = self.released.notified();
            let mut released = pin!(released);
            released.as_mut().enable();
            if self.readers.load(Ordering::Acquire) == 0 {
                break;
            }
            released.await;
        }
        let shared = self
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(
            Arc::try_unwrap(shared)
                .unwrap_or_else(|_| unreachable!("every reading node has dropped its share")),
        )
    }
}

/// A flow-body local that tasks borrow: parked here so the borrow outlives the running nodes.
pub struct Slot<T>(OnceLock<T>);

impl<T> Slot<T> {
    /// An empty slot.
    pub fn new() -> Self {
        Slot(OnceLock::new())
    }
    /// Parks `v` and lends it back.
    pub fn put(&self, v: T) -> &T {
        if self.0.set(v).is_err() {
            unreachable!("a slot is filled once");
        }
        self.0.get().expect("just set")
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A node's boxed body.
pub type NodeFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The running nodes of a flow run. The flow body pushes nodes into it while [`drive_flow`]
/// polls them next to the body, so whatever the body awaits (a task output, a timer, a
/// `select!`), the nodes keep going.
pub struct NodeSet<'a> {
    running: Mutex<FuturesUnordered<NodeFuture<'a>>>,
}

impl<'a> NodeSet<'a> {
    /// No node running.
    pub fn new() -> Self {
        NodeSet {
            running: Mutex::new(FuturesUnordered::new()),
        }
    }
    /// Starts a node (it is first polled right after the body yields).
    pub fn push(&self, node: NodeFuture<'a>) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(node);
    }
}

impl Default for NodeSet<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts task node `node`: `body` (from [`node_body`]) awaits its inputs, runs it and stores
/// its output in `me`. A panic in `body` (a panicking `Clone` of an input, say) records the
/// node Crashed through `never_ran`. `keep` (the node's reader guards of borrowed outputs) is
/// dropped only after `body`, so the flow body takes a shared output once no node holds it.
///
/// A function rather than generated code: each flow statement expands to one call. Not
/// generic over the body, so it is compiled once per handle and guard type instead of once per
/// flow statement (half the machine code of a large flow).
#[allow(clippy::too_many_arguments)]
pub fn spawn_node<'a, H: Sync, K: Send + 'a>(
    set: &NodeSet<'a>,
    cx: &'a FlowCtx,
    node: u32,
    opts: &'static TaskOptions,
    me: &'a H,
    never_ran: fn(&H, State),
    keep: K,
    body: NodeFuture<'a>,
) {
    set.push(Box::pin(async move {
        let _keep = keep;
        if let Err(panic) = catch_node(body).await {
            never_ran(me, node_crashed(cx, node, opts, panic));
        }
    }));
}

/// A node's generated body, boxed for [`spawn_node`] (a generic function, not a coercion in
/// the flow's code, keeps rustc's type check of a large flow shorter).
pub fn node_body<'a>(body: impl Future<Output = ()> + Send + 'a) -> NodeFuture<'a> {
    Box::pin(body)
}

/// A task node of a flow's graph (generated code: one call per node).
pub fn graph_node(
    id: u32,
    kind: NodeKind,
    task: &'static str,
    binding: Option<&'static str>,
    statement: &'static str,
    line: u32,
) -> Node {
    Node {
        id,
        kind,
        task: Cow::Borrowed(task),
        binding: binding.map(Cow::Borrowed),
        statement: Cow::Borrowed(statement),
        line,
    }
}

/// An edge of a flow's graph, in a `static` (generated code).
pub const fn graph_edge(from: u32, to: u32, kind: EdgeKind, binding: &'static str) -> Edge {
    Edge {
        from,
        to,
        kind,
        binding: Some(Cow::Borrowed(binding)),
    }
}

/// Why the flow body stopped early: a value it needed (`let x = t()?;` then a read of `x`) is
/// missing.
pub struct BodyStop(Mutex<Option<FlowError>>);

impl BodyStop {
    /// Not stopped.
    pub fn new() -> Self {
        BodyStop(Mutex::new(None))
    }
}

impl Default for BodyStop {
    fn default() -> Self {
        Self::new()
    }
}

/// Stops the flow body with `err`: it never resumes, and [`drive_flow`] drops it (its locals
/// drop as in any cancelled future) and ends the run with `err` once the running nodes have
/// finished. The body keeps its own return type for `return` and `?`.
pub async fn stop_body(stop: &BodyStop, err: FlowError) -> std::convert::Infallible {
    *stop.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
    std::future::pending().await
}

/// Runs the flow body next to its nodes until both are done. A panic in the body ends the run
/// Failed; the nodes already started still finish.
pub async fn drive_flow<R>(
    nodes: &NodeSet<'_>,
    stop: &BodyStop,
    body: impl Future<Output = R>,
) -> Result<R, FlowError> {
    use futures_util::FutureExt;
    let mut body = Some(Box::pin(std::panic::AssertUnwindSafe(body).catch_unwind()));
    let mut out: Option<Result<R, FlowError>> = None;
    poll_fn(|cx| {
        if let Some(b) = body.as_mut() {
            if let Poll::Ready(r) = b.as_mut().poll(cx) {
                out = Some(r.map_err(|panic| FlowError::Panicked(engine::panic_message(&*panic))));
                body = None;
            } else if let Some(err) = stop.0.lock().unwrap_or_else(PoisonError::into_inner).take() {
                out = Some(Err(err));
                body = None; // dropped: it was waiting for a value that will never come
            }
        }
        let mut running = nodes.running.lock().unwrap_or_else(PoisonError::into_inner);
        while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {}
        if out.is_some() && running.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out.expect("the body finished")
}

/// Runs a node's generated code, catching a panic in it (a panicking `Clone` of an output,
/// say) so that only this node fails. Returns the panic's message.
pub async fn catch_node(node: impl Future<Output = ()>) -> Result<(), String> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(node)
        .catch_unwind()
        .await
        .map_err(|panic| engine::panic_message(&*panic))
}

/// Records a node whose generated code panicked: Crashed, with the panic's message.
pub fn node_crashed(cx: &FlowCtx, node: u32, opts: &'static TaskOptions, message: String) -> State {
    let run: TaskRun<()> = never_ran_node(cx, node, opts, State::crashed(message));
    run.state
}

/// What a node produced: one task run, or the runs of a mapped task.
pub trait NodeRun {
    /// The value dependents get through `?` (absent unless the run succeeded).
    type Value;
    /// What dependents get without `?`.
    type Full;
    /// The final state (for a mapped task: Failed if any element failed).
    fn state(&self) -> State;
    /// The value, if the run succeeded.
    fn value(self) -> Option<Self::Value>;
    /// The value or error, whatever happened.
    fn full(self) -> Self::Full;
}

impl<T> NodeRun for TaskRun<T> {
    type Value = T;
    type Full = Result<T, TaskError>;
    fn state(&self) -> State {
        self.state.clone()
    }
    fn value(self) -> Option<T> {
        self.result.ok()
    }
    fn full(self) -> Result<T, TaskError> {
        self.result
    }
}

/// The runs of a mapped task, in input order, and their summary state.
pub struct MapRun<T> {
    state: State,
    runs: Vec<TaskRun<T>>,
}

impl<T> NodeRun for MapRun<T> {
    type Value = Vec<T>;
    type Full = Vec<Result<T, TaskError>>;
    fn state(&self) -> State {
        self.state.clone()
    }
    fn value(self) -> Option<Vec<T>> {
        self.runs.into_iter().map(|r| r.result.ok()).collect()
    }
    fn full(self) -> Vec<Result<T, TaskError>> {
        self.runs.into_iter().map(|r| r.result).collect()
    }
}

/// A value a flow body can run as a node: a task call, a mapped task call or a flow call (a
/// subflow).
#[diagnostic::on_unimplemented(
    message = "this statement calls a function that is not a #[task] (it returns `{Self}`)",
    label = "not a #[task]: a statement `f(..)` or `let x = f(..)?;` in a #[flow] body must call a task",
    note = "mark the function with #[task], or run it as plain code (glue) by wrapping the call in a block: `let x = {{ f(..) }};`"
)]
pub trait IntoNode {
    /// What the node produces.
    type Run: NodeRun + Send;
    /// The task's options (a subflow's: its name).
    const OPTIONS: &'static TaskOptions;
    /// What the node is in the graph.
    const KIND: crate::graph::NodeKind;
    /// Runs the node (trigger already checked).
    fn run(self, cx: &FlowCtx, node: u32) -> impl Future<Output = Self::Run> + Send;
}

impl<'w, D: TaskBody<A>, A: Send + 'w> IntoNode for TaskCall<'w, D, A> {
    type Run = TaskRun<D::Output>;
    const OPTIONS: &'static TaskOptions = &D::OPTIONS;
    const KIND: crate::graph::NodeKind = D::KIND;
    async fn run(self, cx: &FlowCtx, node: u32) -> TaskRun<D::Output> {
        let id = TaskRunId {
            flow_run_id: cx.run_id(),
            node,
            map_index: None,
        };
        engine::execute::<D, A>(cx, id, self.args, false, &D::OPTIONS).await
    }
}

impl<'w, D: TaskBody<A>, A: Send + 'w> IntoNode for MapCall<'w, D, A> {
    type Run = MapRun<D::Output>;
    const OPTIONS: &'static TaskOptions = &D::OPTIONS;
    const KIND: crate::graph::NodeKind = crate::graph::NodeKind::Map;
    async fn run(self, cx: &FlowCtx, node: u32) -> MapRun<D::Output> {
        let started = chrono::Utc::now();
        let runs = engine::execute_map::<D, A>(cx, node, self.items).await;
        let failed = runs
            .iter()
            .filter(|r| !(r.state.is_successful() || r.state.is_skipped()))
            .count();
        let skipped = runs.iter().filter(|r| r.state.is_skipped()).count();
        // A skipped element leaves a hole in the list: `?` dependents are skipped as well.
        let state = if failed > 0 {
            State::failed(format!(
                "{failed} of {} mapped runs did not succeed",
                runs.len()
            ))
        } else if skipped > 0 {
            State::skipped(format!(
                "{skipped} of {} mapped runs were skipped",
                runs.len()
            ))
        } else {
            State::of(StateKind::Completed)
        };
        cx.record(
            crate::task::TaskRunReport {
                id: TaskRunId {
                    flow_run_id: cx.run_id(),
                    node,
                    map_index: None,
                },
                task: D::OPTIONS.name,
                state: state.clone(),
                attempts: 0,
                started: Some(started),
                ended: Some(state.timestamp),
                cache_key: None,
                result_key: None,
            },
            0,
        );
        MapRun { state, runs }
    }
}

/// Runs a node: checks its trigger against its upstream states, then runs it.
///
/// Boxed on purpose: awaiting an opaque future generic over borrowed task arguments inside the
/// spawned driver makes rustc demand `TaskBody` impls "for any lifetime" (its higher-ranked
/// auto-trait check); a `dyn Future + Send` ends that check here.
pub fn run_node<'s, C>(
    cx: &'s FlowCtx,
    node: u32,
    upstream: &'s [(&'static str, &'s State)],
    call: C,
) -> crate::task::BoxFuture<'s, (State, C::Run)>
where
    C: IntoNode + Send + 's,
    C::Run: FromNeverRan,
{
    Box::pin(async move {
        let opts = C::OPTIONS;
        // An upstream task that has not run yet (a budgeted run) keeps this one waiting too.
        if let Some((name, _)) = upstream.iter().find(|(_, s)| s.kind == StateKind::Pending) {
            let waiting = State::new(
                StateKind::Pending,
                Some(format!("waiting for upstream '{name}'")),
            );
            let run: C::Run = never_ran_node(cx, node, opts, waiting);
            return (run.state(), run);
        }
        if let Err(state) = opts.trigger.check(upstream.iter().copied()) {
            let run: C::Run = never_ran_node(cx, node, opts, state);
            return (run.state(), run);
        }
        let run = call.run(cx, node).await;
        (run.state(), run)
    })
}

/// A node run that never started.
pub trait FromNeverRan: NodeRun + Sized {
    /// The run of a node that ended in `state` without starting.
    fn never_ran(state: State, task: &'static str) -> Self;
}

impl<T> FromNeverRan for TaskRun<T> {
    fn never_ran(state: State, task: &'static str) -> Self {
        TaskRun {
            id: TaskRunId {
                flow_run_id: uuid::Uuid::nil(),
                node: 0,
                map_index: None,
            },
            task,
            ended: state.timestamp,
            started: None,
            attempts: 0,
            result: Err(TaskError {
                task,
                state: state.clone(),
            }),
            state,
        }
    }
}

impl<T> FromNeverRan for MapRun<T> {
    fn never_ran(state: State, _task: &'static str) -> Self {
        MapRun {
            state,
            runs: Vec::new(),
        }
    }
}

fn never_ran_node<R: FromNeverRan>(
    cx: &FlowCtx,
    node: u32,
    opts: &'static TaskOptions,
    state: State,
) -> R {
    let id = TaskRunId {
        flow_run_id: cx.run_id(),
        node,
        map_index: None,
    };
    let run: TaskRun<()> = engine::never_run(cx, id, opts.name, opts.state_handlers, state);
    R::never_ran(run.state, opts.name)
}

/// The state of a node whose required input is missing: Skipped when an upstream was skipped,
/// NotRun otherwise. Records the run.
pub fn missing_input(
    cx: &FlowCtx,
    node: u32,
    opts: &'static TaskOptions,
    upstream: &[(&'static str, &State)],
) -> State {
    let state = match upstream.iter().find(|(_, s)| !s.is_successful()).copied() {
        Some((name, s)) if s.is_skipped() => {
            State::skipped(format!("upstream '{name}' was skipped"))
        }
        Some((name, s)) => State::not_run(format!("upstream '{name}' ended {}", s.kind)),
        None => State::not_run("an input was not available"),
    };
    let run: TaskRun<()> = never_ran_node(cx, node, opts, state);
    run.state
}
