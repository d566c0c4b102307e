use weft::prelude::*;

struct Report;

#[task(persist = true)]
async fn build(size: u32) -> Report {
    let _ = size;
    Report
}

fn main() {}
