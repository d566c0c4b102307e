//! Workers in real processes sharing one store: every run executed once within the pool's
//! limit, a SIGKILLed worker's run re-run by another from its checkpoints, the scheduler taken
//! over when its holder dies, and a cancel request reaching the worker that runs the run. On
//! SQLite (several processes on one machine) and PostgreSQL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::schedule::{Deployment, Schedule};
use weft::store::{CancelOutcome, RunFilter, RunRecord, Store, StoreOptions, WorkPoolSpec};
use weft::worker::Worker;

mod common;
use common::procs::{key, marks, wait_for};

const POOL: &str = "workers-test";

/// Appends `line` to the marks file of the test this process serves.
fn mark(line: &str) {
    common::procs::mark("WEFT_WORKERS_DIR", line);
}

fn scratch(tag: &str) -> PathBuf {
    common::procs::scratch("weft-workers", tag)
}

#[task]
async fn work(key: u32) -> u32 {
    mark(&format!("work {key}"));
    tokio::time::sleep(Duration::from_millis(40)).await;
    key
}

/// One short run per key: its mark counts executions.
#[flow]
async fn counted(key: u32) -> u32 {
    let k = work(key)?;
    k
}

#[task]
async fn first_half(key: u32) -> u32 {
    mark(&format!("first {key}"));
    key + 1
}

#[task]
async fn second_half(x: u32) -> u32 {
    mark(&format!("second-start {x}"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    mark(&format!("second-done {}", x * 10));
    x * 10
}

/// Two tasks with checkpoints: killed during the second, resumed without the first.
#[flow(persist)]
async fn halves(key: u32) -> u32 {
    let a = first_half(key)?;
    let b = second_half(a)?;
    b
}

#[task]
async fn long_wait(secs: u32) -> u32 {
    mark("long-wait started");
    tokio::time::sleep(Duration::from_secs(u64::from(secs))).await;
    secs
}

#[flow]
async fn waiting(secs: u32) -> u32 {
    let s = long_wait(secs)?;
    s
}

/// The deployments the workers of these tests serve; `beat` (every second) only with
/// `scheduled`.
fn deployments(scheduled: bool) -> Vec<Deployment> {
    let mut all = vec![
        Deployment::new("counted", counted::flow(), (0,)),
        Deployment::new("halves", halves::flow(), (1,)).retries(1),
        Deployment::new("waiting", waiting::flow(), (30,)),
        Deployment::new("one at a time", counted::flow(), (0,)).max_active_runs(1),
    ];
    if scheduled {
        all.push(
            Deployment::new("beat", counted::flow(), (7,))
                .schedule(Schedule::interval("1s").unwrap()),
        );
    }
    all
}

/// Where a test's store lives: a SQLite file or a PostgreSQL schema.
#[derive(Clone)]
struct Db {
    url: String,
    schema: Option<String>,
}

impl Db {
    async fn store(&self) -> Store {
        let mut options = StoreOptions::new(&self.url);
        if let Some(s) = &self.schema {
            options = options.schema(s);
        }
        options.connect().await.unwrap()
    }
}

/// The entry point of worker processes: does nothing unless started by [`spawn_worker`].
#[test]
fn child_worker() {
    let Ok(name) = std::env::var("WEFT_WORKERS_NAME") else {
        return;
    };
    let db = Db {
        url: std::env::var("WEFT_WORKERS_URL").unwrap(),
        schema: std::env::var("WEFT_WORKERS_SCHEMA").ok(),
    };
    let limit: usize = std::env::var("WEFT_WORKERS_LIMIT")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        Worker::new(POOL)
            .name(name)
            .store(db.store().await)
            .limit(limit)
            .poll_every(Duration::from_millis(100))
            .grace(Duration::from_secs(5))
            .deployments(deployments(std::env::var("WEFT_WORKERS_BEAT").is_ok()))
            .run()
            .await
            .unwrap();
    });
}

/// A worker process; SIGKILLed when dropped unless it exited.
struct WorkerProcess {
    child: std::process::Child,
    name: String,
}

impl WorkerProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// SIGTERM, then waits for it to stop (its runs get their grace).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("worker {} did not stop within 20 s of SIGTERM", self.name);
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

