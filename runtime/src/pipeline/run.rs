//! Running a pipeline on the engine: its nodes become task runs of a flow run whose graph was
//! built at run time, with the same states, retries, handlers, concurrency limit, fail_fast and
//! run history as a `#[flow]`.

use super::argv::analyze;
use super::file::{NodeCommand, Pipeline};
use super::params::{
    param_env, parse_template, render_argv, show_str, ParamErrors, ParamValues, Part,
};
use super::shell::{self, ShellCommand, ShellOutcome, ShellSpec};
use crate::flow::{CancelHandle, FlowDef, FlowError, FlowRun, RunConfig};
use crate::graph::{Edge, EdgeKind, FlowGraph, Node, NodeKind};
use crate::state::{StateKind, TaskRunId};
use crate::task::{Attempt, BoxFuture, Task, TaskBody, TaskOptions, TaskRun};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// What one node of a pipeline run did: the command as rendered and its outcome (None: the node
/// never started).
#[derive(Debug, Clone)]
pub struct NodeOutput {
    /// The node's id.
    pub id: String,
    /// The command after parameters were filled in.
    pub command: String,
    /// The last attempt's outcome: exit code, output, timing.
    pub outcome: Option<ShellOutcome>,
}

/// Every node's output, in the file's order: the value of a pipeline's [`FlowRun`].
pub type PipelineOutputs = Vec<NodeOutput>;

/// A shell node as a task of the engine: its options come from the file, not from `#[task]`.
struct ShellNode;

/// Bytes of each stream the run history keeps (the rest goes to the result store).
const HISTORY_OUTPUT: usize = 1 << 20;
/// Bytes of each stream a node's runner keeps in memory.
const NODE_OUTPUT: usize = 64 << 20;

/// Node runners still stopping their process group after their run was cancelled.
type Stopping = Arc<Mutex<Vec<tokio::task::JoinHandle<Result<ShellOutcome, String>>>>>;

#[derive(Clone)]
struct NodeArgs {
    node: u32,
    id: Arc<str>,
    spec: Arc<ShellSpec>,
    slot: Arc<Mutex<Option<ShellOutcome>>>,
    stopping: Stopping,
}

impl Task for ShellNode {
    const OPTIONS: TaskOptions = TaskOptions::named("shell node");
    type Output = ();
}

impl TaskBody<NodeArgs> for ShellNode {
    fn next_args(args: &mut Option<NodeArgs>, _last: bool) -> NodeArgs {
        args.clone().expect("arguments are taken once per attempt")
    }
    fn attempt<'a>(args: NodeArgs) -> BoxFuture<'a, Attempt<()>>
    where
        NodeArgs: 'a,
    {
        Box::pin(async move {
            // fail_fast stops the node through its run's cancel flag: the process group is
            // killed, not just forgotten.
            let cx = crate::flow::current();
            let run_cx = cx.clone();
            let cancel = async move {
                match cx.as_ref().and_then(|c| c.cancel_flag()) {
                    Some(flag) => flag.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            // On a task of its own: starting a process blocks its thread until the child is
            // launched, and the flow's driver would start every node from one thread.
            // The engine drops the attempt when the run is cancelled: the runner then goes on
            // alone, giving the group SIGTERM and, after the grace, SIGKILL (the run waits for
            // it before it returns). Dropped for any other reason, the runner is aborted and
            // kills the group at once.
            let spec = args.spec.clone();
            let mut spawned = Runner {
                handle: Some(tokio::spawn(async move { shell::run(&spec, cancel).await })),
                cx: run_cx,
                stopping: args.stopping.clone(),
            };
            let handle = spawned.handle.as_mut().expect("set above");
            let outcome = match handle.await {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => return Attempt::Fail(e),
                Err(e) => return Attempt::Panic(e.to_string()),
            };
            let attempt = if outcome.success() {
                Attempt::Ok(())
            } else if outcome.timed_out {
                Attempt::TimedOut(format!(
                    "timed out after {}; its process group was killed",
                    humantime::format_duration(args.spec.timeout)
                ))
            } else {
                Attempt::Fail(failure_message(&outcome))
            };
            if let Some(history) = crate::store::record::current() {
                // The history keeps the first MiB of each stream; a longer one goes whole to the
                // run's result store.
                let mut keys = [None, None];
                if let Some(cx) = crate::flow::current() {
                    for (slot, (name, bytes)) in keys
                        .iter_mut()
                        .zip([("stdout", &outcome.stdout), ("stderr", &outcome.stderr)])
                    {
                        if bytes.len() > HISTORY_OUTPUT {
                            let key = format!("runs/{}/{}.{name}", cx.run_id(), args.id);
                            let entry = crate::results::encode_entry(bytes, None);
                            match cx.results().put(&key, entry).await {
                                Ok(()) => *slot = Some(key),
                                Err(e) => tracing::warn!(
                                    target: "weft",
                                    "Task '{}': could not keep its whole {name} at {key} ({e})",
                                    args.id
                                ),
                            }
                        }
                    }
                }
                history.node_output(args.node, &outcome, HISTORY_OUTPUT, keys);
            }
            *args.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
            attempt
        })
    }
}

/// A spawned node process runner: aborted with the attempt that awaits it, unless the run was
/// cancelled (then it stops its group gracefully, and the run waits for it).
struct Runner {
    handle: Option<tokio::task::JoinHandle<Result<ShellOutcome, String>>>,
    cx: Option<Arc<crate::flow::FlowCtx>>,
    stopping: Stopping,
}

impl Drop for Runner {
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        if handle.is_finished() {
            return;
        }
        if self.cx.as_ref().is_some_and(|cx| cx.is_cancelled()) {
            self.stopping
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle);
        } else {
            handle.abort();
        }
    }
}

