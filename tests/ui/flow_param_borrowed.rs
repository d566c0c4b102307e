use weft::prelude::*;

#[task]
async fn shout(x: &str) -> String {
    x.to_uppercase()
}

#[flow]
async fn f(x: &str) -> String {
    let s = shout(x)?;
    s
}

fn main() {}
