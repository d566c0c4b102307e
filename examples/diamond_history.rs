//! Profiling aid: the 10-task diamond with the run history on, in a loop.
//!
//! ```text
//! WEFT_HOME=$(mktemp -d) cargo run --release --example diamond_history 2>/dev/null
//! ```
use std::time::Instant;
use weft::prelude::*;

#[path = "common/diamond.rs"]
mod diamond_flow;
use diamond_flow::{diamond, diamond_expected};

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
        assert_eq!(run.result.ok(), Some(diamond_expected(seed)));
    }
    println!(
        "{:.1} µs per flow run",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
