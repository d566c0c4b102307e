//! What a flow body may contain and how values move: borrows, clones, glue, early exits, the
//! compile-time graph, and tasks called outside flows.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use weft::prelude::*;
use weft::{EdgeKind, NodeKind};

struct Db {
    rows: std::sync::Mutex<Vec<String>>,
}

#[task]
async fn create_table(db: &Db) -> usize {
    db.rows.lock().unwrap().clear();
    0
}

#[task(retries = 1)]
async fn extract(size: u32) -> Result<Vec<String>, String> {
    Ok((0..size).map(|i| format!("complaint {i}")).collect())
}

#[task]
fn transform(raw: Vec<String>) -> Vec<String> {
    raw.into_iter().map(|r| r.to_uppercase()).collect()
}

#[task]
async fn load(rows: Vec<String>, db: &Db) -> usize {
    let mut t = db.rows.lock().unwrap();
    t.extend(rows);
    t.len()
}

#[task]
async fn count(rows: &[String]) -> usize {
    rows.len()
}

#[task]
async fn first(rows: Vec<String>) -> Option<String> {
    rows.into_iter().next()
}

/// Seed 000's ETL shape: the table is created concurrently with extract; load waits for it.
#[flow(name = "etl")]
async fn etl(
    size: u32,
    db: Arc<Db>,
) -> Result<(usize, usize, Option<String>, Vec<String>), String> {
    let table = create_table(&db);
    let raw = extract(size)?;
    let rows = transform(raw)?;
    let n = count(&rows)?; // borrows the output
    let head = first(rows.clone())?; // takes a copy
    #[wait_for(table)]
    let loaded = load(rows.clone(), &db)?;
    if loaded == 0 && size > 0 {
        return Err("nothing loaded".into());
    }
    Ok((loaded, n, head, rows)) // the body takes `rows` once its readers are done
}

#[tokio::test]
async fn etl_moves_borrows_and_orders_as_written() {
    let db = Arc::new(Db {
        rows: Default::default(),
    });
    let run = etl(3, db.clone()).await;
    assert!(run.is_successful(), "{}", run.state);
    let (loaded, n, head, rows) = run.result.unwrap().unwrap();
    assert_eq!((loaded, n), (3, 3));
    assert_eq!(head.as_deref(), Some("COMPLAINT 0"));
    assert_eq!(rows.len(), 3);
    assert_eq!(db.rows.lock().unwrap().len(), 3);
    assert_eq!(run.task_runs.len(), 6);
    assert!(run.task_runs.iter().all(|r| r.attempts == 1));
}

#[tokio::test]
async fn the_graph_is_known_without_running() {
    let g = etl::graph();
    assert_eq!(g.name, "etl");
    let tasks: Vec<&str> = g.task_nodes().map(|n| n.task.as_ref()).collect();
    assert_eq!(
        tasks,
        [
            "create_table",
            "extract",
            "transform",
            "count",
            "first",
            "load"
        ]
    );
    let edge = |from: &str, to: &str| {
        let (f, t) = (g.node(from).unwrap().id, g.node(to).unwrap().id);
        g.edges
            .iter()
            .find(|e| e.from == f && e.to == t)
            .map(|e| e.kind)
    };
    assert_eq!(edge("extract", "transform"), Some(EdgeKind::Data));
    assert_eq!(edge("transform", "count"), Some(EdgeKind::Data));
    assert_eq!(edge("create_table", "load"), Some(EdgeKind::Order));
    assert_eq!(edge("extract", "load"), None);
    assert!(g.topo_order().is_ok());
    let node = g.node("raw").unwrap();
    assert_eq!(node.kind, NodeKind::Task);
    assert!(
        node.statement.contains("extract(size)?"),
        "{}",
        node.statement
    );
    assert!(node.line > 0);
    // The graph is data: it serializes.
    let json = serde_json::to_string(g).unwrap();
    let back: weft::FlowGraph = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, g);
    let dot = g.to_dot();
    assert!(
        dot.contains("\"create_table\" -> \"load\" [style=dashed, label=\"table\"]"),
        "{dot}"
    );
    let mermaid = g.to_mermaid();
    assert!(mermaid.starts_with("flowchart TD"));
}

#[tokio::test]
async fn a_failed_run_draws_its_states() {
    let run = glue_errors("x".into()).await;
    let dot = run.to_dot();
    assert!(
        dot.contains("fillcolor=\"#28a745\""),
        "completed nodes are green: {dot}"
    );
}

// ---------- glue: `?`, return, plain code

#[task]
async fn parse_size(s: String) -> Result<u32, std::num::ParseIntError> {
    s.parse()
}

#[task]
async fn double(x: u32) -> u32 {
    x * 2
}

