//! How the run history stores rows (issue 12): one row per task run carrying its lifecycle, a
//! bounded queue that makes producers wait rather than drop, a refused row dropped alone, NUL
//! characters on PostgreSQL, and a database written before the compact rows read as before.
//! Real SQLite files and (feature `postgres`) the PostgreSQL on 127.0.0.1:5432.

use std::path::PathBuf;
use weft::prelude::*;
use weft::store::browse::Bucket;
use weft::store::{Store, StoreOptions};

mod common;

#[task]
async fn inc(x: u64) -> u64 {
    x + 1
}

#[flow]
async fn map_inc(n: u64) -> Vec<u64> {
    let ys = inc::map(0..n)?;
    ys
}

#[task(retries = 1)]
async fn shaky(n: u32) -> Result<u32, String> {
    Err(format!("shaky failed on {n}"))
}

#[task]
async fn steady(n: u32) -> u32 {
    n
}

#[flow(name = "rows flow")]
async fn rows_flow(n: u32) -> u32 {
    let a = steady(n)?;
    let _ = shaky(n);
    a
}

#[task]
async fn talk(line: String) -> usize {
    weft::tracing::info!("first {line}");
    weft::tracing::info!("second line");
    line.len()
}

#[flow(name = "talking flow")]
async fn talking(line: String) -> usize {
    let n = talk(line)?;
    n
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-rows-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}/weft.db", dir.display())
}

