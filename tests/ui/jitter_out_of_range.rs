use weft::prelude::*;

#[task(retries = 2, retry_jitter = 1.5)]
fn flaky() -> u32 {
    1
}

fn main() {}
