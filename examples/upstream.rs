//! Eight tasks ordered by Prefect's `upstream_tasks`, without passing data.
//!
//! ```python
//! t3 = task3(upstream_tasks=[t1, t2])
//! t7 = task7(upstream_tasks=[t2, t6])
//! ```
//!
//! becomes `#[wait_for(t1, t2)] let t3 = task3();`. Look for: every task ends `Completed`, each
//! "Task N" line is printed after those of its upstream tasks, the graph has exactly the original's 9
//! (dashed, "order") edges, and the run's Mermaid drawing colors every node green
//! (Prefect's `flow.visualize(flow_state)`).
//!
//! Run with `cargo run --example upstream`.
use weft::prelude::*;

#[task]
fn task1() -> String {
    println!("Task 1");
    "Task 1".to_owned()
}

#[task]
fn task2() -> String {
    println!("Task 2");
    "Task 2".to_owned()
}

#[task]
fn task3() -> String {
    println!("Task 3");
    "Task 3".to_owned()
}

#[task]
fn task4() {
    println!("Task 4");
}

#[task]
fn task5() {
    println!("Task 5");
}

#[task]
fn task6() {
    println!("Task 6");
}

#[task]
fn task7() {
    println!("Task 7");
}

#[task]
fn task8() {
    println!("Task 8");
}

#[flow(name = "this is my first flow")]
async fn my_flow() {
    let t1 = task1();
    let t2 = task2();
    #[wait_for(t1, t2)]
    let t3 = task3();
    #[wait_for(t3)]
    let t4 = task4();
    #[wait_for(t4)]
    let t5 = task5();
    #[wait_for(t4)]
    let t6 = task6();
    #[wait_for(t2, t6)]
    let t7 = task7();
    #[wait_for(t2, t3)]
    let t8 = task8();
}

const TASKS: [&str; 8] = [
    "task1", "task2", "task3", "task4", "task5", "task6", "task7", "task8",
];

/// The original flow's `upstream_tasks`, as (upstream, downstream).
const UPSTREAM_EDGES: [(&str, &str); 9] = [
    ("task1", "task3"),
    ("task2", "task3"),
    ("task3", "task4"),
    ("task4", "task5"),
    ("task4", "task6"),
    ("task2", "task7"),
    ("task6", "task7"),
    ("task2", "task8"),
    ("task3", "task8"),
];

#[tokio::main]
async fn main() {
    let run = my_flow().await;
    println!("\nflow state: {}", run.state);

    // print(flow_state.result): one line per task, in the original's order.
    for name in TASKS {
        let report = run.task(name).expect("every task has a run");
        println!("{name}: {}", report.state);
        assert_eq!(report.state.kind, StateKind::Completed, "{name}");
    }
    assert!(run.is_successful(), "{}", run.state);

    // The compile-time graph has exactly the original's edges, all ordering-only.
    let graph = my_flow::graph();
    let name_of = |id: u32| graph.nodes[id as usize].task.as_ref();
    let mut got: Vec<(&str, &str)> = graph
        .edges
        .iter()
        .map(|e| {
            assert_eq!(
                e.kind,
                weft::EdgeKind::Order,
                "wait_for edges carry no data"
            );
            (name_of(e.from), name_of(e.to))
        })
        .collect();
    let mut want = UPSTREAM_EDGES.to_vec();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "the graph's edges are the original flow's upstream_tasks"
    );

    // Each task started after all of its upstream tasks ended.
    for (up, down) in UPSTREAM_EDGES {
        let ended = run.task(up).unwrap().ended.unwrap();
        let started = run.task(down).unwrap().started.unwrap();
        assert!(ended <= started, "{down} started before {up} ended");
    }

    println!("\n{}", graph.to_dot());
    println!("{}", run.to_mermaid());
}
