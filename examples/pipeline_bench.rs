//! Overhead of running a pipeline defined as data (a TOML file of shell nodes) against spawning
//! the same processes from a bare tokio loop, and the time to check large files.
//!
//! ```text
//! cargo run --release --example pipeline_bench 2>/dev/null
//! ```
//!
//! The default console subscriber stays on at its default level (INFO), as in a real program; it
//! writes 2 lines per node to stderr, so `2>/dev/null` keeps the terminal quiet. The table goes
//! to stdout. Every case runs once to warm up, then `REPS` times; the table shows medians. Each
//! rep runs weft and every baseline one after the other, so that load from the rest of the
//! machine falls on all of them alike.
//!
//! The pipeline is generated in code: 1,000 nodes each running `command = ["true"]` (an argv, no
//! shell), a layered DAG of 10 layers of 100 nodes, each node after 2 nodes of the previous layer.
//!
//! - check: `Pipeline::from_toml` of its text (parse, schema, edges, cycle check, hash), in ms.
//! - check of large files, which must stay linear: a chain of 40,000 nodes (each `after` the one
//!   before; it took 58 s when the cycle search and line:column lookups were quadratic), and a
//!   node with 40,000 unknown keys (40,000 problems, each with its line:column; 20 s before).
//! - run: its wall time with `workers = 2` and with `workers = 8`, history off, so the engine
//!   and the processes alone are measured.
//! - baseline: 1,000 `true` processes spawned from a plain tokio loop, one `tokio::spawn` each,
//!   bounded by a `tokio::sync::Semaphore` of as many permits as workers, each process started
//!   as weft starts a node (stdin from `/dev/null`, stdout and stderr piped and read to the end,
//!   its own process group, killed on drop) and awaited. All 1,000 are released at once, with no
//!   layer order: that is the fastest any schedule of this DAG can be at that concurrency, a
//!   lower bound for weft's wall time, so the comparison can only flatter the baseline. With 100
//!   nodes a layer and at most 8 at once the DAG hardly constrains the order (a free slot nearly
//!   always has a ready node), so the difference is the engine's cost, not the graph's.
//! - the overhead per node beyond the process spawn: (weft − baseline) / 1,000, in µs.
//!
//! Two more baselines are printed under the table, to tell where the overhead goes: the same
//! 1,000 processes driven from ONE tokio task (how a pipeline run started its processes before
//! each node's process got a tokio task of its own: their spawns shared one thread), and a
//! layered one (a layer starts once the
//! previous one finished, a wait at every layer boundary that weft does not have).
//!
//! It asserts that every weft run Completed with every node exiting 0 and that every baseline
//! process exited 0, so a broken engine cannot report good numbers.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use weft::pipeline::params::resolve;
use weft::pipeline::{ParamValues, Pipeline};
use weft::prelude::*;

const REPS: usize = 5;
const LAYERS: usize = 10;
const WIDTH: usize = 100;
const NODES: usize = LAYERS * WIDTH;

/// The pipeline's text: `LAYERS` layers of `WIDTH` nodes running `true`, node `i` of a layer
/// after nodes `i` and `i + 1` (wrapping) of the previous one.
fn pipeline_text(workers: usize) -> String {
    let mut t = String::with_capacity(NODES * 80);
    t.push_str(&format!(
        "name = \"bench_{LAYERS}x{WIDTH}_w{workers}\"\n\
         description = \"{NODES} nodes running `true`, {LAYERS} layers of {WIDTH}\"\n\
         workers = {workers}\n\
         fail_fast = true\n\
         timeout = \"60s\"\n"
    ));
    for layer in 0..LAYERS {
        for i in 0..WIDTH {
            t.push_str(&format!(
                "\n[[nodes]]\nid = \"n{layer}_{i}\"\ncommand = [\"true\"]\n"
            ));
            if layer > 0 {
                let (a, b) = (i, (i + 1) % WIDTH);
                t.push_str(&format!(
                    "after = [\"n{p}_{a}\", \"n{p}_{b}\"]\n",
                    p = layer - 1
                ));
            }
        }
    }
    t
}

/// Nodes of the chain, and unknown keys of the other large file.
const LARGE: usize = 40_000;

/// A chain of `n` nodes, each after the one before.
fn chain_text(n: usize) -> String {
    let mut t = String::with_capacity(n * 60);
    t.push_str("name = \"chain\"\n");
    for i in 0..n {
        t.push_str(&format!(
            "\n[[nodes]]\nid = \"n{i}\"\ncommand = [\"true\"]\n"
        ));
        if i > 0 {
            t.push_str(&format!("after = [\"n{}\"]\n", i - 1));
        }
    }
    t
}

/// One node with `n` unknown keys.
fn unknown_keys_text(n: usize) -> String {
    let mut t = String::with_capacity(n * 16);
    t.push_str("name = \"keys\"\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\n");
    for i in 0..n {
        t.push_str(&format!("unknown_{i} = 1\n"));
    }
    t
}

