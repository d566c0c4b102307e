//! `weft run cancel` end to end: the real binary cancelling runs that other processes run (this
//! test binary started again as a plain program running a flow, and `weft pipeline run`), and
//! a run whose process was killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::store::Store;

#[task]
async fn nap(secs: u64) -> u64 {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    secs
}

#[flow]
async fn long_nap(secs: u64) -> u64 {
    let n = nap(secs)?;
    n
}

/// The env var that makes [`child_running_a_long_flow`] the child process.
const CHILD_URL: &str = "WEFT_CANCEL_TEST_CHILD_URL";

/// Not a test of its own: with [`CHILD_URL`] set, this test binary is the plain program whose
/// run the tests cancel. Exits 0 when its run ended Cancelled, 3 otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_running_a_long_flow() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    let run = long_nap::run_with(RunConfig::new().history(store), 3600).await;
    let task = run.task("nap").map(|t| t.state.kind);
    println!("child: run {} task {task:?}", run.state);
    let cancelled = run.state.kind == StateKind::Cancelled && task == Some(StateKind::Cancelled);
    std::process::exit(if cancelled { 0 } else { 3 });
}

fn spawn_child(url: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_running_a_long_flow", "--exact", "--nocapture"])
        .env(CHILD_URL, url)
        .env("WEFT_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn weft(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--database")
        .arg(url)
        .args(args)
        .env("WEFT_LOG", "off")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-cancel-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `f` every 50 ms for at most `limit`.
async fn until<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The id of the run of `flow` once its task runs are all Running (at most 30 s).
async fn running_run(store: &Store, flow: &str, tasks: usize) -> uuid::Uuid {
    until(Duration::from_secs(30), || async {
        let runs = store
            .runs(&weft::store::RunFilter::new().flow(flow))
            .await
            .ok()?;
        let run = runs.first()?;
        let detail = store.run(run.id).await.ok()?;
        let running = detail
            .task_runs
            .iter()
            .filter(|t| t.state == StateKind::Running)
            .count();
        (running == tasks).then_some(run.id)
    })
    .await
    .unwrap_or_else(|| panic!("no run of {flow} with {tasks} running task runs"))
}

/// `weft run cancel ID` (off the runtime's threads: it blocks).
async fn cancel(url: &str, id: uuid::Uuid) -> Output {
    let (url, id) = (url.to_owned(), id.to_string());
    tokio::task::spawn_blocking(move || {
        weft(
            &url,
            &["run", "cancel", &id[..13], "--reason", "test says stop"],
        )
    })
    .await
    .unwrap()
}

/// Waits for `child` (at most 30 s); kills it and fails when it does not end.
fn wait_for(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().ok();
    panic!("the process did not end after the cancel");
}

/// The run and every task run of it are recorded Cancelled (none is left Running).
async fn recorded_cancelled(store: &Store, id: uuid::Uuid, tasks: usize) -> String {
    let detail = store.run(id).await.unwrap();
    assert_eq!(detail.run.state, StateKind::Cancelled, "{:?}", detail.run);
    assert!(detail.run.ended.is_some());
    assert_eq!(detail.task_runs.len(), tasks, "{:?}", detail.task_runs);
    for t in &detail.task_runs {
        assert_eq!(t.state, StateKind::Cancelled, "{t:?}");
    }
    detail.run.message.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_run_in_another_process_is_cancelled_by_weft_run_cancel() {
    let dir = temp();
    let url = format!("sqlite://{}/weft.db", dir.display());
    let store = Store::connect(&url).await.unwrap();
    let mut child = spawn_child(&url);
    let id = running_run(&store, "long_nap", 1).await;

    let asked = Instant::now();
    let out = cancel(&url, id).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("cancellation of run"),
        "{}",
        text(&out.stdout)
    );
    let ended = until(Duration::from_secs(10), || async {
        let run = store.run(id).await.ok()?.run;
        run.state.is_final().then_some(run.state)
    })
    .await;
    let took = asked.elapsed();
    assert_eq!(ended, Some(StateKind::Cancelled));
    assert!(
        took < Duration::from_millis(2500),
        "cancelled after {took:?}"
    );
    let message = recorded_cancelled(&store, id, 1).await;
    assert!(message.contains("test says stop"), "{message}");
    let status = wait_for(&mut child);
    let mut said = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut said).unwrap();
    assert!(status.success(), "{status}: {said}");

    // Again: it has ended.
    let again = cancel(&url, id).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already finished (Cancelled)"),
        "{}",
        text(&again.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_process_was_killed_is_not_owned_and_ends_cancelled() {
    let dir = temp();
    let url = format!("sqlite://{}/weft.db", dir.display());
    let store = Store::connect(&url).await.unwrap();
    let mut child = spawn_child(&url);
    let id = running_run(&store, "long_nap", 1).await;
    // Long enough for its process to claim it (1 s, at a 500 ms tick).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    child.kill().unwrap(); // SIGKILL: nothing of it runs on, nothing records the end
    child.wait().unwrap();
    assert_eq!(store.run(id).await.unwrap().run.state, StateKind::Running);

    let out = cancel(&url, id).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("not owned by a live process") && said.contains("marked Cancelled"),
        "{said}"
    );
    assert!(said.contains(&format!("pid {}", child.id())), "{said}");
    let message = recorded_cancelled(&store, id, 1).await;
    assert!(
        message.contains("no live process owned the run"),
        "{message}"
    );
    let logs = store.run(id).await.unwrap().logs;
    let line = "Flow run CANCELLED: test says stop";
    assert!(
        logs.iter()
            .any(|l| l.level == "WARN" && l.message.starts_with(line)),
        "{logs:?}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unknown_and_malformed_ids_fail() {
    let dir = temp();
    let url = format!("sqlite://{}/weft.db", dir.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let _ = long_nap::run_with(RunConfig::new().history(store), 0).await;
    });
    for id in ["0000ffff", "nope"] {
        let out = weft(&url, &["run", "cancel", id]);
        assert_eq!(out.status.code(), Some(1), "{id}");
        assert!(
            text(&out.stderr).contains("no flow run"),
            "{}",
            text(&out.stderr)
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

/// A pipeline of two nodes that each write their shell's pid, then become `sleep 30`.
fn sleepers(dir: &Path) -> PathBuf {
    let file = dir.join("sleepers.toml");
    let mut text = String::from("name = \"sleepers\"\nworkers = 2\n");
    for id in ["one", "two"] {
        text.push_str(&format!(
            "[[nodes]]\nid = \"{id}\"\nscript = \"echo $$ > {id}.pid; exec sleep 30\"\nworkdir = \"{}\"\n",
            dir.display()
        ));
    }
    std::fs::write(&file, text).unwrap();
    file
}

/// The pids both nodes wrote, once each is the `sleep` (at most 20 s).
fn node_pids(dir: &Path) -> Vec<i32> {
    for _ in 0..200 {
        let pids: Vec<i32> = ["one", "two"]
            .iter()
            .filter_map(|id| std::fs::read_to_string(dir.join(format!("{id}.pid"))).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        if pids.len() == 2 && pids.iter().all(|p| is_sleep(*p)) {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the nodes did not start");
}

/// `pid` is a live (not zombie) `sleep`.
fn is_sleep(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            s.contains("(sleep)") && !state.starts_with('Z')
        })
        .unwrap_or(false)
}

/// The process group `pgid` has no live member left (scanning /proc).
fn group_gone(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    !entries.filter_map(Result::ok).any(|e| {
        std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
            let rest: Vec<&str> = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            // state ppid pgrp ...
            rest.len() > 2 && rest[0] != "Z" && rest[2] == pgid.to_string()
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_run_is_cancelled_and_its_process_groups_killed() {
    let dir = temp();
    let url = format!("sqlite://{}/.weft/weft.db", dir.display());
    let file = sleepers(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["pipeline", "run", file.to_str().unwrap()])
        .env("WEFT_HOME", &dir)
        .env_remove("WEFT_DATABASE_URL")
        .env("WEFT_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pids = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || node_pids(&dir)
    })
    .await
    .unwrap();
    let store = Store::connect(&url).await.unwrap();
    let id = running_run(&store, "sleepers", 2).await;

    let out = cancel(&url, id).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Each node leads its own process group: every member is gone.
    let gone = until(Duration::from_secs(5), || async {
        pids.iter().all(|p| group_gone(*p)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "a node's process group survived the cancel");
    let status = wait_for(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("ended Cancelled"), "{err}");
    recorded_cancelled(&store, id, 2).await;
    std::fs::remove_dir_all(dir).ok();
}
