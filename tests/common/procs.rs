//! Shared by the tests that run workers and other child processes: a marks file the children
//! append to (what ran, in order), scratch directories, polling.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Appends `line` to `marks.log` in the directory named by the environment variable `dir_var`
/// (set by the test for its child processes).
pub fn mark(dir_var: &str, line: &str) {
    let dir = std::env::var(dir_var).unwrap_or_else(|_| panic!("{dir_var} is not set"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(&dir).join("marks.log"))
        .unwrap();
    // One write: processes append to the same file, and `writeln!` may write in pieces.
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// The lines of `dir`'s `marks.log` (none yet: empty).
pub fn marks(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("marks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A new empty directory under the temporary directory.
pub fn scratch(prefix: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `f` every 100 ms until it gives a value; fails saying `what` after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `{"key": n}`: the parameters of a run told apart by its key.
pub fn key(n: u32) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("key".into(), n.into());
    m
}