#[flow]
async fn glue_errors(input: String) -> Result<u32, String> {
    let parsed = parse_size(input.clone());
    let doubled = double(7)?;
    let value = parsed.map_err(|e| format!("bad input {input:?}: {e}"))?;
    Ok(value + doubled)
}

#[tokio::test]
async fn results_without_question_mark_reach_glue_and_glue_question_mark_returns() {
    let ok = glue_errors("5".into()).await;
    assert_eq!(ok.result, Ok(Ok(19)));
    let bad = glue_errors("x".into()).await;
    let err = bad.result.clone().unwrap().unwrap_err();
    assert!(
        err.starts_with("bad input \"x\": task 'parse_size' ended Failed"),
        "{err}"
    );
    assert_eq!(bad.task("double").unwrap().state.kind, StateKind::Completed);
}

static LATE: AtomicU32 = AtomicU32::new(0);

#[task]
async fn late() -> u32 {
    LATE.fetch_add(1, Ordering::SeqCst);
    1
}

#[flow]
async fn early_exit(stop: bool) -> u32 {
    let a = double(1)?;
    if stop {
        return a;
    }
    let b = late()?;
    a + b
}

#[tokio::test]
async fn tasks_written_after_an_early_return_never_start() {
    let before = LATE.load(Ordering::SeqCst);
    let run = early_exit(true).await;
    assert_eq!(run.result, Ok(2));
    assert_eq!(LATE.load(Ordering::SeqCst), before, "late() did not run");
    assert_eq!(run.task("late").unwrap().state.kind, StateKind::Skipped);
    assert!(
        run.is_successful(),
        "returning early fails nothing: {}",
        run.state
    );
    let run = early_exit(false).await;
    assert_eq!(run.result, Ok(3));
}

#[task]
async fn shout(s: String) -> String {
    s.to_uppercase()
}

#[flow]
async fn mixed(names: Vec<String>) -> String {
    let joined = names.join(" and ");
    let loud = shout(joined)?;
    let exclaimed = format!("{loud}!");
    let again = shout(exclaimed.clone())?;
    again
}

#[tokio::test]
async fn glue_locals_feed_tasks_in_written_order() {
    let run = mixed(vec!["ann".into(), "bob".into()]).await;
    assert_eq!(run.result.unwrap(), "ANN AND BOB!");
    let g = mixed::graph();
    assert_eq!(
        g.nodes.iter().filter(|n| n.kind == NodeKind::Glue).count(),
        3
    );
    let (loud, again) = (g.node("loud").unwrap().id, g.node("again").unwrap().id);
    assert!(
        g.edges
            .iter()
            .any(|e| e.from == loud && e.to == again && e.kind == EdgeKind::Glue),
        "the value reaches `again` through glue"
    );
}

#[flow]
async fn tail_call(x: u32) -> u32 {
    double(x)?
}

#[tokio::test]
async fn a_task_call_can_be_the_body_tail() {
    assert_eq!(tail_call(4).await.result, Ok(8));
}

#[flow]
async fn no_tasks(x: u32) -> u32 {
    x + 1
}

#[tokio::test]
async fn a_flow_without_tasks_completes() {
    let run = no_tasks(1).await;
    assert_eq!(run.result, Ok(2));
    assert!(run.is_successful());
    assert!(run.task_runs.is_empty());
}

// ---------- tasks outside flows

#[task]
fn blocking_add(a: u32, b: u32) -> u32 {
    a + b
}

#[tokio::test]
async fn tasks_run_orchestrated_outside_flows_and_bodies_stay_callable() {
    let run = blocking_add(2, 3).await;
    assert_eq!((run.state.kind, run.attempts), (StateKind::Completed, 1));
    assert_eq!(run.result.unwrap(), 5);
    assert_eq!(blocking_add::body(2, 3), 5);
    let db = Db {
        rows: Default::default(),
    };
    let run = load(vec!["a".into()], &db).run().await;
    assert_eq!(run.result.unwrap(), 1);
    let runs = double::map([1, 2, 3]).await;
    let values: Vec<u32> = runs.into_iter().map(|r| r.result.unwrap()).collect();
    assert_eq!(values, [2, 4, 6]);
}

#[test]
fn calling_a_flow_outside_tokio_says_how_to_fix_it() {
    let err = std::panic::catch_unwind(|| {
        let _ = futures_lite_block_on(no_tasks(1));
    })
    .unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("outside a tokio runtime"), "{msg}");
}

/// A minimal executor, to poll a future without tokio.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

// ---------- the body reads as Rust (cases found in review)

static DELETED: AtomicU32 = AtomicU32::new(0);

#[task]
async fn find_user(id: u32) -> Result<String, String> {
    if id == 0 {
        Err("no such user".into())
    } else {
        Ok(format!("user {id}"))
    }
}

