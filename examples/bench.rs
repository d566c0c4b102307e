//! Engine overhead of weft against hand-written tokio doing the same work.
//!
//! ```text
//! cargo run --release --example bench 2>/dev/null
//! ```
//!
//! The default console subscriber stays on at its default level (INFO), as in a real program;
//! its lines go to stderr, so `2>/dev/null` keeps the terminal quiet. The table goes to stdout.
//! Every case runs once to warm up, then `REPS` times; the table shows medians.
//!
//! - (a) `inc::map(0..100_000)`: one task run per trivial element, in µs per task run, against
//!   `tokio::spawn` of the same body 100,000 times and joining every handle.
//! - (b) a diamond flow of 10 tasks (1 source → 8 middle tasks reading its output → 1 sink
//!   reading all 8), run 10,000 times, in µs per flow run: awaited straight from the
//!   `#[tokio::main]` body (block_on) and from inside a `tokio::spawn`ed task. Baseline: the same
//!   diamond with one `tokio::spawn` per node, awaiting the join handles.
//! - (c) `nap::map(0..10_000)`, each sleeping 10 ms, wall time, against 10,000 spawned sleeps.
//! - (d) cache hits and (e) `persist` writes against `std::fs` (see their comments below).
//! - (a) to (e) run with history off, to measure the engine alone; (f) to (j) run (b), (a), (c)
//!   and a task logging 100,000 lines with the run history on in its default configuration
//!   (SQLite file under `$WEFT_HOME`, here a scratch directory), each next to its history-off
//!   figure from the same process, every run waiting until its history is confirmed. The (f)
//!   floor row commits the rows one diamond run records straight into weft's schema with
//!   rusqlite, one transaction per run: what SQLite alone takes, without the engine. Another
//!   (f) row runs the diamonds 50 at a time: runs that end together share a commit.
//!
//! - (k), built with `--features postgres`: the map of (g) recording into PostgreSQL
//!   (`WEFT_BENCH_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! It asserts at the end that every weft run succeeded, so a broken engine cannot report good
//! numbers.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};
use weft::prelude::*;

const REPS: usize = 5;
const MAP_N: u64 = 100_000;
const DIAMOND_RUNS: u64 = 10_000;
const NAP_N: u64 = 10_000;
/// Diamond runs in flight at once in the concurrent (f) row.
const IN_FLIGHT: usize = 50;
const NAP: Duration = Duration::from_millis(10);

// ---- (a) a trivial mapped task ----

#[task]
async fn inc(x: u64) -> u64 {
    x + 1
}

#[flow]
async fn map_inc(n: u64) -> Vec<u64> {
    let ys = inc::map(0..n)?;
    ys
}

// ---- (b) the diamond: source -> 8 middles -> sink ----

#[path = "common/diamond.rs"]
mod diamond_flow;
use diamond_flow::{diamond, diamond_expected, middle, sink, source};

/// The same diamond by hand: one `tokio::spawn` per node.
async fn tokio_diamond(seed: u64) -> u64 {
    let s = tokio::spawn(source::body(seed)).await.unwrap();
    let handles: Vec<_> = (1..=8).map(|k| tokio::spawn(middle::body(s, k))).collect();
    let mut m = [0u64; 8];
    for (slot, h) in m.iter_mut().zip(handles) {
        *slot = h.await.unwrap();
    }
    tokio::spawn(sink::body(m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]))
        .await
        .unwrap()
}

// ---- (c) many sleeping tasks ----

#[task]
async fn nap(i: u64) -> u64 {
    tokio::time::sleep(NAP).await;
    i
}

#[flow]
async fn map_nap(n: u64) -> Vec<u64> {
    let ys = nap::map(0..n)?;
    ys
}

// ---- (d) cache hits and (e) persisted results, 1 KB each ----

const KB_N: u32 = 1_000;
const PERSIST_N: u32 = 10_000;

