use weft::prelude::*;

#[task]
fn pair() -> (u32, u32) {
    (1, 2)
}

#[flow]
async fn f() -> u32 {
    let (a, b) = pair()?;
    a + b
}

fn main() {}
