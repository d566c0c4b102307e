//! Failure paths of the engine: nested runs under limits, a body stopped early, a dropped flow,
//! panics in glue and in generated code, handlers asking for the impossible.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use weft::prelude::*;

/// Bounds a test that would otherwise hang forever; not a speed check.
async fn no_hang<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the run hung")
}

#[task]
async fn inner(x: u32) -> u32 {
    x + 1
}

#[task]
async fn outer() -> u32 {
    let one = inner(1).await.result.unwrap();
    let many: u32 = inner::map([1, 2, 3])
        .await
        .into_iter()
        .map(|r| r.result.unwrap())
        .sum();
    one + many
}

#[flow(max_concurrency = 1)]
async fn nested_under_a_limit() -> u32 {
    let a = outer()?;
    a
}

#[tokio::test]
async fn runs_inside_a_task_body_share_its_permit() {
    let run = no_hang(nested_under_a_limit()).await;
    assert_eq!(run.result, Ok(2 + 9));
    assert_eq!(
        run.runs_of("inner").count(),
        4,
        "the nested runs belong to the flow run"
    );
}

static DROPPED_WHILE_PANICKING: AtomicBool = AtomicBool::new(false);
static DROPS: AtomicU32 = AtomicU32::new(0);

struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
        if std::thread::panicking() {
            DROPPED_WHILE_PANICKING.store(true, Ordering::SeqCst);
        }
    }
}

#[task]
async fn fetch() -> Result<u32, String> {
    Err("down".into())
}

#[flow]
async fn stops_with_a_guard() -> u32 {
    let _guard = Guard;
    let x = fetch()?;
    x + 1
}

#[tokio::test]
async fn a_stopped_body_drops_its_locals_like_a_cancelled_future() {
    let run = stops_with_a_guard().await;
    assert!(matches!(
        run.result,
        Err(FlowError::Upstream { binding: "x", .. })
    ));
    assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    assert!(
        !DROPPED_WHILE_PANICKING.load(Ordering::SeqCst),
        "no unwinding involved"
    );
}

static FINISHED: AtomicBool = AtomicBool::new(false);

#[task]
async fn slow_side_effect() {
    tokio::time::sleep(Duration::from_millis(300)).await;
    FINISHED.store(true, Ordering::SeqCst);
}

#[flow]
async fn long_flow() {
    slow_side_effect();
}

#[tokio::test]
async fn dropping_a_flow_run_stops_it() {
    // From a #[tokio::test] body the driver is spawned; dropping the run must abort it.
    let timed_out = tokio::time::timeout(Duration::from_millis(50), long_flow()).await;
    assert!(timed_out.is_err());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !FINISHED.load(Ordering::SeqCst),
        "the task was cancelled with its run"
    );
}

#[task]
async fn boom() -> Result<u32, String> {
    Err("boom".into())
}

#[flow]
async fn awaits_in_glue() -> u32 {
    let r = boom().await;
    r.result.unwrap_or(0)
}

#[flow]
async fn parent() -> u32 {
    let child = awaits_in_glue().await;
    assert_eq!(
        child.runs_of("boom").count(),
        1,
        "the child's run is in the child's report"
    );
    child.result.unwrap()
}

#[tokio::test]
async fn glue_runs_join_the_right_flow_wherever_the_flow_runs() {
    // In place: the flow is awaited inside a spawned task.
    let run = tokio::spawn(awaits_in_glue()).await.unwrap();
    assert_eq!(run.runs_of("boom").count(), 1);
    assert_eq!(run.state.kind, StateKind::Failed);
    // A subflow keeps its own runs; its failure reaches the parent through its own run.
    let run = tokio::spawn(parent()).await.unwrap();
    assert_eq!(run.result, Ok(0));
    assert_eq!(run.runs_of("boom").count(), 0);
    assert_eq!(run.runs_of("awaits_in_glue").count(), 1);
    assert_eq!(run.subflows[0].runs_of("boom").count(), 1);
    assert_eq!(run.state.kind, StateKind::Failed, "{}", run.state);
}

static DELETED: AtomicBool = AtomicBool::new(false);

#[task]
async fn delete_all() {
    DELETED.store(true, Ordering::SeqCst);
}

#[flow]
async fn confirmed(confirm: bool) {
    assert!(confirm, "not confirmed");
    delete_all();
}

#[tokio::test]
async fn a_panicking_assert_holds_back_the_tasks_after_it() {
    let run = confirmed(false).await;
    assert!(matches!(run.result, Err(FlowError::Panicked(ref m)) if m == "not confirmed"));
    assert!(!DELETED.load(Ordering::SeqCst));
    assert_eq!(run.state.kind, StateKind::Failed);
}

#[derive(Debug)]
struct Fragile;

impl Clone for Fragile {
    fn clone(&self) -> Self {
        panic!("clone bug")
    }
}

#[task]
async fn make() -> Fragile {
    Fragile
}

#[task]
async fn eat(_f: Fragile) -> u32 {
    1
}

#[task]
async fn long() -> u32 {
    tokio::time::sleep(Duration::from_millis(100)).await;
    7
}

#[flow]
async fn fragile_outputs() -> u32 {
    let f = make()?;
    let l = long()?;
    let _a = eat(f);
    let _b = eat(f);
    l
}

#[tokio::test]
async fn a_panic_in_a_node_fails_that_node_only() {
    let run = no_hang(fragile_outputs()).await;
    assert_eq!(run.result, Ok(7), "the body and the unrelated task went on");
    assert_eq!(run.task("long").unwrap().state.kind, StateKind::Completed);
    let crashed: Vec<_> = run
        .runs_of("eat")
        .filter(|r| r.state.kind == StateKind::Crashed)
        .collect();
    assert_eq!(crashed.len(), 1, "the reader whose clone panicked");
    assert_eq!(crashed[0].state.message.as_deref(), Some("clone bug"));
    assert_eq!(run.state.kind, StateKind::Failed);
}

fn pretend_done(change: &StateChange) -> Option<State> {
    (change.new.kind == StateKind::NotRun).then(|| State::completed("fine"))
}

#[task(state_handlers = [pretend_done])]
async fn downstream(x: u32) -> u32 {
    x
}

#[flow]
async fn pretends() -> u32 {
    let a = boom()?;
    let b = downstream(a)?;
    b
}

#[tokio::test]
async fn a_handler_cannot_complete_a_task_that_never_ran() {
    let run = pretends().await;
    assert_eq!(
        run.task("downstream").unwrap().state.kind,
        StateKind::NotRun
    );
}
