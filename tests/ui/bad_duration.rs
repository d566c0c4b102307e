use weft::prelude::*;

#[task(retries = 2, retry_delay = "2 parsecs")]
fn flaky() -> u32 {
    1
}

fn main() {}
