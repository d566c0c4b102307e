//! Subflows: a `#[flow]` called inside another flow's body runs as a child flow run, linked to
//! its parent (run id and node) in the report and the run history.
//!
//! Calling a flow returns a [`FlowCall`]: awaited on its own it is a top-level flow run; as a
//! statement of a flow body (`let y = child(2)?;`) it is a node of the parent's graph whose
//! state is the child run's final state; awaited in glue code it is a child run too, reported
//! as a task run of the parent that is not a node of its graph.

use crate::driver::IntoNode;
use crate::flow::{CancelHandle, FlowCtx, FlowDef, FlowRun, RunConfig, RunEvent};
use crate::graph::NodeKind;
use crate::state::{State, StateKind, TaskRunId};
use crate::task::{BoxFuture, Task, TaskError, TaskOptions, TaskRun, TaskRunReport};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use uuid::Uuid;

type Start<R> = Box<dyn FnOnce(RunConfig) -> BoxFuture<'static, FlowRun<R>> + Send>;

/// What `#[flow]` implements for its companion type: the flow's return type, definition and
/// output as a node.
#[doc(hidden)]
pub trait FlowFn: Task {
    /// What the body returns.
    type Return: Send + 'static;
    /// The flow's definition.
    fn def() -> &'static FlowDef;
    /// The node's output: the body's value, or the `Ok` value of a `Result`.
    fn value(r: Self::Return) -> Option<Self::Output>;
}

/// A flow called with its parameters, not yet running: what calling a `#[flow]` function
/// returns. Await it for the [`FlowRun`]; inside another flow's body it runs as that flow's
/// subflow (a child run with its own id, linked to the parent).
///
/// ```
/// use weft::prelude::*;
///
/// #[task] fn double(x: u32) -> u32 { x * 2 }
///
/// #[flow]
/// async fn child(x: u32) -> u32 {
///     let y = double(x)?;
///     y
/// }
///
/// #[flow]
/// async fn parent() -> u32 {
///     let a = child(1)?;     // a node of `parent`'s graph: a child flow run
///     let b = child(a)?;
///     b + 1
/// }
///
/// # #[tokio::main] async fn main() {
/// let run = parent().await;
/// assert_eq!(run.result, Ok(5));
/// assert_eq!(run.subflows.len(), 2);
/// assert_eq!(run.subflows[0].parent, Some((run.id, 0)));
/// assert_eq!(run.subflows[1].task_runs[0].task, "double");
/// # }
/// ```
#[must_use = "a flow call does nothing until it is awaited"]
pub struct FlowCall<F: FlowFn> {
    start: Option<Start<F::Return>>,
    config: RunConfig,
    running: Option<BoxFuture<'static, FlowRun<F::Return>>>,
}

impl<F: FlowFn> FlowCall<F> {
    /// Generated code: `start` runs the flow with a configuration.
    #[doc(hidden)]
    pub fn __new(
        start: impl FnOnce(RunConfig) -> BoxFuture<'static, FlowRun<F::Return>> + Send + 'static,
    ) -> Self {
        FlowCall {
            start: Some(Box::new(start)),
            config: RunConfig::new(),
            running: None,
        }
    }

    /// Runs the flow with `config` (run id, option overrides, stores, sinks); the same as
    /// `my_flow::run_with(config, ..)`.
    pub fn with_config(mut self, config: RunConfig) -> Self {
        self.config = config;
        self
    }

    /// The flow's definition.
    pub fn definition(&self) -> &'static FlowDef {
        F::def()
    }

    fn take_start(&mut self) -> Start<F::Return> {
        self.start.take().expect("a flow call starts once")
    }
}

impl<F: FlowFn> Future for FlowCall<F> {
    type Output = FlowRun<F::Return>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FlowRun<F::Return>> {
        // `FlowCall` holds no self-references: every field is boxed or plain data.
        let this = &mut *self;
        if this.running.is_none() {
            let start = this.take_start();
            let config = std::mem::take(&mut this.config);
            let def = F::def();
            this.running = Some(match crate::flow::current() {
                // Awaited in a flow body's glue (or a task body): a child of that run.
                Some(parent) => Box::pin(async move {
                    let node = parent.next_unplanned_node();
                    run_child(&parent, node, def, start, config).await
                }),
                None => start(config),
            });
        }
        this.running.as_mut().expect("just set").as_mut().poll(cx)
    }
}

