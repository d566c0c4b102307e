//! Engine robustness (issue 11): abandoned sync bodies do not hold the process, a busy async
//! body cannot ignore its timeout, out-of-range concurrency limits, state handlers that ask for
//! a non-final state at the end of a run, concurrent resumes of one run, and temporary files of
//! interrupted result writes.
//!
//! Child processes re-execute this test binary with `WEFT_ER_CHILD=<case>` set: the test of
//! that name then runs its scenario; without the variable it returns at once.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft::prelude::*;

// ---------- child processes

fn child_case() -> Option<String> {
    std::env::var("WEFT_ER_CHILD").ok()
}

fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var("WEFT_ER_DIR").unwrap())
}

fn mark(line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(child_dir().join("marks.log"))
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

fn marks(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("marks.log")).unwrap_or_default()
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-er-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// This test binary running only the test `name`, as case `case`.
fn child(name: &str, case: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("WEFT_ER_CHILD", case)
        .env("WEFT_ER_DIR", dir)
        .env("WEFT_HOME", dir)
        .env("WEFT_HISTORY", "off")
        .env("WEFT_LOG", "warn")
        .stdout(Stdio::piped());
    cmd
}

/// Waits for `child` to exit; kills it and fails after a generous `limit`.
fn exit_within(mut child: std::process::Child, limit: Duration, what: &str) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{what}: the child process was still alive after {limit:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a child wrote to its stdout (read after it exited: the outputs are short).
fn read_all(mut pipe: std::process::ChildStdout) -> String {
    let mut out = String::new();
    std::io::Read::read_to_string(&mut pipe, &mut out).unwrap();
    out
}

// ---------- 1. an abandoned sync body does not hold the process

#[task(timeout = "200ms")]
fn sleeps_a_minute() -> u32 {
    mark("sync body started");
    std::thread::sleep(Duration::from_secs(60));
    1
}

#[flow]
async fn stuck_sync() -> u32 {
    let x = sleeps_a_minute()?;
    x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_times_out_a_sync_task() {
    if child_case().as_deref() != Some("sync-timeout") {
        return;
    }
    let run = stuck_sync::run_with(RunConfig::new().no_history()).await;
    let task = run.task("sleeps_a_minute").unwrap().state.kind;
    println!("flow returned: task {task}");
}

#[test]
fn a_timed_out_sync_task_does_not_keep_the_process_alive() {
    let dir = scratch("sync-timeout");
    let mut c = child("child_times_out_a_sync_task", "sync-timeout", &dir)
        .spawn()
        .unwrap();
    let out = c.stdout.take().unwrap();
    let status = exit_within(c, Duration::from_secs(30), "sync task timed out");
    let c_out = read_all(out);
    assert!(c_out.contains("flow returned: task TimedOut"), "{c_out}");
    assert!(status.success(), "{status}");
    assert!(marks(&dir).contains("sync body started"));
    std::fs::remove_dir_all(dir).ok();
}

#[task]
fn serve_sleeps_a_minute() -> u32 {
    mark("served sync body started");
    std::thread::sleep(Duration::from_secs(60));
    1
}

#[flow]
async fn stuck_served() -> u32 {
    let x = serve_sleeps_a_minute()?;
    x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_serves_a_stuck_sync_task() {
    use weft::schedule::{Deployment, Schedule, Server};
    if child_case().as_deref() != Some("serve-sigterm") {
        return;
    }
    let d = Deployment::new("stuck-sync", stuck_served::flow(), ())
        .schedule(Schedule::interval("100ms").unwrap());
    Server::new([d])
        .no_store()
        .grace(Duration::from_millis(200))
        .run()
        .await
        .unwrap();
    println!("server stopped");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_serve_while_a_sync_body_runs() {
    let dir = scratch("serve-sigterm");
    let mut c = child("child_serves_a_stuck_sync_task", "serve-sigterm", &dir)
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !marks(&dir).contains("served sync body started") {
        assert!(t.elapsed() < Duration::from_secs(60), "no run started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = c.stdout.take().unwrap();
    let status = exit_within(c, Duration::from_secs(30), "serve after SIGTERM");
    let c_out = read_all(out);
    assert!(c_out.contains("server stopped"), "{c_out}");
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(dir).ok();
}

// ---------- 3. concurrency limits beyond what a semaphore counts

#[task]
async fn one_more(x: u32) -> u32 {
    x + 1
}

#[flow]
async fn many(n: u32) -> Vec<u32> {
    let ys = one_more::map(0..n)?;
    ys
}

#[flow(max_concurrency = 4294967295)]
async fn many_unlimited(n: u32) -> Vec<u32> {
    let ys = one_more::map(0..n)?;
    ys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_concurrency_limits_mean_no_limit() {
    for n in [
        usize::MAX,
        tokio::sync::Semaphore::MAX_PERMITS + 1,
        tokio::sync::Semaphore::MAX_PERMITS,
    ] {
        let run = many::run_with(RunConfig::new().max_concurrency(n).no_history(), 20).await;
        assert_eq!(run.state.kind, StateKind::Completed, "{n}: {}", run.state);
        assert_eq!(run.result.unwrap().len(), 20);
    }
    let run = many_unlimited::run_with(RunConfig::new().no_history(), 5).await;
    assert_eq!(run.state.kind, StateKind::Completed, "{}", run.state);
}

// ---------- 4. a handler may not turn a final state into an unfinished one

fn back_to_running(c: &StateChange) -> Option<State> {
    c.new.is_final().then(|| State::of(StateKind::Running))
}

#[task(state_handlers = [back_to_running])]
async fn stubborn_ok() -> u32 {
    1
}

#[task(state_handlers = [back_to_running])]
async fn stubborn_bad() -> Result<u32, String> {
    Err("boom".into())
}

#[flow(state_handlers = [back_to_running])]
async fn stubborn() -> u32 {
    let a = stubborn_ok()?;
    let _b = stubborn_bad();
    a
}

#[derive(Default)]
struct Events(Mutex<Vec<(String, StateKind)>>);

impl EventSink for Events {
    fn on_event(&self, e: &RunEvent) {
        self.0
            .lock()
            .unwrap()
            .push((e.name.to_owned(), e.state.kind));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_cannot_leave_a_finished_run_running() {
    let events = Arc::new(Events::default());
    let run = stubborn::run_with(RunConfig::new().no_history().sink(events.clone())).await;
    assert_eq!(
        run.task("stubborn_ok").unwrap().state.kind,
        StateKind::Completed
    );
    assert_eq!(
        run.task("stubborn_bad").unwrap().state.kind,
        StateKind::Failed
    );
    assert_eq!(run.result, Ok(1));
    assert_eq!(run.state.kind, StateKind::Failed, "{}", run.state);
    let events = events.0.lock().unwrap().clone();
    let last = |name: &str| events.iter().rev().find(|e| e.0 == name).unwrap().1;
    assert_eq!(last("stubborn_ok"), StateKind::Completed, "{events:?}");
    assert_eq!(last("stubborn_bad"), StateKind::Failed, "{events:?}");
    assert_eq!(last("stubborn"), StateKind::Failed, "{events:?}");
    // Outside a flow too.
    let alone = stubborn_ok().await;
    assert_eq!(alone.state.kind, StateKind::Completed);
}

// ---------- 5. two resumes of one run at the same time

static HELD_RUNS: AtomicU32 = AtomicU32::new(0);

#[task]
async fn held(dir: String) -> u32 {
    HELD_RUNS.fetch_add(1, Ordering::SeqCst);
    if child_case().is_some() {
        mark("held started");
    }
    // Runs until the test lets it go: it is still going while the second resume is tried.
    while !Path::new(&dir).join("release").exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    7
}

#[flow(persist)]
async fn resumable(dir: String) -> u32 {
    let x = held(dir)?;
    x
}

async fn double_resume(store: Arc<dyn weft::results::ResultStore>, dir: &Path) {
    let id = uuid::Uuid::new_v4();
    let before = HELD_RUNS.load(Ordering::SeqCst);
    let d = dir.display().to_string();
    let cfg = || {
        RunConfig::new()
            .resume(id)
            .result_store(store.clone())
            .no_history()
    };
    let first = tokio::spawn(resumable::run_with(cfg(), d.clone()));
    while HELD_RUNS.load(Ordering::SeqCst) == before {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = tokio::time::timeout(
        Duration::from_secs(30),
        resumable::run_with(cfg(), d.clone()),
    )
    .await
    .expect("the second resume ran the task instead of being refused");
    assert_eq!(second.state.kind, StateKind::Cancelled, "{}", second.state);
    let why = second.state.message.clone().unwrap();
    assert!(
        why.contains(&format!("run {id} is already being resumed")),
        "{why}"
    );
    assert!(second.task_runs.is_empty());
    std::fs::write(dir.join("release"), "").unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.result, Ok(7), "{}", first.state);
    assert_eq!(HELD_RUNS.load(Ordering::SeqCst), before + 1, "ran once");
    // Once the first has ended, the run may be resumed again (here: all restored).
    let third = resumable::run_with(cfg(), d).await;
    assert_eq!(third.result, Ok(7), "{}", third.state);
    assert_eq!(third.task("held").unwrap().state.kind, StateKind::Cached);
    std::fs::remove_file(dir.join("release")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_resume_in_the_same_process_is_refused() {
    if child_case().is_some() {
        return;
    }
    let dir = scratch("resume-local");
    double_resume(
        Arc::new(weft::results::LocalStore::new(dir.join("results"))),
        &dir,
    )
    .await;
    double_resume(Arc::new(weft::results::MemoryStore::default()), &dir).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_resumes_a_run() {
    if child_case().as_deref() != Some("resume") {
        return;
    }
    let id: uuid::Uuid = std::env::var("WEFT_ER_RUN").unwrap().parse().unwrap();
    let store = Arc::new(weft::results::LocalStore::new(child_dir().join("results")));
    let cfg = RunConfig::new().resume(id).result_store(store).no_history();
    let run = resumable::run_with(cfg, child_dir().display().to_string()).await;
    println!("child run: {} {:?}", run.state.kind, run.result);
}

#[test]
fn a_second_resume_from_another_process_is_refused() {
    let dir = scratch("resume-procs");
    let id = uuid::Uuid::new_v4();
    let spawn = || {
        child("child_resumes_a_run", "resume", &dir)
            .env("WEFT_ER_RUN", id.to_string())
            .spawn()
            .unwrap()
    };
    let mut first = spawn();
    let t = Instant::now();
    while !marks(&dir).contains("held started") {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the first never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut second = spawn();
    let out2 = second.stdout.take().unwrap();
    let status2 = exit_within(second, Duration::from_secs(60), "second resume");
    let out2 = read_all(out2);
    assert!(status2.success());
    assert!(out2.contains("child run: Cancelled"), "{out2}");
    std::fs::write(dir.join("release"), "").unwrap();
    let out1 = first.stdout.take().unwrap();
    let status1 = exit_within(first, Duration::from_secs(60), "first resume");
    let out1 = read_all(out1);
    assert!(status1.success());
    assert!(out1.contains("child run: Completed Ok(7)"), "{out1}");
    assert_eq!(marks(&dir).matches("held started").count(), 1);
    std::fs::remove_dir_all(dir).ok();
}

// ---------- 2. an async body that never yields cannot ignore its timeout

static STOP_SPIN: AtomicBool = AtomicBool::new(false);

#[task(timeout = "300ms")]
async fn spins() -> u32 {
    let t = Instant::now();
    // Never awaits; stops when the test sees it TimedOut (or, before the fix, after 10 s).
    while !STOP_SPIN.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(10) {
        std::hint::spin_loop();
    }
    1
}

#[task]
async fn naps() -> u32 {
    tokio::time::sleep(Duration::from_millis(50)).await;
    2
}

#[flow]
async fn busy_and_calm() -> u32 {
    let _a = spins();
    let b = naps()?;
    b
}

/// Stops the spinning body once the engine recorded it TimedOut and its neighbour Completed.
#[derive(Default)]
struct StopWhenSeen(Mutex<Vec<(String, StateKind)>>);

impl EventSink for StopWhenSeen {
    fn on_event(&self, e: &RunEvent) {
        let mut seen = self.0.lock().unwrap();
        seen.push((e.name.to_owned(), e.state.kind));
        let has = |n: &str, k| seen.iter().any(|s| s.0 == n && s.1 == k);
        if has("spins", StateKind::TimedOut) && has("naps", StateKind::Completed) {
            STOP_SPIN.store(true, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_async_body_times_out_and_its_neighbour_runs() {
    let sink = Arc::new(StopWhenSeen::default());
    let run = busy_and_calm::run_with(RunConfig::new().no_history().sink(sink.clone())).await;
    assert_eq!(run.task("spins").unwrap().state.kind, StateKind::TimedOut);
    assert_eq!(run.task("naps").unwrap().state.kind, StateKind::Completed);
    assert_eq!(run.result, Ok(2));
    assert!(
        STOP_SPIN.load(Ordering::SeqCst),
        "the body was still spinning when its run was recorded TimedOut and its neighbour \
         Completed: {:?}",
        sink.0.lock().unwrap()
    );
}

#[task(timeout = "100ms")]
async fn spins_a_while() -> u32 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(400) {
        std::hint::spin_loop();
    }
    1
}

/// Outside a flow (polled in place): the run still ends TimedOut once the body returns.
#[tokio::test]
async fn a_busy_body_awaited_alone_ends_timed_out() {
    let run = spins_a_while().await;
    assert_eq!(run.state.kind, StateKind::TimedOut, "{}", run.state);
}
