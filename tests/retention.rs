//! Retention: `Store::prune` deletes old runs in a final state with their task runs, state
//! changes, logs, node outputs and subflow runs, in bounded batches, on a real SQLite file and
//! (feature `postgres`) the PostgreSQL on 127.0.0.1:5432, also while flows record into the same
//! database; a served store prunes in the background.

use std::path::PathBuf;
use std::time::Duration;
use weft::prelude::*;
use weft::store::{Retention, Store, StoreError, StoreOptions};

mod common;

#[task]
fn double(x: u32) -> u32 {
    weft::tracing::info!("doubling {x}");
    x * 2
}

#[task]
async fn refuse(x: u32) -> Result<u32, String> {
    Err(format!("{x} refused"))
}

#[flow]
async fn leaf_flow(x: u32) -> u32 {
    let y = double(x)?;
    y
}

#[flow]
async fn tree_flow(x: u32) -> u32 {
    let a = leaf_flow(x)?;
    let b = leaf_flow(a)?;
    b
}

#[flow]
async fn failing_flow(x: u32) -> u32 {
    let y = refuse(x)?;
    y
}

#[flow]
async fn small_flow(x: u32) -> u32 {
    let y = double(x)?;
    y
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-retention-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Direct access to the database, behind weft's back, to age runs and count rows.
enum Admin {
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Pg(sqlx::PgPool, String),
}

impl Admin {
    /// `sql` with `{p}` replaced by the tables' schema prefix.
    fn sql(&self, sql: &str) -> String {
        match self {
            Admin::Sqlite(_) => sql.replace("{p}", ""),
            #[cfg(feature = "postgres")]
            Admin::Pg(_, schema) => sql.replace("{p}", &format!("\"{schema}\".")),
        }
    }
    async fn exec(&self, sql: &str) {
        let sql = self.sql(sql);
        match self {
            Admin::Sqlite(p) => {
                sqlx::query(&sql).execute(p).await.unwrap();
            }
            #[cfg(feature = "postgres")]
            Admin::Pg(p, _) => {
                sqlx::query(&sql).execute(p).await.unwrap();
            }
        }
    }
    async fn count(&self, sql: &str) -> i64 {
        let sql = self.sql(sql);
        match self {
            Admin::Sqlite(p) => sqlx::query_scalar(&sql).fetch_one(p).await.unwrap(),
            #[cfg(feature = "postgres")]
            Admin::Pg(p, _) => sqlx::query_scalar(&sql).fetch_one(p).await.unwrap(),
        }
    }
    /// Rows of `table` keyed by the runs `ids`.
    async fn rows_of(&self, table: &str, ids: &[String]) -> i64 {
        let key = if table == "flow_runs" {
            "id"
        } else {
            "flow_run_id"
        };
        self.count(&format!(
            "SELECT COUNT(*) FROM {{p}}{table} WHERE {key} IN ({})",
            quoted(ids)
        ))
        .await
    }
    /// Moves the runs `ids` `days` into the past.
    async fn age(&self, ids: &[String], days: i64) {
        let at = (chrono::Utc::now() - chrono::Duration::days(days))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        self.exec(&format!(
            "UPDATE {{p}}flow_runs SET started = '{at}', ended = CASE WHEN ended IS NULL THEN NULL ELSE '{at}' END WHERE id IN ({})",
            quoted(ids)
        ))
        .await;
    }
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(",")
}

fn id_strings(run: &FlowRun<u32>) -> Vec<String> {
    let mut ids = vec![run.id.to_string()];
    ids.extend(run.subflows.iter().map(|s| s.id.to_string()));
    ids
}

const TABLES: [&str; 5] = [
    "flow_runs",
    "task_runs",
    "state_changes",
    "logs",
    "node_outputs",
];

async fn complete(run: &FlowRun<u32>) {
    let report = run.history.as_ref().expect("recorded");
    assert!(report.is_complete(), "{report:?}");
}

/// Records old and new runs of every kind into `store`, then prunes (dry, keeping failed runs,
/// then all) and checks what went and what stayed.
async fn prunes_old_final_runs(store: Store, admin: Admin) {
    let config = || RunConfig::new().history(store.clone());
    // An old tree: a parent and two subflow runs.
    let tree = tree_flow::run_with(config(), 1).await;
    assert_eq!(tree.state.kind, StateKind::Completed);
    complete(&tree).await;
    let tree_ids = id_strings(&tree);
    assert_eq!(tree_ids.len(), 3, "{:?}", tree.subflows);
    // An old failed run.
    let failed = failing_flow::run_with(config(), 2).await;
    assert_eq!(failed.state.kind, StateKind::Failed);
    complete(&failed).await;
    let failed_ids = id_strings(&failed);
    // An old run still Running (a crashed process left it so): never touched.
    let running = small_flow::run_with(config(), 3).await;
    complete(&running).await;
    let running_ids = id_strings(&running);
    // An old tree whose subflow run is still Running: kept whole.
    let busy_tree = tree_flow::run_with(config(), 4).await;
    complete(&busy_tree).await;
    let busy_ids = id_strings(&busy_tree);
    // A recent run.
    let fresh = small_flow::run_with(config(), 5).await;
    complete(&fresh).await;
    let fresh_ids = id_strings(&fresh);

    for ids in [&tree_ids, &failed_ids, &running_ids, &busy_ids] {
        admin.age(ids, 40).await;
    }
    admin
        .exec(&format!(
            "UPDATE {{p}}flow_runs SET state = 'Running', ended = NULL WHERE id IN ('{}', '{}')",
            running_ids[0], busy_ids[2]
        ))
        .await;
    // A pipeline node's output for the old failed run.
    admin
        .exec(&format!(
            "INSERT INTO {{p}}node_outputs (flow_run_id, node, command, exit_code, signal, stdout, \
             stderr, stdout_total, stderr_total, started, ended) VALUES ('{}', 0, 'echo hi', 0, \
             NULL, '', '', 0, 0, '2020-01-01T00:00:00.000000Z', '2020-01-01T00:00:00.000000Z')",
            failed_ids[0]
        ))
        .await;

    let mut expected = [0i64; 5];
    let doomed: Vec<String> = tree_ids.iter().chain(&failed_ids).cloned().collect();
    for (i, t) in TABLES.iter().enumerate() {
        expected[i] = admin.rows_of(t, &doomed).await;
    }
    assert_eq!(expected[0], 4);
    assert!(expected[1] >= 4 && expected[2] >= 8 && expected[3] >= 2 && expected[4] == 1);
    let before: Vec<i64> = {
        let mut v = Vec::new();
        for t in TABLES {
            v.push(admin.count(&format!("SELECT COUNT(*) FROM {{p}}{t}")).await);
        }
        v
    };

    // Dry: the counts, nothing deleted.
    let dry = store
        .prune(&Retention::parse("30d").unwrap().dry_run(true))
        .await
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(
        [
            dry.flow_runs,
            dry.task_runs,
            dry.state_changes,
            dry.logs,
            dry.node_outputs
        ],
        expected.map(|n| n as u64),
        "{dry:?}"
    );
    for (i, t) in TABLES.iter().enumerate() {
        let now = admin.count(&format!("SELECT COUNT(*) FROM {{p}}{t}")).await;
        assert_eq!(now, before[i], "{t} after a dry run");
    }

    // Keeping failed runs: the tree goes, the failed run stays.
    let kept = store
        .prune(&Retention::parse("30d").unwrap().keep_failed(true).batch(1))
        .await
        .unwrap();
    assert_eq!(kept.flow_runs, 3, "{kept:?}");
    for t in TABLES {
        assert_eq!(admin.rows_of(t, &tree_ids).await, 0, "{t} of the tree");
    }
    assert_eq!(admin.rows_of("flow_runs", &failed_ids).await, 1);
    assert!(matches!(
        store.run(tree.id).await,
        Err(StoreError::RunNotFound(_))
    ));

    // All: the failed run goes with its node output.
    let all = store
        .prune(&Retention::parse("30d").unwrap())
        .await
        .unwrap();
    assert_eq!((all.flow_runs, all.node_outputs), (1, 1), "{all:?}");
    for t in TABLES {
        assert_eq!(
            admin.rows_of(t, &failed_ids).await,
            0,
            "{t} of the failed run"
        );
    }
    // Never touched: the Running run, the tree with a Running subflow run, the recent run.
    for ids in [&running_ids, &busy_ids, &fresh_ids] {
        assert_eq!(
            admin.rows_of("flow_runs", ids).await,
            ids.len() as i64,
            "{ids:?}"
        );
        assert!(admin.rows_of("task_runs", ids).await > 0);
    }
    store.run(running.id).await.unwrap();
    store.run(busy_tree.id).await.unwrap();
    store.run(fresh.id).await.unwrap();
    // Nothing left to prune.
    let again = store
        .prune(&Retention::parse("30d").unwrap())
        .await
        .unwrap();
    assert_eq!(again.total(), 0, "{again:?}");
}

/// 300 old runs pruned 25 per transaction while four writers record new runs into the same
/// database: every new run is recorded in full, every old one is gone.
async fn prunes_while_flows_record(store: Store, admin: Admin) {
    let config = || RunConfig::new().history(store.clone());
    let mut old = Vec::new();
    for chunk in 0..6 {
        let runs =
            futures_join_all((0..50).map(|i| small_flow::run_with(config(), chunk * 50 + i))).await;
        for r in &runs {
            complete(r).await;
            old.push(r.id.to_string());
        }
    }
    admin.age(&old, 40).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u32 {
        let (store, stop) = (store.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 3 {
                let run = tree_flow::run_with(RunConfig::new().history(store.clone()), w).await;
                assert_eq!(run.result, Ok(w * 4));
                let report = run.history.clone().unwrap();
                assert!(report.is_complete(), "{report:?}");
                ids.extend(id_strings(&run));
                n += 1;
            }
            ids
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = store
        .prune(&Retention::parse("30d").unwrap().batch(25))
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut new = Vec::new();
    for w in writers {
        new.extend(w.await.unwrap());
    }
    assert_eq!(report.flow_runs, 300, "{report:?}");
    assert!(report.batches >= 12, "{report:?}");
    for t in TABLES {
        assert_eq!(admin.rows_of(t, &old).await, 0, "{t} of the old runs");
    }
    assert_eq!(admin.rows_of("flow_runs", &new).await, new.len() as i64);
    assert!(admin.rows_of("task_runs", &new).await >= new.len() as i64);
}

async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn sqlite(tag: &str) -> (PathBuf, Store, Admin) {
    let dir = temp_dir(tag);
    let url = format!("sqlite://{}/weft.db", dir.display());
    let store = Store::connect(&url).await.unwrap();
    let admin = sqlx::SqlitePool::connect(&url).await.unwrap();
    (dir, store, Admin::Sqlite(admin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_prunes_old_final_runs() {
    let (dir, store, admin) = sqlite("final").await;
    prunes_old_final_runs(store, admin).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_prunes_while_flows_record() {
    let (dir, store, admin) = sqlite("concurrent").await;
    prunes_while_flows_record(store, admin).await;
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn ages_parse_or_say_what_is_expected() {
    assert_eq!(
        Retention::parse("30d").unwrap().older_than,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(
        Retention::parse(" 1h 30m ").unwrap().older_than,
        Duration::from_secs(5400)
    );
    let e = Retention::parse("thirty days").unwrap_err();
    assert!(e.contains("thirty days") && e.contains("30d"), "{e}");
    assert_eq!(Retention::parse("1d").unwrap().batch(0).batch, 1);
}

/// A server whose store has a retention prunes it in the background while serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_store_prunes_in_the_background() {
    use weft::schedule::{Deployment, Server};
    let dir = temp_dir("serve");
    let url = format!("sqlite://{}/weft.db", dir.display());
    let store = StoreOptions::new(&url)
        .retention(
            Retention::parse("30d")
                .unwrap()
                .every(Duration::from_millis(50)),
        )
        .connect()
        .await
        .unwrap();
    assert!(store.retention().is_some());
    let old = small_flow::run_with(RunConfig::new().history(store.clone()), 1).await;
    complete(&old).await;
    let admin = Admin::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap());
    admin.age(&[old.id.to_string()], 40).await;
    let d = Deployment::new("idle", small_flow::flow(), (1,));
    Server::new([d])
        .store(store.clone())
        .run_until(async {
            for _ in 0..100 {
                if admin.rows_of("flow_runs", &[old.id.to_string()]).await == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
    assert_eq!(admin.rows_of("flow_runs", &[old.id.to_string()]).await, 0);
    assert_eq!(admin.rows_of("task_runs", &[old.id.to_string()]).await, 0);
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::Schema;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_prunes_old_final_runs() {
        let schema = Schema::new("prune").await;
        let store = schema.store().await;
        let admin = Admin::Pg(schema.admin.clone(), schema.name.clone());
        prunes_old_final_runs(store, admin).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_prunes_while_flows_record() {
        let schema = Schema::new("prunec").await;
        let store = schema.store().await;
        let admin = Admin::Pg(schema.admin.clone(), schema.name.clone());
        prunes_while_flows_record(store, admin).await;
        schema.drop().await;
    }
}
