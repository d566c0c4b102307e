//! Deployments and run requests in the store, on a real SQLite file and (feature `postgres`) the
//! PostgreSQL on 127.0.0.1:5432: registering keeps a pause, unknown names list the known ones,
//! a requested run is claimed exactly once even when two stores race for it, the schema
//! migrates from version 1 to 2.

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use weft::store::*;

mod common;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-deploy-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/weft.db", dir.display())
}

/// `t` as the store keeps it: microseconds.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

fn record(name: &str, flow: &str, schedule: Option<&str>) -> DeploymentRecord {
    DeploymentRecord {
        name: name.to_owned(),
        flow: flow.to_owned(),
        schedule: schedule.map(str::to_owned),
        parameters: serde_json::json!({ "n": 3, "label": "nightly" }),
        paused: false,
        last_run: None,
        last_run_at: None,
        next_run_at: Some(micros(Utc::now() + chrono::Duration::minutes(5))),
        updated: micros(Utc::now()),
    }
}

fn params(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

/// Register, list, re-register (a pause survives), pause and resume, unknown names, the last
/// and next runs.
async fn deployments_round_trip(store: Store) {
    assert!(store.deployments().await.unwrap().is_empty());
    let err = store.deployment("etl").await.unwrap_err();
    assert_eq!(
        err,
        StoreError::DeploymentNotFound {
            name: "etl".into(),
            known: vec![]
        }
    );
    assert_eq!(
        err.to_string(),
        "no deployments recorded yet: serve one first"
    );

    let etl = record("nightly etl", "etl", Some("cron 0 3 * * *"));
    let hello = record("adhoc hello", "hello", None);
    store.register_deployment(&etl).await.unwrap();
    store.register_deployment(&hello).await.unwrap();
    // By name.
    assert_eq!(
        store.deployments().await.unwrap(),
        [hello.clone(), etl.clone()]
    );
    assert_eq!(store.deployment("nightly etl").await.unwrap(), etl);

    // Paused, then registered again by a restarted server with other settings: the pause and
    // the last run stay, the rest is replaced.
    store.set_paused("nightly etl", true).await.unwrap();
    store.set_paused("nightly etl", true).await.unwrap(); // twice is fine
    let run = uuid::Uuid::new_v4();
    let at = micros(Utc::now());
    store
        .note_deployment_run("nightly etl", run, at)
        .await
        .unwrap();
    let again = DeploymentRecord {
        flow: "etl v2".into(),
        schedule: Some("every 1h".into()),
        parameters: serde_json::json!({ "n": 10 }),
        next_run_at: None,
        updated: micros(Utc::now() + chrono::Duration::seconds(1)),
        ..etl.clone()
    };
    store.register_deployment(&again).await.unwrap();
    let got = store.deployment("nightly etl").await.unwrap();
    assert_eq!(
        got,
        DeploymentRecord {
            paused: true,
            last_run: Some(run),
            last_run_at: Some(at),
            ..again.clone()
        }
    );

    store.set_paused("nightly etl", false).await.unwrap();
    assert!(!store.deployment("nightly etl").await.unwrap().paused);

    // A new deployment may start paused.
    let paused = DeploymentRecord {
        paused: true,
        ..record("paused one", "etl", Some("every 30s"))
    };
    store.register_deployment(&paused).await.unwrap();
    assert!(store.deployment("paused one").await.unwrap().paused);

    // The next run, set and cleared.
    let next = micros(Utc::now() + chrono::Duration::hours(2));
    store.set_next_run("adhoc hello", Some(next)).await.unwrap();
    assert_eq!(
        store.deployment("adhoc hello").await.unwrap().next_run_at,
        Some(next)
    );
    store.set_next_run("adhoc hello", None).await.unwrap();
    assert_eq!(
        store.deployment("adhoc hello").await.unwrap().next_run_at,
        None
    );
    let later = micros(Utc::now());
    let run2 = uuid::Uuid::new_v4();
    store
        .note_deployment_run("adhoc hello", run2, later)
        .await
        .unwrap();
    let h = store.deployment("adhoc hello").await.unwrap();
    assert_eq!((h.last_run, h.last_run_at), (Some(run2), Some(later)));

    // Unknown names say which ones exist, whatever is asked.
    let known = vec![
        "adhoc hello".to_owned(),
        "nightly etl".to_owned(),
        "paused one".to_owned(),
    ];
    let unknown = StoreError::DeploymentNotFound {
        name: "nope".into(),
        known: known.clone(),
    };
    assert_eq!(store.deployment("nope").await.unwrap_err(), unknown);
    assert_eq!(store.set_paused("nope", true).await.unwrap_err(), unknown);
    assert_eq!(store.set_next_run("nope", None).await.unwrap_err(), unknown);
    assert_eq!(
        store
            .note_deployment_run("nope", run, at)
            .await
            .unwrap_err(),
        unknown
    );
    assert_eq!(
        store
            .request_run("nope", serde_json::Map::new())
            .await
            .unwrap_err(),
        unknown
    );
    assert_eq!(
        unknown.to_string(),
        "no deployment named \"nope\"; known: adhoc hello, nightly etl, paused one (a process \
         serving it registers it)"
    );
    assert_eq!(store.deployments().await.unwrap().len(), 3);
}

/// Requests: claimed once, oldest first, only of the deployments asked; two stores racing for
/// the same requests never both get one; Started and Rejected read back.
async fn requests_are_claimed_once(a: Store, b: Store) {
    for name in ["etl", "hello", "other"] {
        a.register_deployment(&record(name, name, None))
            .await
            .unwrap();
    }
    let before = micros(Utc::now());
    let first = a
        .request_run(
            "etl",
            params(serde_json::json!({ "size": 5, "name": "bob" })),
        )
        .await
        .unwrap();
    let second = a
        .request_run("hello", serde_json::Map::new())
        .await
        .unwrap();
    let elsewhere = a
        .request_run("other", serde_json::Map::new())
        .await
        .unwrap();

    let req = b.request(first).await.unwrap();
    assert_eq!(req.id, first);
    assert_eq!(req.deployment, "etl");
    assert_eq!(req.state, RequestState::Requested);
    assert_eq!(
        req.parameters,
        params(serde_json::json!({ "size": 5, "name": "bob" }))
    );
    assert_eq!((req.message.as_deref(), req.run_id), (None, None));
    assert!(
        req.created >= before && req.created <= Utc::now(),
        "{req:?}"
    );

    // Only the deployments asked for, oldest first, each once.
    let served = vec!["etl".to_owned(), "hello".to_owned()];
    let claimed = b.claim_requests(&served).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|r| r.id).collect();
    assert_eq!(ids, [first, second]);
    assert!(claimed.iter().all(|r| r.state == RequestState::Claimed));
    assert_eq!(claimed[0].parameters["size"], 5);
    assert!(a.claim_requests(&served).await.unwrap().is_empty());
    assert!(b.claim_requests(&served).await.unwrap().is_empty());
    assert!(a.claim_requests(&[]).await.unwrap().is_empty());
    assert_eq!(
        a.request(second).await.unwrap().state,
        RequestState::Claimed
    );
    assert_eq!(
        a.request(elsewhere).await.unwrap().state,
        RequestState::Requested
    );

    // Started and Rejected, as read by the other store.
    let run = uuid::Uuid::new_v4();
    b.finish_request(first, RequestState::Started, None, Some(run))
        .await
        .unwrap();
    b.finish_request(
        second,
        RequestState::Rejected,
        Some("parameter \"size\" must be a number".into()),
        None,
    )
    .await
    .unwrap();
    let started = a.request(first).await.unwrap();
    assert_eq!(
        (started.state, started.run_id),
        (RequestState::Started, Some(run))
    );
    let rejected = a.request(second).await.unwrap();
    assert_eq!(rejected.state, RequestState::Rejected);
    assert_eq!(
        rejected.message.as_deref(),
        Some("parameter \"size\" must be a number")
    );
    assert_eq!(rejected.run_id, None);
    // A finished request is never claimed again.
    assert!(a.claim_requests(&served).await.unwrap().is_empty());

    // Unknown requests.
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        a.request(missing).await.unwrap_err(),
        StoreError::RequestNotFound(missing)
    );
    assert_eq!(
        a.finish_request(missing, RequestState::Started, None, None)
            .await
            .unwrap_err(),
        StoreError::RequestNotFound(missing)
    );

    // Two stores racing: every request goes to exactly one of them, in rounds of one request
    // and of many.
    let served = vec!["etl".to_owned(), "hello".to_owned(), "other".to_owned()];
    for (round, n) in [1usize, 1, 1, 30, 1, 50].into_iter().enumerate() {
        let mut asked = Vec::new();
        for i in 0..n {
            let d = &served[i % served.len()];
            asked.push(a.request_run(d, serde_json::Map::new()).await.unwrap());
        }
        if round == 0 {
            asked.push(elsewhere); // still Requested from above
        }
        let (x, y) = tokio::join!(a.claim_requests(&served), b.claim_requests(&served));
        let (x, y) = (x.unwrap(), y.unwrap());
        let mut got: Vec<uuid::Uuid> = x.iter().chain(&y).map(|r| r.id).collect();
        got.sort();
        asked.sort();
        assert_eq!(
            got,
            asked,
            "round {round}: {} and {} claimed",
            x.len(),
            y.len()
        );
        for id in &asked {
            assert_eq!(a.request(*id).await.unwrap().state, RequestState::Claimed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_deployments_round_trip() {
    let dir = temp_dir("round-trip");
    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    deployments_round_trip(store).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_requests_are_claimed_once() {
    let dir = temp_dir("claims");
    let a = Store::connect(&sqlite_url(&dir)).await.unwrap();
    let b = Store::connect(&sqlite_url(&dir)).await.unwrap();
    requests_are_claimed_once(a, b).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn sqlite_history_of_version_1_is_upgraded() {
    use sqlx::Connection;
    let dir = temp_dir("upgrade");
    let url = sqlite_url(&dir);
    let store = Store::connect(&url).await.unwrap();
    drop(store);
    let versions = |url: String| async move {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let v: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        conn.close().await.unwrap();
        v
    };
    assert_eq!(
        versions(url.clone()).await,
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );

    // What an older weft left: version 1 only.
    {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let undo_queue = common::UNDO_RUN_QUEUE.into_iter();
        for sql in undo_queue.chain(common::OLD_TASK_RUNS).chain([
            "DROP TABLE workers",
            "DROP TABLE work_pools",
            "DROP INDEX flow_runs_unfinished",
            "ALTER TABLE flow_runs DROP COLUMN lease",
            "DROP TABLE run_counts",
            "DROP TABLE flow_counts",
            "DROP TABLE run_requests",
            "DROP TABLE deployments",
            "DROP TABLE node_outputs",
            "DROP TABLE pipelines",
            "DROP INDEX flow_runs_by_parent",
            "ALTER TABLE flow_runs DROP COLUMN parent_run",
            "ALTER TABLE flow_runs DROP COLUMN parent_node",
            "CREATE INDEX task_runs_by_state ON task_runs (state)",
            "CREATE INDEX flow_runs_by_state ON flow_runs (state)",
            "DELETE FROM _sqlx_migrations WHERE version >= 2",
        ]) {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    }
    assert_eq!(versions(url.clone()).await, [1]);
    // Opened, even by a reader such as the CLI (which never creates a history), it is upgraded.
    let store = StoreOptions::new(url.clone())
        .create_if_missing(false)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        versions(url.clone()).await,
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );
    store
        .register_deployment(&record("d", "f", None))
        .await
        .unwrap();
    assert_eq!(store.deployments().await.unwrap().len(), 1);
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    use common::Schema;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_deployments_round_trip() {
        let schema = Schema::new("deploy").await;
        deployments_round_trip(schema.store().await).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_requests_are_claimed_once() {
        let schema = Schema::new("deploy").await;
        let (a, b) = (schema.store().await, schema.store().await);
        requests_are_claimed_once(a, b).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_history_of_version_1_is_upgraded() {
        let schema = Schema::new("deploy").await;
        drop(schema.store().await);
        assert_eq!(
            schema.versions().await,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
        let queue = ["leaders", "concurrency_limits", "concurrency_slots"]
            .map(|t| format!("DROP TABLE \"{{s}}\".{t}"))
            .into_iter()
            .chain(
                [
                    "deployment",
                    "overrides",
                    "pool",
                    "scheduled",
                    "slot",
                    "worker",
                    "tries",
                ]
                .map(|c| format!("ALTER TABLE \"{{s}}\".flow_runs DROP COLUMN {c}")),
            );
        let older = [
            "DROP VIEW \"{s}\".run_logs",
            "DROP TABLE \"{s}\".workers",
            "DROP TABLE \"{s}\".work_pools",
            "DROP INDEX \"{s}\".flow_runs_unfinished",
            "ALTER TABLE \"{s}\".flow_runs DROP COLUMN lease",
            "DROP TABLE \"{s}\".run_counts",
            "DROP TABLE \"{s}\".flow_counts",
            "DROP TABLE \"{s}\".run_owners",
            "DROP TABLE \"{s}\".processes",
            "ALTER TABLE \"{s}\".flow_runs DROP COLUMN cancel_requested",
            "ALTER TABLE \"{s}\".flow_runs DROP COLUMN cancel_reason",
            "DROP TABLE \"{s}\".run_requests",
            "DROP TABLE \"{s}\".deployments",
            "DROP TABLE \"{s}\".node_outputs",
            "DROP TABLE \"{s}\".pipelines",
            "ALTER TABLE \"{s}\".flow_runs DROP COLUMN parent_run",
            "ALTER TABLE \"{s}\".flow_runs DROP COLUMN parent_node",
            "ALTER TABLE \"{s}\".task_runs DROP COLUMN scheduled",
            "ALTER TABLE \"{s}\".task_runs DROP COLUMN lifecycle_in_row",
            "CREATE INDEX task_runs_by_state ON \"{s}\".task_runs (state)",
            "CREATE INDEX flow_runs_by_state ON \"{s}\".flow_runs (state)",
            "DELETE FROM \"{s}\"._sqlx_migrations WHERE version >= 2",
        ];
        for sql in queue.chain(older.map(str::to_owned)) {
            sqlx::query(&sql.replace("{s}", &schema.name))
                .execute(&schema.admin)
                .await
                .unwrap();
        }
        assert_eq!(schema.versions().await, [1]);
        let store = schema.store().await;
        assert_eq!(
            schema.versions().await,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
        store
            .register_deployment(&record("d", "f", None))
            .await
            .unwrap();
        assert_eq!(store.deployments().await.unwrap().len(), 1);
        schema.drop().await;
    }
}
