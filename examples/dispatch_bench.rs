//! Dispatch benchmark of the run queue and workers on PostgreSQL: how fast Scheduled runs are
//! claimed and started by real worker processes, how late they start, and what the heartbeats
//! of 1,000 runs in flight cost; each next to a baseline measured in the same run.
//!
//! ```text
//! cargo run --release --features postgres --example dispatch_bench -- \
//!     [--database postgres://postgres@127.0.0.1:5432/test] [--runs 2000] [--limit N] \
//!     [--only 1|1b|2|3] [--keep]
//! ```
//!
//! Everything goes into a schema of its own (`weft_dispatch_bench_PID`, through
//! `StoreOptions::schema`), dropped at the end (`--keep` keeps it to look at); nothing else in
//! the database is touched. The workers are real processes: this binary started again with
//! `--worker NAME`, each a [`Worker`] of pool `dispatch` serving two deployments, `noop` (a flow
//! of one task that returns at once) and `nap` (a flow of one task that sleeps 30 s), in the
//! default configuration: history on, console log on at INFO (its lines go to a file per
//! worker in a scratch directory, removed at the end unless something failed, so the table
//! stays readable).
//!
//! 1. **Dispatch throughput.** `--runs` runs of `noop` (default 2,000) are scheduled due now
//!    while the pool is paused, with 1, 2 or 4 idle workers waiting (default limit: 10 runs
//!    each; `--limit N` to change it); then the pool is resumed and a NOTIFY sent (resuming a
//!    pool wakes no one by itself). From the run rows: how long after the release the first
//!    and the last run started (`RunRecord::started`), runs started per second (release to
//!    last start) and completed per second (release to last end); and the workers' CPU time
//!    per run. Medians of 3. Baseline, in the same schema and the same run: a bare claim loop
//!    on a minimal table of its own, k connections each doing `UPDATE q SET state = 'Running'
//!    ... WHERE id IN (SELECT id FROM q WHERE state = 'Scheduled' AND due <= now() ORDER BY
//!    due LIMIT 10 FOR UPDATE SKIP LOCKED) RETURNING id`, then one `UPDATE` marking the batch
//!    done, with sqlx directly.
//!
//!    **1b. What one run costs**: one worker, 500 runs released at once, its connections going
//!    through a proxy in this process that reads the wire protocol: statements, transactions
//!    and round trips per run (pings of pooled connections and statement preparations among
//!    them), the statements by count, and the CPU time of the worker (user and system) and of
//!    the PostgreSQL backends serving it (found by their `application_name`).
//! 2. **Lateness at 10 runs/s**, 2 workers, 200 runs 100 ms apart (20 s): started minus
//!    scheduled (`RunRecord::placement.scheduled`), p50 / p99 / max. Runs inserted ahead of
//!    time (`schedule_run` with `at` in the future) are NOTIFYed when inserted, not when due,
//!    so an idle worker finds them at its next poll: measured with the default poll (1 s) and
//!    with `poll_every(100ms)`. Beside them, runs inserted when they are due (`at` = now), with
//!    the default poll: the NOTIFY path.
//! 3. **Heartbeat cost with 1,000 runs in flight**: one worker with `limit(1000)` behind the
//!    proxy, first idle (0 runs), then running 1,000 `nap` runs; in a steady-state window of
//!    each (the 1,000 runs started and claimed by the watcher, none ended): CPU time of the
//!    worker and of its backends, what the worker sent (statements, transactions, round trips),
//!    and the rows written and read and the scans in the schema's tables
//!    (`pg_stat_user_tables`), per second; then the statements sent per second, idle and busy.
//!    The NOTIFYs on `weft_runs` in each window are counted too: the channel is the
//!    database's, so runs scheduled in other schemas (another weft, tests) wake the worker and
//!    each wake-up costs it a claim transaction.
//!
//! PostgreSQL's statistics reach `pg_stat_*` late (up to 10 s for a backend gone idle), so the
//! heartbeat windows start 11 s after the last burst of work and their `pg_stat` figures are
//! good to a few percent; the proxy's counts are exact. Every run must end
//! Completed, or the benchmark fails rather than report figures of a broken dispatch.
//! `WEFT_DISPATCH_BENCH_WRAP="valgrind --tool=callgrind"` runs the workers under a profiler.

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::schedule::Deployment;
use weft::store::{RunFilter, RunRecord, Store, StoreOptions, WorkPoolSpec};
use weft::worker::Worker;
use weft::{DateTime, Utc, Uuid};

const POOL: &str = "dispatch";
/// How long a `nap` run sleeps.
const NAP_MS: u64 = 30_000;
/// Runs of the lateness cases, and how far apart they are due.
const LATENESS_RUNS: usize = 200;
const LATENESS_EVERY: Duration = Duration::from_millis(100);
/// Runs in flight for the heartbeat cost.
const IN_FLIGHT: usize = 1_000;
/// The longest steady-state window of the heartbeat measurement.
const WINDOW: Duration = Duration::from_secs(12);
/// How long the heartbeat measurement waits after a burst of work before a window: a
/// PostgreSQL backend that went idle less than a second after its last report of statistics
/// reports the rest up to 10 s later.
const SETTLE: Duration = Duration::from_secs(11);
/// The bare loop's batch (a worker's default limit is 10 too).
const BARE_BATCH: i64 = 10;
/// Measurements of each dispatch case; the table shows medians.
const REPS: usize = 3;
/// Runs of the anatomy of a run (1b).
const ANATOMY_RUNS: usize = 500;