/// A spawned task, aborted when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `exit code 2: <last line of stderr>`.
fn failure_message(o: &ShellOutcome) -> String {
    let status = match (o.exit_code, o.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "ended without an exit code".to_owned(),
    };
    let err = o.stderr_lossy();
    match err.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!("{status}: {}", line.trim()),
        None => status,
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The flow definition of a pipeline version, built once per process (its graph and names live
/// as long as the program, as a `#[flow]`'s do).
pub(super) fn definition(p: &Pipeline) -> &'static FlowDef {
    static DEFS: OnceLock<Mutex<HashMap<String, &'static FlowDef>>> = OnceLock::new();
    let defs = DEFS.get_or_init(Default::default);
    let key = format!("{}:{}", p.name, p.hash);
    if let Some(def) = defs.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return def;
    }
    let graph: &'static FlowGraph = Box::leak(Box::new(graph_of(p)));
    let def: &'static FlowDef = Box::leak(Box::new(FlowDef {
        name: leak(&p.name),
        fail_fast: p.fail_fast,
        max_concurrency: Some(p.workers.max(1)),
        persist: false,
        state_handlers: &[],
        version: Some(leak(&p.hash[..p.hash.len().min(12)])),
        graph,
    }));
    defs.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, def);
    def
}

/// The pipeline's graph: a task node per pipeline node, an ordering edge per `next`.
pub(crate) fn graph_of(p: &Pipeline) -> FlowGraph {
    let nodes: Vec<Node> = p
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Node {
            id: i as u32,
            kind: NodeKind::Task,
            task: n.id.clone().into(),
            binding: None,
            statement: match &n.run {
                NodeCommand::Argv(argv) => argv.join(" ").into(),
                NodeCommand::Script(s) => s.trim().to_owned().into(),
            },
            line: 0,
        })
        .collect();
    let edges: Vec<Edge> = p
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            n.upstream.iter().map(move |&u| Edge {
                from: u as u32,
                to: i as u32,
                kind: EdgeKind::Order,
                binding: None,
            })
        })
        .collect();
    FlowGraph {
        name: p.name.clone().into(),
        nodes: nodes.into(),
        edges: edges.into(),
    }
}

impl Pipeline {
    /// The pipeline's graph (DOT, Mermaid, SVG through [`FlowGraph`]'s methods).
    pub fn graph(&self) -> FlowGraph {
        graph_of(self)
    }

    /// Runs the pipeline with resolved parameters (see [`super::params::resolve`]).
    pub async fn run(&self, params: &ParamValues) -> FlowRun<PipelineOutputs> {
        self.run_with(RunConfig::new(), params).await
    }

    /// Checks where each value lands in each `command`: a value that would begin an argument
    /// (its placeholder starts the argument) and starts with `-` would read as an option of the
    /// program (`sort -u {f}` with `-o/tmp/x` writes a file). It is refused unless a `--`
    /// argument comes before it (after the program that finally runs, past wrappers such as
    /// `env` or `sudo`), or its parameter may start with `-` (see
    /// [`ParamSpec::may_start_with_dash`](super::ParamSpec::may_start_with_dash):
    /// `allow_leading_dash = true`, a `choice`, a number with a negative `min`).
    ///
    /// [`Pipeline::run_with`] runs no node when this fails; the command line refuses the run
    /// before it starts.
    pub fn check_values(&self, values: &ParamValues) -> Result<(), ParamErrors> {
        let refused = self.leading_dashes(values);
        if refused.is_empty() {
            Ok(())
        } else {
            Err(ParamErrors(refused.into_iter().map(|r| r.1).collect()))
        }
    }

