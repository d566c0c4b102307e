//! The zombie reaper and fencing through the store: a run whose process is alive and
//! heartbeating is never reaped; a run never claimed is reaped once older than the stale time; a
//! run cancelled for want of an owner stays Cancelled; and (PostgreSQL) a process cut off from
//! the database long enough to be reaped cannot overwrite the Crashed run when it comes back:
//! its rows are refused and counted lost, and it cancels its copy of the run.

use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::store::{CancelOutcome, RunFilter, Store};

mod common;

#[task]
async fn ticking(n: u32) -> u32 {
    for i in 0..n {
        weft::tracing::info!("tick {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n
}

/// A run of `n` tenths of a second that logs a line each tenth: its process writes rows about
/// it all along.
#[flow]
async fn ticker(n: u32) -> u32 {
    let x = ticking(n)?;
    x
}

fn temp_url() -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("weft-reaper-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}/weft.db", dir.display());
    (dir, url)
}

/// Polls `f` every 100 ms for at most `limit`.
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A 16 s run heartbeating in this process, while another store reaps every half second: it is
/// never reaped and completes with its whole history.
async fn a_live_run_is_never_reaped(mine: Store, reaper: Store) {
    let run = tokio::spawn(ticker::run_with(
        RunConfig::new().history(mine.clone()),
        160,
    ));
    let mut id = None;
    let mut reaps = 0;
    while !run.is_finished() {
        let reaped = reaper.reap().await.unwrap();
        assert!(reaped.is_empty(), "{reaped:?}");
        reaps += 1;
        if id.is_none() {
            id = reaper
                .runs(&RunFilter::new())
                .await
                .unwrap()
                .first()
                .map(|r| r.id);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(reaps > 25, "{reaps}");
    let run = run.await.unwrap();
    assert_eq!(run.state.kind, StateKind::Completed, "{:?}", run.state);
    assert!(run.history.unwrap().is_complete());
    assert_eq!(Some(run.id), id);
    let detail = reaper.run(run.id).await.unwrap();
    assert_eq!(detail.run.state, StateKind::Completed);
    assert_eq!(detail.task_runs[0].state, StateKind::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_live_run_is_never_reaped() {
    let (dir, url) = temp_url();
    let (a, b) = (
        Store::connect(&url).await.unwrap(),
        Store::connect(&url).await.unwrap(),
    );
    a_live_run_is_never_reaped(a, b).await;
    std::fs::remove_dir_all(dir).ok();
}

/// Rows as a process that died within its run's first second leaves them: the run Running,
/// started `ago`, never claimed.
async fn orphan(dir: &std::path::Path, id: &str, ago: chrono::Duration) {
    let url = format!("sqlite://{}/weft.db", dir.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let at = (chrono::Utc::now() - ago)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    sqlx::query(
        "INSERT INTO flow_runs (id, flow, flow_version, parameters, state, started) \
         VALUES ($1, 'f', 'v', '{}', 'Running', $2)",
    )
    .bind(id)
    .bind(&at)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO task_runs (flow_run_id, node, map_index, task, state, attempts, started) \
         VALUES ($1, 0, -1, 't', 'Running', 1, $2)",
    )
    .bind(id)
    .bind(&at)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_never_claimed_is_reaped_once_older_than_the_stale_time() {
    let (dir, url) = temp_url();
    let store = Store::connect(&url).await.unwrap();
    let (old, young) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    orphan(&dir, &old.to_string(), chrono::Duration::seconds(11)).await;
    orphan(&dir, &young.to_string(), chrono::Duration::seconds(5)).await;
    let reaped = store.reap().await.unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0].id, old);
    assert!(
        reaped[0].message.contains("never claimed"),
        "{}",
        reaped[0].message
    );
    let detail = store.run(old).await.unwrap();
    assert_eq!(detail.run.state, StateKind::Crashed);
    assert_eq!(detail.task_runs[0].state, StateKind::Crashed);
    assert_eq!(
        store.run_record(young).await.unwrap().state,
        StateKind::Running
    );
    assert!(store.reap().await.unwrap().is_empty(), "reaped once");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_for_want_of_an_owner_stays_cancelled() {
    let (dir, url) = temp_url();
    let store = Store::connect(&url).await.unwrap();
    let id = uuid::Uuid::now_v7();
    orphan(&dir, &id.to_string(), chrono::Duration::seconds(30)).await;
    let outcome = store.request_cancel(id, "stop").await.unwrap();
    assert!(
        matches!(outcome, CancelOutcome::NotOwned { .. }),
        "{outcome:?}"
    );
    assert!(store.reap().await.unwrap().is_empty());
    assert_eq!(
        store.run_record(id).await.unwrap().state,
        StateKind::Cancelled
    );
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::{Proxy, Schema};
    use weft::store::StoreOptions;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_live_run_is_never_reaped() {
        let schema = Schema::new("reaper").await;
        let (a, b) = (schema.store().await, schema.store().await);
        a_live_run_is_never_reaped(a, b).await;
        schema.drop().await;
    }

    /// The env var that makes [`child_cut_off_from_the_database`] the child process.
    const CHILD_URL: &str = "WEFT_REAPER_TEST_CHILD_URL";

    /// Not a test of its own: with [`CHILD_URL`] set (a proxy's URL), this test binary is the
    /// process the test cuts off. Runs a 60 s ticker; prints its run's end as JSON.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn child_cut_off_from_the_database() {
        let Ok(url) = std::env::var(CHILD_URL) else {
            return;
        };
        let store = StoreOptions::new(url)
            .retry_for(Duration::from_secs(120))
            .flush_timeout(Duration::from_secs(60))
            .connect()
            .await
            .unwrap();
        let run = ticker::run_with(RunConfig::new().history(store), 600).await;
        let h = run.history.clone().unwrap();
        let out = serde_json::json!({
            "id": run.id.to_string(),
            "state": run.state.kind.as_str(),
            "message": run.state.message,
            "recorded": h.recorded,
            "lost": h.lost,
            "error": h.error,
        });
        println!("child result: {out}");
        weft::logging::flush();
        std::process::exit(0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_process_cut_off_and_reaped_cannot_overwrite_its_crashed_run() {
        let schema = Schema::new("fence").await;
        let proxy = Proxy::start().await;
        let store = schema.store().await;
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "postgres::child_cut_off_from_the_database",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_URL, proxy.url())
            .env("WEFT_DATABASE_SCHEMA", &schema.name)
            .env("WEFT_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Its run is claimed (heartbeating) and has written some ticks.
        let id = until(Duration::from_secs(30), || async {
            let run = store
                .runs(&RunFilter::new())
                .await
                .ok()?
                .into_iter()
                .next()?;
            let claimed = store.run_owner(run.id).await.ok()?.is_some();
            let ticks = store.run(run.id).await.ok()?.logs.len();
            (claimed && ticks > 10).then_some(run.id)
        })
        .await
        .expect("the child's run did not start and get claimed");
        proxy.down();
        let cut = Instant::now();
        // Another process (this one's store) reaps it once its heartbeat is stale.
        let reaped = until(Duration::from_secs(30), || async {
            store.reap().await.ok()?.into_iter().find(|r| r.id == id)
        })
        .await
        .expect("the cut-off run was not reaped");
        assert!(
            cut.elapsed() >= Duration::from_secs(7),
            "{:?}",
            cut.elapsed()
        );
        assert!(
            reaped.message.contains("stopped heartbeating"),
            "{}",
            reaped.message
        );
        let crashed = store.run(id).await.unwrap();
        proxy.restore();
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("child result: "));
        let result: serde_json::Value =
            serde_json::from_str(line.unwrap_or_else(|| panic!("{stdout}\n{stderr}"))).unwrap();
        // Its copy ended Cancelled, with the warning; its later rows were refused, as lost.
        assert_eq!(result["state"], "Cancelled", "{result}");
        let message = result["message"].as_str().unwrap_or_default();
        assert!(message.contains("reaped by another process"), "{message}");
        assert!(
            stderr.contains("WARN") && stderr.contains("was reaped by another process"),
            "{stderr}"
        );
        assert!(result["lost"].as_u64().unwrap() > 0, "{result}");
        let error = result["error"].as_str().unwrap_or_default();
        assert!(error.contains("taken for dead"), "{error}");
        // The run stays as the reaper left it: Crashed, its task run Crashed, no row added.
        let after = store.run(id).await.unwrap();
        assert_eq!(after.run.state, StateKind::Crashed);
        assert_eq!(after.run.message, crashed.run.message);
        assert_eq!(after.run.ended, crashed.run.ended);
        assert_eq!(after.task_runs[0].state, StateKind::Crashed);
        let tasks = |d: &weft::store::RunDetail| -> Vec<_> {
            d.task_runs
                .iter()
                .map(|t| (t.state, t.message.clone(), t.ended))
                .collect()
        };
        assert_eq!(tasks(&after), tasks(&crashed));
        assert_eq!(after.logs.len(), crashed.logs.len());
        assert_eq!(after.state_changes.len(), crashed.state_changes.len());
        schema.drop().await;
    }
}
