//! Run history in a real SQLite file and (feature `postgres`) the PostgreSQL on 127.0.0.1:5432:
//! what is recorded, two processes writing at once, a newer schema refused, a database that goes
//! away mid-run.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use weft::prelude::*;
use weft::store::{RunFilter, Store, StoreError, StoreOptions};

mod common;

#[task]
async fn extract(n: u32) -> Vec<u32> {
    weft::tracing::info!("extracting {n} rows");
    (1..=n).collect()
}

#[task]
fn square(x: u32) -> u32 {
    weft::tracing::info!("squaring {x} on the blocking pool");
    x * x
}

#[task(retries = 1)]
async fn flaky(xs: Vec<u32>) -> Result<u32, String> {
    Err(format!("cannot load {} rows: disk full", xs.len()))
}

#[task(cache_for = "1h")]
async fn total(xs: Vec<u32>) -> u32 {
    xs.iter().sum()
}

#[flow(name = "history etl")]
async fn history_etl(n: u32) -> u32 {
    let rows = extract(n)?;
    let squares = square::map(rows.clone())?;
    let sum = total(squares)?;
    let _ = flaky(rows);
    sum
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-history-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}/weft.db", dir.display())
}

/// Runs the flow into `store` and checks everything that should be in it.
async fn records_everything(store: Store) {
    let run = history_etl::run_with(RunConfig::new().history(store.clone()), 3).await;
    assert_eq!(run.result, Ok(14));
    assert_eq!(run.state.kind, StateKind::Failed); // `flaky` failed
    let report = run.history.clone().expect("history is on");
    assert!(report.is_complete(), "{report:?}");
    assert!(report.recorded > 20, "{report:?}");

    let runs = store
        .runs(&RunFilter::new().flow("history etl"))
        .await
        .unwrap();
    let rec = runs
        .iter()
        .find(|r| r.id == run.id)
        .expect("the run is listed");
    assert_eq!(rec.state, StateKind::Failed);
    assert_eq!(rec.parameters, serde_json::json!({ "n": 3 }));
    assert!(rec.ended.is_some() && rec.duration() <= run.duration() + Duration::from_millis(5));
    let failed = store
        .runs(&RunFilter::new().state(StateKind::Failed).limit(1000))
        .await
        .unwrap();
    assert!(failed.iter().any(|r| r.id == run.id));
    let completed = store
        .runs(&RunFilter::new().state(StateKind::Completed).limit(1000))
        .await
        .unwrap();
    assert!(!completed.iter().any(|r| r.id == run.id));

    let detail = store.run(run.id).await.unwrap();
    let graph = detail.graph.as_ref().expect("the flow's graph is stored");
    assert_eq!(graph, history_etl::graph());
    // Every task run of the report, with the same states and attempts.
    assert_eq!(detail.task_runs.len(), run.task_runs.len());
    for r in &run.task_runs {
        let rec = detail
            .task_runs
            .iter()
            .find(|t| t.node == r.id.node && t.map_index == r.id.map_index)
            .unwrap_or_else(|| panic!("task run {:?} is recorded", r.id));
        assert_eq!((rec.task.as_str(), rec.state), (r.task, r.state.kind));
        assert_eq!(rec.attempts, r.attempts, "{}", r.task);
    }
    let flaky_rec = detail.task_runs.iter().find(|t| t.task == "flaky").unwrap();
    assert_eq!(flaky_rec.attempts, 2);
    assert!(flaky_rec.message.as_deref().unwrap().contains("disk full"));
    let total_rec = detail.task_runs.iter().find(|t| t.task == "total").unwrap();
    assert!(total_rec
        .cache_key
        .as_deref()
        .unwrap()
        .starts_with("cache/total/"));
    assert_eq!(total_rec.result, total_rec.cache_key);
    assert_eq!(
        detail
            .task_runs
            .iter()
            .filter(|t| t.task == "square" && t.map_index.is_some())
            .count(),
        3
    );

    // Every state change, in order: the flaky task went through Retrying.
    let flaky_node = flaky_rec.node;
    let flaky_states: Vec<StateKind> = detail
        .state_changes
        .iter()
        .filter(|c| c.node == Some(flaky_node))
        .map(|c| c.state)
        .collect();
    use StateKind::*;
    assert_eq!(flaky_states, [Pending, Running, Retrying, Running, Failed]);
    let flow_states: Vec<StateKind> = detail
        .state_changes
        .iter()
        .filter(|c| c.node.is_none())
        .map(|c| c.state)
        .collect();
    assert_eq!(flow_states, [Running, Failed]);

    // The run's log lines: the engine's and the task bodies' own, async and sync.
    let logs: Vec<&str> = detail.logs.iter().map(|l| l.message.as_str()).collect();
    let has = |s: &str| logs.iter().any(|l| l.contains(s));
    assert!(has("Beginning Flow run for 'history etl'"), "{logs:#?}");
    assert!(has("extracting 3 rows"), "{logs:#?}");
    assert!(has("squaring 2 on the blocking pool"), "{logs:#?}");
    assert!(has("Flow run FAILED"), "{logs:#?}");
    assert!(detail.logs.iter().any(|l| l.level == "ERROR"));

    // Colored drawings of the stored graph.
    assert!(detail.to_dot().contains("#dc3545"));
    assert!(detail.to_mermaid().contains("fill:#28a745"));
    assert!(detail.to_svg().starts_with("<svg"));

    let flows = store.flows().await.unwrap();
    let f = flows.iter().find(|f| f.name == "history etl").unwrap();
    assert!(f.runs >= 1 && f.count(StateKind::Failed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_records_runs_task_runs_state_changes_and_logs() {
    let dir = temp_dir("sqlite");
    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    records_everything(store).await;
    // A real file, in WAL mode.
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&sqlite_pool(&dir).await)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    std::fs::remove_dir_all(dir).ok();
}

async fn sqlite_pool(dir: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}/weft.db", dir.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn history_off_records_nothing() {
    let dir = temp_dir("off");
    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    let run = history_etl::run_with(RunConfig::new().no_history(), 2).await;
    assert!(run.history.is_none());
    let run2 = history_etl::run_with(RunConfig::new().history(store.clone()).no_history(), 2).await;
    assert!(run2.history.is_none());
    assert!(store.runs(&RunFilter::new()).await.unwrap().is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn the_default_store_lives_under_weft_home() {
    // A child process, so WEFT_HOME does not leak into other tests.
    if let Some(home) = std::env::var_os("WEFT_HISTORY_CHILD_HOME") {
        assert_eq!(
            weft::store::default_url(),
            format!("sqlite://{}/.weft/weft.db", PathBuf::from(home).display())
        );
        let run = history_etl(2).await;
        assert!(run.history.unwrap().is_complete());
        return;
    }
    let dir = temp_dir("home");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_default_store_lives_under_weft_home",
            "--nocapture",
        ])
        .env("WEFT_HISTORY_CHILD_HOME", &dir)
        .env("WEFT_HOME", &dir)
        .env_remove("WEFT_DATABASE_URL")
        .env_remove("WEFT_HISTORY")
        .env("WEFT_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = StoreOptions::new(sqlite_url(&dir.join(".weft")))
        .create_if_missing(false)
        .connect()
        .await
        .unwrap();
    assert_eq!(store.runs(&RunFilter::new()).await.unwrap().len(), 1);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn child_writes_runs() {
    let Some(url) = std::env::var_os("WEFT_HISTORY_CHILD_URL") else {
        return;
    };
    let store = Store::connect(url.to_str().unwrap()).await.unwrap();
    for _ in 0..20 {
        let run = history_etl::run_with(RunConfig::new().history(store.clone()), 5).await;
        let report = run.history.unwrap();
        assert!(report.is_complete(), "{report:?}");
    }
}

#[tokio::test]
async fn two_processes_write_to_one_sqlite_file_at_once() {
    let dir = temp_dir("two");
    let url = sqlite_url(&dir);
    // Both start on a file that does not exist yet: they race to create the tables too.
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writes_runs", "--nocapture"])
            .env("WEFT_HISTORY_CHILD_URL", &url)
            .env("WEFT_LOG", "off")
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let store = Store::connect(&url).await.unwrap();
    let runs = store.runs(&RunFilter::new().limit(1000)).await.unwrap();
    assert_eq!(runs.len(), 40);
    for r in &runs {
        assert_eq!(r.state, StateKind::Failed);
        let detail = store.run(r.id).await.unwrap();
        // extract, the map's summary and 5 elements, total, flaky
        assert_eq!(detail.task_runs.len(), 9);
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = temp_dir("newer");
    let url = sqlite_url(&dir);
    drop(Store::connect(&url).await.unwrap());
    let pool = sqlite_pool(&dir).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before: Vec<(String,)> = sqlx::query_as("SELECT name FROM sqlite_master ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    let err = Store::connect(&url).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 12,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("left untouched"), "{err}");
    let after: Vec<(String,)> = sqlx::query_as("SELECT name FROM sqlite_master ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(before, after);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 99]);
    // A flow run still runs, unrecorded, and says why.
    let run = history_etl::run_with(RunConfig::new().no_history(), 1).await;
    assert_eq!(run.result, Ok(1));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn bad_urls_say_what_works() {
    for (url, needle) in [
        ("mysql://localhost/x", "sqlite://"),
        ("sqlite://", "no file path"),
        ("weft.db", "postgres://"),
    ] {
        let err = Store::connect(url).await.unwrap_err();
        assert!(matches!(err, StoreError::BadUrl { .. }), "{err:?}");
        assert!(err.to_string().contains(needle), "{url}: {err}");
    }
    let dir = temp_dir("missing");
    let err = StoreOptions::new(format!("sqlite://{}/none/weft.db", dir.display()))
        .create_if_missing(false)
        .connect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!dir.join("none").exists());
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::{server_url, Proxy, Schema};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_records_runs_task_runs_state_changes_and_logs() {
        let schema = Schema::new("test").await;
        let store = schema.options(&server_url()).connect().await.unwrap();
        records_everything(store).await;
        // weft's tables live in their own schema.
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
        )
        .bind(&schema.name)
        .fetch_all(&schema.admin)
        .await
        .unwrap();
        assert_eq!(
            tables,
            [
                "_sqlx_migrations",
                "concurrency_limits",
                "concurrency_slots",
                "deployments",
                "flow_counts",
                "flow_runs",
                "flows",
                "leaders",
                "logs",
                "node_outputs",
                "pipelines",
                "processes",
                "run_counts",
                "run_logs",
                "run_owners",
                "run_requests",
                "state_changes",
                "task_runs",
                "work_pools",
                "workers"
            ]
        );
        schema.drop().await;
    }

    #[tokio::test]
    async fn postgres_newer_schema_is_refused() {
        let schema = Schema::new("test").await;
        drop(schema.options(&server_url()).connect().await.unwrap());
        sqlx::query(&format!(
            "INSERT INTO \"{}\"._sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99, 'from the future', true, '\\x00', 0)",
            schema.name
        ))
        .execute(&schema.admin)
        .await
        .unwrap();
        let err = schema.options(&server_url()).connect().await.unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err:?}"
        );
        schema.drop().await;
    }

    #[task]
    async fn slow_step(i: u32) -> u32 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        i
    }

    #[flow]
    async fn long_flow(n: u32) -> u32 {
        let xs = slow_step::map(0..n)?;
        xs.iter().sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_that_goes_away_loses_history_not_the_flow() {
        let schema = Schema::new("test").await;
        let proxy = Proxy::start().await;
        let store = schema
            .options(&proxy.url())
            .retry_for(Duration::from_millis(800))
            .flush_timeout(Duration::from_secs(20))
            .connect()
            .await
            .unwrap();
        let run = {
            let flow = long_flow::run_with(
                RunConfig::new().history(store.clone()).max_concurrency(2),
                20,
            );
            let cut = async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                proxy.down();
            };
            let (run, ()) = tokio::join!(flow, cut);
            run
        };
        assert_eq!(run.result, Ok(190)); // the flow is unaffected
        assert!(run.is_successful());
        let report = run.history.unwrap();
        assert!(report.confirmed, "{report:?}");
        assert!(report.lost > 0, "{report:?}");
        assert!(report.error.is_some(), "{report:?}");
        assert!(!report.is_complete());
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_outage_is_retried_and_nothing_is_lost() {
        let schema = Schema::new("test").await;
        let proxy = Proxy::start().await;
        let store = schema
            .options(&proxy.url())
            .retry_for(Duration::from_secs(30))
            .flush_timeout(Duration::from_secs(30))
            .connect()
            .await
            .unwrap();
        let flow = long_flow::run_with(
            RunConfig::new().history(store.clone()).max_concurrency(2),
            20,
        );
        let outage = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            proxy.down();
            tokio::time::sleep(Duration::from_millis(300)).await;
            proxy.restore();
        };
        let (run, ()) = tokio::join!(flow, outage);
        assert_eq!(run.result, Ok(190));
        let report = run.history.clone().unwrap();
        assert!(report.is_complete(), "{report:?}");
        let detail = store.run(run.id).await.unwrap();
        assert_eq!(detail.task_runs.len(), 21);
        assert!(detail
            .task_runs
            .iter()
            .all(|t| t.state == StateKind::Completed));
        assert_eq!(detail.run.state, StateKind::Completed);
        schema.drop().await;
    }
}
