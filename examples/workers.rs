//! Prefect's architecture on one machine: agents (workers) that run the runs of a work pool, a
//! scheduler that creates the runs of a schedule, a Zombie Killer (the reaper) that marks the
//! runs of a dead worker Crashed, and Lazarus, who schedules a crashed run again.
//!
//! The example starts three worker processes (this program again, with `--worker NAME`),
//! serving the deployment `nightly-report` of pool `reports`: a `persist` flow of three tasks,
//! every 4 s, re-run once after a crash. It SIGKILLs the worker running a run in the middle of
//! its second task and tells how the run comes back: Crashed, scheduled again, claimed by
//! another worker, its first task restored from its checkpoint. Then it stops the other workers
//! with SIGTERM. It exits 1 when the run was not recovered.
//!
//! ```text
//! cargo run --example workers                    # SQLite in a temporary directory
//! WEFT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --features postgres --example workers
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::results::{LocalStore, ResultStore};
use weft::schedule::{Deployment, Schedule};
use weft::store::{
    short_ids, PoolPlacement, RunDetail, RunFilter, StoreError, StoreOptions, WorkPoolSpec,
};
use weft::worker::Worker;

const POOL: &str = "reports";
const DEPLOYMENT: &str = "nightly-report";
const WORKERS: [&str; 3] = ["ant", "bee", "cow"];

#[task]
async fn extract(regions: u32) -> Vec<u64> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    (1..=u64::from(regions)).map(|r| 1000 * r + 7).collect()
}

#[task]
async fn transform(rows: Vec<u64>) -> u64 {
    weft::tracing::info!("transforming {} regions", rows.len());
    tokio::time::sleep(Duration::from_secs(3)).await;
    rows.iter().sum()
}

#[task]
async fn publish(total: u64) -> u64 {
    weft::tracing::info!("published the report: {total} rows");
    total
}

/// Each task's result is checkpointed: a re-run restores the tasks that completed.
#[flow(persist)]
async fn nightly_report(regions: u32) -> u64 {
    let rows = extract(regions)?;
    let total = transform(rows)?;
    let published = publish(total)?;
    published
}

