//! `serve`: scheduled runs under tokio's paused clock (count, order, overlap policies, failures
//! and panics that do not stop the schedule), then against real stores: shutdown leaves nothing
//! Running, requested runs with parameters, pause and resume.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use weft::prelude::*;
use weft::schedule::{Deployment, Overlap, Schedule, Server};
use weft::store::{RequestState, RunFilter, Store};

mod common;

/// (deployment tag, start, end) of every body run, in tokio time.
static SPANS: Mutex<Vec<(String, Instant, Instant)>> = Mutex::new(Vec::new());

fn spans(tag: &str) -> Vec<(Instant, Instant)> {
    SPANS
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0 == tag)
        .map(|s| (s.1, s.2))
        .collect()
}

#[task]
async fn work(tag: String, secs: u64) -> u64 {
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    SPANS.lock().unwrap().push((tag, start, Instant::now()));
    secs
}

#[flow]
async fn timed(tag: String, secs: u64) -> u64 {
    let n = work(tag, secs)?;
    n
}

/// A minute grid starting one minute after now.
fn every_minute() -> Schedule {
    Schedule::every(Duration::from_secs(60))
        .unwrap()
        .anchored_at(chrono::Utc::now())
}

async fn serve_for(deployments: Vec<Deployment>, virtual_secs: u64) {
    Server::new(deployments)
        .no_store()
        .tokio_clock()
        .grace(Duration::from_secs(3600))
        .run_until(tokio::time::sleep(Duration::from_secs(virtual_secs)))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hundred_scheduled_runs_in_order_without_overlap() {
    let d = Deployment::new("hundred", timed::flow(), ("hundred".to_owned(), 10))
        .schedule(every_minute());
    serve_for(vec![d], 100 * 60 + 30).await;
    let runs = spans("hundred");
    assert_eq!(runs.len(), 100);
    for pair in runs.windows(2) {
        let ((s0, e0), (s1, _)) = (pair[0], pair[1]);
        assert!(e0 <= s1, "runs overlap");
        assert_eq!(s1 - s0, Duration::from_secs(60), "one run a minute");
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_still_going_when_the_next_is_due_skips_it_by_default() {
    // Each run takes 90 s on a 60 s schedule.
    let skip =
        Deployment::new("skip", timed::flow(), ("skip".to_owned(), 90)).schedule(every_minute());
    serve_for(vec![skip], 10 * 60 + 30).await;
    let runs = spans("skip");
    assert_eq!(runs.len(), 5, "every other due time is skipped");
    assert!(runs.windows(2).all(|p| p[0].1 <= p[1].0), "no overlap");
}

#[tokio::test(start_paused = true)]
async fn overlap_can_be_allowed_or_queued() {
    let allow = Deployment::new("allow", timed::flow(), ("allow".to_owned(), 90))
        .schedule(every_minute())
        .overlap(Overlap::Allow);
    let queue = Deployment::new("queue", timed::flow(), ("queue".to_owned(), 90))
        .schedule(every_minute())
        .overlap(Overlap::Queue);
    serve_for(vec![allow, queue], 6 * 60 + 30).await;
    let allowed = spans("allow");
    assert_eq!(allowed.len(), 6);
    assert!(allowed.windows(2).any(|p| p[1].0 < p[0].1), "runs overlap");
    let queued = spans("queue");
    assert!(
        queued.windows(2).all(|p| p[0].1 <= p[1].0),
        "queued runs never overlap"
    );
    // Back to back: each queued run starts when the previous ends.
    assert!(queued.windows(2).skip(1).all(|p| p[1].0 == p[0].1));
    assert!(queued.len() >= 4, "{}", queued.len());
}

static CALLS: AtomicU32 = AtomicU32::new(0);

#[task]
async fn flaky_check() -> Result<u32, String> {
    let n = CALLS.fetch_add(1, Ordering::SeqCst);
    match n % 3 {
        0 => Err("Server not available. Status code: 503".to_owned()),
        1 => panic!("the check crashed"),
        _ => Ok(n),
    }
}

#[flow]
async fn unreliable() -> u32 {
    let n = flaky_check()?;
    n
}

#[tokio::test(start_paused = true)]
async fn failed_and_crashed_runs_do_not_stop_the_schedule() {
    let d = Deployment::new("unreliable", unreliable::flow(), ()).schedule(every_minute());
    serve_for(vec![d], 9 * 60 + 30).await;
    assert_eq!(CALLS.load(Ordering::SeqCst), 9);
}

#[tokio::test]
async fn two_deployments_with_one_name_are_refused() {
    let a = Deployment::new("same", unreliable::flow(), ());
    let b = Deployment::new("same", unreliable::flow(), ());
    let err = Server::new([a, b])
        .no_store()
        .run_until(async {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"same\""), "{err}");
}

// ---- against real stores, in real time ----

#[task]
async fn sized(size: u32, label: String) -> String {
    format!("{label}:{size}")
}

#[flow]
async fn report(size: u32, label: String) -> String {
    let r = sized(size, label)?;
    r
}

#[task]
async fn forever() -> u32 {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    1
}

#[flow]
async fn stuck() -> u32 {
    let x = forever()?;
    x
}

async fn sqlite_store() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("weft-serve-{}", uuid::Uuid::new_v4()));
    let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display()))
        .await
        .unwrap();
    (store, dir)
}