#[task]
async fn nothing(i: u64) -> u64 {
    i
}

/// A flow of one task that returns at once.
#[flow]
async fn noop(i: u64) -> u64 {
    let x = nothing(i)?;
    x
}

#[task]
async fn sleep_ms(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

/// A flow of one task that sleeps `ms`.
#[flow]
async fn nap(ms: u64) -> u64 {
    let x = sleep_ms(ms)?;
    x
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(name) = arg(&args, "--worker") {
        worker_main(&name, &args);
        return;
    }
    let url = arg(&args, "--database")
        .or_else(|| std::env::var("WEFT_BENCH_DATABASE_URL").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    assert!(
        url.starts_with("postgres"),
        "the dispatch benchmark measures PostgreSQL: give --database postgres://..."
    );
    let runs: usize = arg(&args, "--runs").map_or(2_000, |n| n.parse().expect("--runs N"));
    let only = arg(&args, "--only");
    let limit = arg(&args, "--limit");
    let keep = args.iter().any(|a| a == "--keep");
    let schema = format!("weft_dispatch_bench_{}", std::process::id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let admin = rt
        .block_on(PgPoolOptions::new().max_connections(2).connect(&url))
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    let outcome = rt.block_on({
        let (url, schema) = (url.clone(), schema.clone());
        async move { tokio::spawn(bench(url, schema, runs, only, limit)).await }
    });
    if keep {
        println!("\nkept schema {schema}");
        return;
    }
    rt.block_on(async {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&admin)
            .await
            .unwrap();
    });
    println!("\ndropped schema {schema}");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A worker process: `--worker NAME --database URL --schema S [--limit N] [--poll-ms M]`.
fn worker_main(name: &str, args: &[String]) {
    let url = arg(args, "--database").expect("--database");
    let schema = arg(args, "--schema").expect("--schema");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = StoreOptions::new(&url)
            .schema(&schema)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("worker {name}: cannot open the store: {e}"));
        let mut worker = Worker::new(POOL)
            .name(name)
            .store(store)
            .deployment(Deployment::new("noop", noop::flow(), (0,)))
            .deployment(Deployment::new("nap", nap::flow(), (NAP_MS,)));
        if let Some(n) = arg(args, "--limit") {
            worker = worker.limit(n.parse().expect("--limit N"));
        }
        if let Some(ms) = arg(args, "--poll-ms") {
            worker = worker.poll_every(Duration::from_millis(ms.parse().expect("--poll-ms M")));
        }
        worker.run().await.unwrap();
    });
}

/// What the benchmark shares between its parts.
struct Bench {
    url: String,
    schema: String,
    store: Store,
    pg: PgPool,
    dir: PathBuf,
    clock_ticks: f64,
}

/// A worker process, SIGKILLed when dropped unless it exited.
struct WorkerProcess {
    child: Child,
    name: String,
}

impl WorkerProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits until it exits.
    async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("worker {} did not stop within 60 s of SIGTERM", self.name);
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

/// CPU time (user + system) of process `pid` so far, in seconds; None once it is gone.
fn cpu_seconds(pid: u32, ticks: f64) -> Option<f64> {
    cpu_split(pid, ticks).map(|(user, system)| user + system)
}

