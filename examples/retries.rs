//! Prefect's fault-tolerance tutorial: retries with exponential backoff, the `alert_failed` state
//! handler that prints "Failed!", and a task that skips itself (`raise signals.SKIP`).
//!
//! ```python
//! def alert_failed(obj, old_state, new_state):
//!     if new_state.is_failed():
//!         print("Failed!")
//! ```
//!
//! Look for: `flaky` fails twice (log lines "retrying in 50ms", then "retrying in 100ms": the
//! delay doubles with `retry_backoff = 2.0`) and Completes on attempt 3; `check_server` fails all
//! 3 of its attempts and is Failed; "Failed!" is printed once, for `check_server`'s final state
//! only (Retrying is not a failed state); both ran at the same time; `new_complaints` skips
//! itself and its data dependent `store` is Skipped too, without running. The flow ends Failed
//! because one task did, though its body still returned `flaky`'s value.
//!
//! Run with `cargo run --example retries`.
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use weft::prelude::*;

/// How many times `alert_failed` saw a failed state.
static ALERTS: AtomicU32 = AtomicU32::new(0);
/// How many times `flaky`'s body ran.
static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

/// The tutorial's handler: print "Failed!" on entering a failed state; `None` keeps the new state.
fn alert_failed(change: &StateChange) -> Option<State> {
    if change.new.is_failed() {
        println!("Failed!");
        ALERTS.fetch_add(1, Ordering::SeqCst);
    }
    None
}

/// Fails on its first `failures` attempts, then succeeds.
#[task(retries = 3, retry_delay = "50ms", retry_backoff = 2.0, state_handlers = [alert_failed])]
async fn flaky(failures: u32) -> Result<u32, String> {
    let attempt = FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if attempt <= failures {
        Err(format!("connection reset (attempt {attempt})"))
    } else {
        Ok(attempt)
    }
}

/// Fails while the server answers anything but 200: here always, so 1 attempt + 2 retries,
/// then Failed.
#[task(retries = 2, retry_delay = "20ms", state_handlers = [alert_failed])]
async fn check_server(status: u16) -> Result<(), Signal> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    if status != 200 {
        return Err(Signal::fail(format!(
            "Server not available. Status code: {status}"
        )));
    }
    Ok(())
}

/// Nothing new today: skip, like Prefect's `raise signals.SKIP`.
#[task(state_handlers = [alert_failed])]
fn new_complaints(count: u32) -> Result<Vec<String>, Signal> {
    if count == 0 {
        return Err(Signal::skip("no new complaints today"));
    }
    Ok((0..count).map(|i| format!("complaint {i}")).collect())
}

/// Reads `new_complaints`'s output, so it is skipped along with it.
#[task(state_handlers = [alert_failed])]
fn store(rows: Vec<String>) -> usize {
    println!("storing {} rows", rows.len());
    rows.len()
}

#[flow(name = "fault tolerance")]
async fn fault_tolerance() -> u32 {
    let value = flaky(2)?;
    check_server(503);
    let rows = new_complaints(0)?;
    store(rows);
    value
}

#[tokio::main]
async fn main() {
    let run = fault_tolerance().await;

    println!();
    for name in ["flaky", "check_server", "new_complaints", "store"] {
        let r = run.task(name).unwrap();
        println!(
            "{name:<15} {:<55} attempts: {}  took: {:?}",
            r.state.to_string(),
            r.attempts,
            r.duration()
        );
    }
    println!("flow state: {}", run.state);
    println!("flow result: {:?}", run.result);
    println!(
        "\"Failed!\" printed {} time(s)",
        ALERTS.load(Ordering::SeqCst)
    );

    let flaky = run.task("flaky").unwrap();
    assert_eq!(flaky.state.kind, StateKind::Completed);
    assert_eq!(flaky.attempts, 3);
    // Two waits: 50ms, then 50ms * 2.0.
    assert!(
        flaky.duration() >= Duration::from_millis(150),
        "{:?}",
        flaky.duration()
    );

    let server = run.task("check_server").unwrap();
    assert_eq!(server.state.kind, StateKind::Failed);
    assert_eq!(server.attempts, 3);
    assert_eq!(
        server.state.message.as_deref(),
        Some("Server not available. Status code: 503")
    );

    // Independent tasks run at the same time.
    assert!(
        flaky.started.unwrap() < server.ended.unwrap()
            && server.started.unwrap() < flaky.ended.unwrap(),
        "flaky and check_server overlap"
    );

    let skipped = run.task("new_complaints").unwrap();
    assert_eq!(skipped.state.kind, StateKind::Skipped);
    let store = run.task("store").unwrap();
    assert_eq!(store.state.kind, StateKind::Skipped);
    assert_eq!(store.attempts, 0, "a skipped dependent never runs");

    assert_eq!(run.state.kind, StateKind::Failed);
    assert_eq!(run.result, Ok(3), "the body got flaky's value");
    assert_eq!(ALERTS.load(Ordering::SeqCst), 1, "\"Failed!\" exactly once");
}
