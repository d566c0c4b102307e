use weft::prelude::*;

#[task(target = "{date:%Y-%Q}/{task_name}.bin")]
async fn a() -> u32 {
    1
}

#[task(target = "reports/{}/{task_name.bin")]
async fn b() -> u32 {
    2
}

fn main() {}
