//! The diamond flow of the benchmarks: a source, 8 middle tasks reading its output, a sink
//! reading all 8 (10 task runs). Included by `bench` and `diamond_history`.

use weft::prelude::*;

#[task]
pub async fn source(seed: u64) -> u64 {
    seed
}

#[task]
pub async fn middle(x: u64, k: u64) -> u64 {
    x * 10 + k
}

#[task]
pub async fn sink(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64) -> u64 {
    a + b + c + d + e + f + g + h
}

#[flow]
pub async fn diamond(seed: u64) -> u64 {
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

/// What `diamond(seed)` returns.
pub fn diamond_expected(seed: u64) -> u64 {
    seed * 80 + 36
}
