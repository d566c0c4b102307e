use weft::prelude::*;

#[flow]
fn f() {}

fn main() {}
