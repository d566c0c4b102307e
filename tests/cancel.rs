//! Cancelling runs through the store: what a short run costs (nothing in the database), how a
//! long run is claimed and released, a run served by `serve` cancelled from the store, and
//! every outcome of `Store::request_cancel` on SQLite and PostgreSQL.

use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::schedule::{Deployment, Server};
use weft::store::{CancelOutcome, RequestState, Store, StoreError};

mod common;

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

#[task]
fn one() -> u32 {
    1
}

#[flow]
async fn quick() -> u32 {
    let x = one()?;
    x
}

fn temp_url() -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("weft-cancel-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}/weft.db", dir.display());
    (dir, url)
}

/// Rows of `table` in the SQLite history at `dir` (read by another connection).
async fn count(dir: &std::path::Path, table: &str) -> i64 {
    let url = format!("sqlite://{}/weft.db?mode=ro", dir.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let n = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// Polls `f` every 50 ms for at most `limit`.
async fn until<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_runs_write_nothing_for_cancellation() {
    let (dir, url) = temp_url();
    let store = Store::connect(&url).await.unwrap();
    for _ in 0..50 {
        let run = quick::run_with(RunConfig::new().history(store.clone())).await;
        assert!(run.is_successful());
    }
    // Past the watcher's ticks: it found nothing older than a second and stopped.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(count(&dir, "run_owners").await, 0);
    assert_eq!(count(&dir, "processes").await, 0);
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_is_claimed_cancelled_in_process_and_released() {
    let (dir, url) = temp_url();
    let store = Store::connect(&url).await.unwrap();
    let run = tokio::spawn(long_nap::run_with(
        RunConfig::new().history(store.clone()),
        3600,
    ));
    let claimed = until(Duration::from_secs(5), || async {
        count(&dir, "run_owners").await == 1
    })
    .await;
    assert!(claimed, "the run was not claimed");
    let id = store
        .runs(&weft::store::RunFilter::new())
        .await
        .unwrap()
        .first()
        .unwrap()
        .id;
    let asked = Instant::now();
    match store.request_cancel(id, "enough").await.unwrap() {
        CancelOutcome::Requested { owner: Some(o) } => {
            assert_eq!(o.pid, std::process::id());
        }
        other => panic!("{other:?}"),
    }
    let run = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("cancelled within 5 s")
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(run.state.kind, StateKind::Cancelled);
    assert_eq!(run.state.message.as_deref(), Some("enough"));
    assert_eq!(run.task("nap").unwrap().state.kind, StateKind::Cancelled);
    // Its claim is deleted at the watcher's next tick.
    let released = until(Duration::from_secs(3), || async {
        count(&dir, "run_owners").await == 0
    })
    .await;
    assert!(released, "the ended run's claim stayed");
    assert_eq!(
        store.request_cancel(id, "again").await.unwrap(),
        CancelOutcome::AlreadyFinal {
            state: StateKind::Cancelled
        }
    );
    let missing = store.request_cancel(uuid::Uuid::now_v7(), "x").await;
    assert!(
        matches!(missing, Err(StoreError::RunNotFound(_))),
        "{missing:?}"
    );
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_a_serve_process_is_cancelled_and_the_server_goes_on() {
    let (dir, url) = temp_url();
    let store = Store::connect(&url).await.unwrap();
    let d = Deployment::new("sleepy", long_nap::flow(), (3600,));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::new([d])
            .store(store.clone())
            .poll_every(Duration::from_millis(100))
            .grace(Duration::from_millis(100))
            .run_until(async move {
                let _ = stopped.await;
            }),
    );
    let registered = until(Duration::from_secs(10), || async {
        store.deployment("sleepy").await.is_ok()
    })
    .await;
    assert!(registered);
    let mut run_ids = Vec::new();
    for _ in 0..2 {
        let request = store
            .request_run("sleepy", serde_json::Map::new())
            .await
            .unwrap();
        let started = until(Duration::from_secs(10), || async {
            store.request(request).await.unwrap().state == RequestState::Started
        })
        .await;
        assert!(started);
        run_ids.push(store.request(request).await.unwrap().run_id.unwrap());
    }
    // Both running; cancel the first only.
    let running = |id| {
        let store = store.clone();
        async move {
            store
                .run(id)
                .await
                .is_ok_and(|r| r.task_runs.iter().any(|t| t.state == StateKind::Running))
        }
    };
    assert!(until(Duration::from_secs(10), || running(run_ids[0])).await);
    let asked = Instant::now();
    let outcome = store
        .request_cancel(run_ids[0], "not this one")
        .await
        .unwrap();
    assert!(
        matches!(outcome, CancelOutcome::Requested { .. }),
        "{outcome:?}"
    );
    let cancelled = until(Duration::from_secs(5), || async {
        store
            .run(run_ids[0])
            .await
            .is_ok_and(|r| r.run.state == StateKind::Cancelled)
    })
    .await;
    assert!(cancelled, "not cancelled after {:?}", asked.elapsed());
    assert!(
        asked.elapsed() < Duration::from_millis(2500),
        "{:?}",
        asked.elapsed()
    );
    let detail = store.run(run_ids[0]).await.unwrap();
    assert_eq!(detail.task_runs[0].state, StateKind::Cancelled);
    // The other run, and the server, go on.
    assert_eq!(
        store.run(run_ids[1]).await.unwrap().run.state,
        StateKind::Running
    );
    assert!(!server.is_finished());
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(60), server).await;
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_on_postgresql() {
    let schema = common::Schema::new("cancel").await;
    let store = schema.store().await;
    let run = tokio::spawn(long_nap::run_with(
        RunConfig::new().history(store.clone()),
        3600,
    ));
    let started = until(Duration::from_secs(10), || async {
        let runs = store.runs(&weft::store::RunFilter::new()).await.unwrap();
        runs.first().is_some_and(|r| r.state == StateKind::Running)
    })
    .await;
    assert!(started);
    let id = store.runs(&weft::store::RunFilter::new()).await.unwrap()[0].id;
    // Claimed after a second: then the owner is known.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    match store.request_cancel(id, "pg stop").await.unwrap() {
        CancelOutcome::Requested { owner: Some(o) } => assert_eq!(o.pid, std::process::id()),
        other => panic!("{other:?}"),
    }
    let run = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("cancelled")
        .unwrap();
    assert_eq!(run.state.kind, StateKind::Cancelled);
    assert_eq!(
        store.request_cancel(id, "again").await.unwrap(),
        CancelOutcome::AlreadyFinal {
            state: StateKind::Cancelled
        }
    );

    // A run whose process is gone: no owner, started long ago, a task left Running.
    let orphan = uuid::Uuid::now_v7().to_string();
    let s = &schema.name;
    sqlx::query(&format!(
        "INSERT INTO \"{s}\".flow_runs (id, flow, flow_version, parameters, state, started) \
         VALUES ($1, 'gone', 'v', '{{}}', 'Running', '2026-01-01T00:00:00.000000Z')"
    ))
    .bind(&orphan)
    .execute(&schema.admin)
    .await
    .unwrap();
    sqlx::query(&format!(
        "INSERT INTO \"{s}\".task_runs (flow_run_id, node, map_index, task, state, attempts, \
         started) VALUES ($1, 0, -1, 't', 'Running', 1, '2026-01-01T00:00:01.000000Z')"
    ))
    .bind(&orphan)
    .execute(&schema.admin)
    .await
    .unwrap();
    // ...and a subflow run of it, as gone as its parent.
    let child = uuid::Uuid::now_v7();
    sqlx::query(&format!(
        "INSERT INTO \"{s}\".flow_runs (id, flow, flow_version, parameters, state, started, \
         parent_run, parent_node) VALUES ($1, 'gone child', 'v', '{{}}', 'Running', \
         '2026-01-01T00:00:02.000000Z', $2, 0)"
    ))
    .bind(child.to_string())
    .bind(&orphan)
    .execute(&schema.admin)
    .await
    .unwrap();
    let orphan: uuid::Uuid = orphan.parse().unwrap();
    assert_eq!(
        store.request_cancel(orphan, "cleanup").await.unwrap(),
        CancelOutcome::NotOwned { owner: None }
    );
    let detail = store.run(orphan).await.unwrap();
    assert_eq!(detail.run.state, StateKind::Cancelled);
    assert!(detail.run.ended.is_some());
    assert_eq!(detail.task_runs[0].state, StateKind::Cancelled);
    assert!(detail
        .run
        .message
        .as_deref()
        .unwrap()
        .starts_with("cleanup (no live process owned the run"));
    assert!(detail
        .logs
        .iter()
        .any(|l| l.message.starts_with("Flow run CANCELLED: cleanup")));
    let child = store.run(child).await.unwrap().run;
    assert_eq!(child.state, StateKind::Cancelled);
    assert!(child
        .message
        .unwrap()
        .starts_with("its parent run was cancelled: cleanup"));
    drop(store);
    schema.drop().await;
}
