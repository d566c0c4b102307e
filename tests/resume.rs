//! Resuming runs from their checkpoints: after a failure, after the process was killed
//! (SIGKILL, in a child process), and budgeted runs continued invocation after invocation
//! (seed 004's serverless functions).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft::prelude::*;
use weft::results::{LocalStore, MemoryStore};
use weft::Handoff;

static RUNS: Mutex<BTreeMap<&'static str, u32>> = Mutex::new(BTreeMap::new());

fn ran(name: &'static str) {
    *RUNS.lock().unwrap().entry(name).or_default() += 1;
}

fn runs_of(name: &str) -> u32 {
    RUNS.lock().unwrap().get(name).copied().unwrap_or(0)
}

static FLAKY_FIXED: AtomicBool = AtomicBool::new(false);

#[task]
async fn load_a() -> Vec<u32> {
    ran("load_a");
    vec![1, 2, 3]
}

#[task]
async fn flaky_b(xs: Vec<u32>) -> Result<u32, String> {
    ran("flaky_b");
    if FLAKY_FIXED.load(Ordering::SeqCst) {
        Ok(xs.iter().sum())
    } else {
        Err("database locked".into())
    }
}

#[task]
async fn report_c(total: u32) -> String {
    ran("report_c");
    format!("total {total}")
}

#[flow(persist)]
async fn pipeline() -> String {
    let a = load_a()?;
    let b = flaky_b(a)?;
    let c = report_c(b)?;
    c
}

#[tokio::test]
async fn a_failed_run_resumes_without_redoing_what_completed() {
    let store = Arc::new(MemoryStore::default());
    let first = pipeline::run_with(RunConfig::new().result_store(store.clone())).await;
    assert_eq!(first.state.kind, StateKind::Failed);
    assert_eq!(
        first.task("report_c").unwrap().state.kind,
        StateKind::NotRun
    );

    FLAKY_FIXED.store(true, Ordering::SeqCst);
    let second = pipeline::run_with(RunConfig::new().resume(first.id).result_store(store)).await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.result.as_deref(), Ok("total 6"));
    assert_eq!(second.task("load_a").unwrap().state.kind, StateKind::Cached);
    assert_eq!(
        second.task("load_a").unwrap().state.message.as_deref(),
        Some("restored from this run's checkpoint")
    );
    assert_eq!(
        (runs_of("load_a"), runs_of("flaky_b"), runs_of("report_c")),
        (1, 2, 1)
    );
}

static ELEMENT_FIXED: AtomicBool = AtomicBool::new(false);
static ELEMENT_RUNS: AtomicU32 = AtomicU32::new(0);

#[task]
async fn square(x: u32) -> Result<u32, String> {
    ELEMENT_RUNS.fetch_add(1, Ordering::SeqCst);
    if x == 3 && !ELEMENT_FIXED.load(Ordering::SeqCst) {
        return Err("flaky element".into());
    }
    Ok(x * x)
}

#[flow(persist)]
async fn squares() -> Vec<u32> {
    let s = square::map(1..=5)?;
    s
}

#[tokio::test]
async fn a_resumed_map_reruns_only_its_failed_elements() {
    let store = Arc::new(MemoryStore::default());
    let first = squares::run_with(RunConfig::new().result_store(store.clone())).await;
    assert!(!first.is_successful());
    assert_eq!(ELEMENT_RUNS.load(Ordering::SeqCst), 5);
    ELEMENT_FIXED.store(true, Ordering::SeqCst);
    let second = squares::run_with(RunConfig::new().resume(first.id).result_store(store)).await;
    assert_eq!(second.result, Ok(vec![1, 4, 9, 16, 25]));
    assert_eq!(
        ELEMENT_RUNS.load(Ordering::SeqCst),
        6,
        "only element 3 ran again"
    );
}

// ---------- seed 004: a budget of one task run per invocation

static BUDGETED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

macro_rules! seed_task {
    ($name:ident) => {
        #[task]
        fn $name() {
            BUDGETED.lock().unwrap().push(stringify!($name));
        }
    };
}
seed_task!(task1);
seed_task!(task2);
seed_task!(task3);
seed_task!(task4);
seed_task!(task5);
seed_task!(task6);
seed_task!(task7);
seed_task!(task8);

#[flow(persist)]
async fn seed_004() {
    let t1 = task1();
    let t2 = task2();
    #[wait_for(t1, t2)]
    let t3 = task3();
    #[wait_for(t3)]
    let t4 = task4();
    #[wait_for(t4)]
    let _t5 = task5();
    #[wait_for(t4)]
    let t6 = task6();
    #[wait_for(t2, t6)]
    let _t7 = task7();
    #[wait_for(t2, t3)]
    let _t8 = task8();
}

