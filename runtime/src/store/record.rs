//! The engine's side of run history: one recorder per flow run turns its events, task reports
//! and log lines into queued rows.

use super::writer::{micros, Change, FlowRow, Op, RunStart, TaskOp};
#[cfg(feature = "pipeline")]
use super::{
    writer::{NodeOutputRow, PipelineRow},
    NodeOutputRecord,
};
use super::{HistoryReport, Store};
use crate::flow::RunEvent;
use crate::graph::FlowGraph;
use crate::state::StateKind;
use crate::task::TaskRunReport;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Records one flow run into a store.
pub(crate) struct Recorder {
    store: Store,
    run: Uuid,
}

/// Bits of a task run row's `lifecycle_in_row`: its Pending, first Running and final state are
/// read back from the row (migration 5)...
pub(crate) const IN_ROW: u8 = 1;
/// ...and so are its "Starting task run..." line, at `started`...
pub(crate) const LINE_START: u8 = 2;
/// ...and its "Finished task run ... final state" line, at `ended` (migration 6).
pub(crate) const LINE_END: u8 = 4;

std::thread_local! {
    /// The history layer took a lifecycle line (see [`line_taken`]).
    static LINE_TAKEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The history layer saw a task run's lifecycle line on this thread: the row will stand for it.
pub(crate) fn take_line() {
    LINE_TAKEN.with(|t| t.set(true));
}

/// Whether the line just logged on this thread was taken by the history layer (then it is not
/// stored as a log row: the task run's row stands for it).
pub(crate) fn line_taken() -> bool {
    LINE_TAKEN.with(|t| t.replace(false))
}

/// Recorders alive: while none is, log lines skip the history layer entirely.
static RECORDING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// True while some flow run is being recorded.
pub(crate) fn recording() -> bool {
    RECORDING.load(std::sync::atomic::Ordering::Relaxed) > 0
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.store.queue().forget(self.run);
        RECORDING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Recorder {
    /// The store this run is recorded into.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Queues the flow (graph under its version) and the run's first row.
    pub(crate) fn start(
        store: Store,
        run: Uuid,
        graph: &'static FlowGraph,
        version: Option<&'static str>,
        params: String,
        parent: Option<(Uuid, u32)>,
    ) -> Arc<Recorder> {
        let (version, graph_json) = flow_version(graph, version);
        let at = micros(Utc::now());
        let q = store.queue();
        q.push(Op::Flow(Box::new(FlowRow {
            name: graph.name.to_string(),
            version: version.to_string(),
            graph: graph_json.to_string(),
            at,
        })));
        q.push(Op::RunStarted(Box::new(RunStart {
            run,
            flow: graph.name.to_string(),
            version: version.to_string(),
            params,
            parent,
            at,
        })));
        RECORDING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(Recorder { store, run })
    }

    /// A state change of the flow run or one of its task runs. A task run's ordinary
    /// lifecycle (Pending, its first Running, its final state) lives in its row; only the
    /// changes that row cannot tell (retries, later attempts, messages on the way...) are rows
    /// of their own.
    pub(crate) fn event(&self, e: &RunEvent) {
        let q = self.store.queue();
        let at = micros(e.state.timestamp);
        let kind = e.state.kind;
        let message = || e.state.message.as_deref().map(|m| cap(m).into_boxed_str());
        let Some(id) = e.task_run_id else {
            q.push(Op::Change(Change {
                run: self.run,
                seq: q.next_seq(),
                node: None,
                map_index: None,
                name: e.name,
                state: kind,
                message: message(),
                attempt: e.attempt,
                at,
            }));
            q.push(Op::RunState {
                run: self.run,
                state: kind,
                message: message(),
                at,
            });
            return;
        };
        let plain = e.state.message.is_none();
        let scheduled = kind == StateKind::Pending && e.attempt == 0 && plain;
        let started = kind == StateKind::Running && e.attempt <= 1 && plain;
        let ended = kind.is_final();
        if !(scheduled || started || ended) {
            q.push(Op::Change(Change {
                run: self.run,
                seq: q.next_seq(),
                node: Some(id.node),
                map_index: id.map_index,
                name: e.name,
                state: kind,
                message: message(),
                attempt: e.attempt,
                at,
            }));
        }
        q.push(Op::Task(TaskOp {
            run: self.run,
            node: id.node,
            map_index: id.map_index,
            task: e.name,
            state: kind,
            attempts: e.attempt,
            message: message(),
            scheduled: scheduled.then_some(at),
            started: started.then_some(at),
            ended: ended.then_some(at),
            keys: None,
            lifecycle: IN_ROW,
            event: true,
        }));
    }

    /// A task run's final report: timing, attempts, cache key and result location; `lines`
    /// says which of its lifecycle lines its row stands for ([`LINE_START`], [`LINE_END`]).
    pub(crate) fn task_report(&self, r: &TaskRunReport, lines: u8) {
        let keys = (r.cache_key.is_some() || r.result_key.is_some())
            .then(|| Box::new((r.cache_key.clone(), r.result_key.clone())));
        self.store.queue().push(Op::Task(TaskOp {
            run: self.run,
            node: r.id.node,
            map_index: r.id.map_index,
            task: r.task,
            state: r.state.kind,
            attempts: r.attempts,
            message: r.state.message.as_deref().map(|m| cap(m).into_boxed_str()),
            scheduled: None,
            started: r.started.map(micros),
            ended: r.ended.map(micros),
            keys,
            lifecycle: lines,
            event: false,
        }));
    }

    /// A pipeline node's command and outcome (its last attempt's): at most `keep` bytes of each
    /// stream; `keys` say where the whole streams went when they were longer.
    #[cfg(feature = "pipeline")]
    pub(crate) fn node_output(
        &self,
        node: u32,
        o: &crate::pipeline::shell::ShellOutcome,
        keep: usize,
        keys: [Option<String>; 2],
    ) {
        let [stdout_key, stderr_key] = keys;
        self.store
            .queue()
            .push(Op::NodeOutput(Box::new(NodeOutputRow {
                run: self.run,
                rec: NodeOutputRecord {
                    node,
                    command: o.command_line.clone(),
                    exit_code: o.exit_code,
                    signal: o.signal,
                    stdout: o.stdout[..o.stdout.len().min(keep)].to_vec(),
                    stderr: o.stderr[..o.stderr.len().min(keep)].to_vec(),
                    stdout_total: o.stdout_total,
                    stderr_total: o.stderr_total,
                    stdout_key,
                    stderr_key,
                    started: o.started,
                    ended: o.ended,
                },
            })));
    }

    /// The pipeline file a run runs (once per version in the store).
    #[cfg(feature = "pipeline")]
    pub(crate) fn pipeline(&self, p: &crate::pipeline::Pipeline) {
        self.store.queue().push(Op::Pipeline(Box::new(PipelineRow {
            name: p.name.clone(),
            version: p.hash[..p.hash.len().min(12)].to_owned(),
            source: p.text.clone(),
            path: p.source.as_ref().map(|s| s.display().to_string()),
            at: micros(Utc::now()),
        })));
    }

    /// A log line emitted while the run was being driven.
    pub(crate) fn log(&self, level: &'static str, message: String) {
        let q = self.store.queue();
        q.push(Op::Log {
            run: self.run,
            seq: q.next_seq(),
            at: micros(Utc::now()),
            level,
            message: cap_owned(message).into_boxed_str(),
        });
    }

    /// Waits (at most the store's flush timeout) for everything queued for this run.
    pub(crate) async fn finish(&self) -> HistoryReport {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.store.queue().push(Op::Flush {
            run: self.run,
            done,
        });
        let limit = self.store.options().flush_timeout;
        let mut report = HistoryReport {
            store: self.store.url().to_owned(),
            recorded: 0,
            lost: 0,
            confirmed: false,
            error: None,
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(t)) => {
                report.recorded = t.recorded;
                report.lost = t.lost;
                report.error = t.error;
                report.confirmed = true;
            }
            Ok(Err(_)) => {
                let t = self.store.queue().abandon(self.run);
                report.recorded = t.recorded;
                report.lost = t.lost;
                report.error = Some("the history writer stopped".to_owned());
            }
            Err(_) => {
                // What the writer has not confirmed by now counts as lost.
                let t = self.store.queue().abandon(self.run);
                report.recorded = t.recorded;
                report.lost = t.lost;
                report.error = Some(format!(
                    "the database did not confirm this run's history within {limit:?}; the rows \
                     not written by then are counted as lost (the writer keeps trying in the \
                     background)"
                ))
            }
        }
        report
    }
}

/// The most of one text (an error, a log line) the history keeps: longer ones are cut here, when
/// the row is made, so neither the queue nor the database holds more.
pub(crate) const MAX_TEXT: usize = 64 * 1024;

/// `s` cut to [`MAX_TEXT`] bytes on a char boundary, with a marker giving the full size.
pub(crate) fn cap(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [cut by weft's run history: {} bytes in all, the first {end} kept]",
        &s[..end],
        s.len()
    )
}

fn cap_owned(s: String) -> String {
    if s.len() <= MAX_TEXT {
        s
    } else {
        cap(&s)
    }
}

/// The flow's version (given, or a hash of its graph) and its graph as JSON; computed once per
/// graph.
fn flow_version(graph: &'static FlowGraph, given: Option<&'static str>) -> (Arc<str>, Arc<str>) {
    type Seen = Mutex<HashMap<usize, (Arc<str>, Arc<str>)>>;
    static SEEN: std::sync::OnceLock<Seen> = std::sync::OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let key = graph as *const FlowGraph as usize;
    if let Some(v) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return v.clone();
    }
    let json = serde_json::to_string(graph).unwrap_or_else(|_| "{}".to_owned());
    let version: Arc<str> = match given {
        Some(v) => v.into(),
        None => blake3::hash(json.as_bytes()).to_hex()[..12].into(),
    };
    let v = (version, Arc::<str>::from(json));
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, v.clone());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_on_a_char_boundary_and_say_their_size() {
        assert_eq!(cap("short"), "short");
        let exact = "x".repeat(MAX_TEXT);
        assert_eq!(cap(&exact), exact);
        // 3-byte chars: MAX_TEXT is not a multiple of 3.
        let long = "€".repeat(MAX_TEXT);
        let cut = cap(&long);
        assert!(cut.len() < MAX_TEXT + 100, "{}", cut.len());
        assert!(
            cut.contains(&format!("{} bytes in all", long.len())),
            "{}",
            &cut[cut.len() - 80..]
        );
        assert!(cut.starts_with("€€€"));
    }
}

std::thread_local! {
    /// The run whose code this thread runs outside the flow's driver (a sync task body).
    static BLOCKING_RUN: std::cell::RefCell<Option<Arc<Recorder>>> = const { std::cell::RefCell::new(None) };
}

/// The recorder of the run being driven here: the flow's tokio task, or a sync body's thread.
pub(crate) fn current() -> Option<Arc<Recorder>> {
    crate::flow::current_history().or_else(|| BLOCKING_RUN.with(|r| r.borrow().clone()))
}

/// Runs `body` with `recorder` as this thread's run: for log lines of sync task bodies, and of
/// the flow run's start and end, which happen outside its driver.
pub(crate) fn on_this_thread<T>(recorder: Option<Arc<Recorder>>, body: impl FnOnce() -> T) -> T {
    if recorder.is_none() {
        return body();
    }
    struct Reset(Option<Arc<Recorder>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let old = self.0.take();
            BLOCKING_RUN.with(|r| *r.borrow_mut() = old);
        }
    }
    let old = BLOCKING_RUN.with(|r| r.replace(recorder));
    let _reset = Reset(old);
    body()
}