/// The median time of `REPS` checks of `text` (after a warm-up), each checked by `verify`.
fn time_check(
    text: &str,
    verify: impl Fn(Result<Pipeline, weft::pipeline::CheckError>),
) -> Duration {
    let mut times = Vec::new();
    for rep in 0..=REPS {
        let t = Instant::now();
        let checked = Pipeline::from_toml(text, "large.toml");
        let d = t.elapsed();
        verify(checked);
        if rep > 0 {
            times.push(d);
        }
    }
    median(times)
}

/// The median of `times`.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// One pipeline run's wall time, after checking that it Completed with every node exiting 0.
async fn weft_run(p: &Pipeline, values: &ParamValues, runs: &Cell<u64>) -> Duration {
    let t = Instant::now();
    let run = p.run_with(RunConfig::new().no_history(), values).await;
    let d = t.elapsed();
    runs.set(runs.get() + 1);
    assert_eq!(
        run.state.kind,
        StateKind::Completed,
        "pipeline run '{}' ended {}",
        run.name,
        run.state
    );
    let outputs = run.result.expect("a Completed run has its outputs");
    assert_eq!(outputs.len(), NODES);
    for o in &outputs {
        let outcome = o
            .outcome
            .as_ref()
            .unwrap_or_else(|| panic!("node {} never started", o.id));
        assert!(
            outcome.success() && outcome.exit_code == Some(0),
            "node {} ended {outcome:?}",
            o.id
        );
    }
    d
}

/// Spawns `true` as weft spawns a node and reads both pipes to the end; its exit code.
async fn spawn_true() -> Option<i32> {
    let out = tokio::process::Command::new("true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("`true` starts")
        .wait_with_output()
        .await
        .expect("`true` is awaited");
    out.status.code()
}

/// `n` processes, at most `workers` at once, all released together, one `tokio::spawn` each;
/// wall time.
async fn baseline_flat(n: usize, workers: usize) -> Duration {
    let t = Instant::now();
    let sem = Arc::new(Semaphore::new(workers));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let sem = sem.clone();
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore open");
                spawn_true().await
            })
        })
        .collect();
    let mut ok = 0;
    for h in handles {
        let code = h.await.expect("baseline task");
        assert_eq!(code, Some(0), "a baseline `true` failed");
        ok += 1;
    }
    let d = t.elapsed();
    assert_eq!(ok, n);
    d
}

/// `LAYERS` layers of `WIDTH` processes, at most `workers` at once, a layer released once the
/// previous one finished; wall time.
async fn baseline_layered(workers: usize) -> Duration {
    let t = Instant::now();
    let sem = Arc::new(Semaphore::new(workers));
    for _ in 0..LAYERS {
        let handles: Vec<_> = (0..WIDTH)
            .map(|_| {
                let sem = sem.clone();
                tokio::spawn(async move {
                    let _permit = sem.acquire_owned().await.expect("semaphore open");
                    spawn_true().await
                })
            })
            .collect();
        for h in handles {
            assert_eq!(
                h.await.expect("baseline task"),
                Some(0),
                "a baseline `true` failed"
            );
        }
    }
    t.elapsed()
}

type Worker = Pin<Box<dyn Future<Output = usize> + Send>>;

