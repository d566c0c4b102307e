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

fn stdout_of(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
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
    let out = c.stdout.take();
    let status = exit_within(c, Duration::from_secs(30), "sync task timed out");
    let mut c_out = String::new();
    std::io::Read::read_to_string(&mut out.unwrap(), &mut c_out).unwrap();
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
    let out = c.stdout.take();
    let status = exit_within(c, Duration::from_secs(30), "serve after SIGTERM");
    let mut c_out = String::new();
    std::io::Read::read_to_string(&mut out.unwrap(), &mut c_out).unwrap();
    assert!(c_out.contains("server stopped"), "{c_out}");
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(dir).ok();
}
