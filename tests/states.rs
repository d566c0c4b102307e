//! Final states of task and flow runs: retries, timeouts, panics, signals, triggers, handlers,
//! mapping and fail_fast.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft::prelude::*;

fn kind(run: &FlowRun<impl Sized>, task: &str) -> StateKind {
    run.task(task)
        .unwrap_or_else(|| panic!("no run of {task}"))
        .state
        .kind
}

// ---------- retries and timeouts

#[task(retries = 3, retry_delay = "20ms", retry_backoff = 2.0)]
async fn flaky(calls: &AtomicU32, stamps: &Mutex<Vec<Instant>>) -> Result<u32, String> {
    stamps.lock().unwrap().push(Instant::now());
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    if n < 3 {
        Err(format!("attempt {n} failed"))
    } else {
        Ok(n)
    }
}

#[tokio::test]
async fn retries_wait_with_backoff_and_count_attempts() {
    let calls = AtomicU32::new(0);
    let stamps = Mutex::new(Vec::new());
    let run = flaky(&calls, &stamps).await;
    assert_eq!(run.state.kind, StateKind::Completed);
    assert_eq!(run.attempts, 3);
    assert_eq!(run.result.unwrap(), 3);
    let s = stamps.lock().unwrap();
    assert!(
        s[1] - s[0] >= Duration::from_millis(20),
        "first retry waits retry_delay"
    );
    assert!(
        s[2] - s[1] >= Duration::from_millis(40),
        "second retry waits twice as long"
    );
}

#[task(retries = 2)]
async fn always_fails(calls: &AtomicU32) -> Result<(), String> {
    calls.fetch_add(1, Ordering::SeqCst);
    Err("Server not available. Status code: 503".into())
}

