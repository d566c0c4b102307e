//! The serverless trick: a cloud function may run for 540 seconds at most, so each
//! invocation runs at most one task, checkpoints it, and hands the run's states on (as JSON, the
//! Pub/Sub message) to the next invocation, until the flow completes.
//!
//! ```text
//! cargo run --example serverless
//! ```
//!
//! Each "invocation" below is a fresh `run_with` that knows nothing but the JSON it is given;
//! results live in a real directory (`target/serverless-results`), as they would in GCS.

use std::sync::Arc;
use weft::prelude::*;
use weft::results::LocalStore;
use weft::Handoff;

macro_rules! eight_tasks {
    ($($name:ident => $text:literal),* $(,)?) => {$(
        #[task]
        fn $name() -> String {
            println!($text);
            $text.to_owned()
        }
    )*};
}

eight_tasks! {
    task1 => "Task 1",
    task2 => "Task 2",
    task3 => "Task 3",
    task4 => "Task 4",
    task5 => "Task 5",
    task6 => "Task 6",
    task7 => "Task 7",
    task8 => "Task 8",
}

/// The Prefect flow, with exactly its `upstream_tasks`.
#[flow(name = "this is my first flow", persist)]
async fn my_first_flow() {
    let t1 = task1();
    let t2 = task2();
    #[wait_for(t1, t2)]
    let t3 = task3();
    #[wait_for(t3)]
    let t4 = task4();
    #[wait_for(t4)]
    let _t5 = task5();
    #[wait_for(t4)]
    let t6 = task6();
    #[wait_for(t2, t6)]
    let _t7 = task7();
    #[wait_for(t2, t3)]
    let _t8 = task8();
}

/// One cloud-function invocation: continue from `message` (none for the first), run at most one
/// task, return the message for the next invocation (none when the flow completed).
async fn invocation(store: Arc<LocalStore>, message: Option<String>) -> Option<String> {
    let mut config = RunConfig::new().result_store(store).max_task_runs(1);
    if let Some(json) = &message {
        let handoff: Handoff = serde_json::from_str(json).expect("a message we wrote");
        config = config.resume_from(&handoff);
    }
    let run = my_first_flow::run_with(config).await;
    println!("flow state: {}", run.state);
    for r in &run.task_runs {
        println!("  {:<6} {}", r.task, r.state.kind);
    }
    if run.is_successful() {
        println!("{}", run.to_dot());
        None
    } else {
        assert_eq!(
            run.state.kind,
            StateKind::Pending,
            "a budgeted run pauses, it does not fail"
        );
        Some(serde_json::to_string(&run.handoff()).expect("states serialize"))
    }
}

#[tokio::main]
async fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/serverless-results");
    let store = Arc::new(LocalStore::new(&dir));
    let mut message = None;
    let mut invocations = 0;
    loop {
        invocations += 1;
        println!("--- invocation {invocations}");
        message = invocation(store.clone(), message).await;
        match &message {
            Some(json) => println!("hand-off message: {} bytes", json.len()),
            None => break,
        }
        assert!(invocations < 20, "the flow should complete");
    }
    println!("completed in {invocations} invocations, one task each");
}