#[task(cache_for = "1h")]
async fn kilobyte(i: u32) -> Vec<u8> {
    vec![(i % 251) as u8; 1024]
}

#[flow]
async fn cached_kilobytes(n: u32) -> usize {
    let all = kilobyte::map(0..n)?;
    all.len()
}

#[task]
async fn blob(i: u32) -> Vec<u8> {
    vec![(i % 251) as u8; 1024]
}

#[flow(persist)]
async fn persisted_blobs(n: u32) -> usize {
    let all = blob::map(0..n)?;
    all.len()
}

// ---- (i) log lines ----

const LOG_N: u64 = 100_000;

#[task]
async fn chatty(n: u64) -> u64 {
    for i in 0..n {
        weft::tracing::info!("line {i} of {n}");
    }
    n
}

#[flow]
async fn chatty_flow(n: u64) -> u64 {
    let n = chatty(n)?;
    n
}

/// Resets the peak resident set size the kernel reports (Linux; elsewhere a no-op).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set size since the last reset, MiB (Linux; elsewhere 0).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

// ---- measuring ----

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Runs `f` once to warm up, then `REPS` times; the median duration.
async fn median<F, Fut>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Duration>,
{
    f().await;
    let mut times = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        times.push(f().await);
    }
    times.sort();
    times[REPS / 2]
}

/// Counts weft runs, failing ones apart.
#[derive(Default)]
struct Tally {
    runs: Cell<u64>,
    failed: Cell<u64>,
}

impl Tally {
    fn check<R>(&self, run: &FlowRun<R>) {
        self.runs.set(self.runs.get() + 1);
        if !run.is_successful() {
            self.failed.set(self.failed.get() + 1);
            eprintln!("flow run '{}' ended {}", run.name, run.state);
        }
    }
    fn add(&self, other: Tally) {
        self.runs.set(self.runs.get() + other.runs.get());
        self.failed.set(self.failed.get() + other.failed.get());
    }
}

/// `n` diamond flow runs one after the other; their wall time.
async fn diamonds(n: u64) -> (Duration, Tally) {
    let tally = Tally::default();
    let t = Instant::now();
    for seed in 0..n {
        let run = diamond::run_with(no_history(), seed).await;
        tally.check(&run);
        assert_eq!(run.result.ok(), Some(diamond_expected(seed)));
    }
    (t.elapsed(), tally)
}

/// `n` hand-written diamonds one after the other; their wall time.
async fn tokio_diamonds(n: u64) -> Duration {
    let t = Instant::now();
    for seed in 0..n {
        assert_eq!(tokio_diamond(seed).await, diamond_expected(seed));
    }
    t.elapsed()
}

struct Row {
    case: &'static str,
    weft: String,
    tokio: String,
    ratio: f64,
    target: &'static str,
    met: bool,
}

impl Row {
    /// A row of two figures in `unit` (µs per run, or ms of wall time) against an upper limit.
    fn limit(
        case: &'static str,
        w: f64,
        b: f64,
        unit: &str,
        digits: usize,
        target: &'static str,
        limit: f64,
    ) -> Row {
        Row {
            case,
            weft: format!("{w:.digits$} {unit}"),
            tokio: format!("{b:.digits$} {unit}"),
            ratio: w / b,
            target,
            met: w <= limit,
        }
    }
}