#[tokio::test]
async fn budgeted_invocations_continue_until_the_flow_completes() {
    let store = Arc::new(MemoryStore::default());
    let mut handoff: Option<Handoff> = None;
    let mut invocations = 0;
    loop {
        invocations += 1;
        assert!(invocations <= 20, "the flow never completed");
        let mut config = RunConfig::new()
            .result_store(store.clone())
            .max_task_runs(1);
        if let Some(h) = &handoff {
            config = config.resume_from(h);
        }
        let run = seed_004::run_with(config).await;
        let states: Vec<StateKind> = run.task_runs.iter().map(|r| r.state.kind).collect();
        let started = states
            .iter()
            .filter(|k| **k == StateKind::Completed)
            .count();
        assert!(started <= 1, "one task run per invocation: {states:?}");
        if run.is_successful() {
            break;
        }
        assert_eq!(run.state.kind, StateKind::Pending, "{}", run.state);
        // The states travel as JSON, like the seed's Pub/Sub message.
        let json = serde_json::to_string(&run.handoff()).unwrap();
        handoff = Some(serde_json::from_str(&json).unwrap());
    }
    let order = BUDGETED.lock().unwrap().clone();
    assert_eq!(order.len(), 8, "each task ran exactly once: {order:?}");
    assert_eq!(
        invocations, 8,
        "each invocation ran one task; the last one completed the flow"
    );
    let pos = |t: &str| order.iter().position(|x| *x == t).unwrap();
    for (before, after) in [
        ("task1", "task3"),
        ("task2", "task3"),
        ("task3", "task4"),
        ("task4", "task5"),
        ("task6", "task7"),
        ("task3", "task8"),
    ] {
        assert!(
            pos(before) < pos(after),
            "{before} before {after}: {order:?}"
        );
    }
}

// ---------- SIGKILL in the middle of a flow, in a child process

fn log_line(dir: &Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("ran.log"))
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var("WEFT_KILL_DIR").unwrap())
}

#[task]
fn step_one() -> u32 {
    log_line(&child_dir(), "step_one");
    1
}

#[task]
fn step_two(x: u32) -> u32 {
    log_line(&child_dir(), "step_two");
    x + 1
}

#[task]
fn step_three(x: u32) -> u32 {
    if std::env::var_os("WEFT_KILL_RESUMING").is_none() {
        log_line(&child_dir(), "step_three started");
        std::thread::sleep(Duration::from_secs(60)); // killed here
    }
    log_line(&child_dir(), "step_three");
    x * 10
}

#[task]
fn step_four(x: u32) -> u32 {
    log_line(&child_dir(), "step_four");
    x + 3
}

#[flow(persist)]
async fn killable() -> u32 {
    let a = step_one()?;
    let b = step_two(a)?;
    let c = step_three(b)?;
    let d = step_four(c)?;
    d
}

/// Runs only in the child.
#[tokio::test]
async fn child_runs_the_killable_flow() {
    let Some(id) = std::env::var_os("WEFT_KILL_RUN_ID") else {
        return;
    };
    let id: uuid::Uuid = id.to_str().unwrap().parse().unwrap();
    let store = Arc::new(LocalStore::new(child_dir().join("results")));
    let run = killable::run_with(RunConfig::new().resume(id).result_store(store)).await;
    log_line(&child_dir(), &format!("result {:?}", run.result));
}

fn child(dir: &Path, id: uuid::Uuid, resuming: bool) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_runs_the_killable_flow",
        "--exact",
        "--test-threads=1",
    ])
    .env("WEFT_KILL_DIR", dir)
    .env("WEFT_KILL_RUN_ID", id.to_string())
    .env("WEFT_LOG", "off");
    if resuming {
        cmd.env("WEFT_KILL_RESUMING", "1");
    }
    cmd
}

#[test]
fn a_killed_run_resumes_and_no_completed_task_runs_twice() {
    let dir = std::env::temp_dir().join(format!("weft-kill-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let id = uuid::Uuid::new_v4();
    let log = || std::fs::read_to_string(dir.join("ran.log")).unwrap_or_default();

    let mut first = child(&dir, id, false).spawn().unwrap();
    let waited = std::time::Instant::now();
    while !log().contains("step_three started") {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the child never reached step three"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let status = child(&dir, id, true).status().unwrap();
    assert!(status.success());
    let lines: Vec<String> = log().lines().map(str::to_owned).collect();
    let count = |l: &str| lines.iter().filter(|x| *x == l).count();
    assert_eq!(count("step_one"), 1, "{lines:?}");
    assert_eq!(count("step_two"), 1, "{lines:?}");
    assert_eq!(count("step_three"), 1, "{lines:?}");
    assert_eq!(count("step_four"), 1, "{lines:?}");
    assert_eq!(lines.last().unwrap(), "result Ok(23)");
    std::fs::remove_dir_all(dir).unwrap();
}
