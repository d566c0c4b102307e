use weft::prelude::*;

struct Connection;

#[task(cache_for = "1h")]
async fn query(conn: Connection, size: u32) -> u32 {
    let _ = conn;
    size
}

fn main() {}