#[task]
async fn delete_all() {
    DELETED.fetch_add(1, Ordering::SeqCst);
}

#[flow]
async fn guarded(id: u32) -> String {
    let user = find_user(id)?;
    println!("found {user}");
    delete_all();
    user
}

#[tokio::test]
async fn a_read_of_a_missing_value_stops_the_body_before_later_tasks() {
    let before = DELETED.load(Ordering::SeqCst);
    let run = guarded(0).await;
    assert!(matches!(
        run.result,
        Err(FlowError::Upstream {
            binding: "user",
            ..
        })
    ));
    assert_eq!(
        DELETED.load(Ordering::SeqCst),
        before,
        "delete_all never started"
    );
    assert_eq!(
        run.task("delete_all").unwrap().state.kind,
        StateKind::NotRun
    );
}

#[task]
async fn send(tx: tokio::sync::mpsc::Sender<u32>) {
    tx.send(42).await.unwrap();
}

#[flow]
async fn awaits_in_macros() -> u32 {
    let (tx, rx) = { tokio::sync::mpsc::channel(1) };
    let mut rx = rx;
    send(tx);
    let v = tokio::select! { v = rx.recv() => v.unwrap() };
    v
}

#[tokio::test]
async fn awaiting_inside_a_macro_keeps_nodes_running() {
    let run = tokio::time::timeout(std::time::Duration::from_secs(10), awaits_in_macros())
        .await
        .expect("no hang");
    assert_eq!(run.result, Ok(42));
}

#[task]
async fn len_of(s: &str) -> usize {
    s.len()
}

#[task]
async fn nums() -> Vec<u32> {
    vec![1, 2, 3]
}

#[task]
async fn words() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

#[task]
async fn join(w: Vec<String>) -> String {
    w.join(",")
}

#[task]
async fn add(x: usize) -> usize {
    x + 1
}

#[flow]
async fn plain_rust(
    name: String,
) -> Result<(usize, usize, Vec<u32>, String, usize, u32), std::num::ParseIntError> {
    let cfg = format!("{name}.toml");
    let a = len_of(&cfg)?;
    let b = len_of(&cfg)?; // lent twice
    println!("still mine: {cfg}"); // and still the body's
    let mut v = nums()?;
    v.push(4);
    let w = words()?;
    let j = join(w.into_iter().map(|s| s + "!").collect())?;
    let n = add(a + name.len())?;
    println!("{name}");
    let m = u32::max(1, 2);
    println!("{}", "7".parse::<u32>()?);
    Ok((a, b, v, j, n, m))
}

#[tokio::test]
async fn lending_mutating_and_methods_work_as_in_plain_rust() {
    let run = plain_rust("app".into()).await;
    assert!(run.is_successful(), "{}", run.state);
    let (a, b, v, j, n, m) = run.result.unwrap().unwrap();
    assert_eq!((a, b), (8, 8));
    assert_eq!(v, [1, 2, 3, 4]);
    assert_eq!(j, "a!,b!");
    assert_eq!(n, 12);
    assert_eq!(m, 2);
}

#[flow]
async fn ends_in_return(x: u32) -> u32 {
    let a = double(x)?;
    return a + 1;
}

#[tokio::test]
async fn a_body_may_end_in_return() {
    assert_eq!(ends_in_return(2).await.result, Ok(5));
}

static STEP: AtomicU32 = AtomicU32::new(0);

#[task]
async fn show(x: u32) -> u32 {
    x
}

#[flow]
async fn effects_in_order() -> u32 {
    STEP.store(5, Ordering::SeqCst);
    let a = show(STEP.load(Ordering::SeqCst))?;
    a
}

#[tokio::test]
async fn arguments_with_effects_see_the_glue_before_them() {
    assert_eq!(effects_in_order().await.result, Ok(5));
}

#[task]
async fn boom(i: u32) -> Result<u32, String> {
    if i == 1 {
        Err(format!("boom {i}"))
    } else {
        Ok(i)
    }
}

#[flow]
async fn loops_over_tasks(n: u32) -> u32 {
    let mut total = 0;
    for i in 0..n {
        if let Ok(v) = boom(i).await.result {
            total += v;
        }
    }
    total
}

#[tokio::test]
async fn task_runs_awaited_in_glue_belong_to_the_flow_run() {
    let run = loops_over_tasks(3).await;
    assert_eq!(run.result, Ok(2));
    assert_eq!(
        run.runs_of("boom").count(),
        3,
        "in the report, though not in the graph"
    );
    assert!(run.task_runs.iter().all(|r| r.id.flow_run_id == run.id));
    assert_eq!(run.state.kind, StateKind::Failed, "their failures count");
    assert!(loops_over_tasks::graph().task_nodes().next().is_none());
}