async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn shutdown_leaves_nothing_running(store: Store) {
    let d =
        Deployment::new("stuck", stuck::flow(), ()).schedule(Schedule::interval("100ms").unwrap());
    let s2 = store.clone();
    Server::new([d])
        .store(store.clone())
        .grace(Duration::from_millis(200))
        .poll_every(Duration::from_millis(50))
        .run_until(async move {
            wait_for("a run to start", || async {
                !s2.runs(&RunFilter::new().flow("stuck"))
                    .await
                    .unwrap()
                    .is_empty()
            })
            .await;
        })
        .await
        .unwrap();
    let runs = store.runs(&RunFilter::new().flow("stuck")).await.unwrap();
    assert_eq!(runs.len(), 1, "overlapping runs are skipped");
    let run = store.run(runs[0].id).await.unwrap();
    assert_eq!(run.run.state, StateKind::Cancelled);
    assert!(run.run.ended.is_some());
    assert!(
        run.task_runs
            .iter()
            .all(|t| t.state == StateKind::Cancelled),
        "{:?}",
        run.task_runs
    );
    let d = store.deployment("stuck").await.unwrap();
    assert_eq!(d.last_run, Some(runs[0].id));
    assert_eq!(d.next_run_at, None, "not served any more");
}

async fn requested_runs_pauses_and_resumes(store: Store) {
    let reporter = Deployment::new("report", report::flow(), (10, "daily".to_owned()));
    let ticker = Deployment::new("ticker", report::flow(), (1, "tick".to_owned()))
        .schedule(Schedule::interval("150ms").unwrap());
    let s = store.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::new([reporter, ticker])
            .store(store.clone())
            .poll_every(Duration::from_millis(50))
            .run_until(async move {
                let _ = stopped.await;
            }),
    );
    wait_for("the deployments to be registered", || async {
        s.deployments().await.map(|d| d.len() == 2).unwrap_or(false)
    })
    .await;
    let rec = store.deployment("report").await.unwrap();
    assert_eq!(
        rec.parameters,
        serde_json::json!({ "size": 10, "label": "daily" })
    );
    assert_eq!(rec.schedule, None);

    // A requested run with its parameters (one typed from text, as the CLI sends them).
    let mut params = serde_json::Map::new();
    params.insert("size".into(), "5".into());
    let id = store.request_run("report", params).await.unwrap();
    wait_for("the request to start", || async {
        s.request(id).await.unwrap().state == RequestState::Started
    })
    .await;
    let run_id = store.request(id).await.unwrap().run_id.unwrap();
    wait_for("the requested run to end", || async {
        s.run(run_id)
            .await
            .map(|r| r.run.ended.is_some())
            .unwrap_or(false)
    })
    .await;
    let run = store.run(run_id).await.unwrap();
    assert_eq!(run.run.flow, "report");
    assert_eq!(
        run.run.parameters,
        serde_json::json!({ "size": 5, "label": "daily" })
    );
    assert_eq!(run.run.state, StateKind::Completed);

    // A bad value is refused before anything runs.
    let mut bad = serde_json::Map::new();
    bad.insert("size".into(), "lots".into());
    let id = store.request_run("report", bad).await.unwrap();
    wait_for("the bad request to be refused", || async {
        s.request(id).await.unwrap().state == RequestState::Rejected
    })
    .await;
    let refused = store.request(id).await.unwrap();
    assert!(
        refused.message.as_deref().unwrap().contains("`size`"),
        "{refused:?}"
    );
    assert_eq!(refused.run_id, None);
    let mut unknown = serde_json::Map::new();
    unknown.insert("colour".into(), "red".into());
    let id = store.request_run("report", unknown).await.unwrap();
    wait_for("the unknown parameter to be refused", || async {
        s.request(id).await.unwrap().state == RequestState::Rejected
    })
    .await;
    assert!(store
        .request(id)
        .await
        .unwrap()
        .message
        .unwrap()
        .contains("size, label"));
    let reports = store
        .runs(&RunFilter::new().flow("report").limit(100))
        .await
        .unwrap();
    let requested: Vec<_> = reports
        .iter()
        .filter(|r| r.parameters["label"] == "daily")
        .collect();
    assert_eq!(requested.len(), 1, "the requested run ran once");

    // Pause: no new scheduled run; resume: they come back.
    let ticks = || async {
        s.runs(&RunFilter::new().flow("report").limit(1000))
            .await
            .unwrap()
            .iter()
            .filter(|r| r.parameters["label"] == "tick")
            .count()
    };
    wait_for("a scheduled tick", || async { ticks().await > 0 }).await;
    store.set_paused("ticker", true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await; // a poll and a tick in flight settle
    let paused_at = ticks().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(ticks().await, paused_at, "no run while paused");
    store.set_paused("ticker", false).await.unwrap();
    wait_for("ticks after resume", || async { ticks().await > paused_at }).await;

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shutdown_leaves_nothing_running() {
    let (store, dir) = sqlite_store().await;
    shutdown_leaves_nothing_running(store).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_requested_runs_pauses_and_resumes() {
    let (store, dir) = sqlite_store().await;
    requested_runs_pauses_and_resumes(store).await;
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::Schema;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_shutdown_leaves_nothing_running() {
        let schema = Schema::new("serve").await;
        shutdown_leaves_nothing_running(schema.store().await).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_requested_runs_pauses_and_resumes() {
        let schema = Schema::new("serve").await;
        requested_runs_pauses_and_resumes(schema.store().await).await;
        schema.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_serves_until_sigterm() {
    let Some(url) = std::env::var_os("WEFT_SERVE_CHILD_URL") else {
        return;
    };
    let store = Store::connect(url.to_str().unwrap()).await.unwrap();
    let d =
        Deployment::new("stuck", stuck::flow(), ()).schedule(Schedule::interval("100ms").unwrap());
    Server::new([d])
        .store(store)
        .grace(Duration::from_millis(200))
        .run()
        .await
        .unwrap();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_cleanly() {
    let (store, dir) = sqlite_store().await;
    let url = format!("sqlite://{}/weft.db", dir.display());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_serves_until_sigterm", "--nocapture"])
        .env("WEFT_SERVE_CHILD_URL", &url)
        .env("WEFT_LOG", "warn")
        .spawn()
        .unwrap();
    let s = store.clone();
    wait_for("the child's first run", || async {
        !s.runs(&RunFilter::new().flow("stuck"))
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "the server exits 0 on SIGTERM: {status}");
    let runs = store.runs(&RunFilter::new().flow("stuck")).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, StateKind::Cancelled);
    let detail = store.run(runs[0].id).await.unwrap();
    assert!(detail
        .task_runs
        .iter()
        .all(|t| t.state == StateKind::Cancelled));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_missed_while_stopped_are_skipped_or_caught_up_once() {
    let (store, dir) = sqlite_store().await;
    let hourly = || Schedule::interval("1h").unwrap();
    for (name, catch_up) in [("skipper", false), ("catcher", true)] {
        // A first process served it; its next run was due a while ago.
        let d = Deployment::new(name, report::flow(), (1, name.to_owned())).schedule(hourly());
        Server::new([d.clone()])
            .store(store.clone())
            .run_until(async {})
            .await
            .unwrap();
        let mut rec = store.deployment(name).await.unwrap();
        rec.next_run_at = Some(chrono::Utc::now() - chrono::Duration::minutes(30));
        store.register_deployment(&rec).await.unwrap();
        // The next process starts after that due time.
        Server::new([d.catch_up(catch_up)])
            .store(store.clone())
            .poll_every(Duration::from_millis(50))
            .run_until(tokio::time::sleep(Duration::from_millis(700)))
            .await
            .unwrap();
    }
    let count = |label: &'static str| {
        let s = store.clone();
        async move {
            s.runs(&RunFilter::new().flow("report").limit(100))
                .await
                .unwrap()
                .iter()
                .filter(|r| r.parameters["label"] == label)
                .count()
        }
    };
    assert_eq!(
        count("skipper").await,
        0,
        "missed runs are skipped by default"
    );
    assert_eq!(count("catcher").await, 1, "catch_up runs one of them");
    std::fs::remove_dir_all(dir).ok();
}