#[tokio::test]
async fn exhausted_retries_end_failed_with_the_last_message() {
    let calls = AtomicU32::new(0);
    let run = always_fails(&calls).await;
    assert_eq!(run.state.kind, StateKind::Failed);
    assert_eq!(
        run.state.message.as_deref(),
        Some("Server not available. Status code: 503")
    );
    assert_eq!(run.attempts, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let err = run.result.unwrap_err();
    assert_eq!(err.task, "always_fails");
    assert!(err
        .to_string()
        .contains("ended Failed('Server not available"));
}

#[task(timeout = "50ms", retries = 1)]
async fn hangs() -> u32 {
    tokio::time::sleep(Duration::from_secs(30)).await;
    1
}

#[task(timeout = "50ms")]
fn hangs_sync() -> u32 {
    std::thread::sleep(Duration::from_millis(300));
    1
}

#[tokio::test]
async fn timeouts_end_timed_out_and_are_retried() {
    let run = hangs().await;
    assert_eq!(run.state.kind, StateKind::TimedOut);
    assert_eq!(run.attempts, 2);
    assert_eq!(run.state.message.as_deref(), Some("timed out after 50ms"));
    let run = hangs_sync().await;
    assert_eq!(
        run.state.kind,
        StateKind::TimedOut,
        "a sync body's thread cannot be stopped, but the run ends"
    );
}

// ---------- panics, signals, skip propagation

#[task]
async fn explodes() -> u32 {
    panic!("kaboom")
}

#[task]
async fn plus_one(x: u32) -> u32 {
    x + 1
}

#[task]
async fn fine() -> u32 {
    7
}

#[flow]
async fn crashy() -> u32 {
    let a = explodes()?;
    let b = plus_one(a)?;
    let c = fine()?;
    b + c
}

#[tokio::test]
async fn a_panic_ends_crashed_dependents_not_run_and_the_rest_goes_on() {
    let run = crashy().await;
    assert_eq!(kind(&run, "explodes"), StateKind::Crashed);
    assert_eq!(
        run.task("explodes").unwrap().state.message.as_deref(),
        Some("kaboom")
    );
    assert_eq!(kind(&run, "plus_one"), StateKind::NotRun);
    assert_eq!(kind(&run, "fine"), StateKind::Completed);
    assert_eq!(run.state.kind, StateKind::Failed);
    // The body needed `b`, which never came.
    match run.result.unwrap_err() {
        FlowError::Upstream {
            binding,
            task,
            state,
        } => {
            assert_eq!(
                (binding, task, state.kind),
                ("b", "plus_one", StateKind::NotRun)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[task]
fn check(status: u16) -> Result<u16, Signal> {
    match status {
        200 => Ok(status),
        204 => Err(Signal::skip("no content today")),
        _ => Err(Signal::fail(format!(
            "Server not available. Status code: {status}"
        ))),
    }
}

#[task]
fn report(status: u16) -> String {
    format!("status {status}")
}

#[flow]
async fn monitor(status: u16) -> Option<String> {
    let s = check(status)?;
    let r = report(s)?;
    Some(r)
}

#[tokio::test]
async fn signals_fail_and_skip_and_skips_propagate() {
    let ok = monitor(200).await;
    assert_eq!(ok.result.unwrap(), Some("status 200".into()));

    let failed = monitor(503).await;
    assert_eq!(kind(&failed, "check"), StateKind::Failed);
    assert_eq!(
        failed.task("check").unwrap().state.message.as_deref(),
        Some("Server not available. Status code: 503")
    );
    assert_eq!(kind(&failed, "report"), StateKind::NotRun);
    assert!(!failed.is_successful());

    let skipped = monitor(204).await;
    assert_eq!(kind(&skipped, "check"), StateKind::Skipped);
    assert_eq!(
        kind(&skipped, "report"),
        StateKind::Skipped,
        "a skip skips data dependents"
    );
    assert_eq!(
        skipped.state.kind,
        StateKind::Skipped,
        "the body needed the skipped value: the run is Skipped, not Failed"
    );
    // The body needed the skipped value, so the run completes without one.
    assert!(matches!(
        skipped.result,
        Err(FlowError::Upstream {
            binding: "r",
            state: State {
                kind: StateKind::Skipped,
                ..
            },
            ..
        })
    ));
}

#[task(retries = 5)]
async fn retry_now(calls: &AtomicU32) -> Result<u32, Signal> {
    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(Signal::retry("not yet"));
    }
    Ok(1)
}

#[tokio::test]
async fn the_retry_signal_asks_for_another_attempt() {
    let calls = AtomicU32::new(0);
    let run = retry_now(&calls).await;
    assert_eq!((run.state.kind, run.attempts), (StateKind::Completed, 2));
}

// ---------- triggers and results without `?`

#[task(trigger = all_finished)]
async fn cleanup(seen: Result<u32, TaskError>) -> String {
    match seen {
        Ok(v) => format!("ok {v}"),
        Err(e) => format!("upstream said: {}", e.state.kind),
    }
}

#[task(trigger = any_failed)]
async fn on_failure() -> &'static str {
    "alerted"
}

#[task(trigger = always)]
async fn always_runs() -> u32 {
    1
}

#[flow]
async fn with_triggers(fail: bool) -> String {
    let a = maybe_fail(fail);
    let c = cleanup(a)?;
    #[wait_for(a)]
    let alert = on_failure();
    #[wait_for(a)]
    let _last = always_runs();
    let _ = alert;
    c
}

#[task]
async fn maybe_fail(fail: bool) -> Result<u32, String> {
    if fail {
        Err("no".into())
    } else {
        Ok(5)
    }
}

#[tokio::test]
async fn triggers_decide_from_upstream_states() {
    let run = with_triggers(true).await;
    assert_eq!(run.result.as_deref(), Ok("upstream said: Failed"));
    assert_eq!(kind(&run, "cleanup"), StateKind::Completed);
    assert_eq!(kind(&run, "on_failure"), StateKind::Completed);
    assert_eq!(kind(&run, "always_runs"), StateKind::Completed);

    let run = with_triggers(false).await;
    assert_eq!(run.result.as_deref(), Ok("ok 5"));
    assert_eq!(
        kind(&run, "on_failure"),
        StateKind::Skipped,
        "no failure to react to"
    );
    assert!(
        run.is_successful(),
        "an alert that did not fire fails nothing"
    );
    assert!(run
        .task("on_failure")
        .unwrap()
        .state
        .message
        .as_deref()
        .unwrap()
        .contains("any_failed"));
}

// ---------- state handlers

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record(change: &StateChange) -> Option<State> {
    SEEN.lock().unwrap().push(format!(
        "{}:{}->{}",
        change.name, change.old.kind, change.new.kind
    ));
    None
}

fn cancel_failures(change: &StateChange) -> Option<State> {
    change
        .new
        .is_failed()
        .then(|| State::cancelled("Flow run is cancelled"))
}

fn buggy(_: &StateChange) -> Option<State> {
    panic!("handler bug")
}

#[task(retries = 1, state_handlers = [record, buggy, cancel_failures])]
async fn handled() -> Result<u32, String> {
    Err("boom".into())
}

#[flow(state_handlers = [record])]
async fn handled_flow() -> u32 {
    let _h = handled();
    1
}

#[tokio::test]
async fn handlers_see_every_change_may_replace_it_and_cannot_crash_the_run() {
    let run = handled_flow().await;
    assert_eq!(
        kind(&run, "handled"),
        StateKind::Cancelled,
        "seed 004 turns a state into Cancelled"
    );
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "handled_flow:Pending->Running",
            "handled:Pending->Running",
            "handled:Running->Retrying",
            "handled:Retrying->Running",
            "handled:Running->Failed",
            "handled_flow:Running->Failed",
        ]
    );
    assert_eq!(run.state.kind, StateKind::Failed);
}

// ---------- mapping

#[task]
async fn invert(x: i32) -> Result<f64, String> {
    if x == 0 {
        Err("division by zero".into())
    } else {
        Ok(1.0 / x as f64)
    }
}

#[flow]
async fn inverses(xs: Vec<i32>) -> (usize, usize) {
    let all = invert::map(xs);
    let ok = all.iter().filter(|r| r.is_ok()).count();
    (ok, all.len() - ok)
}

#[tokio::test]
async fn a_failed_element_does_not_hide_the_others() {
    let run = inverses(vec![1, 0, 2, 4]).await;
    assert_eq!(run.result.as_ref().unwrap(), &(3, 1));
    let elems: Vec<_> = run
        .runs_of("invert")
        .filter(|r| r.id.map_index.is_some())
        .collect();
    assert_eq!(elems.len(), 4);
    let failed: Vec<_> = elems
        .iter()
        .filter(|r| r.state.is_failed())
        .map(|r| r.id.map_index)
        .collect();
    assert_eq!(failed, [Some(1)]);
    assert_eq!(
        kind(&run, "invert"),
        StateKind::Failed,
        "the mapped node's summary"
    );
    assert!(!run.is_successful());
}

#[task]
async fn square(x: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(20 - x)).await;
    x * x
}