/// `n` processes, `workers` at a time, all driven from ONE spawned tokio task (`workers` loops
/// joined by hand), as a pipeline's driver polls every node of a run from its one task; wall
/// time. Not a baseline of the table: it tells how much of the overhead is that design.
async fn baseline_one_task(n: usize, workers: usize) -> Duration {
    let next = Arc::new(AtomicUsize::new(0));
    let mut loops: Vec<Option<Worker>> = (0..workers)
        .map(|_| {
            let next = next.clone();
            let w: Worker = Box::pin(async move {
                let mut ok = 0;
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    assert_eq!(spawn_true().await, Some(0), "a baseline `true` failed");
                    ok += 1;
                }
                ok
            });
            Some(w)
        })
        .collect();
    tokio::spawn(async move {
        let t = Instant::now();
        let mut ok = 0;
        std::future::poll_fn(|cx| {
            for slot in loops.iter_mut() {
                if let Some(w) = slot {
                    if let Poll::Ready(k) = w.as_mut().poll(cx) {
                        ok += k;
                        *slot = None;
                    }
                }
            }
            if loops.iter().all(Option::is_none) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        assert_eq!(ok, n);
        t.elapsed()
    })
    .await
    .expect("the one-task baseline")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Medians of one workers count.
struct Measured {
    workers: usize,
    weft: Duration,
    flat: Duration,
    one_task: Duration,
    layered: Duration,
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let weft_runs = Cell::new(0u64);

    // The check, on the workers = 2 text (the other differs in one digit and the name).
    let text2 = pipeline_text(2);
    let mut checks = Vec::new();
    for rep in 0..=REPS {
        let t = Instant::now();
        let p = Pipeline::from_toml(&text2, "bench.toml").expect("the generated pipeline checks");
        let d = t.elapsed();
        assert_eq!(p.nodes.len(), NODES);
        std::hint::black_box(p);
        if rep > 0 {
            checks.push(d);
        }
    }
    let check = median(checks);
    let chain = chain_text(LARGE);
    let check_chain = time_check(&chain, |p| {
        let p = p.expect("the chain checks");
        assert_eq!(p.nodes.len(), LARGE);
        assert_eq!(p.nodes[LARGE - 1].upstream, [LARGE - 2]);
    });
    let keys = unknown_keys_text(LARGE);
    let check_keys = time_check(&keys, |p| {
        let e = p.expect_err("unknown keys are refused");
        assert_eq!(e.problems.len(), LARGE);
        assert_eq!(e.problems[LARGE - 1].line, LARGE + 4);
    });

    // Each rep runs weft and every baseline in turn, so that noise from the rest of the machine
    // falls on all of them alike; rep 0 is the warm-up.
    let mut measured = Vec::new();
    for workers in [2, 8] {
        let p = Pipeline::from_toml(&pipeline_text(workers), "bench.toml")
            .expect("the generated pipeline checks");
        assert_eq!(p.workers, workers);
        assert!(p.nodes[WIDTH..].iter().all(|n| n.upstream.len() == 2));
        let values = resolve(&p.params, &[], None).expect("no parameters to resolve");
        let (mut weft, mut flat, mut one_task, mut layered) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for rep in 0..=REPS {
            let w = weft_run(&p, &values, &weft_runs).await;
            let f = baseline_flat(NODES, workers).await;
            let o = baseline_one_task(NODES, workers).await;
            let l = baseline_layered(workers).await;
            if rep > 0 {
                weft.push(w);
                flat.push(f);
                one_task.push(o);
                layered.push(l);
            }
        }
        measured.push(Measured {
            workers,
            weft: median(weft),
            flat: median(flat),
            one_task: median(one_task),
            layered: median(layered),
        });
    }

    let tokio_workers = tokio::runtime::Handle::current().metrics().num_workers();
    println!(
        "weft pipeline overhead: {NODES} nodes running `true`, {LAYERS} layers × {WIDTH}, each \
         node after 2 of the previous layer; median of {REPS} runs after a warm-up, \
         {tokio_workers} tokio workers, history off, console log at its default level"
    );
    println!();
    println!("| case | weft | baseline (bare tokio) | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| check: `Pipeline::from_toml` of {NODES} nodes ({} KB of TOML) | {:.2} ms | – | – |",
        text2.len() / 1024,
        ms(check)
    );
    println!(
        "| check: a chain of {LARGE} nodes ({} KB) | {:.0} ms | – | – |",
        chain.len() / 1024,
        ms(check_chain)
    );
    println!(
        "| check: {LARGE} unknown keys, {LARGE} problems with line:column ({} KB) | {:.0} ms | – | – |",
        keys.len() / 1024,
        ms(check_keys)
    );
    for m in &measured {
        println!(
            "| run: workers = {}, wall time (baseline: {NODES} × `tokio::spawn`, semaphore of {}) \
             | {:.0} ms | {:.0} ms | {:.2}× |",
            m.workers,
            m.workers,
            ms(m.weft),
            ms(m.flat),
            m.weft.as_secs_f64() / m.flat.as_secs_f64()
        );
    }
    println!();
    let per_node =
        |a: Duration, b: Duration| (a.as_secs_f64() - b.as_secs_f64()) * 1e6 / NODES as f64;
    for m in &measured {
        println!(
            "workers = {}: run overhead per node beyond the process spawn: {:.0} µs \
             ((weft − baseline) / {NODES}; the baseline takes {:.0} µs of wall time per process)",
            m.workers,
            per_node(m.weft, m.flat),
            m.flat.as_secs_f64() * 1e6 / NODES as f64
        );
    }
    println!();
    println!("other baselines, same reps:");
    for m in &measured {
        println!(
            "- workers = {}: all processes driven from one task (how pipeline runs started processes before each got its own task): \
             {:.0} ms, so {:.0} µs/node of the overhead is that single task and {:.0} µs/node the \
             engine; layered (a layer starts after the previous one finished): {:.0} ms",
            m.workers,
            ms(m.one_task),
            per_node(m.one_task, m.flat),
            per_node(m.weft, m.one_task),
            ms(m.layered)
        );
    }
    println!();
    println!(
        "command: cargo run --release --example pipeline_bench   (add 2>/dev/null to hide the log)"
    );
    println!(
        "all {} weft pipeline runs Completed, every node and every baseline process exited 0 \
         (total {:.0} s)",
        weft_runs.get(),
        started.elapsed().as_secs_f64()
    );
}
