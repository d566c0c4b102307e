//! `weft work-pool` and `weft workers`, the real binary over a SQLite history in a temporary
//! `WEFT_HOME`: pools created (the history with them), listed, paused, resumed and limited; bad
//! input refused with exit codes and messages that say what to do; workers registered through
//! the store listed ONLINE or OFFLINE by their heartbeats.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use weft::store::{Store, WorkerInfo};

fn home() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-pools-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn weft(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("WEFT_HOME", home)
        .env_remove("WEFT_DATABASE_URL")
        .env_remove("WEFT_DATABASE_SCHEMA")
        .output()
        .unwrap()
}

/// Runs `weft args`, expects exit code `code`; returns stdout and stderr.
fn expect(home: &Path, args: &[&str], code: i32) -> (String, String) {
    let out = weft(home, args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

#[test]
fn work_pools_are_created_listed_paused_and_limited() {
    let home = home();
    let (out, _) = expect(
        &home,
        &[
            "work-pool",
            "create",
            "etl",
            "--limit",
            "4",
            "--description",
            "nightly loads",
        ],
        0,
    );
    assert_eq!(out, "work pool etl created (at most 4 runs at once)\n");
    assert!(home.join(".weft/weft.db").exists());
    let (_, err) = expect(&home, &["work-pool", "create", "etl"], 1);
    assert!(
        err.contains("already exists") && err.contains("weft work-pool ls"),
        "{err}"
    );
    expect(&home, &["work-pool", "create", "adhoc"], 0);

    assert_eq!(
        expect(&home, &["work-pool", "pause", "etl"], 0).0,
        "work pool etl paused\n"
    );
    let (out, _) = expect(&home, &["work-pool", "set-limit", "adhoc", "2"], 0);
    assert_eq!(out, "work pool adhoc: at most 2 runs at once\n");
    let (ls, _) = expect(&home, &["work-pool", "ls"], 0);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(
        lines[0].starts_with("NAME   STATUS  LIMIT  WORKERS  CREATED"),
        "{ls}"
    );
    assert!(
        lines[1].starts_with("adhoc  active      2      0/0"),
        "{ls}"
    );
    assert!(
        lines[2].starts_with("etl    paused      4      0/0")
            && lines[2].ends_with("nightly loads"),
        "{ls}"
    );

    expect(&home, &["work-pool", "resume", "etl"], 0);
    let (out, _) = expect(&home, &["work-pool", "set-limit", "etl", "none"], 0);
    assert_eq!(out, "work pool etl: no concurrency limit\n");
    let (json, _) = expect(&home, &["work-pool", "ls", "--json"], 0);
    let pools: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(pools[1]["name"], "etl");
    assert_eq!(pools[1]["paused"], false);
    assert_eq!(pools[1]["concurrency_limit"], serde_json::Value::Null);
    assert_eq!(pools[0]["concurrency_limit"], 2);
    std::fs::remove_dir_all(home).ok();
}

#[test]
fn bad_input_says_what_to_do() {
    let home = home();
    let (_, err) = expect(&home, &["work-pool", "ls"], 1);
    assert!(err.contains("run a flow first"), "{err}");
    assert!(!home.join(".weft").exists(), "listing created a history");
    expect(&home, &["work-pool", "create", "etl"], 0);
    let (_, err) = expect(&home, &["work-pool", "pause", "nightly"], 1);
    assert!(
        err.contains("no work pool named \"nightly\"; known: etl"),
        "{err}"
    );
    assert!(err.contains("weft work-pool ls"), "{err}");
    let (_, err) = expect(&home, &["work-pool", "set-limit", "etl", "0"], 2);
    assert!(err.contains("pause it instead"), "{err}");
    let (_, err) = expect(&home, &["work-pool", "set-limit", "etl", "many"], 2);
    assert!(err.contains("whole number of 1 or more, or none"), "{err}");
    let (_, err) = expect(&home, &["work-pool", "create", "x", "--limit", "0"], 2);
    assert!(err.contains("--limit"), "{err}");
    let (_, err) = expect(&home, &["work-pool", "create", "a\u{1b}[2Jb"], 1);
    assert!(err.contains("control characters"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "the escape reached the terminal: {err:?}"
    );
    let (_, err) = expect(&home, &["work-pool", "create", &"n".repeat(101)], 1);
    assert!(err.contains("100 characters"), "{err}");
    let (_, err) = expect(&home, &["workers", "--pool", "gone"], 1);
    assert!(err.contains("weft work-pool ls"), "{err}");
    std::fs::remove_dir_all(home).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_listed_online_and_offline() {
    let home = home();
    expect(&home, &["work-pool", "create", "etl"], 0);
    let (out, _) = expect(&home, &["workers"], 0);
    assert!(
        out.starts_with("no workers registered in sqlite://"),
        "{out}"
    );
    let url = format!("sqlite://{}/.weft/weft.db", home.display());
    let store = Store::connect(&url).await.unwrap();
    let flows = vec!["etl@1.0".to_owned(), "report@2".to_owned()];
    let live = store
        .register_worker(&WorkerInfo::this_process("etl", "loader", flows))
        .await
        .unwrap();
    let mut gone = WorkerInfo::this_process("etl", "stale", vec![]);
    gone.host = "elsewhere".into();
    let stale = store.register_worker(&gone).await.unwrap();
    let old = (chrono::Utc::now() - chrono::Duration::seconds(30))
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE workers SET heartbeat = ?1 WHERE id = ?2")
        .bind(old)
        .bind(stale.to_string())
        .execute(&pool)
        .await
        .unwrap();

    let (table, _) = expect(&home, &["workers", "--pool", "etl"], 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    assert!(
        lines[0].contains("PID  VERSION  FLOWS") && lines[0].ends_with("LAST HEARTBEAT  STATUS"),
        "{table}"
    );
    let row = |name: &str| *lines.iter().find(|l| l.contains(name)).unwrap();
    let me = std::process::id().to_string();
    assert!(
        row("loader").contains("etl@1.0, report@2") && row("loader").ends_with("ONLINE"),
        "{table}"
    );
    assert!(row("loader").contains(&me), "{table}");
    assert!(
        row("stale").contains("elsewhere") && row("stale").ends_with("OFFLINE"),
        "{table}"
    );
    assert!(row("stale").contains("30s ago"), "{table}");

    let (json, _) = expect(&home, &["workers", "--json"], 0);
    let workers: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(workers[0]["id"], live.to_string());
    assert_eq!(workers[0]["online"], true);
    assert_eq!(workers[1]["online"], false);
    assert_eq!(
        workers[0]["flows"],
        serde_json::json!(["etl@1.0", "report@2"])
    );
    let (ls, _) = expect(&home, &["work-pool", "ls"], 0);
    assert!(ls.lines().nth(1).unwrap().contains("1/2"), "{ls}");
    let (_, err) = expect(&home, &["work-pool", "rm", "etl"], 1);
    assert!(
        err.contains("2 registered worker(s)") && err.contains("stop them first"),
        "{err}"
    );
    expect(&home, &["work-pool", "create", "spare"], 0);
    assert_eq!(
        expect(&home, &["work-pool", "rm", "spare"], 0).0,
        "work pool spare deleted\n"
    );
    expect(&home, &["work-pool", "rm", "spare"], 1);
    store.deregister_worker(stale).await.unwrap();
    let (table, _) = expect(&home, &["workers"], 0);
    assert_eq!(table.lines().count(), 2, "{table}");
    std::fs::remove_dir_all(home).ok();
}

#[test]
fn concurrency_limits_are_set_listed_and_removed() {
    let home = home();
    let (out, _) = expect(&home, &["concurrency-limit", "set", "db", "5"], 0);
    assert_eq!(out, "concurrency limit db: at most 5 task run(s) at once\n");
    let (out, _) = expect(&home, &["concurrency-limit", "set", "db", "2"], 0);
    assert!(out.contains("at most 2"), "{out}");
    let (out, _) = expect(&home, &["concurrency-limit", "ls"], 0);
    let row = out.lines().nth(1).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..3], ["db", "2", "0"], "{out}");
    let (out, _) = expect(&home, &["concurrency-limit", "ls", "--json"], 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["tag"], "db");
    assert_eq!(json[0]["limit"], 2);
    let (_, err) = expect(&home, &["concurrency-limit", "set", " ", "2"], 1);
    assert!(err.contains("bad tag"), "{err}");
    let (_, err) = expect(&home, &["concurrency-limit", "set", "db", "many"], 2);
    assert!(err.contains("invalid value 'many'"), "{err}");
    let (out, _) = expect(&home, &["concurrency-limit", "rm", "db"], 0);
    assert_eq!(out, "concurrency limit db removed\n");
    let (_, err) = expect(&home, &["concurrency-limit", "rm", "db"], 2);
    assert!(err.contains("no concurrency limit on tag \"db\""), "{err}");
    let (out, _) = expect(&home, &["concurrency-limit", "ls"], 0);
    assert!(out.starts_with("no concurrency limits in"), "{out}");
}

/// The history under `home`, with work pool `pool`.
async fn history_with_pool(home: &Path, pool: &str) -> Store {
    let url = format!("sqlite://{}/.weft/weft.db", home.display());
    let store = Store::connect(&url).await.unwrap();
    let spec = weft::store::WorkPoolSpec::new(pool);
    store.create_work_pool(&spec).await.unwrap();
    store
}

/// Registers deployment `name` of a flow `load`, placed in `pool` if given.
async fn deployment(store: &Store, name: &str, pool: Option<&str>) {
    let record = weft::store::DeploymentRecord {
        name: name.into(),
        flow: "load".into(),
        schedule: None,
        parameters: serde_json::json!({}),
        paused: false,
        last_run: None,
        last_run_at: None,
        next_run_at: None,
        updated: chrono::Utc::now(),
    };
    store.register_deployment(&record).await.unwrap();
    if let Some(pool) = pool {
        let placement = weft::store::PoolPlacement::new(pool);
        store.place_deployment(name, &placement).await.unwrap();
    }
}

/// Runs of a pooled deployment waiting in the queue: `weft runs` shows them Late, due when, no
/// worker yet; `weft run show` says which deployment and pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_runs_show_late_with_their_pool() {
    let home = home();
    let store = history_with_pool(&home, "etl").await;
    deployment(&store, "nightly", Some("etl")).await;
    let due = chrono::Utc::now() - chrono::Duration::minutes(5);
    let id = store
        .schedule_run("nightly", serde_json::Map::new(), Some(due))
        .await
        .unwrap();
    assert_eq!(store.schedule_due().await.unwrap().late, 1);
    let (out, _) = expect(&home, &["runs"], 0);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header.last(), Some(&"WORKER"), "{out}");
    let row = out.lines().nth(1).unwrap();
    assert!(row.contains(" Late ") && row.contains(" due "), "{out}");
    assert!(row.trim_end().ends_with('-'), "{out}");
    let (out, _) = expect(&home, &["run", "show", &id.to_string()], 0);
    assert!(out.contains("deployment  nightly (work pool etl)"), "{out}");
    assert!(out.contains("worker      - (not claimed yet)"), "{out}");
    assert!(out.contains("duration    -"), "{out}");
}

/// A run waiting in a work pool's queue is cancelled at once: it never starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_is_cancelled_before_it_starts() {
    let home = home();
    let store = history_with_pool(&home, "etl").await;
    deployment(&store, "later", Some("etl")).await;
    deployment(&store, "unpooled", None).await;
    let err = store
        .schedule_run("unpooled", serde_json::Map::new(), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not served by a work pool"),
        "{err}"
    );
    let due = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = store
        .schedule_run("later", serde_json::Map::new(), Some(due))
        .await
        .unwrap();
    let (out, _) = expect(&home, &["run", "cancel", &id.to_string()], 0);
    assert!(out.contains("waiting in its work pool's queue"), "{out}");
    let run = store.run_record(id).await.unwrap();
    assert_eq!(run.state, weft::StateKind::Cancelled);
    let claimed = store
        .claim_runs("etl", "w", &["later".to_owned()], 10)
        .await
        .unwrap();
    assert!(claimed.is_empty(), "a cancelled run was claimed");
}
