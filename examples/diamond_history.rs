//! Profiling aid: the 10-task diamond with the run history on, in a loop.
//!
//! ```text
//! WEFT_HOME=$(mktemp -d) cargo run --release --example diamond_history 2>/dev/null
//! ```
use std::time::Instant;
use weft::prelude::*;

#[task]
async fn source(seed: u64) -> u64 {
    seed
}

#[task]
async fn middle(x: u64, k: u64) -> u64 {
    x * 10 + k
}

#[task]
async fn sink(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64) -> u64 {
    a + b + c + d + e + f + g + h
}

#[flow]
async fn diamond(seed: u64) -> u64 {
    let s = source(seed)?;
    let m1 = middle(s, 1)?;
    let m2 = middle(s, 2)?;
    let m3 = middle(s, 3)?;
    let m4 = middle(s, 4)?;
    let m5 = middle(s, 5)?;
    let m6 = middle(s, 6)?;
    let m7 = middle(s, 7)?;
    let m8 = middle(s, 8)?;
    let total = sink(m1, m2, m3, m4, m5, m6, m7, m8)?;
    total
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let t = Instant::now();
    for seed in 0..n {
        let run = diamond::run_with(RunConfig::new(), seed).await;
        assert!(run.history.as_ref().is_some_and(|h| h.is_complete()));
    }
    println!(
        "{:.1} µs per flow run",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
