//! weft with `default-features = false`: flows run with retries, parallel tasks, mapping and
//! caching, and nothing is recorded. `cargo run -p weft-engine-only` (alone, so that no other
//! crate of the workspace turns weft's `history` feature on) exits non-zero if a check fails.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weft::prelude::*;
use weft::results::{MemoryStore, ResultStore};

static FLAKY_TRIES: AtomicU32 = AtomicU32::new(0);
static CACHED_BODIES: AtomicU32 = AtomicU32::new(0);

/// Fails its first attempt.
#[task(retries = 2)]
fn flaky(n: u32) -> Result<u32, String> {
    if FLAKY_TRIES.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("the first attempt fails".into());
    }
    Ok(n + 1)
}

#[task]
async fn slow(n: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(200)).await;
    n * 2
}

#[task]
fn square(n: u32) -> u32 {
    n * n
}

#[task(cache_for = "1h")]
fn expensive(n: u32) -> u32 {
    CACHED_BODIES.fetch_add(1, Ordering::SeqCst);
    n + 100
}

/// `left` and `right` are independent: they run at the same time.
#[flow]
async fn pipeline(n: u32) -> u32 {
    let left = slow(n)?;
    let right = slow(n + 1)?;
    let fixed = flaky(n)?;
    let squares = square::map(vec![left, right, fixed])?;
    let extra = expensive(n)?;
    squares.iter().sum::<u32>() + extra
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    ok.then_some(())
        .ok_or_else(|| format!("check failed: {what}"))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    // Results and the cache in memory: each run of this program starts with an empty cache.
    let results: Arc<dyn ResultStore> = Arc::new(MemoryStore::default());
    let config = || RunConfig::new().result_store(results.clone());
    let run = pipeline::run_with(config(), 3).await;
    check(run.state.kind == StateKind::Completed, "the run completed")?;
    // 6² + 8² + 4² + (3 + 100)
    check(run.result == Ok(36 + 64 + 16 + 103), "the value")?;
    check(FLAKY_TRIES.load(Ordering::SeqCst) == 2, "one retry")?;
    let slows: Vec<_> = run
        .task_runs
        .iter()
        .filter(|r| r.task == "slow")
        .map(|r| r.started.zip(r.ended))
        .collect();
    let [Some((a0, a1)), Some((b0, b1))] = slows[..] else {
        return Err(format!("two timed runs of `slow`, found {slows:?}"));
    };
    let overlap = a0 < b1 && b0 < a1;
    check(overlap, "the two independent `slow` runs overlapped")?;
    let again = pipeline::run_with(config(), 3).await;
    check(again.result == run.result, "the second run's value")?;
    check(
        CACHED_BODIES.load(Ordering::SeqCst) == 1,
        "the second run was served from the cache",
    )?;
    println!("{}", pipeline::graph().to_mermaid());
    println!(
        "engine only: {} task runs, no run history; every check passed",
        run.task_runs.len()
    );
    Ok(())
}
