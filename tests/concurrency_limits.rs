//! Global concurrency limits by tag across processes: three processes running tagged task runs
//! never run more than the limit at once (recorded start and end times); a process holding a
//! slot is SIGKILLed and its slot comes back. On SQLite and PostgreSQL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::store::{RunFilter, Store, StoreOptions};

mod common;

#[task(tags = ["db"])]
async fn query(i: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(150)).await;
    i
}

/// Eight tagged task runs at once, were it not for the limit.
#[flow]
async fn eight_queries() -> u32 {
    let ys = query::map((0..8).collect::<Vec<u32>>())?;
    ys.len() as u32
}

#[task(tags = ["db", "slow"])]
async fn hold(secs: u64) -> u64 {
    weft::tracing::warn!("holding");
    tokio::time::sleep(Duration::from_secs(secs)).await;
    secs
}

#[flow]
async fn holder(secs: u64) -> u64 {
    let s = hold(secs)?;
    s
}

async fn store_of(url: &str, schema: Option<&str>) -> Store {
    let mut options = StoreOptions::new(url);
    if let Some(s) = schema {
        options = options.schema(s);
    }
    options.connect().await.unwrap()
}

/// The entry point of the child processes: does nothing unless started by [`child`].
#[test]
fn child_process() {
    let Ok(role) = std::env::var("WEFT_LIMITS_ROLE") else {
        return;
    };
    let url = std::env::var("WEFT_LIMITS_URL").unwrap();
    let schema = std::env::var("WEFT_LIMITS_SCHEMA").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = store_of(&url, schema.as_deref()).await;
        let config = RunConfig::new().history(store.clone());
        let state = match role.as_str() {
            "queries" => eight_queries::run_with(config).await.state,
            _ => holder::run_with(config, 60).await.state,
        };
        assert_eq!(state.kind, StateKind::Completed, "{state:?}");
    });
}

fn child(role: &str, url: &str, schema: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_process",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("WEFT_LIMITS_ROLE", role)
    .env("WEFT_LIMITS_URL", url)
    .env("WEFT_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(s) = schema {
        cmd.env("WEFT_LIMITS_SCHEMA", s);
    }
    cmd.spawn().unwrap()
}

/// Three processes, eight tagged task runs each, limit 2: at most 2 ran at once, and 2 did.
async fn never_more_than_the_limit(url: &str, schema: Option<&str>) {
    let store = store_of(url, schema).await;
    store.set_concurrency_limit("db", 2).await.unwrap();
    let children: Vec<_> = (0..3).map(|_| child("queries", url, schema)).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let runs = store
        .runs(&RunFilter::new().flow("eight_queries"))
        .await
        .unwrap();
    assert_eq!(runs.len(), 3);
    let mut edges = Vec::new();
    for r in &runs {
        let detail = store.run(r.id).await.unwrap();
        for t in detail.task_runs.iter().filter(|t| t.map_index.is_some()) {
            edges.push((t.started.unwrap(), 1));
            edges.push((t.ended.unwrap(), -1));
        }
    }
    assert_eq!(edges.len(), 48);
    edges.sort(); // an end sorts before a start at the same instant
    let (mut open, mut most) = (0, 0);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    assert_eq!(
        most, 2,
        "task runs tagged db at once: {most}; the limit is 2"
    );
    let limits = store.concurrency_limits().await.unwrap();
    assert_eq!((limits[0].limit, limits[0].active), (2, 0), "slots leaked");
}

/// A process holding the only slot is SIGKILLed: a task run waiting in this process gets the
/// slot and completes.
async fn a_killed_holders_slot_comes_back(url: &str, schema: Option<&str>) {
    let store = store_of(url, schema).await;
    store.set_concurrency_limit("slow", 1).await.unwrap();
    let mut doomed = child("holder", url, schema);
    let t = Instant::now();
    while store.concurrency_limits().await.unwrap()[0].active == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the child never took the slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting = tokio::spawn(holder::run_with(RunConfig::new().history(store.clone()), 0));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiting.is_finished(),
        "ran while another process held the only slot"
    );
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let killed = Instant::now();
    let run = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the slot never came back")
        .unwrap();
    assert_eq!(run.state.kind, StateKind::Completed);
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed.elapsed()
    );
}

fn sqlite_url(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("weft-limits-{tag}-{}", uuid::Uuid::new_v4()));
    format!("sqlite://{}/weft.db", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_never_more_than_the_limit() {
    never_more_than_the_limit(&sqlite_url("most"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_holders_slot_comes_back() {
    a_killed_holders_slot_comes_back(&sqlite_url("killed"), None).await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::{server_url, Schema};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_never_more_than_the_limit() {
        let schema = Schema::new("limits").await;
        never_more_than_the_limit(&server_url(), Some(&schema.name)).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_killed_holders_slot_comes_back() {
        let schema = Schema::new("limitk").await;
        a_killed_holders_slot_comes_back(&server_url(), Some(&schema.name)).await;
        schema.drop().await;
    }
}
