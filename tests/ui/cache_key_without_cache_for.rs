use weft::prelude::*;

fn key(size: &u32) -> String {
    size.to_string()
}

#[task(cache_key = key, cache_version = "2")]
async fn query(size: u32) -> u32 {
    size
}

fn main() {}