    /// The values of a run, from values given by name (JSON values, or their text as
    /// `--param NAME=VALUE` gives it): checked against the schema with defaults filled
    /// ([`resolve`](super::params::resolve), which asks `prompt` for a missing required value),
    /// then where they land in commands ([`Pipeline::check_values`]). What `weft pipeline run`
    /// and the server check before a run is queued; every problem at once, one message each.
    ///
    /// ```
    /// use weft::pipeline::Pipeline;
    /// let p = Pipeline::from_toml("name = \"p\"\n[params.n]\ntype = \"int\"\nmin = 1\n\
    ///     [[nodes]]\nid = \"a\"\ncommand = [\"echo\", \"{n}\"]\n", "p.toml").unwrap();
    /// assert!(p.values_for(&[("n".into(), "2".into())], None).is_ok());
    /// let e = p.values_for(&[("n".into(), "0".into())], None).unwrap_err();
    /// assert_eq!(e.0, ["parameter `n`: 0 is less than the minimum 1"]);
    /// ```
    #[allow(clippy::type_complexity)] // the prompt `resolve` takes
    pub fn values_for(
        &self,
        given: &[(String, serde_json::Value)],
        prompt: Option<&mut dyn FnMut(&super::ParamSpec) -> Option<String>>,
    ) -> Result<ParamValues, ParamErrors> {
        let values = super::params::resolve(&self.params, given, prompt)?;
        self.check_values(&values)?;
        Ok(values)
    }

