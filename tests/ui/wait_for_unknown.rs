use weft::prelude::*;

#[task]
fn one() -> u32 {
    1
}

#[flow]
async fn f() {
    #[wait_for(nope)]
    let a = one()?;
    println!("{a}");
}

fn main() {}
