use weft::prelude::*;

#[task]
fn one() -> u32 {
    1
}

#[flow(fail_fsat = true)]
async fn f() -> u32 {
    let a = one()?;
    a
}

fn main() {}