    /// (node index, message) for each argument a value would turn into an option.
    fn leading_dashes(&self, values: &ParamValues) -> Vec<(usize, String)> {
        let mut refused = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let NodeCommand::Argv(argv) = &node.run else {
                continue;
            };
            let program = analyze(argv).program;
            let dashes = argv
                .iter()
                .enumerate()
                .skip(program + 1)
                .find(|(_, a)| a.as_str() == "--")
                .map(|(k, _)| k);
            for (k, arg) in argv.iter().enumerate().skip(1) {
                if dashes.is_some_and(|d| k > d) {
                    break;
                }
                let Ok(parts) = parse_template(arg) else {
                    continue;
                };
                for part in parts {
                    let name = match part {
                        Part::Text(t) if t.is_empty() => continue,
                        Part::Text(_) => break,
                        Part::Param { name, .. } => name,
                    };
                    let Some(text) = values.get(&name).map(|v| v.to_string()) else {
                        break;
                    };
                    if text.is_empty() {
                        continue;
                    }
                    let allowed = self
                        .params
                        .iter()
                        .find(|p| p.name == name)
                        .is_some_and(|p| p.may_start_with_dash());
                    if text.starts_with('-') && !allowed {
                        refused.push((
                            i,
                            format!(
                                "parameter `{name}`: the value {} would begin argument {k} ({}) of node `{}` and read as an option; nothing ran. Put \"--\" before it in the node's `command` if the program takes it, or set `allow_leading_dash = true` in [params.{name}] if an option is meant",
                                show_str(&text),
                                show_str(arg),
                                node.id
                            ),
                        ));
                    }
                    break;
                }
            }
        }
        refused
    }

    /// Runs the pipeline like [`Pipeline::run_with`], stopping it on `SIGINT` (Ctrl-C) or
    /// `SIGTERM`: the first signal cancels the run (each running node's process group gets
    /// `SIGTERM`, then `SIGKILL` after its grace; no new node starts; the run and its nodes end
    /// Cancelled in the history); a second one kills every node's group with `SIGKILL` at once.
    /// Returns the run and the first signal, if one came (exit with [`Stop::exit_code`]).
    ///
    /// The signals are handled from the call until it returns (the default action, ending the
    /// program at once, is replaced for the rest of the process, as with `tokio::signal`).
    pub async fn run_until_stopped(
        &self,
        config: RunConfig,
        params: &ParamValues,
    ) -> (FlowRun<PipelineOutputs>, Option<Stop>) {
        let handle = CancelHandle::new();
        // Long enough for every node's SIGTERM grace and SIGKILL, so that each is recorded.
        let config = config
            .cancel_with(&handle)
            .cancel_grace(super::shell::DEFAULT_KILL_GRACE + std::time::Duration::from_secs(5));
        let stop: Arc<Mutex<Option<Stop>>> = Arc::default();
        let listener = match signals() {
            Ok(mut signals) => {
                let stop = stop.clone();
                Some(AbortOnDrop(tokio::spawn(async move {
                    let first = signals.next().await;
                    *stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(first);
                    tracing::warn!(
                        target: "weft",
                        "{}: cancelling the run (again to kill its nodes at once)",
                        first.name()
                    );
                    handle.cancel(format!("interrupted by {}", first.name()));
                    loop {
                        let again = signals.next().await;
                        let n = super::shell::kill_all_now();
                        tracing::warn!(
                            target: "weft",
                            "{}: killed {n} node process group(s) at once",
                            again.name()
                        );
                    }
                })))
            }
            Err(e) => {
                tracing::warn!(target: "weft", "cannot handle SIGINT/SIGTERM: {e}");
                None
            }
        };
        let run = self.run_with(config, params).await;
        drop(listener);
        let stop = *stop.lock().unwrap_or_else(|e| e.into_inner());
        (run, stop)
    }

    /// Runs the pipeline with a [`RunConfig`] (workers as `max_concurrency`, `fail_fast`,
    /// history, cancel handle...). When a value would become an option
    /// ([`Pipeline::check_values`]), no node runs: the nodes it concerns end Failed, the others
    /// NotRun, each with the reason.
    pub async fn run_with(
        &self,
        config: RunConfig,
        params: &ParamValues,
    ) -> FlowRun<PipelineOutputs> {
        let refused = self.leading_dashes(params);
        let refused = (!refused.is_empty()).then(|| {
            let mut which = vec![false; self.nodes.len()];
            for (i, _) in &refused {
                which[*i] = true;
            }
            let why = refused
                .into_iter()
                .map(|r| r.1)
                .collect::<Vec<_>>()
                .join("; ");
            (which, why)
        });
        let def = definition(self);
        let config = if config.records_history() {
            config.with_params_json(params.to_json().to_string())
        } else {
            config
        };
        // Every node's command, rendered before anything runs; a node whose placeholders do
        // not render fails without starting.
        let env = param_env(params);
        let stopping: Stopping = Arc::default();
        let nodes: Vec<PreparedNode> = self
            .nodes
            .iter()
            .map(|n| {
                let rendered = match &n.run {
                    NodeCommand::Argv(argv) => render_argv(argv, params).map(ShellCommand::Argv),
                    NodeCommand::Script(s) => Ok(ShellCommand::Script(s.clone())),
                };
                let mut node_env = env.clone();
                node_env.extend(n.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                let options = TaskOptions {
                    retries: n.retries,
                    retry_delay: n.retry_delay,
                    ..TaskOptions::named(leak(&n.id))
                };
                PreparedNode {
                    id: n.id.clone(),
                    upstream: n.upstream.clone(),
                    options,
                    command: rendered.map(|command| {
                        let mut spec = ShellSpec::new(command, n.timeout);
                        spec.output_cap = NODE_OUTPUT;
                        spec.env = node_env;
                        // A relative workdir is read from the pipeline file's folder.
                        spec.workdir = n.workdir.as_ref().map(|w| match &self.source {
                            Some(src) if w.is_relative() => {
                                src.parent().map_or_else(|| w.clone(), |dir| dir.join(w))
                            }
                            _ => w.clone(),
                        });
                        Arc::new(spec)
                    }),
                    slot: Arc::new(Mutex::new(None)),
                    stopping: stopping.clone(),
                }
            })
            .collect();
        let nodes = Arc::new(nodes);
        let driver_nodes = nodes.clone();
        let pipeline = self.clone();
        let run = crate::flow::run_flow(
            def,
            config,
            |_| None,
            move |cx| async move {
                if let Some(history) = crate::store::record::current() {
                    history.pipeline(&pipeline);
                }
                match &refused {
                    None => drive(&cx, &driver_nodes).await,
                    Some((which, why)) => refuse(&cx, &driver_nodes, which, why),
                }
                Ok::<_, FlowError>(())
            },
        )
        .await;
        // Cancelled nodes' groups are still being stopped: wait until none is left.
        loop {
            let next = stopping.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match next {
                Some(handle) => {
                    let _ = handle.await;
                }
                None => break,
            }
        }
        run.map_value(|()| outputs(&nodes))
    }
}

struct PreparedNode {
    id: String,
    upstream: Vec<usize>,
    options: TaskOptions,
    command: Result<Arc<ShellSpec>, String>,
    slot: Arc<Mutex<Option<ShellOutcome>>>,
    stopping: Stopping,
}

