use weft::prelude::*;

struct NotClone;

#[task(retries = 2)]
async fn f(x: NotClone) -> u32 {
    let _ = x;
    1
}

fn main() {}