impl<F: FlowFn> IntoNode for FlowCall<F> {
    type Run = TaskRun<F::Output>;
    const OPTIONS: &'static TaskOptions = &F::OPTIONS;
    const KIND: NodeKind = NodeKind::Flow;
    async fn run(mut self, cx: &FlowCtx, node: u32) -> TaskRun<F::Output> {
        let start = self.take_start();
        let config = std::mem::take(&mut self.config);
        let def = F::def();
        let run = run_child(cx, node, def, start, config).await;
        let result = match run.result {
            Ok(r) if run.state.is_successful() => F::value(r).ok_or(()),
            _ => Err(()),
        };
        TaskRun {
            id: TaskRunId {
                flow_run_id: cx.run_id(),
                node,
                map_index: None,
            },
            task: def.name,
            started: Some(run.started),
            ended: run.ended,
            attempts: 1,
            result: result.map_err(|()| TaskError {
                task: def.name,
                state: run.state.clone(),
            }),
            state: run.state,
        }
    }
}

/// The id of the child run at `node` of run `parent`: derived from both, so resuming the
/// parent resumes its children under their ids too.
pub(crate) fn child_run_id(parent: Uuid, node: u32) -> Uuid {
    let mut h = blake3::Hasher::new();
    h.update(b"weft subflow");
    h.update(parent.as_bytes());
    h.update(&node.to_le_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&h.finalize().as_bytes()[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Runs a child flow of `parent` at `node`: the child inherits the parent's history store,
/// result store, event sinks and cancellation, and is reported as the node's task run.
async fn run_child<R: Send + 'static>(
    parent: &FlowCtx,
    node: u32,
    def: &'static FlowDef,
    start: Start<R>,
    config: RunConfig,
) -> FlowRun<R> {
    let id = TaskRunId {
        flow_run_id: parent.run_id(),
        node,
        map_index: None,
    };
    let running = State::of(StateKind::Running);
    let started = running.timestamp;
    emit(parent, id, def.name, running);
    let run = start(parent.child_config(node, config)).await;
    emit(parent, id, def.name, run.state.clone());
    parent.record(
        TaskRunReport {
            id,
            task: def.name,
            state: run.state.clone(),
            attempts: 1,
            started: Some(started),
            ended: Some(run.ended),
            cache_key: None,
            result_key: None,
        },
        0,
    );
    parent.add_subflow(run.summary());
    run
}

fn emit(cx: &FlowCtx, id: TaskRunId, name: &'static str, state: State) {
    if cx.has_sinks() {
        cx.emit(&RunEvent {
            flow_run_id: cx.run_id(),
            flow: cx.flow_name(),
            task_run_id: Some(id),
            name,
            state,
            attempt: 1,
        });
    }
}

impl FlowCtx {
    /// The configuration of a child run at `node`: `config` as the caller gave it, completed
    /// with what the child inherits from this run.
    pub(crate) fn child_config(&self, node: u32, mut config: RunConfig) -> RunConfig {
        let id = config
            .run_id
            .unwrap_or_else(|| child_run_id(self.run_id(), node));
        config.run_id = Some(id);
        config.resume |= self.restores();
        config.parent = Some((self.run_id(), node));
        if config.persist.is_none() && self.persists() {
            config.persist = Some(true);
        }
        if config.results.is_none() {
            config.results = Some(self.results_arc());
        }
        #[cfg(feature = "history")]
        if matches!(config.history, crate::flow::HistoryChoice::Default) {
            config.history = match self.history_store() {
                Some(store) => crate::flow::HistoryChoice::To(store),
                None => crate::flow::HistoryChoice::Off,
            };
        }
        config.sinks.extend(self.sinks().iter().cloned());
        if let (None, Some(flag)) = (&config.cancel, self.cancel_arc()) {
            let grace = self.grace();
            config = config.cancel_with(&CancelHandle::from_flag(flag));
            if !grace.is_zero() {
                config.cancel_grace = grace;
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids_are_stable_and_distinct() {
        let p = Uuid::new_v4();
        assert_eq!(child_run_id(p, 3), child_run_id(p, 3));
        assert_ne!(child_run_id(p, 3), child_run_id(p, 4));
        assert_ne!(child_run_id(p, 3), child_run_id(Uuid::new_v4(), 3));
        assert_eq!(child_run_id(p, 3).get_version_num(), 4);
    }

    #[test]
    fn flow_calls_are_send() {
        fn is_send<T: Send>() {}
        struct F;
        impl Task for F {
            const OPTIONS: TaskOptions = TaskOptions::named("f");
            type Output = u32;
        }
        impl FlowFn for F {
            type Return = u32;
            fn def() -> &'static FlowDef {
                unreachable!()
            }
            fn value(r: u32) -> Option<u32> {
                Some(r)
            }
        }
        is_send::<FlowCall<F>>();
    }
}