/// Records every node as never started: Failed where a value was refused, NotRun elsewhere.
fn refuse(cx: &Arc<crate::flow::FlowCtx>, nodes: &[PreparedNode], which: &[bool], why: &str) {
    for (i, p) in nodes.iter().enumerate() {
        let state = if which[i] {
            crate::state::State::failed(why.to_owned())
        } else {
            crate::state::State::not_run(format!("not started: {why}"))
        };
        let _: TaskRun<()> = crate::engine::never_run(
            cx,
            TaskRunId {
                flow_run_id: cx.run_id(),
                node: i as u32,
                map_index: None,
            },
            p.options.name,
            &[],
            state,
        );
    }
}

/// The signal that stopped a run ([`Pipeline::run_until_stopped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `SIGINT` (Ctrl-C).
    Interrupt,
    /// `SIGTERM`.
    Terminate,
}

impl Stop {
    /// `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        }
    }

    /// The conventional exit status of a program stopped by this signal: 128 + its number
    /// (130 for SIGINT, 143 for SIGTERM).
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }
}

/// SIGINT and SIGTERM, listened to from the moment this returns.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

fn signals() -> std::io::Result<Signals> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }
    #[cfg(not(unix))]
    {
        Ok(Signals {})
    }
}

impl Signals {
    async fn next(&mut self) -> Stop {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => Stop::Interrupt,
                _ = self.term.recv() => Stop::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stop::Interrupt
        }
    }
}

fn outputs(nodes: &[PreparedNode]) -> PipelineOutputs {
    nodes
        .iter()
        .map(|n| NodeOutput {
            id: n.id.clone(),
            command: match &n.command {
                Ok(spec) => spec.command.display_line(),
                Err(e) => format!("<not rendered: {e}>"),
            },
            outcome: n.slot.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
        .collect()
}

/// Starts each node once all its upstream nodes Completed; a node with an upstream that did not
/// is NotRun. The flow's semaphore bounds how many run at once (the pipeline's workers).
async fn drive(cx: &Arc<crate::flow::FlowCtx>, nodes: &[PreparedNode]) {
    let n = nodes.len();
    let mut state: Vec<Option<StateKind>> = vec![None; n];
    let mut waiting: Vec<usize> = nodes.iter().map(|p| p.upstream.len()).collect();
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, p) in nodes.iter().enumerate() {
        for &u in &p.upstream {
            downstream[u].push(i);
        }
    }
    let mut running = FuturesUnordered::new();
    let start = |i: usize| {
        let p = &nodes[i];
        let id = TaskRunId {
            flow_run_id: cx.run_id(),
            node: i as u32,
            map_index: None,
        };
        async move {
            let run: TaskRun<()> = match &p.command {
                Ok(spec) => {
                    let args = NodeArgs {
                        node: i as u32,
                        id: p.id.as_str().into(),
                        spec: spec.clone(),
                        slot: p.slot.clone(),
                        stopping: p.stopping.clone(),
                    };
                    crate::engine::execute::<ShellNode, NodeArgs>(cx, id, args, false, &p.options)
                        .await
                }
                Err(why) => crate::engine::never_run(
                    cx,
                    id,
                    p.options.name,
                    &[],
                    crate::state::State::failed(why.clone()),
                ),
            };
            (i, run.state.kind)
        }
    };
    for (i, _) in waiting.iter().enumerate().filter(|(_, w)| **w == 0) {
        running.push(start(i));
    }
    while let Some((i, kind)) = running.next().await {
        state[i] = Some(kind);
        let mut settle = vec![i];
        while let Some(done) = settle.pop() {
            for &d in &downstream[done] {
                waiting[d] -= 1;
                if waiting[d] > 0 || state[d].is_some() {
                    continue;
                }
                let blocked = nodes[d]
                    .upstream
                    .iter()
                    .find(|&&u| state[u] != Some(StateKind::Completed));
                let why = match blocked {
                    None if !cx.is_cancelled() => {
                        running.push(start(d));
                        continue;
                    }
                    None => crate::state::State::cancelled(cx.cancel_reason()),
                    Some(&u) => crate::state::State::not_run(format!(
                        "upstream '{}' ended {}",
                        nodes[u].id,
                        state[u].map_or("unfinished".to_owned(), |k| k.to_string())
                    )),
                };
                let run: TaskRun<()> = crate::engine::never_run(
                    cx,
                    TaskRunId {
                        flow_run_id: cx.run_id(),
                        node: d as u32,
                        map_index: None,
                    },
                    nodes[d].options.name,
                    &[],
                    why,
                );
                state[d] = Some(run.state.kind);
                settle.push(d);
            }
        }
    }
}
