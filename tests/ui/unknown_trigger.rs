use weft::prelude::*;

#[task(trigger = sometimes)]
fn cleanup() {}

fn main() {}
