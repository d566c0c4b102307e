use weft::prelude::*;

#[task]
fn shout(x: &str) -> String {
    x.to_uppercase()
}

fn main() {}
