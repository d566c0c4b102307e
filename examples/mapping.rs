//! Prefect's `task.map` (the upstream-tasks flows, scaled out): one task run per element of a list.
//!
//! * `inc::map(1..=10)?` runs `inc` ten times; the results come back in input order and feed
//!   `sum`, like Prefect's `total = sum(inc.map(numbers))`.
//! * `checked_div::map(..)` *without* `?` hands the flow body one `Result` per element: the
//!   element dividing by zero is Failed, the others still Complete and are counted.
//! * `RunConfig::new().max_concurrency(3)` caps how many task runs run at once: 9 naps of 40ms
//!   run in waves of 3.
//!
//! Look for: `total = 65`, the per-element states (`checked_div[0]` Failed, the rest Completed;
//! the mapped node's summary Failed), and `max overlap = 3` (against 9 without the limit).
//!
//! Run with `cargo run --example mapping`.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::TaskRunReport;

#[task]
fn inc(x: u64) -> u64 {
    x + 1
}

#[task]
fn sum(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
fn checked_div(n: i64, d: i64) -> Result<i64, String> {
    n.checked_div(d)
        .ok_or_else(|| format!("cannot divide {n} by {d}"))
}

#[flow]
async fn numbers(n: u64) -> (u64, usize, usize) {
    let plus_one = inc::map(1..=n)?;
    let total = sum(plus_one)?;
    // No `?`: one `Result<i64, TaskError>` per element.
    let quotients = checked_div::map((0..5).map(|d| (100, d)));
    for (d, q) in quotients.iter().enumerate() {
        match q {
            Ok(v) => println!("100 / {d} = {v}"),
            Err(e) => println!("100 / {d}: {e}"),
        }
    }
    let ok = quotients.iter().filter(|q| q.is_ok()).count();
    (total, ok, quotients.len() - ok)
}

/// Start and end of each `nap` body.
#[derive(Default)]
struct Timeline(Mutex<Vec<(Instant, Instant)>>);

impl Timeline {
    /// The most bodies running at one instant.
    fn max_overlap(&self) -> usize {
        let spans = self.0.lock().unwrap();
        spans
            .iter()
            .map(|(s, _)| spans.iter().filter(|(s2, e2)| s2 <= s && s < e2).count())
            .max()
            .unwrap_or(0)
    }
}

#[task]
async fn nap(timeline: Arc<Timeline>, i: u32) -> u32 {
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(40)).await;
    timeline.0.lock().unwrap().push((start, Instant::now()));
    i
}

#[flow]
async fn naps(timeline: Arc<Timeline>) -> Vec<u32> {
    let done = nap::map((0..9).map(|i| (timeline.clone(), i)))?;
    done
}

/// The element runs of a mapped task. `task_runs` lists runs by node in written order, a
/// mapped node's summary first, then its elements in input order.
fn elements<'a, R>(run: &'a FlowRun<R>, task: &'a str) -> Vec<&'a TaskRunReport> {
    run.runs_of(task)
        .filter(|r| r.id.map_index.is_some())
        .collect()
}

/// Each element's state, then the mapped node's summary.
fn print_runs<R>(run: &FlowRun<R>, task: &str) {
    for r in elements(run, task) {
        println!("  {task}[{}]: {}", r.id.map_index.unwrap(), r.state);
    }
    println!("  {task} (summary): {}", run.task(task).unwrap().state);
}

#[tokio::main]
async fn main() {
    // 1 and 2: map, reduce, and a failing element.
    let run = numbers(10).await;
    let (total, ok, failed) = run.result.clone().expect("the body ran to its end");
    println!("\ntotal = {total}; checked_div: {ok} ok, {failed} failed");
    print_runs(&run, "inc");
    print_runs(&run, "checked_div");
    println!("flow state: {}", run.state);

    assert_eq!(total, (2..=11).sum::<u64>());
    assert_eq!((ok, failed), (4, 1));
    let divs = elements(&run, "checked_div");
    assert_eq!(divs[0].state.kind, StateKind::Failed);
    assert!(divs[1..]
        .iter()
        .all(|r| r.state.kind == StateKind::Completed));
    assert_eq!(elements(&run, "inc").len(), 10);
    assert_eq!(run.state.kind, StateKind::Failed, "one element failed");

    // 3: at most 3 task runs at once.
    let timeline = Arc::new(Timeline::default());
    let limited = naps::run_with(RunConfig::new().max_concurrency(3), timeline.clone()).await;
    assert_eq!(limited.result, Ok((0..9).collect()));
    let max = timeline.max_overlap();
    println!(
        "\nmax_concurrency(3): 9 naps, max overlap = {max}, took {:?}",
        limited.duration()
    );
    assert!(max <= 3, "at most 3 at once, saw {max}");

    let timeline = Arc::new(Timeline::default());
    let free = naps(timeline.clone()).await;
    assert!(free.is_successful());
    println!(
        "no limit:          9 naps, max overlap = {}, took {:?}",
        timeline.max_overlap(),
        free.duration()
    );
}