/// `runs` transactions of the rows one diamond run records, written with rusqlite into weft's
/// schema (created by `Store::connect` in a scratch file); their wall time.
async fn sqlite_floor(runs: u64) -> Duration {
    let dir = scratch_dir("floor");
    let path = dir.join("weft.db");
    drop(
        weft::store::Store::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("a scratch history"),
    );
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -4096")
        .unwrap();
    let at = "2026-11-30T09:14:08.413774Z";
    let t = Instant::now();
    for seed in 0..runs {
        let id = weft::Uuid::now_v7().to_string();
        let tx = conn.transaction().unwrap();
        tx.prepare_cached(
            "INSERT INTO flow_runs (id, flow, flow_version, parameters, state, message, started, \
             ended) VALUES (?1, 'diamond', 'a1b2c3d4e5f6', ?2, 'Completed', \
             'All reference tasks succeeded.', ?3, ?3)",
        )
        .unwrap()
        .execute(rusqlite::params![id, format!("{{\"seed\":{seed}}}"), at])
        .unwrap();
        let mut task = tx
            .prepare_cached(
                "INSERT INTO task_runs (flow_run_id, node, map_index, task, state, attempts, \
                 scheduled, started, ended, lifecycle_in_row) \
                 VALUES (?1, ?2, -1, 'middle', 'Completed', 1, ?3, ?3, ?3, 7)",
            )
            .unwrap();
        for node in 0..10 {
            task.execute(rusqlite::params![id, node, at]).unwrap();
        }
        drop(task);
        let mut change = tx
            .prepare_cached(
                "INSERT INTO state_changes (flow_run_id, seq, name, state, attempt, at) \
                 VALUES (?1, ?2, 'diamond', 'Running', 0, ?3)",
            )
            .unwrap();
        let mut log = tx
            .prepare_cached(
                "INSERT INTO logs (flow_run_id, seq, at, level, message) \
                 VALUES (?1, ?2, ?3, 'INFO', 'Beginning Flow run for ''diamond''')",
            )
            .unwrap();
        for seq in 0..2 {
            change.execute(rusqlite::params![id, seq, at]).unwrap();
            log.execute(rusqlite::params![id, seq, at]).unwrap();
        }
        drop((change, log));
        tx.commit().unwrap();
    }
    let d = t.elapsed();
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    d
}

/// (k): task runs of the 100,000-element map recorded per second into PostgreSQL; None (and a
/// note on stderr) when no server answers.
#[cfg(feature = "postgres")]
async fn postgres_rate(tally: &Tally) -> Option<Row> {
    let url = std::env::var("WEFT_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("weft_bench_{}", std::process::id());
    let store = match weft::store::StoreOptions::new(&url)
        .schema(&schema)
        .connect()
        .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("(k) skipped: {e}");
            return None;
        }
    };
    let d = median(|| async {
        let t = Instant::now();
        let run = map_inc::run_with(RunConfig::new().history(store.clone()), MAP_N).await;
        let d = t.elapsed();
        tally.check(&run);
        assert!(run.history.as_ref().is_some_and(|h| h.is_complete()));
        d
    })
    .await;
    drop(store);
    if let Err(e) = sqlx_drop_schema(&url, &schema).await {
        eprintln!("(k) could not drop schema {schema}: {e}");
    }
    let rate = MAP_N as f64 / d.as_secs_f64();
    Some(Row {
        case: "(k) task runs recorded per second (PostgreSQL, same map)",
        weft: format!("{rate:.0} /s"),
        tokio: "–".to_owned(),
        ratio: f64::NAN,
        target: "≥ 100,000 /s",
        met: rate >= 100_000.0,
    })
}

