//! Work pools and the worker registry in the store, on a real SQLite file and (feature
//! `postgres`) the PostgreSQL on 127.0.0.1:5432: pools are created, listed, paused and limited,
//! a taken or bad name is refused, workers register, heartbeat, go offline when their heartbeat
//! is older than the stale time (or their pid is gone on this host) and deregister.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use weft::store::*;

mod common;

/// Writes `heartbeat` (as stored: RFC 3339 text) for worker `id`, directly in the database.
type SetHeartbeat = Box<dyn Fn(String, String) -> Pin<Box<dyn Future<Output = ()> + Send>>>;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-pools-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn pools_round_trip(store: &Store) {
    assert!(store.work_pools().await.unwrap().is_empty());
    let etl = store
        .create_work_pool(
            &WorkPoolSpec::new("etl")
                .limit(4)
                .description("nightly <loads>"),
        )
        .await
        .unwrap();
    assert_eq!(etl.concurrency_limit, Some(4));
    assert_eq!(etl.description.as_deref(), Some("nightly <loads>"));
    assert!(!etl.paused);
    store
        .create_work_pool(&WorkPoolSpec::new("adhoc"))
        .await
        .unwrap();
    let names: Vec<String> = store
        .work_pools()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["adhoc", "etl"]);

    let err = store
        .create_work_pool(&WorkPoolSpec::new("etl"))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::WorkPoolExists("etl".into()));
    assert!(err.to_string().contains("already exists"), "{err}");
    // The first pool is untouched.
    assert_eq!(
        store.work_pool("etl").await.unwrap().concurrency_limit,
        Some(4)
    );

    assert!(
        store
            .set_work_pool_paused("etl", true)
            .await
            .unwrap()
            .paused
    );
    assert!(store.work_pool("etl").await.unwrap().paused);
    assert!(
        !store
            .set_work_pool_paused("etl", false)
            .await
            .unwrap()
            .paused
    );
    let limited = store.set_work_pool_limit("etl", Some(2)).await.unwrap();
    assert_eq!(limited.concurrency_limit, Some(2));
    assert!(limited.updated >= limited.created);
    assert_eq!(
        store
            .set_work_pool_limit("etl", None)
            .await
            .unwrap()
            .concurrency_limit,
        None
    );
    let zero = store.set_work_pool_limit("etl", Some(0)).await.unwrap_err();
    assert!(zero.to_string().contains("pause it instead"), "{zero}");

    let missing = store.set_work_pool_paused("nope", true).await.unwrap_err();
    assert!(
        matches!(&missing, StoreError::WorkPoolNotFound { known, .. } if known == &["adhoc", "etl"]),
        "{missing:?}"
    );
    assert!(
        missing.to_string().contains("weft work-pool ls"),
        "{missing}"
    );
}

async fn bad_names_are_refused(store: &Store) {
    for (name, needle) in [
        ("", "give the work pool a name"),
        ("   ", "give the work pool a name"),
        ("a\tb", "control characters"),
        ("x\u{1b}[31m", "control characters"),
        (" etl", "leading or trailing"),
    ] {
        let err = store
            .create_work_pool(&WorkPoolSpec::new(name))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{name:?}: {err:?}");
        assert!(err.to_string().contains(needle), "{name:?}: {err}");
    }
    let long = "p".repeat(101);
    let err = store
        .create_work_pool(&WorkPoolSpec::new(long))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("100 characters"), "{err}");
    assert!(store
        .create_work_pool(&WorkPoolSpec::new("p".repeat(100)))
        .await
        .is_ok());
    let err = store
        .create_work_pool(&WorkPoolSpec::new("zero").limit(0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("pause"), "{err}");
    assert!(store.work_pool("zero").await.is_err());
}

