use weft::prelude::*;

fn helper(x: u32) -> u32 {
    x + 1
}

#[flow]
async fn f() -> u32 {
    let x = helper(1)?;
    x
}

fn main() {}
