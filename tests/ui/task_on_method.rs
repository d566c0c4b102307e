use weft::prelude::*;

struct Db;

impl Db {
    #[task]
    fn count(&self) -> u32 {
        0
    }
}

fn main() {}
