use weft::prelude::*;

#[task]
fn one() -> u32 {
    1
}

#[flow]
async fn f() {
    let a = one();
    #[wait_for(a)]
    println!("done");
}

fn main() {}
