//! Issue 13's "fast on big histories" benchmark: writes a synthetic run history through the
//! engine and the store's own batched writer (real `#[flow]` runs with history on), then serves
//! it with the real server on loopback and times every page and API route over real HTTP
//! connections, and prints the query plan of each of the store's browse queries.
//!
//! ```text
//! cargo run --release -p weft-server --example big_history -- [--runs N] [--task-runs M] [--big]
//!     [--database URL] [--schema NAME] [--requests K] [--reuse] [--drop]
//! ```
//!
//! - `--runs N --task-runs M`: flow runs and task runs to write (default 100,000 and
//!   1,000,000; `--big`: 1,000,000 and 10,000,000). Each ordinary run has 9 task runs (one
//!   retried, one failing in one run of ten, whose dependent then does not run), a log line
//!   and its state changes, in one of three flows; one more run maps a task over 100,000
//!   elements (one in a thousand failing). Ordinary runs are made until the task runs reach
//!   `M`, or `N` runs are made, whichever comes first.
//! - `--database URL`: `sqlite://PATH` (default `target/big-history/weft.db`) or
//!   `postgres://...` (the history goes into the schema `--schema`, default `weft_big_history`;
//!   `--drop` drops it at the end).
//! - `--reuse`: time an existing history written by an earlier run instead of writing one.
//! - `--requests K`: requests per route (default 50, after 2 unmeasured ones; fewer, at least
//!   5, for a route that has taken 20 s).
//!
//! It prints, for each route, the median and p99 time of the requests (sent one at a time over
//! one kept-alive connection, each timed from sending to the last byte received), the response
//! size and whether the route meets its target (≤ 50 ms for the runs list and a run's first
//! page of task runs and logs, ≤ 100 ms for everything else), then `EXPLAIN QUERY PLAN`
//! (SQLite) or `EXPLAIN` (PostgreSQL) of every browse query.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::store::browse::RunQuery;
use weft::store::{Store, StoreOptions};
use weft_server::{Server, ServerConfig};

/// Elements of the mapped task of the big run.
const MAP_N: u64 = 100_000;
/// Task runs of an ordinary run.
const TASKS_PER_RUN: u64 = 9;
/// Time spent on one route at most, once it has been measured 5 times.
const ROUTE_BUDGET: Duration = Duration::from_secs(20);
/// Flow runs under way at once while writing.
const CONCURRENT_RUNS: usize = 256;

#[task]
async fn extract(i: u64) -> u64 {
    i
}

#[task]
async fn step(x: u64, k: u64) -> u64 {
    x.wrapping_mul(31).wrapping_add(k)
}

/// Tries already made, per input, so that one input in 25 fails its first attempt.
static FLAKY_TRIES: AtomicU64 = AtomicU64::new(0);

#[task(retries = 1)]
async fn flaky(x: u64) -> Result<u64, String> {
    if x % 25 == 0 && FLAKY_TRIES.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
        return Err(format!("connection reset while reading row {x}"));
    }
    Ok(x)
}

#[task]
async fn validate(x: u64) -> Result<u64, String> {
    if x % 10 == 3 {
        return Err(format!("row {x} failed validation: amount is negative"));
    }
    Ok(x)
}

#[task]
async fn load(a: u64, b: u64, c: u64, d: u64) -> u64 {
    weft::tracing::info!("loaded {} rows", (a ^ b ^ c ^ d) % 1000);
    a ^ b ^ c ^ d
}

macro_rules! nine_task_flow {
    ($name:ident, $label:literal) => {
        #[flow(name = $label)]
        async fn $name(i: u64) -> u64 {
            let raw = extract(i)?;
            let a = step(raw, 1)?;
            let b = step(raw, 2)?;
            let c = step(a, 3)?;
            let d = step(b, 4)?;
            let e = flaky(raw)?;
            let v = validate(raw)?;
            let w = step(v, 5)?;
            let n = load(c, d, e, w)?;
            n
        }
    };
}

nine_task_flow!(etl, "etl");
nine_task_flow!(report, "report");
nine_task_flow!(sync_crm, "sync crm");

#[task]
async fn element(i: u64) -> Result<u64, String> {
    if i % 1000 == 999 {
        return Err(format!("element {i} could not be parsed"));
    }
    Ok(i)
}

#[flow(name = "big map")]
async fn big_map(n: u64) -> usize {
    let ys = element::map(0..n);
    ys.len()
}

/// What the command line asked for.
struct Args {
    runs: u64,
    task_runs: u64,
    database: String,
    schema: String,
    requests: usize,
    reuse: bool,
    drop: bool,
}

