use weft::prelude::*;

#[task]
fn double(x: u32) -> u32 {
    x * 2
}

#[flow]
async fn f(s: String) -> u32 {
    let n: u32 = s.parse()?;
    let d = double(n)?;
    d
}

fn main() {}