async fn workers_go_offline(store: &Store, set_heartbeat: SetHeartbeat) {
    let info = |name: &str| {
        WorkerInfo::this_process("etl", name, vec!["etl@1.0".into(), "report@2".into()])
    };
    let a = store.register_worker(&info("a")).await.unwrap();
    let b = store.register_worker(&info("b")).await.unwrap();
    let unknown_pool = WorkerInfo::this_process("gone", "c", vec![]);
    let err = store.register_worker(&unknown_pool).await.unwrap_err();
    assert!(
        matches!(err, StoreError::WorkPoolNotFound { .. }),
        "{err:?}"
    );

    let workers = store.workers(Some("etl")).await.unwrap();
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|w| w.online), "{workers:?}");
    assert_eq!(workers[0].flows, ["etl@1.0", "report@2"]);
    assert_eq!(workers[0].pid, std::process::id());

    // b's heartbeat stopped 11 s ago (older than the reaper's 10 s); a's is refreshed.
    let old = chrono::Utc::now() - chrono::Duration::seconds(11);
    let old = old.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    set_heartbeat(b.to_string(), old.clone()).await;
    set_heartbeat(a.to_string(), old).await;
    store.worker_heartbeat(a).await.unwrap();
    let online: Vec<(WorkerId, bool)> = store
        .workers(None)
        .await
        .unwrap()
        .iter()
        .map(|w| (w.id, w.online))
        .collect();
    assert!(
        online.contains(&(a, true)) && online.contains(&(b, false)),
        "{online:?}"
    );

    // A fresh heartbeat of a process that is gone on this host: offline too.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let mut dead = info("dead");
    dead.pid = dead_pid;
    let d = store.register_worker(&dead).await.unwrap();
    let w = store.workers(Some("etl")).await.unwrap();
    assert!(!w.iter().find(|w| w.id == d).unwrap().online);

    assert!(store.deregister_worker(b).await.unwrap());
    assert!(!store.deregister_worker(b).await.unwrap());
    let err = store.worker_heartbeat(b).await.unwrap_err();
    assert_eq!(err, StoreError::WorkerNotFound(b.0));
    let left: Vec<WorkerId> = store
        .workers(Some("etl"))
        .await
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(left, [a, d]);
    assert!(store.workers(Some("adhoc")).await.unwrap().is_empty());
    let err = store.workers(Some("gone")).await.unwrap_err();
    assert!(err.to_string().contains("weft work-pool ls"), "{err}");

    // A pool with workers is not deleted; an empty one is.
    let err = store.delete_work_pool("etl").await.unwrap_err();
    assert!(err.to_string().contains("stop them first"), "{err}");
    store.delete_work_pool("adhoc").await.unwrap();
    assert!(store.work_pool("adhoc").await.is_err());
}

/// A paused pool gives no run to claim; a limited one no more than its limit at once.
async fn pause_and_limit_hold_claims(store: &Store) {
    store
        .create_work_pool(&WorkPoolSpec::new("claims").limit(2))
        .await
        .unwrap();
    store
        .register_deployment(&DeploymentRecord {
            name: "c".into(),
            flow: "f".into(),
            schedule: None,
            parameters: serde_json::json!({}),
            paused: false,
            last_run: None,
            last_run_at: None,
            next_run_at: None,
            updated: chrono::Utc::now(),
        })
        .await
        .unwrap();
    store
        .place_deployment("c", &PoolPlacement::new("claims"))
        .await
        .unwrap();
    for _ in 0..5 {
        store
            .schedule_run("c", serde_json::Map::new(), None)
            .await
            .unwrap();
    }
    let names = ["c".to_owned()];
    store.set_work_pool_paused("claims", true).await.unwrap();
    let claimed = store.claim_runs("claims", "w", &names, 10).await.unwrap();
    assert!(claimed.is_empty(), "claimed from a paused pool");
    store.set_work_pool_paused("claims", false).await.unwrap();
    let claimed = store.claim_runs("claims", "w", &names, 10).await.unwrap();
    assert_eq!(claimed.len(), 2, "the pool's limit is 2");
    let more = store.claim_runs("claims", "w", &names, 10).await.unwrap();
    assert!(more.is_empty(), "2 runs are Pending: the limit is reached");
    let err = store.claim_runs("nope", "w", &names, 1).await.unwrap_err();
    assert!(
        err.to_string().contains("no work pool named \"nope\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pools_and_workers() {
    let dir = temp_dir("sqlite");
    let url = format!("sqlite://{}/weft.db", dir.display());
    let store = Store::connect(&url).await.unwrap();
    pools_round_trip(&store).await;
    bad_names_are_refused(&store).await;
    let set: SetHeartbeat = Box::new(move |id, at| {
        let url = url.clone();
        Box::pin(async move {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("UPDATE workers SET heartbeat = ?1 WHERE id = ?2")
                .bind(at)
                .bind(id)
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        })
    });
    workers_go_offline(&store, set).await;
    pause_and_limit_hold_claims(&store).await;
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pools_and_workers() {
    let schema = common::Schema::new("pools").await;
    let store = schema.store().await;
    pools_round_trip(&store).await;
    bad_names_are_refused(&store).await;
    let (admin, name) = (schema.admin.clone(), schema.name.clone());
    let set: SetHeartbeat = Box::new(move |id, at| {
        let (admin, name) = (admin.clone(), name.clone());
        Box::pin(async move {
            sqlx::query(&format!(
                "UPDATE \"{name}\".workers SET heartbeat = $1 WHERE id = $2"
            ))
            .bind(at)
            .bind(id)
            .execute(&admin)
            .await
            .unwrap();
        })
    });
    workers_go_offline(&store, set).await;
    pause_and_limit_hold_claims(&store).await;
    schema.drop().await;
}