async fn sqlite_pool(dir: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}/weft.db", dir.display()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_the_engine_wait_and_nothing_is_lost() {
    const N: u64 = 200_000;
    let dir = temp_dir("queue");
    let store = StoreOptions::new(sqlite_url(&dir))
        .queue_capacity(512)
        .connect()
        .await
        .unwrap();
    let run = map_inc::run_with(RunConfig::new().history(store.clone()), N).await;
    assert_eq!(run.result.as_ref().map(Vec::len), Ok(N as usize));
    let report = run.history.clone().unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.lost, 0);

    let detail = store.run(run.id).await.unwrap();
    let elements: Vec<_> = detail
        .task_runs
        .iter()
        .filter(|t| t.map_index.is_some())
        .collect();
    assert_eq!(elements.len(), N as usize);
    assert!(elements.iter().all(|t| t.state == StateKind::Completed));
    // Each element's three state changes are read back from its row, in order.
    let last = detail
        .state_changes
        .iter()
        .filter(|c| c.map_index == Some(N as u32 - 1))
        .map(|c| (c.state, c.attempt))
        .collect::<Vec<_>>();
    use StateKind::*;
    assert_eq!(last, [(Pending, 0), (Running, 1), (Completed, 1)]);
    // ... and none of them is a row of its own.
    let pool = sqlite_pool(&dir).await;
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM state_changes WHERE flow_run_id = ? AND node IS NOT NULL",
    )
    .bind(run.id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    pool.close().await;
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

/// A state change as compared here: node, map index, state, attempt, message.
type Seen = (Option<u32>, Option<u32>, StateKind, u32, Option<String>);

fn seen(d: &weft::store::RunDetail) -> Vec<Seen> {
    d.state_changes
        .iter()
        .map(|c| (c.node, c.map_index, c.state, c.attempt, c.message.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_written_before_compact_rows_reads_as_before() {
    let dir = temp_dir("old");
    let url = sqlite_url(&dir);
    drop(Store::connect(&url).await.unwrap());
    // The layout of schema version 4 (the file as an earlier weft left it), holding a run as
    // that weft recorded it: every state change a row of its own.
    let pool = sqlite_pool(&dir).await;
    let undo_queue = common::UNDO_RUN_QUEUE.into_iter();
    for sql in undo_queue.chain(common::OLD_TASK_RUNS).chain([
        "ALTER TABLE deployments DROP COLUMN pool",
        "ALTER TABLE deployments DROP COLUMN retries",
        "ALTER TABLE deployments DROP COLUMN retry_delay_ms",
        "ALTER TABLE deployments DROP COLUMN catch_up",
        "ALTER TABLE deployments DROP COLUMN max_active",
        "ALTER TABLE deployments DROP COLUMN pipeline_version",
        "DROP TABLE workers",
        "DROP TABLE work_pools",
        "DROP INDEX flow_runs_unfinished",
        "ALTER TABLE flow_runs DROP COLUMN lease",
        "DROP TABLE run_counts",
        "DROP TABLE flow_counts",
        "CREATE INDEX task_runs_by_state ON task_runs (state)",
        "CREATE INDEX flow_runs_by_state ON flow_runs (state)",
        // One statement: a pooled connection that did not see the drop would refuse the create.
        "DROP INDEX flow_runs_by_parent; CREATE INDEX flow_runs_by_parent ON flow_runs (parent_run)",
        "DELETE FROM _sqlx_migrations WHERE version >= 5",
        "INSERT INTO flows VALUES ('old flow', 'v1', '{}', '2026-11-01T10:00:00.000000Z')",
        "INSERT INTO flow_runs (id, flow, flow_version, parameters, state, message, started, ended) \
         VALUES ('6f0c5a52-0000-4000-8000-000000000001', 'old flow', 'v1', '{}', 'Failed', \
         'some reference tasks failed', '2026-11-01T10:00:00.000000Z', '2026-11-01T10:00:01.000000Z')",
        "INSERT INTO task_runs VALUES ('6f0c5a52-0000-4000-8000-000000000001', 0, -1, 'steady', \
         'Completed', NULL, 1, '2026-11-01T10:00:00.100000Z', '2026-11-01T10:00:00.200000Z', NULL, NULL)",
        "INSERT INTO task_runs VALUES ('6f0c5a52-0000-4000-8000-000000000001', 1, -1, 'shaky', \
         'Failed', 'boom', 2, '2026-11-01T10:00:00.100000Z', '2026-11-01T10:00:00.900000Z', NULL, NULL)",
    ]) {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let changes = [
        (None, "old flow", "Running", None, 0, "10:00:00.000000"),
        (Some(0), "steady", "Pending", None, 0, "10:00:00.050000"),
        (Some(1), "shaky", "Pending", None, 0, "10:00:00.050000"),
        (Some(0), "steady", "Running", None, 1, "10:00:00.100000"),
        (Some(1), "shaky", "Running", None, 1, "10:00:00.100000"),
        (Some(0), "steady", "Completed", None, 1, "10:00:00.200000"),
        (
            Some(1),
            "shaky",
            "Retrying",
            Some("boom"),
            1,
            "10:00:00.300000",
        ),
        (Some(1), "shaky", "Running", None, 2, "10:00:00.800000"),
        (
            Some(1),
            "shaky",
            "Failed",
            Some("boom"),
            2,
            "10:00:00.900000",
        ),
        (
            None,
            "old flow",
            "Failed",
            Some("some reference tasks failed"),
            0,
            "10:00:01.000000",
        ),
    ];
    for (seq, (node, name, state, message, attempt, at)) in changes.iter().enumerate() {
        sqlx::query("INSERT INTO state_changes VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?)")
            .bind("6f0c5a52-0000-4000-8000-000000000001")
            .bind(seq as i64)
            .bind(node.map(i64::from))
            .bind(*name)
            .bind(*state)
            .bind(*message)
            .bind(*attempt as i64)
            .bind(format!("2026-11-01T{at}Z"))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    // This weft upgrades the file and reads the old run exactly as it was recorded.
    let store = Store::connect(&url).await.unwrap();
    let old_id: uuid::Uuid = "6f0c5a52-0000-4000-8000-000000000001".parse().unwrap();
    let old = store.run(old_id).await.unwrap();
    let expected: Vec<Seen> = changes
        .iter()
        .map(|(node, _, state, message, attempt, _)| {
            (
                *node,
                None,
                state.parse().unwrap(),
                *attempt,
                message.map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(seen(&old), expected);
    assert_eq!(old.task_runs.len(), 2);
    assert_eq!(old.task_runs[1].attempts, 2);
    // The upgrade counted the runs that had ended.
    let since = "2026-11-01T10:00:30Z".parse().unwrap();
    let stats = store.stats(since, Bucket::Hour).await.unwrap();
    use StateKind::{Completed, Failed};
    assert_eq!(stats.flow_runs, [(Failed, 1)]);
    assert_eq!(stats.task_runs, [(Completed, 1), (Failed, 1)]);
    let flows = store.flows().await.unwrap();
    let old_flow = flows.iter().find(|f| f.name == "old flow").unwrap();
    assert_eq!((old_flow.runs, old_flow.count(Failed)), (1, 1));

    // A run recorded now, into the same file: the same kind of story, fewer rows.
    let run = rows_flow::run_with(RunConfig::new().history(store.clone()), 7).await;
    assert!(run.history.as_ref().unwrap().is_complete());
    let new = store.run(run.id).await.unwrap();
    let steady = new.task_runs.iter().find(|t| t.task == "steady").unwrap();
    let shaky = new.task_runs.iter().find(|t| t.task == "shaky").unwrap();
    use StateKind::*;
    let of = |node: u32| {
        new.state_changes
            .iter()
            .filter(|c| c.node == Some(node))
            .map(|c| (c.state, c.attempt))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(steady.node),
        [(Pending, 0), (Running, 1), (Completed, 1)]
    );
    assert_eq!(
        of(shaky.node),
        [
            (Pending, 0),
            (Running, 1),
            (Retrying, 1),
            (Running, 2),
            (Failed, 2)
        ]
    );
    let failed = new
        .state_changes
        .iter()
        .find(|c| c.node == Some(shaky.node) && c.state == Failed)
        .unwrap();
    assert!(failed
        .message
        .as_deref()
        .unwrap()
        .contains("shaky failed on 7"));
    // Times never go backwards.
    assert!(new.state_changes.windows(2).all(|w| w[0].at <= w[1].at));
    let pool = sqlite_pool(&dir).await;
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM state_changes WHERE flow_run_id = ?")
            .bind(run.id.to_string())
            .fetch_one(&pool)
            .await
            .unwrap();
    // The flow run's two changes, and the retry's two (Retrying, Running again).
    assert_eq!(stored, 4);
    pool.close().await;
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

/// Runs flows that end Completed and Failed, with a retried task and a mapped one, into
/// `store`; the counts the writer keeps as runs end (the dashboard's and `/flows`') equal the
/// runs' recorded states counted one by one.
async fn counts_agree_with_the_rows(store: Store) {
    let config = || RunConfig::new().history(store.clone());
    let mut ids = Vec::new();
    for n in [300, 5] {
        ids.push(map_inc::run_with(config(), n).await.id);
    }
    for n in [1, 2] {
        ids.push(rows_flow::run_with(config(), n).await.id);
    }
    ids.push(talking::run_with(config(), "x".into()).await.id);
    let (mut flows, mut tasks) = (Vec::new(), Vec::new());
    let add = |to: &mut Vec<(StateKind, u64)>, s: StateKind| match to.iter_mut().find(|c| c.0 == s)
    {
        Some(c) => c.1 += 1,
        None => to.push((s, 1)),
    };
    for id in &ids {
        let d = store.run(*id).await.unwrap();
        add(&mut flows, d.run.state);
        for t in &d.task_runs {
            add(&mut tasks, t.state);
        }
    }
    let order = |v: &mut Vec<(StateKind, u64)>| v.sort_by_key(|c| c.0.as_str());
    order(&mut flows);
    order(&mut tasks);
    let mut stats = store
        .stats(
            chrono::Utc::now() - chrono::Duration::hours(1),
            Bucket::Minute,
        )
        .await
        .unwrap();
    order(&mut stats.flow_runs);
    order(&mut stats.task_runs);
    assert_eq!(stats.flow_runs, flows);
    assert_eq!(stats.task_runs, tasks);
    assert_eq!(
        tasks.iter().map(|c| c.1).sum::<u64>(),
        300 + 1 + 5 + 1 + 2 * 2 + 1
    );
    let bucketed: u64 = stats.buckets.iter().flat_map(|b| &b.1).map(|c| c.1).sum();
    assert_eq!(bucketed, ids.len() as u64);
    // The week's counts come from the hourly rows: the same totals.
    let mut week = store
        .stats(chrono::Utc::now() - chrono::Duration::days(7), Bucket::Day)
        .await
        .unwrap();
    order(&mut week.flow_runs);
    order(&mut week.task_runs);
    assert_eq!((week.flow_runs, week.task_runs), (flows, tasks.clone()));
    let summary = store.flows().await.unwrap();
    let rows = summary.iter().find(|f| f.name == "rows flow").unwrap();
    assert_eq!((rows.runs, rows.count(StateKind::Failed)), (2, 2));
    assert!(rows.last_run.is_some());
    let mapped = summary.iter().find(|f| f.name == "map_inc").unwrap();
    assert_eq!((mapped.runs, mapped.count(StateKind::Completed)), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_counts_agree_with_the_rows() {
    let dir = temp_dir("counts");
    counts_agree_with_the_rows(Store::connect(&sqlite_url(&dir)).await.unwrap()).await;
    std::fs::remove_dir_all(dir).ok();
}

/// Runs `talking` into `store`, whose database refuses log lines containing "poison": that row
/// alone is lost, the rest of the run is recorded.
async fn a_refused_row_is_dropped_alone(store: Store) {
    let run = talking::run_with(RunConfig::new().history(store.clone()), "poison".into()).await;
    assert_eq!(run.result, Ok(6));
    let report = run.history.clone().unwrap();
    assert_eq!(report.lost, 1, "{report:?}");
    assert!(report.confirmed && report.recorded > 5, "{report:?}");
    assert!(
        report.error.as_deref().unwrap_or("").contains("poisoned"),
        "{report:?}"
    );
    let detail = store.run(run.id).await.unwrap();
    assert_eq!(detail.run.state, StateKind::Completed);
    assert_eq!(detail.task_runs.len(), 1);
    let logs: Vec<&str> = detail.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(logs.iter().any(|l| l.contains("second line")), "{logs:?}");
    assert!(!logs.iter().any(|l| l.contains("poison")), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_refused_row_is_dropped_alone() {
    let dir = temp_dir("refused");
    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    let pool = sqlite_pool(&dir).await;
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON logs WHEN NEW.message LIKE '%poison%' \
         BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    a_refused_row_is_dropped_alone(store).await;
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::Schema;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_refused_row_is_dropped_alone() {
        let schema = Schema::new("refused").await;
        let store = schema.store().await;
        let s = &schema.name;
        for sql in [
            format!(
                "CREATE FUNCTION \"{s}\".refuse_poison() RETURNS trigger AS $$ BEGIN \
                 IF NEW.message LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned row'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            format!(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON \"{s}\".logs FOR EACH ROW \
                 EXECUTE FUNCTION \"{s}\".refuse_poison()"
            ),
        ] {
            sqlx::query(&sql).execute(&schema.admin).await.unwrap();
        }
        a_refused_row_is_dropped_alone(store).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_counts_agree_with_the_rows() {
        let schema = Schema::new("counts").await;
        counts_agree_with_the_rows(schema.store().await).await;
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_text_with_nul_is_recorded() {
        let schema = Schema::new("nul").await;
        let store = schema.store().await;
        let run = talking::run_with(RunConfig::new().history(store.clone()), "a\0b".into()).await;
        assert_eq!(run.result, Ok(3));
        let report = run.history.clone().unwrap();
        assert!(report.is_complete(), "{report:?}");
        let detail = store.run(run.id).await.unwrap();
        assert!(
            detail
                .logs
                .iter()
                .any(|l| l.message.contains("first a\u{FFFD}b")),
            "{:?}",
            detail.logs
        );
        assert_eq!(
            detail.run.parameters,
            serde_json::json!({ "line": "a\u{0}b" })
        );
        schema.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_reads_lifecycle_rows_back() {
        let schema = Schema::new("lifecycle").await;
        let store = schema.store().await;
        let run = rows_flow::run_with(RunConfig::new().history(store.clone()), 3).await;
        assert!(run.history.as_ref().unwrap().is_complete());
        let detail = store.run(run.id).await.unwrap();
        let shaky = detail.task_runs.iter().find(|t| t.task == "shaky").unwrap();
        use StateKind::*;
        let states: Vec<StateKind> = detail
            .state_changes
            .iter()
            .filter(|c| c.node == Some(shaky.node))
            .map(|c| c.state)
            .collect();
        assert_eq!(states, [Pending, Running, Retrying, Running, Failed]);
        schema.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_lifecycle_lines_are_read_back_from_its_row_in_place() {
    let dir = temp_dir("lines");
    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    let config = || RunConfig::new().history(store.clone());
    let run = talking::run_with(config(), "hello".into()).await;
    assert_eq!(run.result, Ok(5));
    let detail = store.run(run.id).await.unwrap();
    let logs: Vec<(&str, &str)> = detail
        .logs
        .iter()
        .map(|l| (l.level.as_str(), l.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        [
            ("INFO", "Beginning Flow run for 'talking flow'"),
            ("INFO", "Task 'talk': Starting task run..."),
            ("INFO", "first hello"),
            ("INFO", "second line"),
            (
                "INFO",
                "Task 'talk': Finished task run for task with final state: 'Completed'"
            ),
            ("INFO", "Flow run SUCCESS: all reference tasks succeeded"),
        ]
    );
    assert!(detail.logs.windows(2).all(|w| w[0].at <= w[1].at));
    let pool = sqlite_pool(&dir).await;
    let count = |sql: &'static str, id: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    // Only the lines the task run's row cannot tell are rows of their own.
    let stored = count(
        "SELECT COUNT(*) FROM logs WHERE flow_run_id = ?",
        run.id.to_string(),
    );
    assert_eq!(stored.await, 4);

    // A retried task that fails: its failure line carries the message, at ERROR.
    let run = rows_flow::run_with(config(), 7).await;
    let detail = store.run(run.id).await.unwrap();
    let shaky: Vec<(&str, &str)> = detail
        .logs
        .iter()
        .filter(|l| l.message.starts_with("Task 'shaky'"))
        .map(|l| (l.level.as_str(), l.message.as_str()))
        .collect();
    assert_eq!(shaky.len(), 4, "{shaky:#?}");
    assert_eq!(shaky[0], ("INFO", "Task 'shaky': Starting task run..."));
    assert!(shaky[1].1.contains("Attempt 1 of 2 failed"), "{shaky:#?}");
    assert!(shaky[2].1.contains("Starting attempt 2 of 2"), "{shaky:#?}");
    assert_eq!(
        shaky[3],
        (
            "ERROR",
            "Task 'shaky': Finished task run for task with final state: 'Failed' (shaky failed on 7)"
        )
    );
    pool.close().await;
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}