fn args() -> Args {
    let mut a = Args {
        runs: 100_000,
        task_runs: 1_000_000,
        database: String::new(),
        schema: "weft_big_history".into(),
        requests: 50,
        reuse: false,
        drop: false,
    };
    let mut it = std::env::args().skip(1);
    let value = |it: &mut dyn Iterator<Item = String>, flag: &str| {
        it.next().unwrap_or_else(|| panic!("{flag} needs a value"))
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--runs" => a.runs = value(&mut it, &flag).parse().expect("--runs N"),
            "--task-runs" => a.task_runs = value(&mut it, &flag).parse().expect("--task-runs M"),
            "--big" => (a.runs, a.task_runs) = (1_000_000, 10_000_000),
            "--database" => a.database = value(&mut it, &flag),
            "--schema" => a.schema = value(&mut it, &flag),
            "--requests" => a.requests = value(&mut it, &flag).parse().expect("--requests K"),
            "--reuse" => a.reuse = true,
            "--drop" => a.drop = true,
            other => panic!("unknown argument {other:?}: see the example's documentation"),
        }
    }
    if a.database.is_empty() {
        let dir = std::env::current_dir().unwrap().join("target/big-history");
        a.database = format!("sqlite://{}/weft.db", dir.display());
    }
    a
}