#[task]
async fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[flow]
async fn squares(n: u64) -> (Vec<u64>, u64) {
    let sq = square::map(0..n)?;
    let t = total(sq.clone())?;
    (sq, t)
}

#[tokio::test]
async fn mapped_results_keep_input_order() {
    let run = squares(10).await;
    let (sq, t) = run.result.unwrap();
    assert_eq!(sq, (0..10).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(t, 285);
    let empty = squares(0).await;
    assert_eq!(empty.result.as_ref().unwrap(), &(vec![], 0));
    assert!(empty.is_successful());
}

// ---------- fail_fast

#[task]
async fn fails_soon() -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Err("first failure".into())
}

#[task]
async fn takes_long(started: &AtomicU32) -> u32 {
    started.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    1
}

#[flow(fail_fast)]
async fn stop_at_first_failure(started: Arc<AtomicU32>) -> u32 {
    let _f = fails_soon();
    let long = takes_long(&started)?;
    let next = plus_one(long)?;
    next
}

#[tokio::test]
async fn fail_fast_cancels_running_tasks_and_starts_no_new_one() {
    let started = Arc::new(AtomicU32::new(0));
    let run = stop_at_first_failure(started.clone()).await;
    assert_eq!(kind(&run, "fails_soon"), StateKind::Failed);
    assert_eq!(kind(&run, "takes_long"), StateKind::Cancelled);
    assert!(matches!(
        kind(&run, "plus_one"),
        StateKind::NotRun | StateKind::Cancelled
    ));
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(run.state.kind, StateKind::Failed);

    // Without fail_fast the same failure leaves independent work alone.
    let started = Arc::new(AtomicU32::new(0));
    let run = stop_at_first_failure::run_with(RunConfig::new().fail_fast(false), started).await;
    assert_eq!(kind(&run, "takes_long"), StateKind::Completed);
}

// ---------- events

#[derive(Default)]
struct Collect(Mutex<Vec<(String, StateKind)>>);

impl EventSink for Collect {
    fn on_event(&self, e: &RunEvent) {
        self.0
            .lock()
            .unwrap()
            .push((e.name.to_owned(), e.state.kind));
    }
}