/// What this program serves as a worker.
fn deployment() -> Deployment {
    Deployment::new(DEPLOYMENT, nightly_report::flow(), (3,))
        .schedule(Schedule::interval("4s").expect("a valid interval"))
        .retries(1)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match args.iter().position(|a| a == "--worker") {
        Some(i) => {
            let name = args.get(i + 1).cloned().unwrap_or_else(|| "worker".into());
            // The store and the result directory are the parent's (WEFT_DATABASE_URL and
            // WEFT_HOME, which it sets).
            let worker = Worker::new(POOL)
                .name(name)
                .deployment(deployment())
                .poll_every(Duration::from_millis(200))
                .grace(Duration::from_secs(10));
            match rt.block_on(worker.run()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("worker: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => match rt.block_on(demo()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("FAILED: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The worker processes; any still running when this drops is killed.
struct Workers {
    procs: BTreeMap<String, Child>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in self.procs.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where the example keeps its history, results and worker logs.
struct Place {
    /// A directory of its own: the workers' `WEFT_HOME` (results), their logs, the SQLite file.
    home: PathBuf,
    url: String,
    /// The store, as shown.
    shown: String,
    /// How to look at the runs afterwards.
    look: String,
}

fn place() -> Place {
    let home = std::env::temp_dir().join(format!("weft-workers-example-{}", std::process::id()));
    let look = "cargo run -p weft-cli -- runs --flow nightly_report";
    match std::env::var("WEFT_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let schema = std::env::var("WEFT_DATABASE_SCHEMA").unwrap_or_else(|_| "weft".into());
            Place {
                shown: format!("{} (schema {schema})", redact(&url)),
                look: look.to_owned(),
                home,
                url,
            }
        }
        _ => Place {
            url: format!("sqlite://{}", home.join(".weft").join("weft.db").display()),
            shown: format!("SQLite in {}", home.display()),
            look: format!("WEFT_HOME={} {look}", home.display()),
            home,
        },
    }
}

fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}

fn spawn_worker(place: &Place, name: &str) -> std::io::Result<Child> {
    let log = std::fs::File::create(place.home.join(format!("worker-{name}.log")))?;
    Command::new(std::env::current_exe()?)
        .args(["--worker", name])
        .env("WEFT_DATABASE_URL", &place.url)
        .env("WEFT_HOME", &place.home)
        // Warnings only, into the worker's log file: the narrative is this program's.
        .env("WEFT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
}

type Error = Box<dyn std::error::Error>;

/// Polls `f` every 100 ms for up to `limit`.
async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f().await {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("waited {limit:?} for {what}").into())
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

async fn demo() -> Result<(), Error> {
    let place = place();
    std::fs::create_dir_all(place.home.join(".weft"))?;
    let store = StoreOptions::new(&place.url).connect().await?;
    println!("Store: {}", place.shown);
    match store.create_work_pool(&WorkPoolSpec::new(POOL)).await {
        Ok(_) | Err(StoreError::WorkPoolExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut workers = Workers {
        procs: BTreeMap::new(),
    };
    for name in WORKERS {
        workers
            .procs
            .insert(name.to_owned(), spawn_worker(&place, name)?);
    }
    let pids: Vec<String> = workers
        .procs
        .iter()
        .map(|(n, c)| format!("{n} (pid {})", c.id()))
        .collect();
    println!(
        "Pool '{POOL}': 3 worker processes started: {}",
        pids.join(", ")
    );

    // The scheduler: one worker at a time holds it.
    let names = wait_for(
        Duration::from_secs(30),
        "the workers to register",
        || async {
            let listed = store.workers(Some(POOL)).await.ok()?;
            let online: HashMap<String, String> = listed
                .iter()
                .filter(|w| w.online)
                .map(|w| (w.id.to_string(), w.name.clone()))
                .collect();
            (online.len() >= WORKERS.len()).then_some(online)
        },
    )
    .await?;
    let leader = wait_for(Duration::from_secs(15), "a scheduler", || async {
        store.leader("scheduler").await.ok().flatten()
    })
    .await?;
    let leader = names.get(&leader).cloned().unwrap_or(leader);
    let ahead = wait_for(Duration::from_secs(15), "scheduled runs", || async {
        let runs = store
            .runs(&RunFilter::new().flow("nightly_report"))
            .await
            .ok()?;
        let mut due: Vec<_> = runs
            .iter()
            .filter(|r| r.state == StateKind::Scheduled)
            .filter_map(|r| r.placement.as_ref().map(|p| p.scheduled))
            .collect();
        due.sort();
        (due.len() >= 3).then_some(due)
    })
    .await?;
    let first: Vec<String> = ahead
        .iter()
        .take(3)
        .map(|t| t.format("%H:%M:%S").to_string())
        .collect();
    println!(
        "Scheduler: worker {leader} holds it; it has created {} runs of '{DEPLOYMENT}' ahead, \
         due {}, ... (every 4s; flow nightly_report: extract, transform, publish; 1 re-run \
         after a crash)",
        ahead.len(),
        first.join(", ")
    );

    // A run in the middle of its second task, and the worker running it.
    let (run, victim) = wait_for(Duration::from_secs(30), "a run in transform", || async {
        let runs = store
            .runs(&RunFilter::new().flow("nightly_report"))
            .await
            .ok()?;
        for r in runs.iter().filter(|r| r.state == StateKind::Running) {
            let d = store.run(r.id).await.ok()?;
            let transforming = d
                .task_runs
                .iter()
                .any(|t| t.task == "transform" && t.state == StateKind::Running);
            let worker = r.placement.as_ref()?.worker.clone()?;
            if transforming {
                return Some((d, worker));
            }
        }
        None
    })
    .await?;
    let id = run.run.id;
    let due = run.run.placement.as_ref().map(|p| p.scheduled);
    println!(
        "Run {id} (due {}): worker {victim} runs it; extract Completed, transform Running",
        due.map_or("-".into(), |t| t.format("%H:%M:%S").to_string())
    );
    let child = workers
        .procs
        .get_mut(&victim)
        .ok_or_else(|| format!("no worker named {victim}"))?;
    let pid = child.id();
    child.kill()?; // SIGKILL
    child.wait()?;
    workers.procs.remove(&victim);
    let (killed, kill_time) = (Instant::now(), chrono::Utc::now());
    println!("SIGKILL worker {victim} (pid {pid}) in the middle of transform");

    // How the run comes back: its flow-level state changes as they are recorded.
    let flow_changes = |d: &RunDetail| d.state_changes.iter().filter(|c| c.node.is_none()).count();
    let mut seen = flow_changes(&run);
    let done = loop {
        if killed.elapsed() > Duration::from_secs(45) {
            return Err("the run was not recovered within 45 s of the kill".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(d) = store.run(id).await else {
            continue;
        };
        let at = secs(killed.elapsed());
        for c in d
            .state_changes
            .iter()
            .filter(|c| c.node.is_none())
            .skip(seen)
        {
            let why = c.message.as_deref().unwrap_or("");
            match c.state {
                StateKind::Crashed => println!("  +{at}  Crashed: {why}"),
                StateKind::Scheduled => println!("  +{at}  Scheduled again: {why}"),
                StateKind::Running => {
                    let by = d.run.placement.as_ref().and_then(|p| p.worker.as_deref());
                    println!("  +{at}  Running again, on worker {}", by.unwrap_or("?"));
                }
                s if why.is_empty() => println!("  +{at}  {s}"),
                s => println!("  +{at}  {s}: {why}"),
            }
        }
        seen = seen.max(flow_changes(&d));
        // Ended, and its worker has let it go (every row of it written).
        if d.run.state.is_final() && store.run_owner(id).await.is_ok_and(|o| o.is_none()) {
            break d;
        }
    };
    report(&place.home, &done, &victim, killed.elapsed()).await?;

    // The schedule goes on, on the workers left.
    let next = wait_for(Duration::from_secs(15), "the next run", || async {
        let runs = store
            .runs(&RunFilter::new().flow("nightly_report"))
            .await
            .ok()?;
        runs.into_iter().find(|r| {
            r.id != id
                && r.state == StateKind::Completed
                && r.placement
                    .as_ref()
                    .is_some_and(|p| p.scheduled > kill_time)
        })
    })
    .await?;
    let (due, by) = next
        .placement
        .map(|p| (p.scheduled.format("%H:%M:%S").to_string(), p.worker))
        .unwrap_or_default();
    println!(
        "The schedule goes on: run {} (due {due}) Completed on worker {}",
        short_ids(&[id, next.id])[1],
        by.unwrap_or_default()
    );

    // Stop: SIGTERM, each worker finishes the run it has, then leaves.
    let stopping: Vec<String> = workers.procs.keys().cloned().collect();
    for child in workers.procs.values() {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
    }
    let mut failed = Vec::new();
    for (name, mut child) in std::mem::take(&mut workers.procs) {
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        if !status.success() {
            failed.push(format!("{name} ({status})"));
        }
    }
    if !failed.is_empty() {
        return Err(format!("workers did not stop cleanly: {}", failed.join(", ")).into());
    }
    println!("SIGTERM to workers {}: they stopped", stopping.join(", "));
    // The runs the scheduler created ahead would wait for the next workers of the pool: the
    // coming ones are dropped (placing the deployment again does), the due ones cancelled.
    let waiting = |store: weft::store::Store| async move {
        let runs = store.runs(&RunFilter::new().flow("nightly_report")).await?;
        Ok::<Vec<_>, StoreError>(
            runs.into_iter()
                .filter(|r| matches!(r.state, StateKind::Scheduled | StateKind::Late))
                .collect(),
        )
    };
    let before = waiting(store.clone()).await?.len();
    let placement = PoolPlacement::new(POOL).retries(1);
    store.place_deployment(DEPLOYMENT, &placement).await?;
    let due = waiting(store.clone()).await?;
    for r in &due {
        store
            .request_cancel(r.id, "the example stopped its workers")
            .await?;
    }
    println!(
        "Runs the scheduler had created ahead: {} not due yet dropped, {} due cancelled",
        before - due.len(),
        due.len()
    );
    println!(
        "The runs: {}; the workers' logs: {}",
        place.look,
        place.home.join("worker-NAME.log").display()
    );
    Ok(())
}

/// Says how run `d` ended after its worker was killed; Err unless it was recovered: Completed
/// by another worker, its first task restored from its checkpoint.
async fn report(home: &Path, d: &RunDetail, victim: &str, took: Duration) -> Result<(), Error> {
    let placement = d.run.placement.clone().ok_or("the run has no placement")?;
    let worker = placement.worker.clone().unwrap_or_else(|| "?".into());
    let mut restored = Vec::new();
    let mut again = Vec::new();
    for t in &d.task_runs {
        match t.state {
            StateKind::Cached => restored.push(t.task.clone()),
            _ => again.push(format!("{} ({})", t.task, t.state)),
        }
    }
    println!(
        "  {}: restored from its checkpoint; executed again: {}",
        restored.join(", "),
        again.join(", ")
    );
    // The flow's value is the last task's, which its checkpoint holds.
    let key = d
        .task_runs
        .iter()
        .find(|t| t.task == "publish")
        .and_then(|t| t.result.clone());
    let value = match key {
        Some(key) => read_u64(home, &key).await,
        None => None,
    };
    println!(
        "The run: {} on worker {worker}, value {}, {} after the kill (re-run {} of 1)",
        d.run.state,
        value.map_or("?".into(), |v| v.to_string()),
        secs(took),
        placement.tries
    );
    let recovered = d.run.state == StateKind::Completed
        && placement.tries == 1
        && worker != victim
        && restored.iter().any(|t| t == "extract");
    if !recovered {
        return Err(format!(
            "the run was not recovered as it should: {} ({:?}) on {worker}, tries {}, restored \
             {restored:?}",
            d.run.state, d.run.message, placement.tries
        )
        .into());
    }
    Ok(())
}

/// A u64 result from the example's result directory.
async fn read_u64(home: &Path, key: &str) -> Option<u64> {
    let store = LocalStore::new(home.join(".weft").join("results"));
    let bytes = store.get(key).await.ok()??;
    let entry = weft::results::decode_entry(&bytes).ok()?;
    weft::results::decode_value(&entry.payload).ok()
}