fn spawn_worker(db: &Db, dir: &Path, name: &str, limit: usize) -> WorkerProcess {
    spawn(db, dir, name, limit, false)
}

fn spawn(db: &Db, dir: &Path, name: &str, limit: usize, scheduled: bool) -> WorkerProcess {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_worker", "--exact", "--nocapture", "--test-threads=1"])
        .env("WEFT_WORKERS_NAME", name)
        .env("WEFT_WORKERS_URL", &db.url)
        .env("WEFT_WORKERS_DIR", dir)
        .env("WEFT_WORKERS_LIMIT", limit.to_string())
        .env("WEFT_HOME", dir)
        .env("WEFT_LOG", "warn")
        .stdout(Stdio::null());
    if let Some(s) = &db.schema {
        cmd.env("WEFT_WORKERS_SCHEMA", s);
    }
    if scheduled {
        cmd.env("WEFT_WORKERS_BEAT", "1");
    }
    WorkerProcess {
        child: cmd.spawn().unwrap(),
        name: name.to_owned(),
    }
}

/// The most intervals open at once.
fn max_overlap(runs: &[RunRecord]) -> usize {
    let mut edges: Vec<(chrono::DateTime<chrono::Utc>, i32)> = Vec::new();
    for r in runs {
        edges.push((r.started, 1));
        edges.push((r.ended.expect("ended"), -1));
    }
    edges.sort(); // an end sorts before a start at the same instant
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    most as usize
}

/// The runs in the order they started: id, start, end, worker, state (for failure messages).
fn timeline(runs: &[RunRecord]) -> String {
    let mut runs: Vec<_> = runs.iter().collect();
    runs.sort_by_key(|r| r.started);
    runs.iter()
        .map(|r| {
            let (worker, tries) = r
                .placement
                .as_ref()
                .map_or((None, 0), |p| (p.worker.clone(), p.tries));
            let ended = r.ended.map(|e| e.format("%H:%M:%S%.6f").to_string());
            format!(
                "{} {} .. {ended:?} {worker:?} {:?} tries {tries} {:?}\n",
                r.id,
                r.started.format("%H:%M:%S%.6f"),
                r.state,
                r.message
            )
        })
        .collect()
}

/// Creates the pool and registers the deployments (as a worker would) so that runs can be
/// scheduled before any worker starts.
async fn prepare(store: &Store, limit: Option<u32>, scheduled: bool) {
    let mut spec = WorkPoolSpec::new(POOL);
    spec.concurrency_limit = limit;
    store.create_work_pool(&spec).await.unwrap();
    let placeholder = Worker::new(POOL)
        .store(store.clone())
        .deployments(deployments(scheduled));
    // A worker that stops at once: it has registered the deployments in the pool.
    placeholder.run_until(async {}).await.unwrap();
}

/// 4 worker processes, `n` runs due at once: each executed exactly once, none lost, never
/// more than the pool's limit running at once (recorded start and end times).
async fn every_run_once_within_the_pool_limit(db: Db, n: u32) {
    let dir = scratch("once");
    let store = db.store().await;
    prepare(&store, Some(6), false).await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(store.schedule_run("counted", key(i), None).await.unwrap());
    }
    let workers: Vec<_> = (0..4)
        .map(|i| spawn_worker(&db, &dir, &format!("w{i}"), 3))
        .collect();
    let runs = wait_for(Duration::from_secs(120), "every run to end", || async {
        let runs = store
            .runs(&RunFilter::new().flow("counted").limit(n + 10))
            .await
            .ok()?;
        let ended = runs.iter().filter(|r| r.state.is_final()).count();
        (ended == n as usize).then_some(runs)
    })
    .await;
    for w in workers {
        w.stop();
    }
    assert!(runs.iter().all(|r| r.state == StateKind::Completed));
    let executed = marks(&dir);
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for m in &executed {
        *per_key.entry(m.as_str()).or_default() += 1;
    }
    assert_eq!(executed.len(), n as usize, "executions: {}", executed.len());
    assert!(per_key.values().all(|c| *c == 1), "a run executed twice");
    let mut got: Vec<_> = runs.iter().map(|r| r.id).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "the runs are the ones scheduled, under their ids");
    let most = max_overlap(&runs);
    assert!(
        most <= 6,
        "{most} runs of the pool ran at once; its limit is 6"
    );
    assert!(most >= 2, "the workers never ran in parallel ({most})");
    let by_worker: HashMap<String, usize> = runs.iter().fold(HashMap::new(), |mut m, r| {
        let w = r.placement.as_ref().unwrap().worker.clone().unwrap();
        *m.entry(w).or_default() += 1;
        m
    });
    assert!(
        by_worker.len() >= 2,
        "one worker ran everything: {by_worker:?}"
    );
}