#[cfg(feature = "postgres")]
async fn sqlx_drop_schema(url: &str, schema: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// Cases (a) to (e) measure the engine alone: run history off.
fn no_history() -> RunConfig {
    RunConfig::new().no_history()
}

fn us(d: Duration, per: u64) -> f64 {
    d.as_secs_f64() * 1e6 / per as f64
}

#[tokio::main]
async fn main() {
    let tally = Tally::default();
    let mut rows = Vec::new();

    // (a)
    reset_peak_rss();
    let weft_a = median(|| async {
        let t = Instant::now();
        let run = map_inc::run_with(no_history(), MAP_N).await;
        let d = t.elapsed();
        tally.check(&run);
        let ys = run.result.expect("map_inc returns its values");
        assert!(ys.iter().copied().eq(1..=MAP_N));
        d
    })
    .await;
    let rss_a = peak_rss_mib();
    let tokio_a = median(|| async {
        let t = Instant::now();
        let handles: Vec<_> = (0..MAP_N).map(|x| tokio::spawn(inc::body(x))).collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        let d = t.elapsed();
        assert_eq!(sum, MAP_N * (MAP_N + 1) / 2);
        d
    })
    .await;
    let (w, b) = (us(weft_a, MAP_N), us(tokio_a, MAP_N));
    rows.push(Row {
        case: "(a) `inc::map(0..100_000)`, µs per task run",
        weft: format!("{w:.3} µs"),
        tokio: format!("{b:.3} µs"),
        ratio: w / b,
        target: "≤ 3 µs and ≤ 3×",
        met: w <= 3.0 && w / b <= 3.0,
    });

    // (b) from the #[tokio::main] body, then from a spawned task.
    let tokio_b = median(|| tokio_diamonds(DIAMOND_RUNS)).await;
    let weft_b = median(|| async {
        let (d, t) = diamonds(DIAMOND_RUNS).await;
        tally.add(t);
        d
    })
    .await;
    let tokio_b_spawned =
        median(|| async { tokio::spawn(tokio_diamonds(DIAMOND_RUNS)).await.unwrap() }).await;
    let weft_b_spawned = median(|| async {
        let (d, t) = tokio::spawn(diamonds(DIAMOND_RUNS)).await.unwrap();
        tally.add(t);
        d
    })
    .await;
    for (case, weft, base) in [
        (
            "(b) 10-task diamond, awaited in main (block_on), µs per flow run",
            weft_b,
            tokio_b,
        ),
        (
            "(b) 10-task diamond, inside `tokio::spawn`, µs per flow run",
            weft_b_spawned,
            tokio_b_spawned,
        ),
    ] {
        let (w, b) = (us(weft, DIAMOND_RUNS), us(base, DIAMOND_RUNS));
        rows.push(Row::limit(case, w, b, "µs", 1, "≤ 50 µs", 50.0));
    }

    // (c)
    let weft_c = median(|| async {
        let t = Instant::now();
        let run = map_nap::run_with(no_history(), NAP_N).await;
        let d = t.elapsed();
        tally.check(&run);
        assert_eq!(run.result.map(|v| v.len()).ok(), Some(NAP_N as usize));
        d
    })
    .await;
    let tokio_c = median(|| async {
        let t = Instant::now();
        let handles: Vec<_> = (0..NAP_N).map(|i| tokio::spawn(nap::body(i))).collect();
        for h in handles {
            h.await.unwrap();
        }
        t.elapsed()
    })
    .await;
    let (w, b) = (weft_c.as_secs_f64() * 1e3, tokio_c.as_secs_f64() * 1e3);
    rows.push(Row::limit(
        "(c) `nap::map(0..10_000)` of 10 ms sleeps, wall time",
        w,
        b,
        "ms",
        1,
        "≤ 150 ms",
        150.0,
    ));

    // (d) every element a cache hit (the warm-up run fills the cache), against reading the same
    // files with std::fs::read.
    let dir = scratch_dir("cache");
    let store = std::sync::Arc::new(weft::results::LocalStore::new(&dir));
    let weft_d = median(|| async {
        let t = Instant::now();
        let run = cached_kilobytes::run_with(no_history().result_store(store.clone()), KB_N).await;
        let d = t.elapsed();
        tally.check(&run);
        d
    })
    .await;
    // After the warm-up every element is a hit.
    let check =
        cached_kilobytes::run_with(RunConfig::new().result_store(store.clone()), KB_N).await;
    let elements: Vec<_> = check
        .runs_of("kilobyte")
        .filter(|r| r.id.map_index.is_some())
        .collect();
    assert_eq!(elements.len(), KB_N as usize);
    assert!(
        elements.iter().all(|r| r.state.kind == StateKind::Cached),
        "every element is a cache hit"
    );
    let files: Vec<_> = walk(&dir);
    assert_eq!(files.len(), KB_N as usize, "one cache entry per input");
    let fs_d = median(|| async {
        let t = Instant::now();
        for f in &files {
            std::hint::black_box(std::fs::read(f).unwrap());
        }
        t.elapsed()
    })
    .await;
    let (w, b) = (us(weft_d, KB_N as u64), us(fs_d, KB_N as u64));
    rows.push(Row::limit(
        "(d) cache hit of a 1 KB value (`cache_for`), µs per task run (baseline: std::fs::read)",
        w,
        b,
        "µs",
        1,
        "≤ 50 µs",
        50.0,
    ));
    let _ = std::fs::remove_dir_all(&dir);

    // (e) 10,000 results of 1 KB checkpointed by `persist`, against std::fs::write of the same
    // bytes to as many files.
    let weft_e = median(|| async {
        let dir = scratch_dir("persist");
        let store = std::sync::Arc::new(weft::results::LocalStore::new(&dir));
        let t = Instant::now();
        let run = persisted_blobs::run_with(no_history().result_store(store), PERSIST_N).await;
        let d = t.elapsed();
        tally.check(&run);
        assert_eq!(walk(&dir).len(), PERSIST_N as usize);
        let _ = std::fs::remove_dir_all(&dir);
        d
    })
    .await;
    let fs_e = median(|| async {
        let dir = scratch_dir("fs");
        std::fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        for i in 0..PERSIST_N {
            std::fs::write(dir.join(format!("{i}.bin")), vec![(i % 251) as u8; 1024]).unwrap();
        }
        let d = t.elapsed();
        let _ = std::fs::remove_dir_all(&dir);
        d
    })
    .await;
    let (w, b) = (weft_e.as_secs_f64() * 1e3, fs_e.as_secs_f64() * 1e3);
    rows.push(Row::limit(
        "(e) `persist` 10,000 results of 1 KB, wall time (baseline: std::fs::write)",
        w,
        b,
        "ms",
        0,
        "≤ 1000 ms",
        1000.0,
    ));

    // (f)–(j): the same cases with the run history on, in its default configuration (the SQLite
    // file under `$WEFT_HOME/.weft/weft.db`, the console log on), each next to its history-off
    // figure measured above in this same process. A run's time includes waiting for its history
    // to be confirmed: every call returns with `run.history` complete.
    let home = scratch_dir("history");
    std::env::set_var("WEFT_HOME", &home);
    let db = home.join(".weft").join("weft.db");
    let mut hrows = Vec::new();
    let recorded = std::cell::Cell::new(0u64);
    let check_history = |run_history: Option<&weft::store::HistoryReport>| {
        let h = run_history.expect("history is on");
        assert!(h.is_complete(), "{h:?}");
    };

    // (f) the diamond, awaited in main.
    let weft_f = median(|| async {
        let t = Instant::now();
        for seed in 0..DIAMOND_RUNS {
            let run = diamond::run_with(RunConfig::new(), seed).await;
            tally.check(&run);
            check_history(run.history.as_ref());
            assert_eq!(run.result.ok(), Some(diamond_expected(seed)));
        }
        t.elapsed()
    })
    .await;
    let (w, b) = (us(weft_f, DIAMOND_RUNS), us(weft_b, DIAMOND_RUNS));
    hrows.push(Row {
        case: "(f) = (b) awaited in main, history on, µs per flow run",
        weft: format!("{w:.1} µs"),
        tokio: format!("{b:.1} µs"),
        ratio: w / b,
        target: "≤ 60 µs and ≤ 2×",
        met: w <= 60.0 && w / b <= 2.0,
    });

    // (f) again with 50 runs in flight at once (each awaited until its history is confirmed):
    // runs that end together share a commit.
    let concurrent = |config: fn() -> RunConfig| async move {
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for seed in 0..DIAMOND_RUNS {
            if set.len() == IN_FLIGHT {
                set.join_next().await.unwrap().unwrap();
            }
            set.spawn(async move {
                let run = diamond::run_with(config(), seed).await;
                assert!(run.is_successful(), "flow run ended {}", run.state);
                assert!(run.history.as_ref().is_none_or(|h| h.is_complete()));
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
        t.elapsed()
    };
    let on = median(|| concurrent(RunConfig::new)).await;
    let off = median(|| concurrent(no_history)).await;
    let (w, b) = (us(on, DIAMOND_RUNS), us(off, DIAMOND_RUNS));
    hrows.push(Row {
        case: "(f) 50 diamond runs in flight at once, µs of wall time per flow run",
        weft: format!("{w:.1} µs"),
        tokio: format!("{b:.1} µs"),
        ratio: w / b,
        target: "–",
        met: true,
    });

    // (f) floor: what SQLite alone takes to commit the rows one diamond run writes (its flow
    // run row, 10 task run rows, 2 state changes, 2 log lines) in one transaction, into weft's
    // schema in a fresh file, with weft's settings: no engine, no queue, no thread handoff.
    let floor_f = median(|| sqlite_floor(DIAMOND_RUNS)).await;
    let (w, b) = (us(floor_f, DIAMOND_RUNS), us(weft_f, DIAMOND_RUNS));
    hrows.push(Row {
        case: "(f) floor: SQLite alone commits one diamond run's rows (vs (f))",
        weft: format!("{w:.1} µs"),
        tokio: format!("{b:.1} µs"),
        ratio: w / b,
        target: "–",
        met: true,
    });

    // (g) the 100,000-element map: µs per task run, task runs recorded per second, peak RSS,
    // and what the file grew by.
    let db_size = || {
        ["", "-wal"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
            .map(|m| m.len())
            .sum::<u64>()
    };
    let size_before_g = db_size();
    reset_peak_rss();
    let weft_g = median(|| async {
        let t = Instant::now();
        let run = map_inc::run_with(RunConfig::new(), MAP_N).await;
        let d = t.elapsed();
        tally.check(&run);
        check_history(run.history.as_ref());
        recorded.set(recorded.get() + MAP_N);
        d
    })
    .await;
    let rss_g = peak_rss_mib();
    let grown_g = db_size().saturating_sub(size_before_g);
    let (w, b) = (us(weft_g, MAP_N), us(weft_a, MAP_N));
    hrows.push(Row {
        case: "(g) = (a) history on, µs per task run",
        weft: format!("{w:.3} µs"),
        tokio: format!("{b:.3} µs"),
        ratio: w / b,
        target: "≤ 3 µs",
        met: w <= 3.0,
    });
    let (w, b) = (
        MAP_N as f64 / weft_g.as_secs_f64(),
        MAP_N as f64 / weft_a.as_secs_f64(),
    );
    hrows.push(Row {
        case: "(g) task runs recorded per second (SQLite)",
        weft: format!("{w:.0} /s"),
        tokio: format!("{b:.0} /s"),
        ratio: b / w,
        target: "≥ 300,000 /s",
        met: w >= 300_000.0,
    });
    hrows.push(Row {
        case: "(g) peak RSS during (g), MiB (history off: during (a))",
        weft: format!("{rss_g:.0} MiB"),
        tokio: format!("{rss_a:.0} MiB"),
        ratio: rss_g / rss_a,
        target: "≤ 150 MiB",
        met: rss_g <= 150.0,
    });

    // (h) 10,000 mapped 10 ms sleeps.
    let weft_h = median(|| async {
        let t = Instant::now();
        let run = map_nap::run_with(RunConfig::new(), NAP_N).await;
        let d = t.elapsed();
        tally.check(&run);
        check_history(run.history.as_ref());
        recorded.set(recorded.get() + NAP_N);
        d
    })
    .await;
    let (w, b) = (weft_h.as_secs_f64() * 1e3, weft_c.as_secs_f64() * 1e3);
    hrows.push(Row {
        case: "(h) = (c) history on, wall time",
        weft: format!("{w:.1} ms"),
        tokio: format!("{b:.1} ms"),
        ratio: w / b,
        target: "≤ 1.5×",
        met: w / b <= 1.5,
    });

    // (i) a task logging 100,000 lines through `tracing` (each a history row; the console
    // shows them too, on stderr).
    let log_off = median(|| async {
        let t = Instant::now();
        let run = chatty_flow::run_with(no_history(), LOG_N).await;
        tally.check(&run);
        t.elapsed()
    })
    .await;
    let log_on = median(|| async {
        let t = Instant::now();
        let run = chatty_flow::run_with(RunConfig::new(), LOG_N).await;
        let d = t.elapsed();
        tally.check(&run);
        check_history(run.history.as_ref());
        d
    })
    .await;
    let (w, b) = (us(log_on, LOG_N), us(log_off, LOG_N));
    hrows.push(Row {
        case: "(i) a task logging 100,000 lines, µs per line",
        weft: format!("{w:.2} µs"),
        tokio: format!("{b:.2} µs"),
        ratio: w / b,
        target: "–",
        met: true,
    });

    // (k) the same map recording into PostgreSQL (built with `--features postgres`, against
    // `WEFT_BENCH_DATABASE_URL`, default the local server's `test` database, in a schema of
    // its own that is dropped afterwards).
    #[cfg(feature = "postgres")]
    if let Some(row) = postgres_rate(&tally).await {
        hrows.push(row);
    }

    // (j) what the SQLite file grew by during (g) (its warm-up and 5 runs: 600,000 task runs),
    // per 1,000,000 task runs.
    {
        let store = weft::store::Store::open_default()
            .await
            .expect("the default store");
        let runs = store
            .runs(&weft::store::RunFilter::new().limit(1))
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
    }
    let bytes = grown_g;
    recorded.set((REPS as u64 + 1) * MAP_N);
    let per_m = bytes as f64 / (1 << 20) as f64 * 1e6 / recorded.get() as f64;
    hrows.push(Row {
        case: "(j) SQLite file growth per 1,000,000 mapped task runs (measured over (g))",
        weft: format!("{per_m:.0} MiB"),
        tokio: "–".to_owned(),
        ratio: f64::NAN,
        target: "≤ 150 MiB",
        met: per_m <= 150.0,
    });

    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    println!("weft engine overhead: median of {REPS} runs after a warm-up, {workers} tokio workers, console log at its default level");
    println!();
    println!("| case | weft | tokio baseline | ratio | target | met? |");
    println!("|---|---:|---:|---:|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2}× | {} | {} |",
            r.case,
            r.weft,
            r.tokio,
            r.ratio,
            r.target,
            if r.met { "yes" } else { "NO" }
        );
    }
    println!();
    println!("run history on (default: SQLite under $WEFT_HOME, console log on) against off, same process:");
    println!();
    println!("| case | history on | history off | ratio | target | met? |");
    println!("|---|---:|---:|---:|---|---|");
    for r in &hrows {
        let ratio = if r.ratio.is_nan() {
            "–".to_owned()
        } else {
            format!("{:.2}×", r.ratio)
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.case,
            r.weft,
            r.tokio,
            ratio,
            r.target,
            if r.met { "yes" } else { "NO" }
        );
    }
    println!();
    println!("command: cargo run --release --example bench   (add 2>/dev/null to hide the log)");

    let (runs, failed) = (tally.runs.get(), tally.failed.get());
    assert_eq!(
        failed, 0,
        "{failed} of {runs} weft flow runs did not succeed"
    );
    println!("all {runs} weft flow runs succeeded");
    let _ = std::fs::remove_dir_all(&home);
}
