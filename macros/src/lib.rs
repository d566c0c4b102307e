//! Procedural macros of [weft](https://docs.rs/weft): `#[task]` and `#[flow]`.
//!
//! A thin shim: the work happens in plain functions over `proc_macro2` tokens (`task`,
//! `flow::analyze`, `flow::codegen`) so that unit tests run them without a compiler.

use proc_macro::TokenStream;

mod flow;
mod options;
mod task;

/// Marks a function as a task: an orchestrated unit of work with retries, timeouts, triggers
/// and state handlers.
///
/// It goes on an `fn` (run on a thread of its own, so its parameters must be owned) or an
/// `async fn`. The body returns `T`, or `Result<T, E>` with `E: Display`: an `Err` ends the
/// attempt Failed with that message and is retried while retries remain. Return
/// `Err(Signal::fail(..))`, `Err(Signal::skip(..))` or `Err(Signal::retry(..))` from a task
/// returning `Result<T, Signal>` to end a run Failed, Skipped or retry it at once. A panic ends
/// the run Crashed.
///
/// For `#[task] fn name(..)` the macro keeps the function's name for:
///
/// | you write | you get |
/// |---|---|
/// | `name(args).await` (or `.run().await`) | one orchestrated task run outside any flow: a `TaskRun<T>` |
/// | `name::body(args)` | the undecorated body, for unit tests |
/// | `name::map(items).await` | one task run per element, concurrently, results in input order |
/// | `name(args)` in a `#[flow]` body | a node of the flow's graph |
///
/// # Options
///
/// Every option is optional and checked at compile time (an unknown one gets a "did you mean"):
///
/// | option | value | default | meaning |
/// |---|---|---|---|
/// | `name` | string | the function's name | name in logs, graphs and reports |
/// | `retries` | integer | `0` | attempts after the first failure (Failed or TimedOut; not Crashed) |
/// | `retry_delay` | duration string: `"500ms"`, `"2s"`, `"1d"` | `"0s"` | wait before the first retry |
/// | `retry_backoff` | number ≥ 1.0 | `1.0` | each further retry waits this many times longer |
/// | `retry_jitter` | number in 0.0..=1.0 | `0.0` | random spread of each delay, as a fraction |
/// | `timeout` | duration string | none | longest an attempt may run, then TimedOut (a sync body's thread finishes in the background) |
/// | `state_handlers` | `[f, g]`, each `fn(&StateChange) -> Option<State>` | `[]` | called on every state change; `Some(state)` replaces the new state |
/// | `trigger` | `all_successful`, `all_finished`, `any_failed`, `always` | `all_successful` | when the task may run, judged on its upstream tasks' final states (see `Trigger`) |
/// | `tags` | `["db", ..]` | `[]` | free-form labels |
///
/// # Examples
///
/// A sync task, run on its own, through its body, and mapped:
///
/// ```
/// use weft::prelude::*;
///
/// #[task]
/// fn word_count(text: String) -> usize {
///     text.split_whitespace().count()
/// }
///
/// # #[tokio::main] async fn main() {
/// assert_eq!(word_count::body("a b c".into()), 3); // the undecorated body
/// let run = word_count("hello big world".into()).await; // one orchestrated run
/// assert_eq!(run.state.kind, StateKind::Completed);
/// assert_eq!(run.result, Ok(3));
/// let runs = word_count::map(["a", "a b"].map(String::from)).await;
/// let counts: Vec<usize> = runs.into_iter().map(|r| r.result.unwrap()).collect();
/// assert_eq!(counts, [1, 2]); // input order
/// # }
/// ```
///
/// An async task with options: the first attempt fails, the retry succeeds.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use weft::prelude::*;
///
/// static CALLS: AtomicU32 = AtomicU32::new(0);
///
/// fn log_retry(change: &StateChange) -> Option<State> {
///     if change.new.kind == StateKind::Retrying {
///         println!("retrying: {}", change.new);
///     }
///     None // keep the new state
/// }
///
/// #[task(name = "fetch", retries = 2, retry_delay = "10ms", retry_backoff = 2.0,
///        timeout = "5s", tags = ["net"], state_handlers = [log_retry])]
/// async fn fetch_page(url: String) -> Result<usize, String> {
///     if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
///         return Err(format!("{url}: status 503"));
///     }
///     Ok(url.len())
/// }
///
/// # #[tokio::main] async fn main() {
/// let run = fetch_page("https://example.com".into()).await;
/// assert_eq!((run.task, run.attempts), ("fetch", 2));
/// assert_eq!(run.result, Ok(19));
/// # }
/// ```
///
/// A task that borrows its input and skips itself with a `Signal`:
///
/// ```
/// use weft::prelude::*;
///
/// #[task]
/// async fn first_line(text: &str) -> Result<String, Signal> {
///     match text.lines().next() {
///         Some(line) => Ok(line.to_owned()),
///         None => Err(Signal::skip("empty input")),
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let text = String::new();
/// let run = first_line(&text).run().await;
/// assert_eq!(run.state.kind, StateKind::Skipped);
/// assert_eq!(run.state.message.as_deref(), Some("empty input"));
/// # }
/// ```
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Marks an `async fn` as a flow: its body becomes a dependency graph, built at compile time,
/// whose independent tasks run concurrently.
///
/// The function's parameters are the flow's parameters (owned: share with `Arc<T>`). Calling
/// it runs the flow on the current tokio runtime and returns a `FlowRun<R>`: the value the body
/// returned (`result`), the final state (Completed when every task run ended Completed, Cached
/// or Skipped; Failed otherwise) and a report of every task run. For `#[flow] async fn name(..)`
/// the macro also generates `name::graph()` (the compile-time `FlowGraph`),
/// `name::definition()` (the `FlowDef`), `name::NAME` and `name::run_with(config, ..)` (run with
/// a `RunConfig`: run id, option overrides, event sinks).
///
/// # Options
///
/// | option | value | default | meaning |
/// |---|---|---|---|
/// | `name` | string | the function's name | name in logs, graphs and reports |
/// | `state_handlers` | `[f, ..]`, each `fn(&StateChange) -> Option<State>` | `[]` | called on the flow run's changes (Running, final) |
/// | `fail_fast` | bool (bare `fail_fast` = true) | `false` | the first failure cancels running tasks (Cancelled) and starts no new one |
/// | `max_concurrency` | integer ≥ 1 | no limit | most task runs (mapped elements included) running at once |
///
/// # The flow body
///
/// The body reads top to bottom; the macro lifts **task statements** out of it as nodes of the
/// graph, and everything else is **glue** that runs in written order.
///
/// - A task statement is a top-level `f(..);`, `let x = f(..);`, `let x = f(..)?;`,
///   `let xs = f::map(..)?;` (or the tail `f(..)?`) where `f` is a `#[task]`. Calling a plain
///   function that way is a compile error; wrap it in a block to make it glue: `{ g(x) }`.
/// - A node starts as soon as the task outputs named in its arguments are ready.
/// - `?` on a task call: `x` is the task's value and dependents need it (they end NotRun, or
///   Skipped, when there is none). Without `?`, `x` is a `Result<T, TaskError>` (a
///   `Vec<Result<T, TaskError>>` for `f::map`) that glue or an `all_finished` task can inspect.
/// - `#[wait_for(a, b)]` on a task statement orders it after earlier task outputs without
///   passing data (Prefect's `upstream_tasks`).
/// - Glue that names a task output waits for that task; `&x` lends an output to a task, and an
///   output taken by value by two tasks is cloned (so it must be `Clone`).
/// - Not supported (compile errors): a non-async or generic `fn`, borrowed parameters.
///
/// # Examples
///
/// A chain with `?`, and reading the `FlowRun`:
///
/// ```
/// use weft::prelude::*;
///
/// #[task]
/// async fn extract(n: u32) -> Vec<u32> { (1..=n).collect() }
///
/// #[task]
/// fn total(xs: Vec<u32>) -> u32 { xs.iter().sum() }
///
/// #[flow(name = "etl")]
/// async fn etl(n: u32) -> u32 {
///     let xs = extract(n)?; // `xs` is the Vec; `total` needs it
///     let t = total(xs)?;
///     t
/// }
///
/// # #[tokio::main] async fn main() {
/// let run = etl(4).await;
/// assert!(run.is_successful());
/// assert_eq!(run.result, Ok(10));
/// assert_eq!(run.task("total").unwrap().state.kind, StateKind::Completed);
/// assert_eq!((run.name, run.task_runs.len()), ("etl", 2));
/// # }
/// ```
///
/// `#[wait_for]`, and a result read without `?`:
///
/// ```
/// use weft::prelude::*;
///
/// #[task] async fn create_table() {}
/// #[task] async fn extract() -> Result<u32, String> { Err("source down".into()) }
/// #[task] async fn load() -> u32 { 0 }
///
/// #[flow]
/// async fn etl() -> String {
///     let table = create_table(); // runs concurrently with `extract`
///     let raw = extract(); // no `?`: a `Result<u32, TaskError>`
///     #[wait_for(table)]
///     let n = load()?; // starts once `create_table` is done
///     match raw {
///         Ok(rows) => format!("{rows} rows, {n} loaded"),
///         Err(e) => e.to_string(),
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let run = etl().await;
/// assert_eq!(run.result.as_deref(), Ok("task 'extract' ended Failed('source down')"));
/// assert!(run.state.is_failed()); // a task run failed
/// assert!(etl::graph().to_dot().contains("\"create_table\" -> \"load\" [style=dashed"));
/// # }
/// ```
///
/// A mapped call, with a concurrency limit:
///
/// ```
/// use weft::prelude::*;
///
/// #[task] async fn square(x: u64) -> u64 { x * x }
/// #[task] fn sum(xs: Vec<u64>) -> u64 { xs.iter().sum() }
///
/// #[flow(max_concurrency = 2)]
/// async fn squares(n: u64) -> u64 {
///     let sq = square::map(0..n)?; // one task run per element; a `Vec<u64>` in input order
///     let s = sum(sq)?;
///     s
/// }
///
/// # #[tokio::main] async fn main() {
/// let run = squares(4).await;
/// assert_eq!(run.result, Ok(14));
/// // The mapped node's summary, then one run per element.
/// assert_eq!(run.runs_of("square").count(), 1 + 4);
/// # }
/// ```
#[proc_macro_attribute]
pub fn flow(args: TokenStream, item: TokenStream) -> TokenStream {
    flow::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
