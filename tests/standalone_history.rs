//! Task runs awaited outside any flow are recorded in the run history as runs of their own, as
//! Prefect records a task called outside a flow. (One test in its own binary: it points
//! `WEFT_HOME` at a fresh directory for the whole process.)

use weft::prelude::*;
use weft::store::RunFilter;
use weft::Store;

#[task]
async fn fetch(n: u32) -> Result<u32, String> {
    if n == 0 {
        Err("nothing to fetch".into())
    } else {
        Ok(n * 10)
    }
}

#[task]
fn square(x: u32) -> u32 {
    x * x
}

#[tokio::test]
async fn task_runs_outside_a_flow_are_recorded_as_runs_of_their_own() {
    let home = std::env::temp_dir().join(format!("weft-standalone-{}", weft::Uuid::new_v4()));
    std::fs::create_dir_all(&home).unwrap();
    std::env::set_var("WEFT_HOME", &home);
    std::env::remove_var("WEFT_DATABASE_URL");
    std::env::remove_var("WEFT_HISTORY");

    let ok = fetch(4).await;
    assert_eq!(ok.result, Ok(40));
    let bad = fetch(0).await;
    assert_eq!(bad.state.kind, StateKind::Failed);
    let squares = square::map([1, 2, 3]).await;
    assert_eq!(squares.len(), 3);

    let store = Store::open_default().await.unwrap();
    let runs = store.runs(&RunFilter::default()).await.unwrap();
    let by_flow = |name: &str| runs.iter().filter(|r| r.flow == name).count();
    assert_eq!(by_flow("fetch"), 2, "{runs:?}");
    assert_eq!(by_flow("square"), 1, "{runs:?}");

    // Each run id is the task run's flow_run_id, and it holds the task run with its state.
    let detail = store.run(ok.id.flow_run_id).await.unwrap();
    assert_eq!(detail.run.state, StateKind::Completed);
    assert_eq!(detail.task_runs.len(), 1);
    assert_eq!(detail.task_runs[0].task, "fetch");
    assert_eq!(detail.task_runs[0].state, StateKind::Completed);
    let failed = store.run(bad.id.flow_run_id).await.unwrap();
    assert_eq!(failed.run.state, StateKind::Failed);
    assert_eq!(
        failed.task_runs[0].message.as_deref(),
        Some("nothing to fetch")
    );
    let mapped = store.run(squares[0].id.flow_run_id).await.unwrap();
    assert_eq!(mapped.task_runs.len(), 3);
    assert!(mapped
        .task_runs
        .iter()
        .all(|t| t.state == StateKind::Completed));
    assert!(mapped.run.ended.is_some());
    let _ = std::fs::remove_dir_all(home);
}