#[task]
async fn maybe_skip(skip: bool) -> Result<u32, Signal> {
    if skip {
        Err(Signal::skip("nothing new"))
    } else {
        Ok(1)
    }
}

#[flow]
async fn stops_on_a_skip(skip: bool) -> u32 {
    let a = maybe_skip(skip)?;
    let b = a + 1;
    let c = double(b)?;
    c
}

#[tokio::test]
async fn a_body_stopped_by_a_skip_skips_the_rest_and_fails_nothing() {
    let run = stops_on_a_skip(true).await;
    assert_eq!(run.task("double").unwrap().state.kind, StateKind::Skipped);
    // No value and no failure: the run is Skipped, as its state and result both say.
    assert_eq!(run.state.kind, StateKind::Skipped, "{}", run.state);
    assert!(!run.state.is_failed());
    assert!(run.result.is_err());
    assert_eq!(stops_on_a_skip(false).await.result, Ok(4));
}

#[task]
fn plus_one(x: u64) -> u64 {
    x + 1
}

#[task]
async fn total_len(xs: &[u64]) -> usize {
    xs.len()
}

#[task]
fn range_to(n: u64) -> Vec<u64> {
    (0..n).collect()
}

/// More statements than the driver keeps handles per local (32): handles in three tuples, a
/// borrowed output, and an output read without `?` in the last one.
#[flow]
async fn long_chain(start: u64) -> (u64, usize, bool) {
    let xs = range_to(start)?;
    let n = total_len(&xs)?;
    let v0 = plus_one(start)?;
    let v1 = plus_one(v0)?;
    let v2 = plus_one(v1)?;
    let v3 = plus_one(v2)?;
    let v4 = plus_one(v3)?;
    let v5 = plus_one(v4)?;
    let v6 = plus_one(v5)?;
    let v7 = plus_one(v6)?;
    let v8 = plus_one(v7)?;
    let v9 = plus_one(v8)?;
    let v10 = plus_one(v9)?;
    let v11 = plus_one(v10)?;
    let v12 = plus_one(v11)?;
    let v13 = plus_one(v12)?;
    let v14 = plus_one(v13)?;
    let v15 = plus_one(v14)?;
    let v16 = plus_one(v15)?;
    let v17 = plus_one(v16)?;
    let v18 = plus_one(v17)?;
    let v19 = plus_one(v18)?;
    let v20 = plus_one(v19)?;
    let v21 = plus_one(v20)?;
    let v22 = plus_one(v21)?;
    let v23 = plus_one(v22)?;
    let v24 = plus_one(v23)?;
    let v25 = plus_one(v24)?;
    let v26 = plus_one(v25)?;
    let v27 = plus_one(v26)?;
    let v28 = plus_one(v27)?;
    let v29 = plus_one(v28)?;
    let v30 = plus_one(v29)?;
    let v31 = plus_one(v30)?;
    let v32 = plus_one(v31)?;
    let v33 = plus_one(v32)?;
    let v34 = plus_one(v33)?;
    let v35 = plus_one(v34)?;
    let v36 = plus_one(v35)?;
    let v37 = plus_one(v36)?;
    let v38 = plus_one(v37)?;
    let v39 = plus_one(v38)?;
    let v40 = plus_one(v39)?;
    let v41 = plus_one(v40)?;
    let v42 = plus_one(v41)?;
    let v43 = plus_one(v42)?;
    let v44 = plus_one(v43)?;
    let v45 = plus_one(v44)?;
    let v46 = plus_one(v45)?;
    let v47 = plus_one(v46)?;
    let v48 = plus_one(v47)?;
    let v49 = plus_one(v48)?;
    let v50 = plus_one(v49)?;
    let v51 = plus_one(v50)?;
    let v52 = plus_one(v51)?;
    let v53 = plus_one(v52)?;
    let v54 = plus_one(v53)?;
    let v55 = plus_one(v54)?;
    let v56 = plus_one(v55)?;
    let v57 = plus_one(v56)?;
    let v58 = plus_one(v57)?;
    let v59 = plus_one(v58)?;
    let v60 = plus_one(v59)?;
    let v61 = plus_one(v60)?;
    let v62 = plus_one(v61)?;
    let last = plus_one(v62);
    let same = xs.len() == n;
    (last.unwrap_or(0), n, same)
}

#[tokio::test]
async fn a_flow_longer_than_a_handle_tuple_runs_every_statement() {
    let run = long_chain::run_with(RunConfig::new().no_history(), 5).await;
    assert_eq!(run.result.unwrap(), (5 + 64, 5, true));
    assert_eq!(run.task_runs.len(), 66);
    // 66 task statements, the glue `let same` and the tail.
    assert_eq!(long_chain::graph().nodes.len(), 68);
}
