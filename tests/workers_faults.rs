//! Workers in real processes when the database goes away (PostgreSQL, through a TCP proxy the
//! test cuts): a worker cut off long enough to be taken for dead is fenced out when it comes
//! back (its late rows refused, its copy of the run cancelled, the run left as the worker that
//! re-ran it ended it), and workers ride out the database restarting under them without losing
//! or repeating a run.
#![cfg(feature = "postgres")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::schedule::Deployment;
use weft::store::{RunDetail, RunFilter, Store, StoreOptions, WorkPoolSpec};
use weft::worker::Worker;

mod common;
use common::procs::{key, marks, wait_for};
use common::{server_url, Proxy, Schema};

const POOL: &str = "faults-test";

/// Appends `line` to the marks file of the test this process serves.
fn mark(line: &str) {
    common::procs::mark("WEFT_FAULTS_DIR", line);
}

fn scratch(tag: &str) -> PathBuf {
    common::procs::scratch("weft-faults", tag)
}

fn count(marks: &[String], prefix: &str) -> usize {
    marks.iter().filter(|m| m.starts_with(prefix)).count()
}

/// This worker process's name.
fn me() -> String {
    std::env::var("WEFT_FAULTS_NAME").unwrap_or_default()
}

#[task]
async fn prepare_input(key: u32) -> u32 {
    mark(&format!("prepare {key} {}", me()));
    key + 1
}

/// Logs a line every 100 ms (rows its process writes all along): for a minute the first time
/// it is executed (the copy the test cuts off), 2 s after that.
#[task]
async fn slow_part(x: u32) -> u32 {
    let dir = PathBuf::from(std::env::var("WEFT_FAULTS_DIR").unwrap());
    let ticks = match count(&marks(&dir), "slow-start") {
        0 => 600,
        _ => 20,
    };
    mark(&format!("slow-start {}", me()));
    for i in 0..ticks {
        weft::tracing::info!("tick {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mark(&format!("slow-done {}", me()));
    x * 10
}

/// A run with a checkpoint per task, re-run once after a crash.
#[flow(persist)]
async fn fenced(key: u32) -> u32 {
    let a = prepare_input(key)?;
    let b = slow_part(a)?;
    b
}

#[task]
async fn short_work(key: u32) -> u32 {
    mark(&format!("short {key}"));
    tokio::time::sleep(Duration::from_millis(250)).await;
    key
}

/// One short run per key: its mark counts executions.
#[flow]
async fn short(key: u32) -> u32 {
    let k = short_work(key)?;
    k
}

fn deployments() -> Vec<Deployment> {
    vec![
        Deployment::new("fenced", fenced::flow(), (1,)).retries(1),
        Deployment::new("short", short::flow(), (0,)),
    ]
}

/// The entry point of worker processes: does nothing unless started by [`spawn_worker`].
#[test]
fn child_worker() {
    let Ok(name) = std::env::var("WEFT_FAULTS_NAME") else {
        return;
    };
    let url = std::env::var("WEFT_FAULTS_URL").unwrap();
    let schema = std::env::var("WEFT_FAULTS_SCHEMA").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = StoreOptions::new(url)
            .schema(schema)
            .connect()
            .await
            .unwrap();
        Worker::new(POOL)
            .name(name)
            .store(store)
            .limit(4)
            .poll_every(Duration::from_millis(100))
            .grace(Duration::from_secs(5))
            .deployments(deployments())
            .run()
            .await
            .unwrap();
    });
}

/// A worker process (its stderr in `<dir>/<name>.err`); SIGKILLed when dropped unless it
/// exited.
struct WorkerProcess {
    child: std::process::Child,
    name: String,
    stderr: PathBuf,
}

