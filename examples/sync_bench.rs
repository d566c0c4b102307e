//! Overhead of sync (`fn`) task bodies, which run on threads of their own.
//!
//! ```text
//! cargo run --release --example sync_bench 2>/dev/null
//! ```
//!
//! - (s1) `sync_inc::map(0..20_000)`: one sync task run per trivial element, µs per task run,
//!   against `tokio::task::spawn_blocking` of the same body 20,000 times, joining every handle.
//! - (s2) a diamond flow of 10 sync tasks (1 → 8 → 1) run 2,000 times, µs per flow run.
//! - (s3) `sync_nap::map(0..200)` of 10 ms `std::thread::sleep`s, wall time (how many bodies
//!   run at once), against 200 `spawn_blocking` sleeps.
//!
//! Every case runs once to warm up, then 5 times; the table shows medians. History is off.

use std::future::Future;
use std::time::{Duration, Instant};
use weft::prelude::*;

const REPS: usize = 5;
const MAP_N: u64 = 20_000;
const DIAMOND_RUNS: u64 = 2_000;
const NAP_N: u64 = 200;
const NAP: Duration = Duration::from_millis(10);

#[task]
fn sync_inc(x: u64) -> u64 {
    x + 1
}

#[flow]
async fn map_sync_inc(n: u64) -> Vec<u64> {
    let ys = sync_inc::map(0..n)?;
    ys
}

#[task]
fn s_source(seed: u64) -> u64 {
    seed
}

#[task]
fn s_middle(x: u64, k: u64) -> u64 {
    x * 10 + k
}

#[task]
#[allow(clippy::too_many_arguments)]
fn s_sink(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64) -> u64 {
    a + b + c + d + e + f + g + h
}

#[flow]
async fn sync_diamond(seed: u64) -> u64 {
    let s = s_source(seed)?;
    let m1 = s_middle(s, 1)?;
    let m2 = s_middle(s, 2)?;
    let m3 = s_middle(s, 3)?;
    let m4 = s_middle(s, 4)?;
    let m5 = s_middle(s, 5)?;
    let m6 = s_middle(s, 6)?;
    let m7 = s_middle(s, 7)?;
    let m8 = s_middle(s, 8)?;
    let total = s_sink(m1, m2, m3, m4, m5, m6, m7, m8)?;
    total
}

#[task]
fn sync_nap(i: u64) -> u64 {
    std::thread::sleep(NAP);
    i
}

#[flow]
async fn map_sync_nap(n: u64) -> Vec<u64> {
    let ys = sync_nap::map(0..n)?;
    ys
}

async fn median<F, Fut>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Duration>,
{
    f().await;
    let mut times = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        times.push(f().await);
    }
    times.sort();
    times[REPS / 2]
}

fn us(d: Duration, per: u64) -> f64 {
    d.as_secs_f64() * 1e6 / per as f64
}

#[tokio::main]
async fn main() {
    let cfg = || RunConfig::new().no_history();

    let weft_s1 = median(|| async {
        let t = Instant::now();
        let run = map_sync_inc::run_with(cfg(), MAP_N).await;
        assert!(run.is_successful(), "{}", run.state);
        t.elapsed()
    })
    .await;
    let tokio_s1 = median(|| async {
        let t = Instant::now();
        let hs: Vec<_> = (0..MAP_N)
            .map(|x| tokio::task::spawn_blocking(move || x + 1))
            .collect();
        for h in hs {
            h.await.unwrap();
        }
        t.elapsed()
    })
    .await;

    let weft_s2 = median(|| async {
        let t = Instant::now();
        for seed in 0..DIAMOND_RUNS {
            let run = sync_diamond::run_with(cfg(), seed).await;
            assert_eq!(run.result.ok(), Some(seed * 80 + 36));
        }
        t.elapsed()
    })
    .await;

    let weft_s3 = median(|| async {
        let t = Instant::now();
        let run = map_sync_nap::run_with(cfg(), NAP_N).await;
        assert!(run.is_successful(), "{}", run.state);
        t.elapsed()
    })
    .await;
    let tokio_s3 = median(|| async {
        let t = Instant::now();
        let hs: Vec<_> = (0..NAP_N)
            .map(|x| {
                tokio::task::spawn_blocking(move || {
                    std::thread::sleep(NAP);
                    x
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
        t.elapsed()
    })
    .await;

    println!("| case | weft | spawn_blocking baseline |");
    println!("|---|---:|---:|");
    println!(
        "| (s1) `sync_inc::map(0..{MAP_N})`, µs per task run | {:.2} µs | {:.2} µs |",
        us(weft_s1, MAP_N),
        us(tokio_s1, MAP_N)
    );
    println!(
        "| (s2) 10 sync-task diamond, µs per flow run | {:.1} µs | – |",
        us(weft_s2, DIAMOND_RUNS)
    );
    println!(
        "| (s3) `sync_nap::map(0..{NAP_N})` of 10 ms sleeps, wall time | {:.1} ms | {:.1} ms |",
        weft_s3.as_secs_f64() * 1e3,
        tokio_s3.as_secs_f64() * 1e3
    );
}