#[tokio::test]
async fn event_sinks_receive_every_transition_in_order() {
    let sink = Arc::new(Collect::default());
    let run = monitor::run_with(RunConfig::new().sink(sink.clone()), 200).await;
    assert!(run.is_successful());
    let got = sink.0.lock().unwrap().clone();
    let of = |n: &str| {
        got.iter()
            .filter(|(name, _)| name == n)
            .map(|(_, k)| *k)
            .collect::<Vec<_>>()
    };
    use StateKind::*;
    assert_eq!(of("monitor"), [Running, Completed]);
    assert_eq!(of("check"), [Pending, Running, Completed]);
    assert_eq!(of("report"), [Pending, Running, Completed]);
}

#[task]
fn maybe(x: u32) -> Result<u32, Signal> {
    if x == 0 {
        Err(Signal::skip("zero"))
    } else {
        Ok(x)
    }
}

#[task]
fn sum_all(xs: Vec<u32>) -> u32 {
    xs.iter().sum()
}

#[flow]
async fn partly_skipped(xs: Vec<u32>) -> u32 {
    let ys = maybe::map(xs)?;
    let s = sum_all(ys)?;
    s
}

#[tokio::test]
async fn a_skipped_element_skips_the_dependents_of_a_mapped_value() {
    let run = partly_skipped(vec![0, 1, 2]).await;
    assert_eq!(kind(&run, "maybe"), StateKind::Skipped);
    assert_eq!(kind(&run, "sum_all"), StateKind::Skipped);
    assert_eq!(
        run.state.kind,
        StateKind::Skipped,
        "skips are no failure: {}",
        run.state
    );
    let indexes: Vec<_> = run.runs_of("maybe").map(|r| r.id.map_index).collect();
    assert_eq!(
        indexes,
        [None, Some(0), Some(1), Some(2)],
        "summary first, then input order"
    );
    assert_eq!(partly_skipped(vec![1, 2]).await.result, Ok(3));
}

#[task]
fn half(x: i32) -> Result<i32, String> {
    if x == 0 {
        Err("zero".into())
    } else {
        Ok(x / 2)
    }
}

#[flow]
async fn halves() -> usize {
    let r = half::map(vec![0, 2]);
    r.len()
}

#[tokio::test]
async fn the_flow_counts_task_runs_not_mapped_summaries() {
    let run = halves().await;
    let msg = run.state.message.clone().unwrap();
    assert!(msg.starts_with("1 of 2 task runs did not succeed"), "{msg}");
}

#[derive(Debug)]
struct MyErr;

impl std::fmt::Display for MyErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}

type AppResult<T> = Result<T, MyErr>;

#[task(retries = 1)]
async fn app_fails() -> AppResult<u32> {
    Err(MyErr)
}

#[tokio::test]
async fn result_aliases_named_like_result_are_fallible() {
    let run = app_fails().await;
    assert_eq!((run.state.kind, run.attempts), (StateKind::Failed, 2));
    assert_eq!(run.state.message.as_deref(), Some("my error"));
}

static BODY_RAN: AtomicU32 = AtomicU32::new(0);

fn end_run(change: &StateChange) -> Option<State> {
    (change.new.kind == StateKind::Running).then(|| State::cancelled("Flow run is cancelled"))
}

fn claim_success(change: &StateChange) -> Option<State> {
    change
        .new
        .is_failed()
        .then(|| State::completed("looks fine to me"))
}

#[task(state_handlers = [end_run])]
async fn never_starts() -> u32 {
    BODY_RAN.fetch_add(1, Ordering::SeqCst);
    1
}

#[task(state_handlers = [claim_success])]
async fn fails_anyway() -> Result<u32, String> {
    Err("real failure".into())
}

#[tokio::test]
async fn a_handler_ending_the_run_is_obeyed_and_one_faking_success_is_not() {
    let sink = Arc::new(Collect::default());
    let run = never_starts_flow::run_with(RunConfig::new().sink(sink.clone())).await;
    assert_eq!(kind(&run, "never_starts"), StateKind::Cancelled);
    assert_eq!(BODY_RAN.load(Ordering::SeqCst), 0, "the body never ran");
    assert_eq!(
        kind(&run, "fails_anyway"),
        StateKind::Failed,
        "no value, so no success"
    );
    let events = sink.0.lock().unwrap().clone();
    let last = events
        .iter()
        .rev()
        .find(|(n, _)| n == "fails_anyway")
        .unwrap();
    assert_eq!(last.1, StateKind::Failed, "sinks see what the report says");
}

#[flow]
async fn never_starts_flow() {
    let _a = never_starts();
    let _b = fails_anyway();
}