impl WorkerProcess {
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
    /// SIGTERM, then waits for it to stop.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("worker {} did not stop within 20 s of SIGTERM", self.name);
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A worker of the test's schema reaching PostgreSQL at `url` (the server or a proxy), with
/// its home (result storage) in `home`.
fn spawn_worker(url: &str, schema: &Schema, dir: &Path, home: &Path, name: &str) -> WorkerProcess {
    let stderr = dir.join(format!("{name}.err"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["child_worker", "--exact", "--nocapture", "--test-threads=1"])
        .env("WEFT_FAULTS_NAME", name)
        .env("WEFT_FAULTS_URL", url)
        .env("WEFT_FAULTS_SCHEMA", &schema.name)
        .env("WEFT_FAULTS_DIR", dir)
        .env("WEFT_HOME", home)
        .env("WEFT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    WorkerProcess {
        child,
        name: name.to_owned(),
        stderr,
    }
}

/// Creates the pool and registers the deployments in it, as a worker does when it starts.
async fn prepare(store: &Store) {
    store
        .create_work_pool(&WorkPoolSpec::new(POOL))
        .await
        .unwrap();
    let placeholder = Worker::new(POOL)
        .store(store.clone())
        .deployments(deployments());
    placeholder.run_until(async {}).await.unwrap();
}

/// The run's own state changes (not its tasks'), in order.
fn flow_states(detail: &RunDetail) -> Vec<String> {
    detail
        .state_changes
        .iter()
        .filter(|c| c.node.is_none())
        .map(|c| c.state.as_str().to_owned())
        .collect()
}

/// What a late writer could change about a run: its row and everything recorded under it.
fn snapshot(d: &RunDetail) -> String {
    let tasks: Vec<_> = d
        .task_runs
        .iter()
        .map(|t| (t.state, t.message.clone(), t.ended))
        .collect();
    let logs: Vec<_> = d.logs.iter().map(|l| (l.at, &l.message)).collect();
    format!(
        "{:?} {:?} {:?} {:?}\ntasks {tasks:?}\nchanges {}\nlogs {logs:#?}",
        d.run.state,
        d.run.message,
        d.run.ended,
        d.run.placement,
        d.state_changes.len()
    )
}

/// The run's state once the worker that ran it let it go (its rows all written).
async fn settled(store: &Store, id: uuid::Uuid) -> RunDetail {
    wait_for(Duration::from_secs(60), "the run to end", || async {
        let d = store.run(id).await.ok()?;
        let released = store.run_owner(id).await.ok()?.is_none();
        (d.run.state.is_final() && released).then_some(d)
    })
    .await
}

/// Brings A back and checks that it is fenced out: its copy of the run cancelled, its rows
/// about it refused (counted lost), the run as `done` left it, and A alive.
async fn fenced_out(proxy: &Proxy, a: &mut WorkerProcess, store: &Store, done: &RunDetail) {
    let before = snapshot(done);
    proxy.restore();
    wait_for(Duration::from_secs(40), "A to cancel its copy", || async {
        a.stderr()
            .contains("this process was taken for dead; cancelling its copy")
            .then_some(())
    })
    .await;
    let report = wait_for(Duration::from_secs(20), "A's copy to end", || async {
        let err = a.stderr();
        Some(
            err.lines()
                .find(|l| l.contains("is incomplete"))?
                .to_owned(),
        )
    })
    .await;
    // "... N rows recorded, M lost (the run was reaped by another process ...)"
    let lost: u64 = report
        .split(" rows recorded, ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(lost > 0, "{report}");
    assert!(report.contains("reaped by another process"), "{report}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = store.run(done.run.id).await.unwrap();
    assert_eq!(snapshot(&after), before, "a late write changed the run");
    let states = flow_states(&after);
    assert_eq!(states.last().map(String::as_str), Some("Completed"));
    assert_eq!(states.iter().filter(|s| *s == "Completed").count(), 1);
    assert!(!states.iter().any(|s| s == "Cancelled"), "{states:?}");
    assert!(a.alive(), "A was not crashed by being fenced out");
}

/// Worker A reaches the database through a proxy, worker B directly; each has its own result
/// storage (two machines). A runs a long run; the test cuts A off. Once A's heartbeat is stale
/// the run is Crashed and, the deployment having a retry, Scheduled again; B runs it to the
/// end. Then A comes back: its rows about the run are refused (the run's lease is not its own),
/// it cancels its copy, and the run stays as B ended it. A lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_and_reaped_is_fenced_out_when_it_comes_back() {
    let schema = Schema::new("fcutoff").await;
    let proxy = Proxy::start().await;
    let dir = scratch("cutoff");
    let store = schema.store().await;
    prepare(&store).await;
    let id = store.schedule_run("fenced", key(4), None).await.unwrap();
    let mut a = spawn_worker(&proxy.url(), &schema, &dir, &dir.join("a"), "cutoff");
    started_on_a(&store, &dir, id).await;
    let b = spawn_worker(&server_url(), &schema, &dir, &dir.join("b"), "rescuer");
    proxy.down();
    let cut = Instant::now();
    let done = settled(&store, id).await;
    let recovered = cut.elapsed();
    assert_eq!(
        done.run.state,
        StateKind::Completed,
        "{:?}",
        done.run.message
    );
    let placement = done.run.placement.clone().unwrap();
    assert_eq!(placement.worker.as_deref(), Some("rescuer"));
    assert_eq!(placement.tries, 1);
    let states = flow_states(&done);
    assert!(
        states.windows(2).any(|w| w == ["Crashed", "Scheduled"]),
        "{states:?}"
    );
    assert!(a.alive(), "A is only cut off");
    fenced_out(&proxy, &mut a, &store, &done).await;
    let m = marks(&dir);
    assert_eq!(count(&m, "slow-done rescuer"), 1, "{m:?}");
    assert_eq!(
        count(&m, "slow-done cutoff"),
        0,
        "A's copy ran to its end: {m:?}"
    );
    eprintln!("cut off: re-run to its end by B {recovered:.1?} after the cut");
    a.stop();
    b.stop();
    schema.drop().await;
}

/// Waits until A runs the slow task of run `id`, has claimed the run and written some ticks.
async fn started_on_a(store: &Store, dir: &Path, id: uuid::Uuid) {
    wait_for(
        Duration::from_secs(30),
        "A to run the slow task",
        || async {
            let started = count(&marks(dir), "slow-start cutoff") == 1;
            let claimed = store.run_owner(id).await.ok()?.is_some();
            let ticks = store.run(id).await.ok()?.logs.len();
            (started && claimed && ticks > 5).then_some(())
        },
    )
    .await;
}

/// As above, but A and B share one machine's result storage, where A's copy, cut off but
/// alive, holds the run's claim: B cannot start the re-run and gives it back to the queue (it
/// is not lost, nor Crashed again). Once A is back and has cancelled its copy, the re-run
/// (by either worker; A never claims it while its old copy goes on) resumes from the
/// checkpoint A left: the first task is not executed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_waits_for_the_cut_off_copy_on_the_same_machine() {
    let schema = Schema::new("fshared").await;
    let proxy = Proxy::start().await;
    let dir = scratch("shared");
    let store = schema.store().await;
    prepare(&store).await;
    let id = store.schedule_run("fenced", key(5), None).await.unwrap();
    let mut a = spawn_worker(&proxy.url(), &schema, &dir, &dir, "cutoff");
    started_on_a(&store, &dir, id).await;
    let b = spawn_worker(&server_url(), &schema, &dir, &dir, "rescuer");
    proxy.down();
    wait_for(
        Duration::from_secs(40),
        "B to find the run held",
        || async {
            b.stderr()
                .contains("another process on this machine")
                .then_some(())
        },
    )
    .await;
    // Past the stale time, the run given back is still waiting, not Crashed again.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let waiting = store.run_record(id).await.unwrap();
    assert!(
        matches!(
            waiting.state,
            StateKind::Scheduled | StateKind::Late | StateKind::Pending
        ),
        "{:?}: {:?}",
        waiting.state,
        waiting.message
    );
    let restore = Instant::now();
    proxy.restore();
    let done = settled(&store, id).await;
    assert_eq!(
        done.run.state,
        StateKind::Completed,
        "{:?}",
        done.run.message
    );
    // Either worker runs it once A's copy has let go: A is back.
    assert_eq!(done.run.placement.clone().unwrap().tries, 1);
    fenced_out(&proxy, &mut a, &store, &done).await;
    let m = marks(&dir);
    assert_eq!(count(&m, "prepare"), 1, "the first task ran again: {m:?}");
    assert_eq!(count(&m, "slow-start"), 2, "{m:?}");
    assert_eq!(count(&m, "slow-done"), 1, "{m:?}");
    eprintln!(
        "same machine: re-run to its end {:.1?} after A came back",
        restore.elapsed()
    );
    a.stop();
    b.stop();
    schema.drop().await;
}

/// How the database goes away under the workers.
enum Outage {
    /// Through the proxy: every connection cut, new ones refused, for 3 s.
    Proxy(Proxy),
    /// The real server restarted (`pg_ctlcluster ... restart`).
    Server,
}

/// PostgreSQL restarting under two busy workers (`RUNS` short runs due at once): every run
/// ends Completed, executed once, none lost, both workers alive.
async fn workers_ride_out(outage: Outage, tag: &str) {
    const RUNS: u32 = 120;
    let schema = Schema::new(tag).await;
    let dir = scratch(tag);
    let store = schema.store().await;
    prepare(&store).await;
    let mut ids = Vec::new();
    for i in 0..RUNS {
        ids.push(store.schedule_run("short", key(i), None).await.unwrap());
    }
    let url = match &outage {
        Outage::Proxy(proxy) => proxy.url(),
        Outage::Server => server_url(),
    };
    let mut workers: Vec<_> = ["w1", "w2"]
        .iter()
        .map(|n| spawn_worker(&url, &schema, &dir, &dir, n))
        .collect();
    let states = |store: Store| async move {
        let filter = RunFilter::new().flow("short").limit(RUNS + 10);
        let runs = store.runs(&filter).await.ok()?;
        let ended = runs.iter().filter(|r| r.state.is_final()).count();
        let going = runs
            .iter()
            .filter(|r| matches!(r.state, StateKind::Pending | StateKind::Running))
            .count();
        Some((runs, ended, going))
    };
    let (_, at_cut, going) = wait_for(Duration::from_secs(60), "the workers to get going", || {
        let store = store.clone();
        async move { states(store).await.filter(|(_, ended, _)| *ended >= 20) }
    })
    .await;
    match &outage {
        Outage::Proxy(proxy) => {
            proxy.down();
            tokio::time::sleep(Duration::from_secs(3)).await;
            proxy.restore();
        }
        Outage::Server => {
            let (version, cluster) = cluster_of(&server_url());
            let status = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &version, &cluster, "restart"])
                .status()
                .unwrap();
            assert!(status.success(), "pg_ctlcluster restart: {status}");
        }
    }
    let all_ended = wait_for(Duration::MAX, "every run to end", || {
        let store = store.clone();
        async move {
            let (runs, ended, _) = states(store).await?;
            (ended == RUNS as usize).then_some(runs)
        }
    });
    let Ok(runs) = tokio::time::timeout(Duration::from_secs(90), all_ended).await else {
        let (runs, _, _) = states(store.clone()).await.unwrap();
        panic!(
            "waited 90 s for every run to end; not ended:\n{}\nthe workers' logs:\n{}",
            not_ended(&runs),
            workers.iter().map(|w| w.stderr()).collect::<String>()
        );
    };
    assert!(
        at_cut < RUNS as usize && going > 0,
        "no run was going at the cut"
    );
    let not_completed: Vec<_> = runs
        .iter()
        .filter(|r| r.state != StateKind::Completed)
        .map(|r| (r.id, r.state, r.message.clone()))
        .collect();
    assert!(not_completed.is_empty(), "{not_completed:?}");
    let mut got: Vec<_> = runs.iter().map(|r| r.id).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "the runs are the ones scheduled");
    let m = marks(&dir);
    let mut keys: Vec<&String> = m.iter().collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), m.len(), "a run was executed twice");
    assert_eq!(m.len(), RUNS as usize, "executions: {}", m.len());
    for w in &mut workers {
        assert!(w.alive(), "worker {} died", w.name);
    }
    eprintln!(
        "{tag}: {at_cut} of {RUNS} runs ended and {going} going at the cut; all Completed once"
    );
    for w in workers {
        w.stop();
    }
    schema.drop().await;
}