/// User and system CPU time of process `pid` so far, in seconds.
fn cpu_split(pid: u32, ticks: f64) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / ticks, stime / ticks))
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn since(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

/// The `q` quantile of sorted `v`.
fn quantile<T: Copy>(v: &[T], q: f64) -> T {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

// ---- the tap: counting what a worker sends to PostgreSQL ----

/// A TCP proxy in front of PostgreSQL that counts what its clients send (the frontend messages
/// of the wire protocol, read as they pass): statements executed, by their SQL, transactions
/// and round trips. Its clients connect with `sslmode=disable`, so it can read them.
struct Tap {
    port: u16,
    counts: Arc<Mutex<TapCounts>>,
}

#[derive(Clone, Default)]
struct TapCounts {
    /// Statements executed: Execute messages, and simple queries.
    statements: u64,
    /// Transactions: COMMITs, and statements run outside BEGIN ... COMMIT.
    transactions: u64,
    /// Round trips: Sync messages and simple queries (each waits for the server's answer).
    round_trips: u64,
    /// Of the round trips, those with nothing to execute: a pool checking a connection before
    /// handing it out (sqlx's `test_before_acquire`, on by default).
    pings: u64,
    /// Statements prepared (Parse messages): a statement the connection had not prepared yet
    /// costs a round trip more.
    prepares: u64,
    /// Statements executed, by their SQL (its whitespace collapsed, a VALUES list cut).
    per_sql: HashMap<String, u64>,
}

impl TapCounts {
    fn since(&self, before: &TapCounts) -> TapCounts {
        TapCounts {
            statements: self.statements - before.statements,
            transactions: self.transactions - before.transactions,
            round_trips: self.round_trips - before.round_trips,
            prepares: self.prepares - before.prepares,
            pings: self.pings - before.pings,
            per_sql: self
                .per_sql
                .iter()
                .map(|(sql, n)| {
                    (
                        sql.clone(),
                        n - before.per_sql.get(sql).copied().unwrap_or(0),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }

    /// The `n` statements executed most, most first.
    fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> =
            self.per_sql.iter().map(|(s, n)| (s.clone(), *n)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

/// What the tap knows of one connection.
#[derive(Default)]
struct TapConn {
    /// Past the startup message.
    started: bool,
    in_transaction: bool,
    /// Something was sent since the last Sync.
    busy: bool,
    /// Prepared statements' SQL by name, and what each portal executes.
    prepared: HashMap<String, String>,
    portals: HashMap<String, String>,
}

/// A NUL-terminated string at the start of `b`, and what follows it.
fn cstr(b: &[u8]) -> (String, &[u8]) {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    (
        String::from_utf8_lossy(&b[..end]).into_owned(),
        b.get(end + 1..).unwrap_or(&[]),
    )
}

fn short_sql(sql: &str) -> String {
    let mut s = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(i) = s.find(" VALUES (") {
        s.truncate(i + 8);
        s.push_str("...)");
    }
    if s.chars().count() > 110 {
        s = s.chars().take(107).collect::<String>() + "...";
    }
    s
}

impl TapConn {
    fn executed(&mut self, sql: &str, c: &mut TapCounts) {
        c.statements += 1;
        *c.per_sql.entry(short_sql(sql)).or_default() += 1;
        let head = sql
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match head.as_str() {
            "BEGIN" | "START" => self.in_transaction = true,
            "COMMIT" | "END" => {
                self.in_transaction = false;
                c.transactions += 1;
            }
            "ROLLBACK" => self.in_transaction = false,
            _ if !self.in_transaction => c.transactions += 1,
            _ => {}
        }
    }

    /// Counts the whole messages at the start of `data`: how many bytes they took.
    fn read(&mut self, data: &[u8], counts: &Mutex<TapCounts>) -> usize {
        let mut c = counts.lock().unwrap();
        let mut at = 0;
        loop {
            let rest = &data[at..];
            if !self.started {
                // Untyped: the startup message, or an SSL or GSS encryption request before it.
                if rest.len() < 8 {
                    return at;
                }
                let len = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
                if rest.len() < len {
                    return at;
                }
                let code = u32::from_be_bytes(rest[4..8].try_into().unwrap());
                self.started = code != 80_877_103 && code != 80_877_104;
                at += len;
                continue;
            }
            if rest.len() < 5 {
                return at;
            }
            let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            if rest.len() < 1 + len {
                return at;
            }
            let body = &rest[5..1 + len];
            if rest[0] != b'S' {
                self.busy = true;
            }
            match rest[0] {
                b'P' => {
                    let (name, r) = cstr(body);
                    let (sql, _) = cstr(r);
                    c.prepares += 1;
                    *c.per_sql
                        .entry(format!("(prepare) {}", short_sql(&sql)))
                        .or_default() += 1;
                    self.prepared.insert(name, sql);
                }
                b'B' => {
                    let (portal, r) = cstr(body);
                    let (statement, _) = cstr(r);
                    let sql = self.prepared.get(&statement).cloned().unwrap_or_default();
                    self.portals.insert(portal, sql);
                }
                b'E' => {
                    let (portal, _) = cstr(body);
                    let sql = self.portals.get(&portal).cloned().unwrap_or_default();
                    self.executed(&sql, &mut c);
                }
                b'Q' => {
                    let (sql, _) = cstr(body);
                    c.round_trips += 1;
                    self.busy = false;
                    self.executed(&sql, &mut c);
                }
                b'S' => {
                    c.round_trips += 1;
                    if !std::mem::take(&mut self.busy) {
                        c.pings += 1;
                    }
                }
                _ => {}
            }
            at += 1 + len;
        }
    }
}

impl Tap {
    /// A tap listening on loopback in front of `upstream` (host:port).
    fn start(upstream: String) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Mutex::new(TapCounts::default()));
        let shared = counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (from_client, to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut &server, &mut &client);
                    let _ = (
                        server.shutdown(Shutdown::Both),
                        client.shutdown(Shutdown::Both),
                    );
                });
                let counts = shared.clone();
                std::thread::spawn(move || pump(from_client, to_server, &counts));
            }
        });
        Tap { port, counts }
    }

    fn snapshot(&self) -> TapCounts {
        self.counts.lock().unwrap().clone()
    }

    /// `url` going through this tap.
    fn url(&self, url: &str) -> String {
        let (_, hostport) = upstream_of(url);
        let url = url.replacen(&hostport, &format!("127.0.0.1:{}", self.port), 1);
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}sslmode=disable")
    }
}

