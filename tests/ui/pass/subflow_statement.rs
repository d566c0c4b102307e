// A flow called as a statement of another flow's body is a subflow node: `?` works as for a
// task, and the run links the child to its parent.
use weft::prelude::*;

#[task]
fn double(x: u32) -> u32 {
    x * 2
}

#[flow]
async fn child(x: u32) -> u32 {
    let y = double(x)?;
    y
}

#[flow]
async fn parent() -> u32 {
    let y = child(2)?;
    y + 1
}

#[tokio::main]
async fn main() {
    let run = parent::run_with(RunConfig::new().no_history()).await;
    assert_eq!(run.result, Ok(5));
    assert_eq!(run.subflows.len(), 1);
}
