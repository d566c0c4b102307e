//! Subflows: a `#[flow]` called in another flow's body is a node of the parent's graph and a
//! child flow run linked to its parent, in the report and in the run history. Also: a flow body
//! that returns `Err` ends Failed.

use std::sync::atomic::{AtomicU32, Ordering};
use weft::prelude::*;
use weft::{NodeKind, Store};

#[task]
fn double(x: u32) -> u32 {
    x * 2
}

#[task]
async fn check(x: u32) -> Result<u32, String> {
    if x > 100 {
        Err(format!("{x} is too big"))
    } else {
        Ok(x)
    }
}

#[flow]
async fn leaf(x: u32) -> u32 {
    let y = double(x)?;
    let z = check(y)?;
    z
}

#[flow]
async fn middle(x: u32) -> u32 {
    let a = leaf(x)?;
    let b = leaf(a)?;
    b
}

#[flow]
async fn top(x: u32) -> u32 {
    let m = middle(x)?;
    let n = double(m)?;
    n + 1
}

fn no_history() -> RunConfig {
    RunConfig::new().no_history()
}

#[tokio::test]
async fn three_levels_deep() {
    let run = top::run_with(no_history(), 3).await;
    assert_eq!(run.result, Ok(3 * 2 * 2 * 2 + 1));
    assert_eq!(run.state.kind, StateKind::Completed);
    // The subflow is a node of the parent's graph, drawn as one.
    let g = top::graph();
    let m = g.node("m").expect("the subflow's node");
    assert_eq!(m.kind, NodeKind::Flow);
    assert_eq!(m.task, "middle");
    assert!(g.to_dot().contains("shape=component"));
    assert!(g.to_mermaid().contains(&format!("n{}[[\"middle\"]]", m.id)));
    assert!(g.to_svg().contains("class=\"node flow\""));
    // Its run is the node's task run, and a child run with its own id linked to the parent.
    let node = run.task("middle").expect("the subflow's task run");
    assert_eq!(node.state.kind, StateKind::Completed);
    assert_eq!(run.subflows.len(), 1);
    let mid = &run.subflows[0];
    assert_ne!(mid.id, run.id);
    assert_eq!(mid.parent, Some((run.id, m.id)));
    assert_eq!(mid.name, "middle");
    // ...which has children of its own.
    assert_eq!(mid.subflows.len(), 2);
    for leaf_run in &mid.subflows {
        assert_eq!(leaf_run.parent.map(|p| p.0), Some(mid.id));
        assert_eq!(leaf_run.task_runs.len(), 2);
    }
    assert_eq!(
        mid.subflows[1].task("double").unwrap().state.kind,
        StateKind::Completed
    );
}

#[tokio::test]
async fn a_failed_child_fails_its_node_and_the_parent() {
    // 30 → leaf: 60 → leaf: 120 is too big.
    let run = top::run_with(no_history(), 30).await;
    assert_eq!(run.state.kind, StateKind::Failed);
    assert_eq!(run.task("middle").unwrap().state.kind, StateKind::Failed);
    // Dependents of the failed subflow do not run.
    assert_eq!(run.task("double").unwrap().state.kind, StateKind::NotRun);
    match &run.result {
        Err(FlowError::Upstream { binding, task, .. }) => {
            assert_eq!((*binding, *task), ("n", "double"));
        }
        other => panic!("expected a missing upstream value, got {other:?}"),
    }
    let mid = &run.subflows[0];
    assert_eq!(mid.state.kind, StateKind::Failed);
    let second = &mid.subflows[1];
    assert_eq!(second.task("check").unwrap().state.kind, StateKind::Failed);
    assert!(second.state.message.as_deref().unwrap().contains("check"));
}

#[task(trigger = all_finished)]
async fn report(outcome: Result<u32, TaskError>) -> String {
    match outcome {
        Ok(v) => format!("child gave {v}"),
        Err(e) => format!("child ended {}", e.state.kind),
    }
}

#[flow]
async fn guarded(x: u32) -> String {
    let r = leaf(x); // no `?`: a `Result<u32, TaskError>`, as for a task
    let msg = report(r)?;
    msg
}

#[tokio::test]
async fn triggers_apply_to_subflow_nodes() {
    let ok = guarded::run_with(no_history(), 5).await;
    assert_eq!(ok.result.as_deref(), Ok("child gave 10"));
    let bad = guarded::run_with(no_history(), 500).await;
    assert_eq!(bad.result.as_deref(), Ok("child ended Failed"));
    assert_eq!(bad.state.kind, StateKind::Failed);
}

#[derive(Debug)]
enum AppError {
    TooBig(u32),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::TooBig(n) => write!(f, "{n} is too big for this flow"),
        }
    }
}

#[flow]
async fn fallible(x: u32) -> Result<u32, AppError> {
    let y = double(x)?;
    if y > 10 {
        return Err(AppError::TooBig(y));
    }
    Ok(y)
}

#[flow]
async fn uses_fallible(x: u32) -> u32 {
    let v = fallible(x)?; // the Ok value of the child's Result
    v + 1
}

#[tokio::test]
async fn a_body_returning_err_fails_the_run() {
    let run = fallible::run_with(no_history(), 20).await;
    assert_eq!(run.state.kind, StateKind::Failed);
    assert_eq!(
        run.state.message.as_deref(),
        Some("40 is too big for this flow")
    );
    assert!(matches!(run.result, Ok(Err(AppError::TooBig(40)))));
    let fine = fallible::run_with(no_history(), 2).await;
    assert_eq!(fine.state.kind, StateKind::Completed);
    // As a subflow, its Ok value is the node's output and an Err fails the node.
    assert_eq!(uses_fallible::run_with(no_history(), 2).await.result, Ok(5));
    let failed = uses_fallible::run_with(no_history(), 20).await;
    assert_eq!(failed.state.kind, StateKind::Failed);
    assert_eq!(
        failed.task("fallible").unwrap().state.message.as_deref(),
        Some("40 is too big for this flow")
    );
}