/// One line per run of `runs` that has not ended: id, state, worker, message.
fn not_ended(runs: &[weft::store::RunRecord]) -> String {
    runs.iter()
        .filter(|r| !r.state.is_final())
        .map(|r| {
            let worker = r.placement.as_ref().and_then(|p| p.worker.clone());
            format!(
                "{} {:?} worker {worker:?}: {:?}\n",
                r.id, r.state, r.message
            )
        })
        .collect()
}

/// The Debian cluster (version, name) listening on the port of `url` (`pg_lsclusters`).
fn cluster_of(url: &str) -> (String, String) {
    let port = url
        .rsplit_once('@')
        .and_then(|(_, host)| host.split('/').next())
        .and_then(|h| h.rsplit_once(':'))
        .map_or("5432", |(_, p)| p)
        .to_owned();
    let out = Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .expect("pg_lsclusters (Debian's postgresql-common)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == port)
        .map(|f| (f[0].to_owned(), f[1].to_owned()))
        .unwrap_or_else(|| panic!("no cluster listens on port {port}"))
}

/// A claim whose COMMIT reached the server but whose answer was lost (the connection dropped
/// in between): the worker saw an error, yet the run is Pending and owned by the worker's live
/// process, which the reaper leaves alone. The worker's next claim takes it, once, instead of
/// leaving it Pending for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_was_lost_is_taken_by_the_next_claim() {
    let proxy = Proxy::start().await;
    let schema = Schema::new("lostclaim").await;
    let store = schema.store().await;
    prepare(&store).await;
    let id = store.schedule_run("short", key(1), None).await.unwrap();
    let cut = schema.options(&proxy.url()).connect().await.unwrap();
    let names = ["short".to_owned()];
    proxy.lose_answer_to(b"COMMIT");
    let lost = cut.claim_runs(POOL, "w1", &names, 4).await;
    assert!(lost.is_err(), "the answer was to be lost: {lost:?}");
    let run = store.run_record(id).await.unwrap();
    assert_eq!(run.state, StateKind::Pending, "the claim committed");
    assert!(
        store
            .claim_runs(POOL, "w2", &names, 4)
            .await
            .unwrap()
            .is_empty(),
        "another worker finds the run claimed"
    );
    let again = cut.claim_runs(POOL, "w1", &names, 4).await.unwrap();
    assert_eq!(again.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    let third = cut.claim_runs(POOL, "w1", &names, 4).await.unwrap();
    assert!(third.is_empty(), "taken once: {third:?}");
    schema.drop().await;
}

/// The restart as the workers see it, through the proxy: every connection dropped at once and
/// new ones refused until the server is back, which is what `down()` then `restore()` do,
/// without stopping the real server under the other tests that share it. The outage (3 s) is
/// shorter than the stale time (10 s): nothing is reaped, the workers only reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_database_restart() {
    workers_ride_out(Outage::Proxy(Proxy::start().await), "frestart").await;
}

/// The same with the real server restarted: only with `WEFT_TEST_PG_RESTART=1`, which `.ci/run`
/// sets in a step of its own (nothing else uses the server then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_real_server_restart() {
    if std::env::var("WEFT_TEST_PG_RESTART").as_deref() != Ok("1") {
        eprintln!("skipped: set WEFT_TEST_PG_RESTART=1 to restart the PostgreSQL server");
        return;
    }
    workers_ride_out(Outage::Server, "fpgrestart").await;
}
