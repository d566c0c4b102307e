//! The zombie reaper end to end: a plain program running a flow (this test binary started again)
//! is SIGKILLed in the middle of its run; `weft runs`, another live process and `weft server
//! start` each find the run and mark it Crashed, with its task runs and counts.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::store::browse::Bucket;
use weft::store::{RunFilter, Store, StoreOptions};

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
const CHILD_URL: &str = "WEFT_REAPER_TEST_CHILD_URL";

/// Not a test of its own: with [`CHILD_URL`] set, this test binary is the plain program whose
/// process the tests kill (its schema from `WEFT_DATABASE_SCHEMA`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_running_a_long_flow() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    let _ = long_nap::run_with(RunConfig::new().history(store), 3600).await;
    std::process::exit(3); // never reached: the test kills it
}

/// Where a test records: a SQLite file, or a PostgreSQL schema of its own.
struct Db {
    url: String,
    schema: Option<String>,
    dir: Option<std::path::PathBuf>,
}

impl Db {
    fn sqlite() -> Db {
        let dir = std::env::temp_dir().join(format!("weft-reaper-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Db {
            url: format!("sqlite://{}/weft.db", dir.display()),
            schema: None,
            dir: Some(dir),
        }
    }
    fn postgres() -> Db {
        let url = std::env::var("WEFT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        Db {
            url,
            schema: Some(format!("weft_reaper_cli_{}", uuid::Uuid::new_v4().simple())),
            dir: None,
        }
    }
    fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new(program);
        c.env("WEFT_LOG", "off").env_remove("WEFT_DATABASE_URL");
        match &self.schema {
            Some(s) => c.env("WEFT_DATABASE_SCHEMA", s),
            None => c.env_remove("WEFT_DATABASE_SCHEMA"),
        };
        c
    }
    async fn store(&self) -> Store {
        let mut options = StoreOptions::new(&self.url);
        if let Some(s) = &self.schema {
            options = options.schema(s);
        }
        options.connect().await.unwrap()
    }
    fn spawn_child(&self) -> Child {
        self.command(&std::env::current_exe().unwrap())
            .args(["child_running_a_long_flow", "--exact", "--nocapture"])
            .env(CHILD_URL, &self.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
    fn weft(&self, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_weft").as_ref())
            .arg("--database")
            .arg(&self.url)
            .args(args)
            .output()
            .unwrap()
    }
    async fn drop(self) {
        if let Some(dir) = self.dir {
            std::fs::remove_dir_all(dir).ok();
        }
        if let Some(schema) = self.schema {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
        }
    }
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

/// Starts the child, waits until its run's task is Running and its process has claimed the run
/// (heartbeating), then SIGKILLs it: the run's id and the child's pid.
async fn killed_mid_run(db: &Db, store: &Store) -> (uuid::Uuid, u32) {
    let mut child = db.spawn_child();
    let id = until(Duration::from_secs(30), || async {
        let run = store
            .runs(&RunFilter::new())
            .await
            .ok()?
            .into_iter()
            .next()?;
        let detail = store.run(run.id).await.ok()?;
        let running = detail.task_runs.first()?.state == StateKind::Running;
        let claimed = store.run_owner(run.id).await.ok()?.is_some();
        (running && claimed).then_some(run.id)
    })
    .await
    .expect("the child's run did not start and get claimed");
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL: nothing of it runs on, nothing records the end
    child.wait().unwrap();
    assert_eq!(store.run(id).await.unwrap().run.state, StateKind::Running);
    (id, pid)
}

/// The run, its task run and the counts say Crashed, with the dead process named.
async fn recorded_crashed(store: &Store, id: uuid::Uuid, pid: u32) {
    let detail = store.run(id).await.unwrap();
    assert_eq!(detail.run.state, StateKind::Crashed, "{:?}", detail.run);
    let message = detail.run.message.clone().unwrap_or_default();
    assert!(
        message.starts_with(&format!("process {pid} on "))
            && message.contains("stopped heartbeating at"),
        "{message}"
    );
    assert!(detail.run.ended.is_some());
    assert_eq!(detail.task_runs.len(), 1);
    assert_eq!(detail.task_runs[0].state, StateKind::Crashed);
    let line = format!("Flow run CRASHED: {message}");
    assert!(
        detail
            .logs
            .iter()
            .any(|l| l.level == "WARN" && l.message == line),
        "{:?}",
        detail.logs
    );
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let stats = store.stats(since, Bucket::Hour).await.unwrap();
    assert_eq!(stats.flow_runs, vec![(StateKind::Crashed, 1)]);
    assert_eq!(stats.task_runs, vec![(StateKind::Crashed, 1)]);
}

/// `weft runs` reaps before it prints: the killed run shows Crashed at once (its pid is gone
/// on this host), and `weft run show` gives the reason.
async fn weft_runs_shows_a_killed_run_crashed(db: Db) {
    let store = db.store().await;
    let (id, pid) = killed_mid_run(&db, &store).await;
    let out = db.weft(&["runs"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.contains(&id.to_string()[..8]))
        .unwrap_or("");
    assert!(row.contains("Crashed"), "{text}");
    recorded_crashed(&store, id, pid).await;
    let show = db.weft(&["run", "show", &id.to_string()]);
    let shown = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(
        shown.contains("Crashed") && shown.contains("stopped heartbeating"),
        "{shown}"
    );
    drop(store);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_weft_runs_shows_a_killed_run_crashed() {
    weft_runs_shows_a_killed_run_crashed(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_weft_runs_shows_a_killed_run_crashed() {
    weft_runs_shows_a_killed_run_crashed(Db::postgres()).await;
}

/// Another live process with a run of its own reaps the killed run in its watcher, within the
/// stale time and a few seconds; nobody asks it to.
async fn a_live_process_reaps_a_killed_run(db: Db) {
    let store = db.store().await;
    let (id, pid) = killed_mid_run(&db, &store).await;
    let killed = Instant::now();
    let mine = tokio::spawn(long_nap::run_with(
        RunConfig::new().history(store.clone()),
        3600,
    ));
    let crashed = until(Duration::from_secs(20), || async {
        let run = store.run_record(id).await.ok()?;
        (run.state == StateKind::Crashed).then_some(())
    })
    .await;
    assert!(crashed.is_some(), "not reaped within 20 s");
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed.elapsed()
    );
    mine.abort();
    recorded_crashed(&store, id, pid).await;
    drop(store);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_live_process_reaps_a_killed_run() {
    a_live_process_reaps_a_killed_run(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_live_process_reaps_a_killed_run() {
    a_live_process_reaps_a_killed_run(Db::postgres()).await;
}

/// `weft server start` reaps on its own, every few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_server_start_reaps_a_killed_run() {
    let db = Db::sqlite();
    let store = db.store().await;
    let (id, pid) = killed_mid_run(&db, &store).await;
    let mut server = db
        .command(env!("CARGO_BIN_EXE_weft").as_ref())
        .args(["--database", &db.url, "server", "start", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let crashed = until(Duration::from_secs(20), || async {
        let run = store.run_record(id).await.ok()?;
        (run.state == StateKind::Crashed).then_some(())
    })
    .await;
    server.kill().ok();
    server.wait().ok();
    assert!(crashed.is_some(), "the server did not reap the run");
    recorded_crashed(&store, id, pid).await;
    drop(store);
    db.drop().await;
}
