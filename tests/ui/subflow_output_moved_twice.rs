use weft::prelude::*;

struct Report(u32);

#[task]
fn measure() -> u32 {
    1
}

#[flow]
async fn child() -> Report {
    let m = measure()?;
    Report(m)
}

#[task]
fn publish(r: Report) -> u32 {
    r.0
}

#[flow]
async fn parent() -> u32 {
    let r = child()?;
    let a = publish(r)?;
    let b = publish(r)?;
    a + b
}

fn main() {}
