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

#[task]
fn eat2(d: Data) -> u32 {
    d.0 * 2
}

#[flow]
async fn f() -> u32 {
    let a = make()?;
    let b = eat(a)?;
    let c = eat2(a)?;
    b + c
}

fn main() {}
