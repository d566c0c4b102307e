use weft::prelude::*;

#[task(retry = 3)]
fn flaky() -> u32 {
    1
}

fn main() {}