/// A deployment with `max_active_runs(1)` served by two workers: its runs never overlap.
async fn max_active_runs_holds_across_workers(db: Db) {
    let dir = scratch("max-active");
    let store = db.store().await;
    prepare(&store, None, false).await;
    for i in 0..12 {
        store
            .schedule_run("one at a time", key(i), None)
            .await
            .unwrap();
    }
    let workers: Vec<_> = (0..2)
        .map(|i| spawn_worker(&db, &dir, &format!("w{i}"), 4))
        .collect();
    let runs = wait_for(Duration::from_secs(60), "every run to end", || async {
        let runs = store.runs(&RunFilter::new().flow("counted")).await.ok()?;
        (runs.iter().filter(|r| r.state.is_final()).count() == 12).then_some(runs)
    })
    .await;
    for w in workers {
        w.stop();
    }
    assert_eq!(
        max_overlap(&runs),
        1,
        "runs of the deployment overlapped:\n{}",
        timeline(&runs)
    );
    assert_eq!(marks(&dir).len(), 12);
}

/// A worker SIGKILLed during the second task of a `persist` flow: the run is Crashed, scheduled
/// again under its id, and another worker finishes it without running the first task again.
async fn a_killed_workers_run_resumes_on_another(db: Db) {
    let dir = scratch("lazarus");
    let store = db.store().await;
    prepare(&store, None, false).await;
    let id = store.schedule_run("halves", key(4), None).await.unwrap();
    let mut a = spawn_worker(&db, &dir, "doomed", 2);
    wait_for(
        Duration::from_secs(30),
        "the second task to start",
        || async {
            marks(&dir)
                .iter()
                .any(|m| m.starts_with("second-start"))
                .then_some(())
        },
    )
    .await;
    a.kill();
    let killed = Instant::now();
    let _b = spawn_worker(&db, &dir, "rescuer", 2);
    let run = wait_for(Duration::from_secs(40), "the run to be re-run", || async {
        let r = store.run_record(id).await.ok()?;
        (r.state.is_final()).then_some(r)
    })
    .await;
    let took = killed.elapsed();
    assert_eq!(run.state, StateKind::Completed, "{:?}", run.message);
    let placement = run.placement.unwrap();
    assert_eq!(placement.tries, 1);
    assert_eq!(placement.worker.as_deref(), Some("rescuer"));
    let m = marks(&dir);
    let count = |p: &str| m.iter().filter(|l| l.starts_with(p)).count();
    assert_eq!(count("first "), 1, "the first task ran again: {m:?}");
    assert_eq!(count("second-start"), 2, "{m:?}");
    assert!(m.contains(&"second-done 50".to_owned()), "{m:?}");
    let detail = store.run(id).await.unwrap();
    let states: Vec<&str> = detail
        .state_changes
        .iter()
        .filter(|c| c.node.is_none())
        .map(|c| c.state.as_str())
        .collect();
    assert!(
        states.windows(2).any(|w| w == ["Crashed", "Scheduled"]),
        "{states:?}"
    );
    assert!(took < Duration::from_secs(30), "recovered in {took:?}");
}