fn main() {
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let postgres = args.database.starts_with("postgres");
    let store = rt
        .block_on(if postgres {
            StoreOptions::new(&args.database)
                .schema(&args.schema)
                .connect()
        } else {
            StoreOptions::new(&args.database).connect()
        })
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", args.database));
    println!("history: {}", store.url());
    if !args.reuse {
        rt.block_on(write_history(&store, &args));
    }
    if postgres {
        // What autovacuum does after a bulk load: planner statistics, and the visibility map
        // that index-only scans need.
        let t = Instant::now();
        rt.block_on(vacuum_analyze(&args));
        println!("VACUUM ANALYZE in {:.1} s", t.elapsed().as_secs_f64());
    }
    let (ordinary, big) = rt.block_on(sample_runs(&store));
    let size = rt.block_on(history_size(&args));
    println!("history size on disk: {}", mib(size));

    let server = rt
        .block_on(Server::bind(
            store.clone(),
            ServerConfig::new(),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(server.run_until(async {
        let _ = stopped.await;
    }));

    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let get_json = |path: &str| -> serde_json::Value {
        agent
            .get(&format!("{base}{path}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .into_json()
            .unwrap()
    };
    let cursor = get_json("/api/runs")["next_cursor"]
        .as_str()
        .expect("a second page of runs")
        .to_owned();
    let big_run = get_json(&format!("/api/runs/{big}"));
    let node = big_run["tasks"][0]["node"]
        .as_u64()
        .expect("the mapped node");
    let log_cursor = get_json(&format!("/api/runs/{ordinary}/logs?limit=3"))["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // (route, target in ms)
    let routes: Vec<(String, u32)> = vec![
        ("/".into(), 100),
        ("/?window=week".into(), 100),
        ("/runs".into(), 50),
        ("/runs?flow=etl&state=Failed".into(), 100),
        (format!("/runs?cursor={cursor}"), 100),
        (format!("/runs/{ordinary}"), 50),
        (format!("/runs/{big}"), 100),
        (format!("/runs/{big}/tasks/{node}"), 100),
        (format!("/runs/{big}/tasks/{node}?state=Failed"), 100),
        (format!("/runs/{big}/logs"), 100),
        ("/flows".into(), 100),
        ("/deployments".into(), 100),
        ("/pipelines".into(), 100),
        ("/api/runs".into(), 50),
        ("/api/runs?flow=etl&state=failed".into(), 100),
        (format!("/api/runs?cursor={cursor}"), 100),
        (format!("/api/runs/{ordinary}"), 50),
        (format!("/api/runs/{}", &ordinary.to_string()[..32]), 50),
        (format!("/api/runs/{ordinary}/logs"), 50),
        (format!("/api/runs/{ordinary}/logs?cursor={log_cursor}"), 50),
        (format!("/api/runs/{big}"), 100),
        (format!("/api/runs/{big}/tasks/{node}"), 100),
        (format!("/api/runs/{big}/tasks/{node}?state=failed"), 100),
        (format!("/api/runs/{big}/logs"), 100),
        (format!("/api/runs/{big}/logs?level=error"), 100),
        (format!("/api/runs/{big}/graph.svg"), 100),
        ("/api/flows".into(), 100),
        ("/api/deployments".into(), 100),
        ("/api/pipelines".into(), 100),
        ("/api/stats?window=hour".into(), 100),
        ("/api/stats?window=day".into(), 100),
        ("/api/stats?window=week".into(), 100),
    ];
    println!(
        "\n{} requests per route, one at a time over one kept-alive loopback connection \
         (after 2 unmeasured):\n",
        args.requests
    );
    println!("| route | median | p99 | n | response | target | met? |\n|---|---:|---:|---:|---:|---|---|");
    let mut missed = 0;
    for (path, target) in &routes {
        let mut times = Vec::with_capacity(args.requests);
        let (mut bytes, mut status) = (0, 200);
        let began = Instant::now();
        for i in 0..args.requests + 2 {
            // A slow route is measured fewer times (at least 5), to keep the whole in minutes.
            if times.len() >= 5 && began.elapsed() > ROUTE_BUDGET {
                break;
            }
            let t = Instant::now();
            let response = match agent.get(&format!("{base}{path}")).call() {
                Ok(r) => r,
                Err(ureq::Error::Status(code, r)) => {
                    status = code;
                    r
                }
                Err(e) => panic!("GET {path}: {e}"),
            };
            let mut body = Vec::new();
            response.into_reader().read_to_end(&mut body).unwrap();
            if i >= 2 {
                times.push(t.elapsed());
            }
            bytes = body.len();
        }
        times.sort();
        let median = times[times.len() / 2];
        let p99 = times[(times.len() * 99).div_ceil(100) - 1];
        let met = status == 200 && p99.as_secs_f64() * 1000.0 <= f64::from(*target);
        missed += usize::from(!met);
        let shown = path
            .replace(&ordinary.to_string(), "{run}")
            .replace(&ordinary.to_string()[..32], "{prefix}")
            .replace(&big.to_string(), "{map run}")
            .replace(&cursor, "{next}")
            .replace(&log_cursor, "{next}");
        println!(
            "| `{shown}` | {} | {} | {} | {} | ≤ {target} ms | {} |",
            ms(median),
            ms(p99),
            times.len(),
            kib(bytes),
            match (met, status) {
                (true, _) => "yes".to_owned(),
                (false, 200) => "NO".to_owned(),
                (false, code) => format!("NO (HTTP {code})"),
            }
        );
    }
    println!(
        "\n{missed} of {} routes miss their target (p99).",
        routes.len()
    );

    println!("\nQuery plans of the browse queries:\n");
    let plans = rt
        .block_on(store.query_plans(ordinary, big, node as u32))
        .unwrap();
    for (label, sql, plan) in plans {
        println!("-- {label}\n{sql}");
        for line in plan {
            println!("    {line}");
        }
        println!();
    }

    let _ = stop.send(());
    if postgres && args.drop {
        rt.block_on(drop_schema(&args));
        println!("dropped schema {}", args.schema);
    }
}

/// Runs flows with history on until the history holds what `args` asks for.
async fn write_history(store: &Store, args: &Args) {
    let config = || RunConfig::new().history(store.clone());
    let t = Instant::now();
    let big = big_map::run_with(config(), MAP_N).await;
    assert_eq!(
        big.history.as_ref().map(|h| h.lost),
        Some(0),
        "{:?}",
        big.history
    );
    println!(
        "wrote the {MAP_N}-element map run in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let ordinary = args
        .runs
        .min(args.task_runs.saturating_sub(MAP_N + 1) / TASKS_PER_RUN)
        .max(1);
    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT_RUNS {
        let (next, lost, store) = (next.clone(), lost.clone(), store.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ordinary {
                    break;
                }
                let config = RunConfig::new().history(store.clone());
                let history = match i % 3 {
                    0 => etl::run_with(config, i).await.history,
                    1 => report::run_with(config, i).await.history,
                    _ => sync_crm::run_with(config, i).await.history,
                };
                let h = history.expect("history on");
                lost.fetch_add(h.lost, Ordering::Relaxed);
                if i > 0 && i % 100_000 == 0 {
                    println!("  {i} runs written");
                }
            }
        });
    }
    while let Some(r) = workers.join_next().await {
        r.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "wrote {ordinary} runs of 9 task runs in {secs:.1} s ({:.0} runs/s, {:.0} task runs/s), \
         {} rows lost",
        ordinary as f64 / secs,
        (ordinary * TASKS_PER_RUN) as f64 / secs,
        lost.load(Ordering::Relaxed)
    );
}

/// The newest ordinary run and the run of the big map.
async fn sample_runs(store: &Store) -> (uuid::Uuid, uuid::Uuid) {
    let newest = |flow: &str| {
        let q = RunQuery {
            flow: Some(flow.to_owned()),
            ..RunQuery::new().limit(1)
        };
        async move { store.runs_page(&q).await.unwrap().runs[0].id }
    };
    (newest("etl").await, newest("big map").await)
}

/// Bytes the history takes on disk: the SQLite file and its WAL, or the PostgreSQL schema's
/// tables with their indexes.
async fn history_size(args: &Args) -> u64 {
    if let Some(path) = args.database.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        return ["", "-wal"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{path}{s}")).ok())
            .map(|m| m.len())
            .sum();
    }
    let pool = sqlx::PgPool::connect(&args.database).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
    )
    .bind(&args.schema)
    .fetch_one(&pool)
    .await
    .unwrap();
    n as u64
}

async fn vacuum_analyze(args: &Args) {
    let pool = sqlx::PgPool::connect(&args.database).await.unwrap();
    for table in ["flow_runs", "task_runs", "logs", "state_changes"] {
        sqlx::query(&format!("VACUUM ANALYZE \"{}\".{table}", args.schema))
            .execute(&pool)
            .await
            .unwrap();
    }
}

async fn drop_schema(args: &Args) {
    let pool = sqlx::PgPool::connect(&args.database).await.unwrap();
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
        args.schema
    ))
    .execute(&pool)
    .await
    .unwrap();
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn kib(bytes: usize) -> String {
    if bytes < 10 * 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}