#[task]
async fn parse(s: String) -> Result<u32, String> {
    s.parse::<u32>().map_err(|e| e.to_string())
}

#[flow]
async fn glue_question_mark(s: String) -> Result<u32, std::num::ParseIntError> {
    let checked: u32 = s.trim().parse()?; // glue `?` leaves the body with the Err
    let n = parse(checked.to_string())?;
    Ok(n)
}

#[tokio::test]
async fn a_glue_question_mark_on_err_fails_the_run() {
    let run = glue_question_mark::run_with(no_history(), "x".into()).await;
    assert_eq!(run.state.kind, StateKind::Failed);
    assert_eq!(
        run.state.message.as_deref(),
        Some("invalid digit found in string")
    );
}

#[task]
fn skip_it() -> Result<u32, Signal> {
    Err(Signal::skip("nothing to do today"))
}

#[flow]
async fn all_skipped() -> u32 {
    let x = skip_it()?;
    x + 1
}

#[tokio::test]
async fn a_body_stopped_by_a_skip_is_skipped_not_completed() {
    let run = all_skipped::run_with(no_history()).await;
    assert!(matches!(run.result, Err(FlowError::Upstream { .. })));
    assert_eq!(run.state.kind, StateKind::Skipped);
    assert!(!run.is_successful());
}

static HANDLED: AtomicU32 = AtomicU32::new(0);

fn count_failed(change: &StateChange) -> Option<State> {
    if change.new.is_failed() {
        HANDLED.fetch_add(1, Ordering::SeqCst);
    }
    None
}

#[flow(state_handlers = [count_failed])]
async fn handled(x: u32) -> Result<u32, String> {
    let y = double(x)?;
    if y > 10 {
        return Err("over ten".into());
    }
    Ok(y)
}

#[tokio::test]
async fn state_handlers_see_a_body_err_as_failed() {
    let before = HANDLED.load(Ordering::SeqCst);
    let run = handled::run_with(no_history(), 50).await;
    assert_eq!(run.state.kind, StateKind::Failed);
    assert_eq!(HANDLED.load(Ordering::SeqCst), before + 1);
}

#[flow]
async fn awaits_in_glue(x: u32) -> u32 {
    let child = leaf(x).await; // a child run awaited in glue: not a node, still linked
    let v = child.result.unwrap_or(0);
    v + 1
}

#[tokio::test]
async fn a_subflow_awaited_in_glue_is_a_linked_child() {
    let run = awaits_in_glue::run_with(no_history(), 2).await;
    assert_eq!(run.result, Ok(5));
    assert_eq!(run.subflows.len(), 1);
    assert_eq!(run.subflows[0].parent.map(|p| p.0), Some(run.id));
    assert_eq!(run.task("leaf").unwrap().state.kind, StateKind::Completed);
    // A failed child awaited in glue fails the parent too.
    let bad = awaits_in_glue::run_with(no_history(), 60).await;
    assert_eq!(bad.state.kind, StateKind::Failed);
    // Awaited on its own, a flow is a top-level run.
    let alone = leaf(2).await;
    assert_eq!(alone.parent, None);
}

#[tokio::test]
async fn fail_fast_in_the_parent_cancels_a_running_child() {
    #[task]
    async fn boom() -> Result<u32, String> {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Err("boom".into())
    }
    #[task]
    async fn slow() -> u32 {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        1
    }
    #[flow]
    async fn slow_child() -> u32 {
        let s = slow()?;
        s
    }
    #[flow(fail_fast)]
    async fn racing() -> u32 {
        let a = boom()?;
        let b = slow_child()?;
        a + b
    }
    let t0 = std::time::Instant::now();
    let run = racing::run_with(no_history()).await;
    assert!(t0.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(run.state.kind, StateKind::Failed);
    assert_eq!(
        run.task("slow_child").unwrap().state.kind,
        StateKind::Cancelled
    );
    assert_eq!(
        run.subflows[0].task("slow").unwrap().state.kind,
        StateKind::Cancelled
    );
}

#[tokio::test]
async fn children_are_recorded_and_linked_in_the_history() {
    let dir = tempdir();
    let url = format!("sqlite://{}/weft.db", dir.display());
    let store = Store::connect(&url).await.unwrap();
    let run = top::run_with(RunConfig::new().history(store.clone()), 3).await;
    assert!(run.history.as_ref().unwrap().is_complete());
    let detail = store.run(run.id).await.unwrap();
    assert_eq!(detail.children.len(), 1);
    let mid_id = detail.children[0].id;
    assert_eq!(detail.children[0].flow, "middle");
    assert_eq!(
        detail.children[0].parent,
        Some((run.id, top::graph().node("m").unwrap().id))
    );
    let mid = store.run(mid_id).await.unwrap();
    assert_eq!(mid.run.parent.map(|p| p.0), Some(run.id));
    assert_eq!(mid.children.len(), 2);
    let leaf_detail = store.run(mid.children[1].id).await.unwrap();
    assert_eq!(leaf_detail.task_runs.len(), 2);
    assert_eq!(
        detail.graph.unwrap().node("m").unwrap().kind,
        NodeKind::Flow
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-subflows-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
