//! Independent tasks overlap; a task starts when its inputs are ready; limits hold.
//! Every assertion is on recorded start/end instants, never on wall-clock thresholds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft::prelude::*;

/// Start and end instants of task bodies, by label.
#[derive(Default)]
struct Timeline(Mutex<Vec<(String, Instant, Instant)>>);

impl Timeline {
    fn span(&self, label: &str) -> (Instant, Instant) {
        let v = self.0.lock().unwrap();
        let (_, s, e) = v
            .iter()
            .find(|(l, _, _)| l == label)
            .unwrap_or_else(|| panic!("no {label}"));
        (*s, *e)
    }
    fn overlap(&self, a: &str, b: &str) -> bool {
        let (a0, a1) = self.span(a);
        let (b0, b1) = self.span(b);
        a0 < b1 && b0 < a1
    }
    /// Most bodies running at one instant.
    fn max_overlap(&self) -> usize {
        let v = self.0.lock().unwrap();
        v.iter()
            .map(|(_, s, _)| v.iter().filter(|(_, s2, e2)| s2 <= s && s < e2).count())
            .max()
            .unwrap_or(0)
    }
}

async fn timed(tl: &Timeline, label: String, d: Duration) {
    let start = Instant::now();
    tokio::time::sleep(d).await;
    tl.0.lock().unwrap().push((label, start, Instant::now()));
}

#[task]
async fn slow(tl: &Timeline, label: &str, ms: u64) -> u64 {
    timed(tl, label.to_owned(), Duration::from_millis(ms)).await;
    ms
}

#[task]
async fn after(tl: &Timeline, label: &str, input: u64) -> u64 {
    timed(tl, label.to_owned(), Duration::from_millis(10)).await;
    input + 1
}

#[flow]
async fn fan(tl: Arc<Timeline>) -> u64 {
    let a = slow(&tl, "a", 150)?;
    let b = slow(&tl, "b", 150)?;
    let quick = slow(&tl, "quick", 10)?;
    let next = after(&tl, "next", quick)?;
    a + b + next
}

#[tokio::test]
async fn independent_tasks_overlap_and_dependents_start_when_inputs_are_ready() {
    let tl = Arc::new(Timeline::default());
    let run = fan(tl.clone()).await;
    assert!(run.is_successful(), "{}", run.state);
    assert_eq!(run.result.unwrap(), 150 + 150 + 11);
    assert!(tl.overlap("a", "b"), "a and b are independent");
    // `next` needs only `quick`: it runs while the slow ones still do.
    assert!(tl.overlap("next", "a"));
    let (q0, q1) = tl.span("quick");
    let (n0, _) = tl.span("next");
    assert!(q1 <= n0 && q0 < n0, "next starts after quick ended");
}

#[task]
fn blocking_sleep(tl: Arc<Timeline>, label: String) -> String {
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(120));
    tl.0.lock().unwrap().push((label, start, Instant::now()));
    format!("{:?}", std::thread::current().id())
}

#[flow]
async fn two_sync(tl: Arc<Timeline>) -> (String, String) {
    let x = blocking_sleep(tl.clone(), "x".to_owned())?;
    let y = blocking_sleep(tl.clone(), "y".to_owned())?;
    (x, y)
}

#[tokio::test]
async fn sync_tasks_run_on_the_blocking_pool_in_parallel() {
    let tl = Arc::new(Timeline::default());
    let run = two_sync(tl.clone()).await;
    let (x, y) = run.result.unwrap();
    assert_ne!(x, y, "two blocking threads");
    assert!(tl.overlap("x", "y"));
}

#[task]
async fn nap(tl: &Timeline, i: u32) -> u32 {
    timed(tl, format!("nap{i}"), Duration::from_millis(30)).await;
    i
}

#[flow(max_concurrency = 2)]
async fn limited(tl: Arc<Timeline>) -> Vec<u32> {
    let all = nap::map((0..8).map(|i| (&*tl, i)))?;
    all
}

#[tokio::test]
async fn max_concurrency_bounds_running_task_runs() {
    let tl = Arc::new(Timeline::default());
    let run = limited(tl.clone()).await;
    assert_eq!(run.result.unwrap(), (0..8).collect::<Vec<_>>());
    assert_eq!(tl.max_overlap(), 2);

    let tl = Arc::new(Timeline::default());
    let run = limited::run_with(RunConfig::new().max_concurrency(0), tl.clone()).await;
    assert!(run.is_successful());
    assert!(tl.max_overlap() > 2, "no limit: all 8 overlap");
}

#[flow]
async fn glue_awaits(tl: Arc<Timeline>) -> u64 {
    let a = slow(&tl, "task", 120)?;
    timed(&tl, "glue".to_owned(), Duration::from_millis(120)).await;
    a
}

#[tokio::test]
async fn awaiting_in_glue_keeps_running_tasks_going() {
    let tl = Arc::new(Timeline::default());
    let run = glue_awaits(tl.clone()).await;
    assert_eq!(run.result.unwrap(), 120);
    assert!(tl.overlap("task", "glue"));
}
