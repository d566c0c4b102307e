use weft::prelude::*;

struct Data(u32);

#[task]
fn make() -> Data {
    Data(1)
}

#[task]
fn eat(d: Data) -> u32 {
    d.0
}

#[flow]
async fn f() -> u32 {
    let a = make()?;
    println!("{}", a.0);
    let b = eat(a)?;
    println!("{}", a.0);
    b
}

fn main() {}
