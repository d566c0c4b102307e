use weft::prelude::*;

#[task]
fn one() -> u32 {
    1
}

#[task]
fn two() -> u32 {
    2
}

#[flow]
async fn f() {
    #[wait_for(b)]
    let a = one()?;
    let b = two()?;
    println!("{a} {b}");
}

fn main() {}