/// Two workers; the one holding the scheduler is killed: the other takes over, the schedule
/// keeps firing, and no schedule time gets two runs.
async fn the_scheduler_fails_over(db: Db) {
    let dir = scratch("failover");
    let store = db.store().await;
    prepare(&store, None, true).await;
    let a = spawn(&db, &dir, "a", 4, true);
    let b = spawn(&db, &dir, "b", 4, true);
    let leader = wait_for(Duration::from_secs(20), "a scheduler", || async {
        let workers = store.workers(Some(POOL)).await.ok()?;
        let done = store.runs(&RunFilter::new().flow("counted")).await.ok()?;
        (workers.len() == 2 && done.iter().any(|r| r.state == StateKind::Completed))
            .then_some(())?;
        store.leader("scheduler").await.ok().flatten()
    })
    .await;
    let workers = store.workers(Some(POOL)).await.unwrap();
    let holder = workers.iter().find(|w| w.id.to_string() == leader).unwrap();
    let (mut dead, survivor) = match holder.name.as_str() {
        "a" => (a, b),
        _ => (b, a),
    };
    dead.kill();
    let killed = chrono::Utc::now();
    wait_for(
        Duration::from_secs(40),
        "runs due after the kill",
        || async {
            let runs = store.runs(&RunFilter::new().flow("counted")).await.ok()?;
            let after = runs
                .iter()
                .filter(|r| r.state == StateKind::Completed)
                .filter(|r| r.placement.as_ref().is_some_and(|p| p.scheduled > killed))
                .count();
            (after >= 3).then_some(())
        },
    )
    .await;
    survivor.stop();
    let runs = store.runs(&RunFilter::new().flow("counted")).await.unwrap();
    let mut slots: Vec<_> = runs
        .iter()
        .filter_map(|r| r.placement.as_ref().map(|p| p.scheduled))
        .collect();
    let total = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), total, "a schedule time got two runs");
}

/// A cancel request from this process reaches the worker process running the run.
async fn a_cancel_reaches_the_worker(db: Db) {
    let dir = scratch("cancel");
    let store = db.store().await;
    prepare(&store, None, false).await;
    let w = spawn_worker(&db, &dir, "runner", 2);
    let id = store
        .schedule_run("waiting", serde_json::Map::new(), None)
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "the run to start", || async {
        marks(&dir)
            .iter()
            .any(|m| m == "long-wait started")
            .then_some(())
    })
    .await;
    let outcome = wait_for(Duration::from_secs(10), "an owner", || async {
        match store.request_cancel(id, "not needed").await.ok()? {
            o @ CancelOutcome::Requested { owner: Some(_) } => Some(o),
            _ => None,
        }
    })
    .await;
    let CancelOutcome::Requested { owner: Some(owner) } = outcome else {
        unreachable!()
    };
    assert_eq!(owner.pid, w.pid());
    let run = wait_for(Duration::from_secs(10), "the run to end", || async {
        let r = store.run_record(id).await.ok()?;
        r.state.is_final().then_some(r)
    })
    .await;
    assert_eq!(run.state, StateKind::Cancelled, "{:?}", run.message);
    w.stop();
}

fn sqlite_db(tag: &str) -> Db {
    let dir = scratch(tag);
    Db {
        url: format!("sqlite://{}/weft.db", dir.display()),
        schema: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_run_once_within_the_pool_limit() {
    every_run_once_within_the_pool_limit(sqlite_db("db-once"), 120).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_max_active_runs_holds_across_workers() {
    max_active_runs_holds_across_workers(sqlite_db("db-max-active")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_workers_run_resumes_on_another() {
    a_killed_workers_run_resumes_on_another(sqlite_db("db-lazarus")).await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::{server_url, Schema};

    async fn db(tag: &str) -> (Schema, Db) {
        let schema = Schema::new(tag).await;
        let db = Db {
            url: server_url(),
            schema: Some(schema.name.clone()),
        };
        (schema, db)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_every_run_once_within_the_pool_limit() {
        let (schema, db) = db("wonce").await;
        every_run_once_within_the_pool_limit(db, 300).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_killed_workers_run_resumes_on_another() {
        let (schema, db) = db("wlazarus").await;
        a_killed_workers_run_resumes_on_another(db).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_max_active_runs_holds_across_workers() {
        let (schema, db) = db("wmax").await;
        max_active_runs_holds_across_workers(db).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_the_scheduler_fails_over() {
        let (schema, db) = db("wfailover").await;
        the_scheduler_fails_over(db).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_cancel_reaches_the_worker() {
        let (schema, db) = db("wcancel").await;
        a_cancel_reaches_the_worker(db).await;
        schema.drop().await;
    }
}