/// Forwards what a client sends, counting its messages.
fn pump(mut from: TcpStream, mut to: TcpStream, counts: &Mutex<TapCounts>) {
    let mut conn = TapConn::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = Vec::new();
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        let used = conn.read(&pending, counts);
        pending.drain(..used);
    }
    let _ = (to.shutdown(Shutdown::Both), from.shutdown(Shutdown::Both));
}

/// The server's `host:port` in `url` (port 5432 when not given), and that part as written.
fn upstream_of(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let full = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    (full, hostport.to_owned())
}

// ---- the benchmark ----

async fn bench(
    url: String,
    schema: String,
    runs: usize,
    only: Option<String>,
    limit: Option<String>,
) {
    let part = |p: &str| only.as_deref().is_none_or(|o| o == p);
    let store = StoreOptions::new(&url)
        .schema(&schema)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    store
        .create_work_pool(&WorkPoolSpec::new(POOL))
        .await
        .unwrap();
    let pg = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("weft-dispatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock_ticks = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    let mut settings = Vec::new();
    for name in ["server_version", "synchronous_commit", "fsync"] {
        let v: String = sqlx::query_scalar(&format!("SHOW {name}"))
            .fetch_one(&pg)
            .await
            .unwrap();
        settings.push(format!("{name} {v}"));
    }
    let b = Bench {
        url,
        schema,
        store,
        pg,
        dir,
        clock_ticks,
    };
    println!(
        "PostgreSQL at {} ({}), schema {}; {} cores, load average {}; worker logs (console log \
         on, INFO) in {}",
        b.store.url(),
        settings.join(", "),
        b.schema,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        b.dir.display()
    );

    // ---- 1. dispatch throughput ----
    if part("1") {
        dispatch(&b, runs, limit.as_deref()).await;
    }
    if part("1b") {
        anatomy(&b).await;
    }
    if part("2") {
        lateness_table(&b).await;
    }
    if part("3") {
        println!(
            "\n## 3. Heartbeats: one worker with limit(1000), idle, then {IN_FLIGHT} runs in \
             flight (each sleeping {} s)\n",
            NAP_MS / 1000
        );
        heartbeats(&b).await;
    }
    // The worker logs are kept only when something failed.
    let _ = std::fs::remove_dir_all(&b.dir);
}

async fn dispatch(b: &Bench, runs: usize, limit: Option<&str>) {
    println!(
        "\n## 1. Dispatch: {runs} runs due at once, released together (pool resumed + NOTIFY); \
         medians of {REPS}\n"
    );
    println!(
        "| dispatcher | first start | all started | started/s | all completed | completed/s | \
         worker CPU per run |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut scheduling = Vec::new();
    for k in [1usize, 2, 4] {
        let names: Vec<String> = (1..=k).map(|i| format!("dispatch-{k}-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let extra: Vec<&str> = limit.map(|l| vec!["--limit", l]).unwrap_or_default();
        let workers = start_workers(b, &refs, &extra, None).await;
        let (mut weft, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..REPS {
            let (d, sched) = weft_dispatch(b, &workers, runs).await;
            scheduling.push(sched);
            weft.push(d);
            bare.push(bare_loop(b, k, runs).await);
        }
        stop_workers(workers).await;
        let plural = if k > 1 { "es" } else { "" };
        print_dispatch(
            &format!(
                "weft, {k} worker process{plural} (limit {} each)",
                limit.unwrap_or("10")
            ),
            &weft,
            runs,
            true,
        );
        let plural = if k > 1 { "s" } else { "" };
        print_dispatch(
            &format!("bare `SKIP LOCKED` loop, {k} connection{plural}"),
            &bare,
            runs,
            false,
        );
    }
    println!(
        "\nFirst start, all started, all completed: after the release. `Store::schedule_run`, one \
         run per call (one transaction each), made {:.0} runs/s.",
        median(scheduling)
    );
}

async fn lateness_table(b: &Bench) {
    println!(
        "\n## 2. Lateness at 10 runs/s: 2 workers, {LATENESS_RUNS} runs due {} apart\n",
        ms(LATENESS_EVERY)
    );
    println!("| runs inserted | worker poll | p50 | p99 | max |");
    println!("|---|---|---:|---:|---:|");
    {
        let workers = start_workers(b, &["late-a", "late-b"], &[], None).await;
        let ahead = lateness(b, true).await;
        print_lateness("ahead of time (NOTIFY at insert)", "1 s (default)", &ahead);
        let jit = lateness(b, false).await;
        print_lateness("when due (NOTIFY)", "1 s (default)", &jit);
        stop_workers(workers).await;
    }
    {
        let workers = start_workers(b, &["late-c", "late-d"], &["--poll-ms", "100"], None).await;
        let ahead = lateness(b, true).await;
        print_lateness("ahead of time (NOTIFY at insert)", "100 ms", &ahead);
        stop_workers(workers).await;
    }
}

/// Times of one dispatch measurement, from the release.
struct Dispatch {
    first_start: Duration,
    all_started: Duration,
    all_completed: Duration,
    /// Worker CPU seconds per run, from the release to the end.
    cpu_per_run: f64,
}

fn print_dispatch(what: &str, reps: &[Dispatch], runs: usize, cpu: bool) {
    let med = |f: &dyn Fn(&Dispatch) -> f64| median(reps.iter().map(f).collect());
    let first = med(&|d| d.first_start.as_secs_f64());
    let started = med(&|d| d.all_started.as_secs_f64());
    let completed = med(&|d| d.all_completed.as_secs_f64());
    let cpu = if cpu {
        format!("{:.2} ms", med(&|d| d.cpu_per_run) * 1e3)
    } else {
        String::new()
    };
    println!(
        "| {what} | {} | {} | {:.0} | {} | {:.0} | {cpu} |",
        ms(Duration::from_secs_f64(first)),
        secs(Duration::from_secs_f64(started)),
        runs as f64 / started,
        secs(Duration::from_secs_f64(completed)),
        runs as f64 / completed,
    );
}

/// Starts one worker process per name (extra arguments `extra`; through `tap` if given) and
/// waits until each has registered and had a moment to LISTEN.
async fn start_workers(
    b: &Bench,
    names: &[&str],
    extra: &[&str],
    tap: Option<&Tap>,
) -> Vec<WorkerProcess> {
    let exe = std::env::current_exe().unwrap();
    let mut procs = Vec::new();
    for name in names {
        let log = std::fs::File::create(b.dir.join(format!("{name}.log"))).unwrap();
        let url = tap.map_or_else(|| b.url.clone(), |t| t.url(&b.url));
        let url = format!(
            "{url}{}application_name=weft-dispatch-bench-{name}",
            if url.contains('?') { '&' } else { '?' }
        );
        // WEFT_DISPATCH_BENCH_WRAP="valgrind --tool=callgrind": workers run under a profiler.
        let wrap = std::env::var("WEFT_DISPATCH_BENCH_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut cmd = match wrap.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(wrap).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let child = cmd
            .args(["--worker", name, "--database", &url, "--schema", &b.schema])
            .args(extra)
            .env("WEFT_HOME", &b.dir)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        procs.push(WorkerProcess {
            child,
            name: (*name).to_owned(),
        });
    }
    let t = Instant::now();
    loop {
        let registered: HashSet<String> = b
            .store
            .workers(Some(POOL))
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.name)
            .collect();
        if names.iter().all(|n| registered.contains(*n)) {
            break;
        }
        for p in &mut procs {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!(
                    "worker {} exited ({status}): see {}",
                    p.name,
                    b.dir.display()
                );
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "workers did not register"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The listener connects after the registration.
    tokio::time::sleep(Duration::from_millis(500)).await;
    procs
}

async fn stop_workers(procs: Vec<WorkerProcess>) {
    for p in procs {
        p.stop().await;
    }
}

/// Schedules `n` runs of `deployment` due now while the pool is paused: their ids, and runs
/// scheduled per second.
async fn schedule_paused(b: &Bench, deployment: &str, n: usize) -> (HashSet<Uuid>, f64) {
    b.store.set_work_pool_paused(POOL, true).await.unwrap();
    let t = Instant::now();
    let mut ids = HashSet::new();
    for _ in 0..n {
        let id = b
            .store
            .schedule_run(deployment, Default::default(), None)
            .await
            .unwrap();
        ids.insert(id);
    }
    (ids, n as f64 / t.elapsed().as_secs_f64())
}

/// Resumes the pool and wakes the idle workers: the time of the release.
async fn release(b: &Bench) -> DateTime<Utc> {
    let t0 = Utc::now();
    b.store.set_work_pool_paused(POOL, false).await.unwrap();
    // Resuming a pool notifies no one: wake the idle workers as `schedule_run` does.
    sqlx::query("SELECT pg_notify('weft_runs', '')")
        .execute(&b.pg)
        .await
        .unwrap();
    t0
}

/// Waits until no run of `deployment` is waiting or going (at most `limit`).
async fn wait_all_final(b: &Bench, deployment: &str, limit: Duration) {
    let sql = format!(
        "SELECT COUNT(*) FROM \"{}\".flow_runs WHERE deployment = $1 \
         AND state IN ('Scheduled', 'Late', 'Pending', 'Running', 'Retrying')",
        b.schema
    );
    let t = Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar(&sql)
            .bind(deployment)
            .fetch_one(&b.pg)
            .await
            .unwrap();
        if left == 0 {
            return;
        }
        assert!(
            t.elapsed() < limit,
            "{left} runs of {deployment} still not ended after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The records of runs `ids` (flow `flow`), every one Completed.
async fn records(b: &Bench, flow: &str, ids: &HashSet<Uuid>) -> Vec<RunRecord> {
    let all = b
        .store
        .runs(&RunFilter::new().flow(flow).limit(10_000_000))
        .await
        .unwrap();
    let mine: Vec<RunRecord> = all.into_iter().filter(|r| ids.contains(&r.id)).collect();
    assert_eq!(mine.len(), ids.len(), "runs missing from the history");
    for r in &mine {
        assert_eq!(
            r.state,
            StateKind::Completed,
            "run {} ended {:?}: {:?}",
            r.id,
            r.state,
            r.message
        );
    }
    mine
}

/// `n` runs of `noop` dispatched by `workers`; and runs scheduled per second.
async fn weft_dispatch(b: &Bench, workers: &[WorkerProcess], n: usize) -> (Dispatch, f64) {
    let (ids, sched_rate) = schedule_paused(b, "noop", n).await;
    let cpu = || -> f64 {
        workers
            .iter()
            .filter_map(|w| cpu_seconds(w.pid(), b.clock_ticks))
            .sum()
    };
    let cpu0 = cpu();
    let t0 = release(b).await;
    wait_all_final(b, "noop", Duration::from_secs(600)).await;
    let cpu1 = cpu();
    let runs = records(b, "noop", &ids).await;
    let first = runs.iter().map(|r| r.started).min().unwrap();
    let last = runs.iter().map(|r| r.started).max().unwrap();
    let end = runs.iter().filter_map(|r| r.ended).max().unwrap();
    (
        Dispatch {
            first_start: since(t0, first),
            all_started: since(t0, last),
            all_completed: since(t0, end),
            cpu_per_run: (cpu1 - cpu0) / n as f64,
        },
        sched_rate,
    )
}

/// The bare claim loop: `n` rows claimed 10 at a time by `k` connections, each batch then
/// marked done.
async fn bare_loop(b: &Bench, k: usize, n: usize) -> Dispatch {
    let q = format!("\"{}\".bare_queue", b.schema);
    for sql in [
        format!(
            "CREATE TABLE IF NOT EXISTS {q} (id BIGSERIAL PRIMARY KEY, state TEXT NOT NULL, \
             due TIMESTAMPTZ NOT NULL, started TIMESTAMPTZ, ended TIMESTAMPTZ)"
        ),
        format!("CREATE INDEX IF NOT EXISTS bare_queue_due ON {q} (due) WHERE state = 'Scheduled'"),
        format!("TRUNCATE {q}"),
        format!(
            "INSERT INTO {q} (state, due) SELECT 'Scheduled', now() FROM generate_series(1, {n})"
        ),
        format!("ANALYZE {q}"),
    ] {
        sqlx::query(&sql).execute(&b.pg).await.unwrap();
    }
    let mut conns = Vec::new();
    for _ in 0..k {
        conns.push(PgConnection::connect(&b.url).await.unwrap());
    }
    let claim = format!(
        "UPDATE {q} SET state = 'Running', started = clock_timestamp() WHERE id IN \
         (SELECT id FROM {q} WHERE state = 'Scheduled' AND due <= now() ORDER BY due \
         LIMIT {BARE_BATCH} FOR UPDATE SKIP LOCKED) RETURNING id"
    );
    let done =
        format!("UPDATE {q} SET state = 'Done', ended = clock_timestamp() WHERE id = ANY($1)");
    let t0 = Utc::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (claim, done) = (claim.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let ids: Vec<i64> = sqlx::query_scalar(&claim)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
                if ids.is_empty() {
                    break;
                }
                sqlx::query(&done)
                    .bind(&ids)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let row = sqlx::query(&format!(
        "SELECT EXTRACT(EPOCH FROM MIN(started))::float8, EXTRACT(EPOCH FROM MAX(started))::float8, \
         EXTRACT(EPOCH FROM MAX(ended))::float8, COUNT(*) FILTER (WHERE state = 'Done') FROM {q}"
    ))
    .fetch_one(&b.pg)
    .await
    .unwrap();
    let done_rows: i64 = row.get(3);
    assert_eq!(done_rows as usize, n, "the bare loop lost rows");
    let t0s = t0.timestamp_micros() as f64 / 1e6;
    let after = |col: usize| Duration::from_secs_f64((row.get::<f64, _>(col) - t0s).max(0.0));
    Dispatch {
        first_start: after(0),
        all_started: after(1),
        all_completed: after(2),
        cpu_per_run: 0.0,
    }
}

/// What one dispatched run costs the database: one worker through the tap runs `ANATOMY_RUNS`
/// runs of `noop` released at once.
async fn anatomy(b: &Bench) {
    let tap = Tap::start(upstream_of(&b.url).0);
    let workers = start_workers(b, &["anatomy"], &[], Some(&tap)).await;
    let (ids, _) = schedule_paused(b, "noop", ANATOMY_RUNS).await;
    let split = || cpu_split(workers[0].pid(), b.clock_ticks).unwrap_or_default();
    let (user0, system0) = split();
    let a = sample(b, &workers[0], &tap).await;
    release(b).await;
    wait_all_final(b, "noop", Duration::from_secs(300)).await;
    // The last runs' owners released, the writer idle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let z = sample(b, &workers[0], &tap).await;
    let (user1, system1) = split();
    let used = z.sent.since(&a.sent);
    stop_workers(workers).await;
    records(b, "noop", &ids).await;
    let n = ANATOMY_RUNS as f64;
    println!(
        "\n## 1b. What one dispatched run costs: 1 worker, {ANATOMY_RUNS} runs of `noop` released \
         at once, its connections counted by a proxy\n"
    );
    println!(
        "Per run: {:.1} statements, {:.1} transactions, {:.1} round trips ({:.1} of them pings \
         of a connection taken from or given back to the pool, {:.1} preparing a statement); CPU: \
         worker {:.2} ms ({:.2} user, {:.2} system), its PostgreSQL backends {:.2} ms. \
         Through the proxy: {:.0} runs/s ({:.2} s).\n",
        used.statements as f64 / n,
        used.transactions as f64 / n,
        used.round_trips as f64 / n,
        used.pings as f64 / n,
        used.prepares as f64 / n,
        (z.worker_cpu - a.worker_cpu) / n * 1e3,
        (user1 - user0) / n * 1e3,
        (system1 - system0) / n * 1e3,
        backend_cpu(&a, &z) / n * 1e3,
        n / (z.at - a.at).as_secs_f64(),
        (z.at - a.at).as_secs_f64(),
    );
    println!("| statement | per run |\n|---|---:|");
    for (sql, count) in used.top(20) {
        println!("| `{sql}` | {:.2} |", count as f64 / n);
    }
}

/// Started minus scheduled of `LATENESS_RUNS` runs of `noop` due 100 ms apart: inserted all
/// ahead of time (`ahead`), or each when it is due. Sorted.
async fn lateness(b: &Bench, ahead: bool) -> Vec<Duration> {
    let start = Utc::now() + chrono::Duration::seconds(2);
    let every = chrono::Duration::from_std(LATENESS_EVERY).unwrap();
    let mut ids = HashSet::new();
    if ahead {
        for i in 0..LATENESS_RUNS as i32 {
            let at = start + every * i;
            let id = b
                .store
                .schedule_run("noop", Default::default(), Some(at))
                .await
                .unwrap();
            ids.insert(id);
        }
        assert!(Utc::now() < start, "scheduling took longer than 2 s");
    } else {
        let t = tokio::time::Instant::now() + Duration::from_secs(2);
        for i in 0..LATENESS_RUNS as u32 {
            tokio::time::sleep_until(t + LATENESS_EVERY * i).await;
            let id = b
                .store
                .schedule_run("noop", Default::default(), None)
                .await
                .unwrap();
            ids.insert(id);
        }
    }
    wait_all_final(b, "noop", Duration::from_secs(120)).await;
    let mut late: Vec<Duration> = records(b, "noop", &ids)
        .await
        .iter()
        .map(|r| {
            since(
                r.placement.as_ref().expect("a pooled run").scheduled,
                r.started,
            )
        })
        .collect();
    late.sort();
    late
}

fn print_lateness(inserted: &str, poll: &str, late: &[Duration]) {
    println!(
        "| {inserted} | {poll} | {} | {} | {} |",
        ms(quantile(late, 0.5)),
        ms(quantile(late, 0.99)),
        ms(*late.last().unwrap())
    );
}

/// NOTIFYs seen on `weft_runs`, the channel that wakes idle workers: it is the database's, not
/// the schema's, so other schemas' runs (another weft, tests) wake this benchmark's workers too.
static NOTIFIES: AtomicU64 = AtomicU64::new(0);

/// Counts the NOTIFYs on `weft_runs` into [`NOTIFIES`], for ever.
async fn count_notifies(url: String) {
    let Ok(mut listener) = sqlx::postgres::PgListener::connect(&url).await else {
        return;
    };
    if listener.listen("weft_runs").await.is_err() {
        return;
    }
    while listener.recv().await.is_ok() {
        NOTIFIES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters of the worker and the database at one moment.
struct Sample {
    at: Instant,
    /// NOTIFYs on the channel that wakes workers, from anyone ([`NOTIFIES`]).
    notifies: u64,
    worker_cpu: f64,
    /// CPU seconds of each PostgreSQL backend serving the worker, by pid.
    backends: Vec<(u32, f64)>,
    sent: TapCounts,
    written: i64,
    read: i64,
    scans: i64,
}

async fn sample(b: &Bench, worker: &WorkerProcess, tap: &Tap) -> Sample {
    let pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
            .bind(format!("weft-dispatch-bench-{}", worker.name))
            .fetch_all(&b.pg)
            .await
            .unwrap();
    let row = sqlx::query(
        "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0)::int8, \
         COALESCE(SUM(seq_tup_read + COALESCE(idx_tup_fetch, 0)), 0)::int8, \
         COALESCE(SUM(seq_scan + COALESCE(idx_scan, 0)), 0)::int8 \
         FROM pg_stat_user_tables WHERE schemaname = $1",
    )
    .bind(&b.schema)
    .fetch_one(&b.pg)
    .await
    .unwrap();
    Sample {
        at: Instant::now(),
        worker_cpu: cpu_seconds(worker.pid(), b.clock_ticks).unwrap_or(0.0),
        backends: pids
            .into_iter()
            .filter_map(|p| Some((p as u32, cpu_seconds(p as u32, b.clock_ticks)?)))
            .collect(),
        sent: tap.snapshot(),
        notifies: NOTIFIES.load(Ordering::Relaxed),
        written: row.get(0),
        read: row.get(1),
        scans: row.get(2),
    }
}

/// CPU seconds of the worker's PostgreSQL backends between two samples.
fn backend_cpu(a: &Sample, z: &Sample) -> f64 {
    z.backends
        .iter()
        .map(|(pid, cpu)| {
            let before = a
                .backends
                .iter()
                .find(|(p, _)| p == pid)
                .map_or(0.0, |b| b.1);
            cpu - before
        })
        .sum()
}

/// Per-second figures between two samples; what the worker sent.
fn print_window(what: &str, a: &Sample, z: &Sample) -> TapCounts {
    let s = (z.at - a.at).as_secs_f64();
    let backend_cpu = backend_cpu(a, z);
    let sent = z.sent.since(&a.sent);
    println!(
        "| {what} | {s:.1} s | {:.2} % | {:.2} % | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} \
         | {:.1} |",
        (z.worker_cpu - a.worker_cpu) / s * 100.0,
        backend_cpu / s * 100.0,
        sent.statements as f64 / s,
        sent.transactions as f64 / s,
        sent.round_trips as f64 / s,
        (z.written - a.written) as f64 / s,
        (z.read - a.read) as f64 / s,
        (z.scans - a.scans) as f64 / s,
        (z.notifies - a.notifies) as f64 / s,
    );
    sent
}

async fn heartbeats(b: &Bench) {
    let notifies = tokio::spawn(count_notifies(b.url.clone()));
    let tap = Tap::start(upstream_of(&b.url).0);
    let mut workers = start_workers(b, &["beats"], &["--limit", "1000"], Some(&tap)).await;
    let worker = workers.pop().unwrap();
    println!(
        "| worker | window | worker CPU (of one core) | its PostgreSQL backends' CPU | \
         statements/s | transactions/s | round trips/s | rows written/s | rows read/s | \
         scans/s | NOTIFYs/s (from anyone) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Idle: its start settled, then a window as long as the busy one.
    tokio::time::sleep(SETTLE).await;
    let a = sample(b, &worker, &tap).await;
    tokio::time::sleep(WINDOW).await;
    let z = sample(b, &worker, &tap).await;
    let idle = print_window("idle (0 runs)", &a, &z);
    let idle_secs = (z.at - a.at).as_secs_f64();

    let (ids, _) = schedule_paused(b, "nap", IN_FLIGHT).await;
    let t0 = release(b).await;
    let released = Instant::now();
    let running = format!(
        "SELECT COUNT(*) FROM \"{}\".flow_runs WHERE deployment = 'nap' AND state = 'Running'",
        b.schema
    );
    loop {
        let n: i64 = sqlx::query_scalar(&running).fetch_one(&b.pg).await.unwrap();
        if n as usize == IN_FLIGHT {
            break;
        }
        assert!(
            released.elapsed() < Duration::from_secs(20),
            "only {n} of {IN_FLIGHT} runs Running after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_running = released.elapsed();
    // The watcher claims each run a second after it starts; then the steady state, once that
    // burst settled, until 2 s before the first run can end.
    tokio::time::sleep(Duration::from_secs(1) + SETTLE).await;
    let first_end = released + Duration::from_millis(NAP_MS);
    let window = WINDOW.min(
        first_end
            .saturating_duration_since(Instant::now())
            .saturating_sub(Duration::from_secs(2)),
    );
    assert!(
        window >= Duration::from_secs(5),
        "no steady state to measure"
    );
    let a = sample(b, &worker, &tap).await;
    tokio::time::sleep(window).await;
    let z = sample(b, &worker, &tap).await;
    let busy = print_window(&format!("{IN_FLIGHT} runs in flight"), &a, &z);
    let busy_secs = (z.at - a.at).as_secs_f64();
    wait_all_final(b, "nap", Duration::from_secs(120)).await;
    worker.stop().await;
    notifies.abort();
    let runs = records(b, "nap", &ids).await;
    let last = runs.iter().map(|r| r.started).max().unwrap();
    let end = runs.iter().filter_map(|r| r.ended).max().unwrap();
    println!(
        "\nThe {IN_FLIGHT} runs: all started {} after the release (all Running in the history \
         after {}), all ended {} after it.\n",
        secs(since(t0, last)),
        secs(all_running),
        secs(since(t0, end)),
    );
    println!("| statement (what the worker sent) | idle, per s | {IN_FLIGHT} in flight, per s |");
    println!("|---|---:|---:|");
    for (sql, n) in busy.top(12) {
        let before = idle.per_sql.get(&sql).copied().unwrap_or(0);
        println!(
            "| `{sql}` | {:.2} | {:.2} |",
            before as f64 / idle_secs,
            n as f64 / busy_secs
        );
    }
}
