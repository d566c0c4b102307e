//! The `weft` binary end to end: real flows record a real history (SQLite in a temp dir, or a
//! PostgreSQL schema of its own), then the command reads it back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;
use weft::prelude::*;
use weft::store::{Store, StoreOptions};

// ---- the flows that produce the history ----

#[task]
fn extract(n: u32) -> Vec<u32> {
    tracing::info!("extracted {n} rows from the source");
    (1..=n).collect()
}

#[task]
fn square(x: u32) -> u32 {
    x * x
}

#[task]
fn total(xs: Vec<u32>) -> u32 {
    xs.iter().sum()
}

/// Fails both of its attempts when told to.
#[task(retries = 1)]
fn load(total: u32, fail: bool) -> Result<u32, String> {
    if fail {
        Err(format!("warehouse unavailable (total {total})"))
    } else {
        Ok(total)
    }
}

#[flow]
async fn etl(n: u32, fail: bool) -> u32 {
    let rows = extract(n)?;
    let squares = square::map(rows)?;
    let sum = total(squares)?;
    let loaded = load(sum, fail)?;
    loaded
}

#[task]
fn greet(name: String) -> String {
    format!("Hello, {name}!")
}

#[flow]
async fn hello(name: String) -> String {
    let greeting = greet(name)?;
    greeting
}

/// Every 25th element fails.
#[task]
fn check(i: u32) -> Result<u32, String> {
    if i % 25 == 24 {
        Err(format!("element {i} is bad"))
    } else {
        Ok(i)
    }
}

#[flow]
async fn fan_out(n: u32) -> usize {
    let checked = check::map(0..n);
    checked.len()
}

// ---- helpers ----

/// Records log lines into the history without printing them (the console subscriber weft would
/// install writes every line to stderr).
fn quiet_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::prelude::*;
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(weft::logging::history_layer())
            .try_init();
    });
}

/// The ids of the recorded runs, in the order they ran.
struct Produced {
    etl_ok: String,
    etl_failed: String,
    hello: String,
}

/// Runs `etl` (Completed), `etl` again (Failed: `load` fails twice), then `hello`, recording
/// into `store`.
fn produce(store: &Store) -> Produced {
    quiet_logs();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = || RunConfig::new().history(store.clone());
        let ok = etl::run_with(config(), 3, false).await;
        assert_eq!(ok.state.kind, StateKind::Completed, "{:?}", ok.state);
        let failed = etl::run_with(config(), 3, true).await;
        assert_eq!(failed.state.kind, StateKind::Failed, "{:?}", failed.state);
        let hi = hello::run_with(config(), "world".to_owned()).await;
        assert_eq!(hi.state.kind, StateKind::Completed, "{:?}", hi.state);
        for run in [&ok.history, &failed.history, &hi.history] {
            let report = run.as_ref().expect("recorded");
            assert!(report.is_complete(), "{report:?}");
        }
        Produced {
            etl_ok: ok.id.to_string(),
            etl_failed: failed.id.to_string(),
            hello: hi.id.to_string(),
        }
    })
}

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("weft-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    /// The URL of `weft.db` in this directory.
    fn db_url(&self) -> String {
        format!("sqlite://{}/weft.db", self.0.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A temp dir with the three runs of [`produce`] in `weft.db`.
fn sqlite_history() -> (TempDir, Produced) {
    let dir = TempDir::new();
    let store = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(Store::connect(&dir.db_url()))
        .unwrap();
    let produced = produce(&store);
    (dir, produced)
}

/// What one `weft` invocation did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts it succeeded and returns its stdout.
    fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
    /// Asserts it failed with `code` and one line on stderr, and returns that line.
    fn fails(&self, code: i32) -> &str {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line: {:?}",
            self.stderr
        );
        assert!(self.stderr.starts_with("error: "), "{}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self.stderr.trim_end()
    }
}

/// Runs the `weft` binary on `database` (`None`: its default) with `args`, from `cwd`, with
/// `env` added.
fn weft_in(cwd: &Path, database: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(cwd)
        .env_remove("WEFT_DATABASE_URL")
        .env_remove("WEFT_DATABASE_SCHEMA")
        .env_remove("WEFT_HISTORY")
        .env_remove("WEFT_HOME")
        .env_remove("RUST_BACKTRACE");
    if let Some(db) = database {
        cmd.args(["--database", db]);
    }
    cmd.args(args).envs(env.iter().copied());
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("the weft binary runs");
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    }
}

/// Runs `weft --database <dir's weft.db> args..`.
fn weft(dir: &TempDir, args: &[&str]) -> Run {
    weft_in(dir.path(), Some(&dir.db_url()), &[], args)
}

/// The table's data lines (no header) whose first column is one of the short ids.
fn data_lines(table: &str) -> Vec<&str> {
    table.lines().skip(1).collect()
}

/// What `weft runs` shows at least of an id.
fn short(id: &str) -> &str {
    &id[..8]
}

/// A prefix naming one run: run ids begin with their start time, so eight characters may name
/// several runs started within a minute.
fn prefix(id: &str) -> &str {
    &id[..34]
}

/// The line of `text` starting with `prefix` (after indentation).
fn line_of<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

// ---- runs ----

#[test]
fn runs_lists_newest_first_with_states() {
    let (dir, p) = sqlite_history();
    let out = weft(&dir, &["runs"]);
    let table = out.ok();
    let header = table.lines().next().unwrap();
    for col in ["ID", "FLOW", "STATE", "STARTED", "DURATION"] {
        assert!(header.contains(col), "{table}");
    }
    let lines = data_lines(table);
    assert_eq!(lines.len(), 3, "{table}");
    // Newest first.
    assert!(lines[0].starts_with(short(&p.hello)), "{table}");
    assert!(lines[1].starts_with(short(&p.etl_failed)), "{table}");
    assert!(lines[2].starts_with(short(&p.etl_ok)), "{table}");
    assert!(
        lines[0].contains("hello") && lines[0].contains("Completed"),
        "{table}"
    );
    assert!(
        lines[1].contains("etl") && lines[1].contains("Failed"),
        "{table}"
    );
    assert!(
        lines[2].contains("etl") && lines[2].contains("Completed"),
        "{table}"
    );
    // Columns line up: every STATE cell starts where the header's does.
    let state_col = header.find("STATE").unwrap();
    for l in &lines {
        let cell = &l[state_col..];
        assert!(
            cell.starts_with("Completed") || cell.starts_with("Failed"),
            "{table}"
        );
    }
    // Durations are human (`12ms`, `1.3s`), never `running` for ended runs.
    for l in &lines {
        let d = l.split_whitespace().last().unwrap();
        assert!(d.ends_with("ms") || d.ends_with('s'), "{l}");
    }
}

#[test]
fn runs_filters_by_state_flow_and_limit() {
    let (dir, p) = sqlite_history();

    let failed = weft(&dir, &["runs", "--state", "failed"]);
    let lines = data_lines(failed.ok());
    assert_eq!(lines.len(), 1, "{}", failed.stdout);
    assert!(
        lines[0].starts_with(short(&p.etl_failed)),
        "{}",
        failed.stdout
    );

    let completed = weft(&dir, &["runs", "--state", "COMPLETED", "--flow", "etl"]);
    let lines = data_lines(completed.ok());
    assert_eq!(lines.len(), 1, "{}", completed.stdout);
    assert!(
        lines[0].starts_with(short(&p.etl_ok)),
        "{}",
        completed.stdout
    );

    let hello = weft(&dir, &["runs", "--flow", "hello"]);
    let lines = data_lines(hello.ok());
    assert_eq!(lines.len(), 1, "{}", hello.stdout);
    assert!(lines[0].starts_with(short(&p.hello)), "{}", hello.stdout);

    let newest = weft(&dir, &["runs", "--limit", "1"]);
    let lines = data_lines(newest.ok());
    assert_eq!(lines.len(), 1, "{}", newest.stdout);
    assert!(lines[0].starts_with(short(&p.hello)), "{}", newest.stdout);

    let none = weft(&dir, &["runs", "--flow", "nope"]);
    assert!(
        none.ok().starts_with("no runs with flow \"nope\""),
        "{}",
        none.stdout
    );

    let bad = weft(&dir, &["runs", "--state", "done"]);
    let line = bad.fails(2);
    assert!(
        line.contains("\"done\"") && line.contains("Completed") && line.contains("NotRun"),
        "{line}"
    );
    assert!(bad.stdout.is_empty());
}

#[test]
fn runs_json_has_full_ids() {
    let (dir, p) = sqlite_history();
    let out = weft(&dir, &["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(out.ok()).expect("valid JSON");
    let runs = runs.as_array().expect("an array");
    let ids: Vec<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [&p.hello, &p.etl_failed, &p.etl_ok]);
    assert_eq!(runs[1]["state"], "Failed");
    assert_eq!(runs[1]["flow"], "etl");
    assert_eq!(
        runs[1]["parameters"],
        serde_json::json!({"n": 3, "fail": true})
    );
    assert!(runs[1]["duration_ms"].is_u64(), "{}", runs[1]);

    let failed = weft(&dir, &["runs", "--json", "--state", "failed"]);
    let runs: serde_json::Value = serde_json::from_str(failed.ok()).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
}

// ---- run show ----

#[test]
fn run_show_prints_task_runs_and_logs() {
    let (dir, p) = sqlite_history();
    let out = weft(&dir, &["run", "show", prefix(&p.etl_failed)]);
    let text = out.ok();
    assert!(text.contains(&p.etl_failed), "the full id:\n{text}");
    assert!(line_of(text, "flow").contains("etl (version "), "{text}");
    assert!(line_of(text, "state").contains("Failed"), "{text}");
    assert!(
        line_of(text, "parameters").contains(r#"{"fail":true,"n":3}"#)
            || line_of(text, "parameters").contains(r#"{"n":3,"fail":true}"#),
        "{text}"
    );

    let header = line_of(text, "TASK");
    for col in ["STATE", "ATTEMPTS", "DURATION", "ERROR"] {
        assert!(header.contains(col), "{text}");
    }
    let extract = line_of(text, "extract");
    assert!(extract.contains("Completed"), "{extract}");
    // The mapped node's summary, then its elements.
    assert!(line_of(text, "square ").contains("Completed"), "{text}");
    for i in 0..3 {
        let element = line_of(text, &format!("square[{i}]"));
        assert!(element.contains("Completed"), "{element}");
    }
    assert!(!text.contains("square[3]"), "{text}");
    // The retried task: 2 attempts and its error.
    let load = line_of(text, "load");
    let cells: Vec<&str> = load.split_whitespace().collect();
    assert_eq!(&cells[..3], ["load", "Failed", "2"], "{load}");
    assert!(load.ends_with("warehouse unavailable (total 14)"), "{load}");

    let logs = &text[text.find("Logs:").expect("a Logs: section")..];
    assert!(
        logs.contains("| INFO    | Beginning Flow run for 'etl'"),
        "{logs}"
    );
    assert!(logs.contains("extracted 3 rows from the source"), "{logs}");
    // `HH:MM:SS.mmm | LEVEL   | message`.
    let first = logs.lines().nth(1).unwrap();
    let (time, _) = first.split_once(" | ").unwrap();
    assert_eq!(time.len(), 12, "{first}");
    assert_eq!(
        (&time[2..3], &time[5..6], &time[8..9]),
        (":", ":", "."),
        "{first}"
    );

    // The full id works too, and the successful run has no error.
    let ok = weft(&dir, &["run", "show", &p.etl_ok]);
    let load = line_of(ok.ok(), "load");
    assert_eq!(
        load.split_whitespace().take(3).collect::<Vec<_>>(),
        ["load", "Completed", "1"]
    );
    assert!(!ok.stdout.contains("warehouse"), "{}", ok.stdout);
}

#[test]
fn run_show_cuts_large_maps() {
    let dir = TempDir::new();
    quiet_logs();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = rt.block_on(async {
        let store = Store::connect(&dir.db_url()).await.unwrap();
        let run = fan_out::run_with(RunConfig::new().history(store), 60).await;
        assert_eq!(run.state.kind, StateKind::Failed);
        run.id.to_string()
    });
    let out = weft(&dir, &["run", "show", prefix(&id)]);
    let text = out.ok();
    assert!(text.contains("check[19]"), "{text}");
    assert!(!text.contains("check[20]"), "{text}");
    // 24 and 49 fail, both past the 20 shown.
    assert!(
        text.contains("... 40 more elements of 'check' (states: 38 Completed, 2 Failed"),
        "{text}"
    );
    let all = weft(&dir, &["run", "show", prefix(&id), "--all"]);
    let text = all.ok();
    assert!(
        line_of(text, "check[49]").contains("element 49 is bad"),
        "{text}"
    );
    assert!(
        text.contains("check[59]") && !text.contains("more elements"),
        "{text}"
    );
}

#[test]
fn run_show_json() {
    let (dir, p) = sqlite_history();
    let out = weft(&dir, &["run", "show", prefix(&p.etl_failed), "--json"]);
    let detail: serde_json::Value = serde_json::from_str(out.ok()).expect("valid JSON");
    assert_eq!(detail["run"]["id"], p.etl_failed.as_str());
    let load = detail["task_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "load")
        .unwrap();
    assert_eq!(load["attempts"], 2);
}

// ---- run graph ----

#[test]
fn run_graph_in_every_format() {
    let (dir, p) = sqlite_history();

    let dot = weft(
        &dir,
        &["run", "graph", prefix(&p.etl_failed), "--format", "dot"],
    );
    let text = dot.ok();
    assert!(text.contains("digraph"), "{text}");
    for edge in [
        "\"extract\" -> \"square\"",
        "\"square\" -> \"total\"",
        "\"total\" -> \"load\"",
    ] {
        assert!(text.contains(edge), "{edge} in:\n{text}");
    }
    assert!(text.contains("#28a745"), "green for Completed:\n{text}");
    assert!(text.contains("#dc3545"), "red for Failed:\n{text}");
    // dot is the default.
    let default = weft(&dir, &["run", "graph", prefix(&p.etl_failed)]);
    assert_eq!(default.ok(), text);
    // The completed run has no red.
    let ok = weft(&dir, &["run", "graph", prefix(&p.etl_ok)]);
    assert!(!ok.ok().contains("#dc3545"), "{}", ok.stdout);

    let mermaid = weft(
        &dir,
        &["run", "graph", prefix(&p.etl_failed), "--format", "mermaid"],
    );
    let text = mermaid.ok();
    assert!(
        text.starts_with("flowchart") || text.starts_with("graph"),
        "{text}"
    );
    assert!(text.contains("-->"), "{text}");
    assert!(text.contains("extract") && text.contains("load"), "{text}");

    let file = dir.path().join("run.svg");
    let file_arg = file.to_str().unwrap();
    let svg = weft(
        &dir,
        &[
            "run",
            "graph",
            prefix(&p.etl_failed),
            "--format",
            "svg",
            "-o",
            file_arg,
        ],
    );
    assert_eq!(svg.ok().trim(), format!("wrote {file_arg}"));
    let drawn = std::fs::read_to_string(&file).expect("the file was written");
    assert!(drawn.trim_start().starts_with("<svg"), "{drawn}");
    assert!(
        drawn.contains("extract") && drawn.contains("#dc3545"),
        "{drawn}"
    );

    let png = weft(
        &dir,
        &["run", "graph", prefix(&p.etl_failed), "--format", "png"],
    );
    assert_eq!(png.code, Some(2), "{}", png.stderr);
    assert!(png.stderr.contains("'png'"), "{}", png.stderr);
    for valid in ["dot", "mermaid", "svg"] {
        assert!(png.stderr.contains(valid), "{}", png.stderr);
    }
    assert!(png.stdout.is_empty());
}

// ---- flows ----

#[test]
fn flows_counts_runs_by_state() {
    let (dir, _) = sqlite_history();
    let out = weft(&dir, &["flows"]);
    let table = out.ok();
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "FLOW",
            "RUNS",
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "OTHER",
            "LAST RUN"
        ],
        "{table}"
    );
    let etl: Vec<&str> = line_of(table, "etl").split_whitespace().collect();
    assert_eq!(&etl[..6], ["etl", "2", "1", "1", "0", "0"], "{table}");
    let hello: Vec<&str> = line_of(table, "hello").split_whitespace().collect();
    assert_eq!(&hello[..6], ["hello", "1", "1", "0", "0", "0"], "{table}");

    let json = weft(&dir, &["flows", "--json"]);
    let flows: serde_json::Value = serde_json::from_str(json.ok()).expect("valid JSON");
    let etl = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "etl")
        .unwrap();
    assert_eq!(
        (etl["runs"].as_u64(), etl["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(etl["by_state"]["Completed"], 1);
}

// ---- errors ----

#[test]
fn unknown_run_ids_fail_in_one_line() {
    let (dir, _) = sqlite_history();
    for args in [
        &["run", "show", "00000000"][..],
        &["run", "graph", "00000000"],
        &["run", "show", "00000000-0000-4000-8000-000000000000"],
        &["run", "show", "xyz"],
    ] {
        let out = weft(&dir, args);
        let line = out.fails(1);
        assert!(line.contains("no flow run"), "{args:?}: {line}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

#[test]
fn ambiguous_prefixes_fail_in_one_line() {
    let (dir, p) = sqlite_history();
    // Two more runs whose ids share their first 34 characters.
    let twins = [
        "abcd0000-0000-4000-8000-000000000001",
        "abcd0000-0000-4000-8000-000000000002",
    ];
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let path = dir.path().join("weft.db");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        for id in twins {
            sqlx::query(
                "INSERT INTO flow_runs (id, flow, flow_version, parameters, state, message, \
                 started, ended) SELECT $1, flow, flow_version, parameters, state, message, \
                 started, ended FROM flow_runs WHERE id = $2",
            )
            .bind(id)
            .bind(&p.hello)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        conn.close().await.unwrap();
    });
    for args in [&["run", "show", "abcd"][..], &["run", "graph", "abcd0000"]] {
        let out = weft(&dir, args);
        let line = out.fails(1);
        assert!(line.contains("matches several runs"), "{line}");
        assert!(line.contains(twins[0]) && line.contains(twins[1]), "{line}");
    }
    // The table shows as much of their ids as tells them apart.
    let runs = weft(&dir, &["runs", "--flow", "hello"]);
    let table = runs.ok();
    assert!(
        table.contains(twins[0]) && table.contains(twins[1]),
        "{table}"
    );
    assert!(table.contains(&format!("{}  ", short(&p.hello))), "{table}");
    // A full id is never ambiguous.
    let one = weft(&dir, &["run", "show", twins[1]]);
    assert!(one.ok().contains(twins[1]), "{}", one.stdout);
}

#[test]
fn a_database_without_history_is_left_untouched() {
    let dir = TempDir::new();
    let other = dir.path().join("app.db");
    let url = format!("sqlite://{}", other.display());
    let tables = |url: String| async move {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        conn.close().await.unwrap();
        names
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE users (id INTEGER)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
    let out = weft_in(dir.path(), Some(&url), &[], &["runs"]);
    let line = out.fails(1);
    assert!(line.contains("no weft run history"), "{line}");
    assert_eq!(rt.block_on(tables(url)), ["users"]);
}

#[test]
fn a_missing_database_is_not_created() {
    let dir = TempDir::new();
    // The default database: $WEFT_HOME/.weft/weft.db.
    let out = weft_in(
        dir.path(),
        None,
        &[("WEFT_HOME", dir.path().to_str().unwrap())],
        &["runs"],
    );
    let line = out.fails(1);
    assert!(line.contains("does not exist"), "{line}");
    assert!(line.contains(".weft/weft.db"), "{line}");
    assert!(!dir.path().join(".weft").join("weft.db").exists());
    // Nor through --database or WEFT_DATABASE_URL.
    let db = dir.path().join("nothing-here.db");
    let url = format!("sqlite://{}", db.display());
    for out in [
        weft_in(dir.path(), Some(&url), &[], &["flows"]),
        weft_in(
            dir.path(),
            None,
            &[("WEFT_DATABASE_URL", &url)],
            &["run", "show", "abcd1234"],
        ),
    ] {
        assert!(out.fails(1).contains("does not exist"), "{}", out.stderr);
    }
    assert!(!db.exists(), "the database was created");
}

#[test]
fn unreachable_and_unsupported_databases_fail_in_one_line() {
    let dir = TempDir::new();
    let out = weft_in(
        dir.path(),
        Some("postgres://postgres@127.0.0.1:1/test"),
        &[],
        &["runs"],
    );
    let line = out.fails(1);
    assert!(line.contains("127.0.0.1:1"), "{line}");

    let out = weft_in(dir.path(), Some("mysql://x"), &[], &["runs"]);
    let line = out.fails(1);
    assert!(
        line.contains("mysql://x") && line.contains("sqlite://"),
        "{line}"
    );

    // The password never shows.
    let out = weft_in(
        dir.path(),
        Some("postgres://me:hunter2@127.0.0.1:1/x"),
        &[],
        &["flows"],
    );
    let line = out.fails(1);
    assert!(
        !line.contains("hunter2") && line.contains("me:***@"),
        "{line}"
    );
}

#[test]
fn help_describes_every_command() {
    let dir = TempDir::new();
    let top = weft_in(dir.path(), None, &[], &["--help"]);
    let text = top.ok();
    for word in ["runs", "run", "flows", "--database", "WEFT_DATABASE_URL"] {
        assert!(text.contains(word), "{word} in:\n{text}");
    }
    let run = weft_in(dir.path(), None, &[], &["run", "--help"]);
    assert!(
        run.ok().contains("show") && run.stdout.contains("graph"),
        "{}",
        run.stdout
    );
    let graph = weft_in(dir.path(), None, &[], &["run", "graph", "--help"]);
    assert!(graph.ok().contains("mermaid"), "{}", graph.stdout);
    let missing = weft_in(dir.path(), None, &[], &["run", "show"]);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
}

// ---- PostgreSQL ----

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of this test's own in the local PostgreSQL, dropped when done (even on failure).
struct PgSchema(String);

impl PgSchema {
    fn new() -> PgSchema {
        let name = format!("weft_cli_{}", uuid::Uuid::new_v4().simple());
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            if let Err(e) = sqlx::PgConnection::connect(POSTGRES).await {
                panic!(
                    "PostgreSQL is not reachable at {POSTGRES} ({e}): start it (e.g. \
                     `service postgresql start`) to run the PostgreSQL tests"
                );
            }
        });
        PgSchema(name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                use sqlx::{Connection, Executor};
                if let Ok(mut conn) = sqlx::PgConnection::connect(POSTGRES).await {
                    let _ = conn
                        .execute(&*format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

#[test]
fn postgres_history() {
    let schema = PgSchema::new();
    let store = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(
            StoreOptions::new(POSTGRES)
                .schema(schema.0.clone())
                .connect(),
        )
        .expect("the PostgreSQL store opens");
    let p = produce(&store);
    let dir = TempDir::new();
    let env = [("WEFT_DATABASE_SCHEMA", schema.0.as_str())];
    let pg = |args: &[&str]| weft_in(dir.path(), Some(POSTGRES), &env, args);

    let runs = pg(&["runs"]);
    let lines = data_lines(runs.ok());
    assert_eq!(lines.len(), 3, "{}", runs.stdout);
    assert!(lines[0].starts_with(short(&p.hello)), "{}", runs.stdout);
    assert!(
        lines[1].starts_with(short(&p.etl_failed)) && lines[1].contains("Failed"),
        "{}",
        runs.stdout
    );

    let failed = pg(&["runs", "--state", "failed"]);
    assert_eq!(data_lines(failed.ok()).len(), 1, "{}", failed.stdout);

    let show = pg(&["run", "show", prefix(&p.etl_failed)]);
    let text = show.ok();
    let load = line_of(text, "load");
    assert_eq!(
        load.split_whitespace().take(3).collect::<Vec<_>>(),
        ["load", "Failed", "2"],
        "{text}"
    );
    assert!(load.contains("warehouse unavailable"), "{text}");
    assert!(text.contains("square[2]"), "{text}");
    assert!(text.contains("Beginning Flow run for 'etl'"), "{text}");
    assert!(text.contains("extracted 3 rows from the source"), "{text}");

    let graph = pg(&["run", "graph", prefix(&p.etl_failed)]);
    let dot = graph.ok();
    assert!(
        dot.contains("\"total\" -> \"load\"") && dot.contains("#dc3545"),
        "{dot}"
    );

    // The --schema option works as the environment variable does.
    let flows = weft_in(
        dir.path(),
        Some(POSTGRES),
        &[],
        &["--schema", &schema.0, "flows"],
    );
    let etl: Vec<&str> = line_of(flows.ok(), "etl").split_whitespace().collect();
    assert_eq!(&etl[..4], ["etl", "2", "1", "1"], "{}", flows.stdout);

    let unknown = pg(&["run", "show", "00000000"]);
    assert!(unknown.fails(1).contains("no flow run"));
}

#[test]
fn postgres_schema_without_history_is_not_created() {
    let schema = PgSchema::new();
    let out = weft_in(
        Path::new("."),
        Some(POSTGRES),
        &[("WEFT_DATABASE_SCHEMA", schema.0.as_str())],
        &["runs"],
    );
    let line = out.fails(1);
    assert!(
        line.contains(&schema.0) && line.contains("no weft run history"),
        "{line}"
    );
    let exists = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(POSTGRES).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1",
        )
        .bind(&schema.0)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        n
    });
    assert_eq!(exists, 0, "the CLI created schema {}", schema.0);
}

// ---- deployments ----

use weft::store::{DeploymentRecord, RequestState, RunRequest};

/// A deployment of flow `flow` as a serving process registers it.
fn deployment(name: &str, flow: &str, schedule: Option<&str>) -> DeploymentRecord {
    DeploymentRecord {
        name: name.to_owned(),
        flow: flow.to_owned(),
        schedule: schedule.map(str::to_owned),
        parameters: serde_json::json!({ "n": 3, "fail": false }),
        paused: false,
        last_run: None,
        last_run_at: None,
        next_run_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        updated: chrono::Utc::now(),
    }
}

/// `nightly etl` (cron, last run noted) and `adhoc hello` (no schedule), registered in `store`;
/// returns the last run's id.
fn register_two(rt: &tokio::runtime::Runtime, store: &Store) -> uuid::Uuid {
    rt.block_on(async {
        store
            .register_deployment(&deployment(
                "nightly etl",
                "etl",
                Some("cron 0 9 * * 1-5 in Europe/Berlin"),
            ))
            .await
            .unwrap();
        store
            .register_deployment(&deployment("adhoc hello", "hello", None))
            .await
            .unwrap();
        let run = uuid::Uuid::new_v4();
        store
            .note_deployment_run("nightly etl", run, chrono::Utc::now())
            .await
            .unwrap();
        run
    })
}

/// The requests the pretend serving process answered, with the run ids it started.
type Handled = std::sync::Arc<std::sync::Mutex<Vec<(RunRequest, Option<uuid::Uuid>)>>>;

/// What the pretend serving process does with a request: start it (a new run id) or reject it.
#[derive(Clone, Copy)]
enum Answer {
    Start,
    Reject(&'static str),
}

/// Plays the process serving `deployments` on `rt`: claims their requests every 50 ms and
/// answers each as told. Returns the requests it answered, with the run ids it started.
fn serve(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    deployments: &[&str],
    answer: Answer,
) -> Handled {
    let handled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (store, seen) = (store.clone(), handled.clone());
    let deployments: Vec<String> = deployments.iter().map(|d| d.to_string()).collect();
    rt.spawn(async move {
        loop {
            for req in store.claim_requests(&deployments).await.unwrap() {
                let (state, message, run) = match answer {
                    Answer::Start => (RequestState::Started, None, Some(uuid::Uuid::new_v4())),
                    Answer::Reject(why) => (RequestState::Rejected, Some(why.to_owned()), None),
                };
                store
                    .finish_request(req.id, state, message, run)
                    .await
                    .unwrap();
                seen.lock().unwrap().push((req, run));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    handled
}

/// A temp dir whose `weft.db` holds a (run-less) history, and the store on it.
fn empty_history(rt: &tokio::runtime::Runtime) -> (TempDir, Store) {
    let dir = TempDir::new();
    let store = rt.block_on(Store::connect(&dir.db_url())).unwrap();
    (dir, store)
}

#[test]
fn deployments_lists_schedules_status_and_runs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir, store) = empty_history(&rt);
    let none = weft(&dir, &["deployments"]);
    assert_eq!(
        none.ok(),
        format!("no deployments recorded in {}\n", dir.db_url())
    );
    assert_eq!(weft(&dir, &["deployments", "--json"]).ok().trim(), "[]");

    let last = register_two(&rt, &store);
    rt.block_on(store.set_paused("adhoc hello", true)).unwrap();
    let out = weft(&dir, &["deployments"]);
    let table = out.ok();
    let header = table.lines().next().unwrap();
    let cols = ["NAME", "FLOW", "SCHEDULE", "STATUS", "LAST RUN", "NEXT RUN"];
    let at: Vec<usize> = cols.iter().map(|c| header.find(c).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{table}");
    let lines = data_lines(table);
    assert_eq!(lines.len(), 2, "{table}");
    // By name.
    let (hello, etl) = (lines[0], lines[1]);
    assert!(hello.starts_with("adhoc hello "), "{table}");
    assert!(etl.starts_with("nightly etl "), "{table}");
    let cell = |line: &str, col: usize| -> String {
        let end = at.get(col + 1).copied().unwrap_or(line.len());
        line.get(at[col]..end.min(line.len()))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    assert_eq!(cell(etl, 1), "etl");
    assert_eq!(cell(etl, 2), "cron '0 9 * * 1-5' (Europe/Berlin)");
    assert_eq!(cell(etl, 3), "active");
    assert!(cell(etl, 4).ends_with(&format!("({last})")), "{table}");
    assert_eq!(cell(etl, 5).len(), "2025-03-04 09:00:00".len(), "{table}");
    assert_eq!(cell(hello, 2), "-");
    assert_eq!(cell(hello, 3), "paused");
    assert_eq!(cell(hello, 4), "-");
    assert_eq!(cell(hello, 5), "paused");

    let json = weft(&dir, &["deployments", "--json"]);
    let all: serde_json::Value = serde_json::from_str(json.ok()).expect("valid JSON");
    let all = all.as_array().expect("an array");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["name"], "adhoc hello");
    assert_eq!(all[0]["paused"], true);
    assert_eq!(all[0]["schedule"], serde_json::Value::Null);
    assert_eq!(all[1]["name"], "nightly etl");
    assert_eq!(all[1]["flow"], "etl");
    assert_eq!(all[1]["schedule"], "cron 0 9 * * 1-5 in Europe/Berlin");
    assert_eq!(all[1]["last_run"], last.to_string());
    assert_eq!(
        all[1]["parameters"],
        serde_json::json!({ "n": 3, "fail": false })
    );
    assert!(all[1]["next_run_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn deployment_pause_and_resume() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir, store) = empty_history(&rt);
    let unknown = weft(&dir, &["deployment", "pause", "nightly etl"]);
    assert!(
        unknown.fails(1).contains("no deployments recorded yet"),
        "{}",
        unknown.stderr
    );
    register_two(&rt, &store);

    let paused = weft(&dir, &["deployment", "pause", "nightly etl"]);
    assert_eq!(paused.ok(), "deployment nightly etl paused\n");
    assert!(rt.block_on(store.deployment("nightly etl")).unwrap().paused);
    let status = weft(&dir, &["deployments"]);
    assert!(
        line_of(status.ok(), "nightly etl").contains("paused"),
        "{}",
        status.stdout
    );
    // Twice is no error.
    weft(&dir, &["deployment", "pause", "nightly etl"]).ok();

    let resumed = weft(&dir, &["deployment", "resume", "nightly etl"]);
    assert_eq!(resumed.ok(), "deployment nightly etl resumed\n");
    assert!(!rt.block_on(store.deployment("nightly etl")).unwrap().paused);
    // The other one was never touched.
    assert!(!rt.block_on(store.deployment("adhoc hello")).unwrap().paused);

    for cmd in ["pause", "resume"] {
        let out = weft(&dir, &["deployment", cmd, "nightly"]);
        let line = out.fails(1);
        assert!(
            line.contains("no deployment named \"nightly\"")
                && line.contains("known: adhoc hello, nightly etl"),
            "{line}"
        );
    }
}

#[test]
fn deployment_run_is_started_by_the_serving_process() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir, store) = empty_history(&rt);
    register_two(&rt, &store);
    let handled = serve(&rt, &store, &["nightly etl"], Answer::Start);
    let out = weft(
        &dir,
        &[
            "deployment",
            "run",
            "nightly etl",
            "--param",
            "size=5",
            "--param",
            "name=bob",
        ],
    );
    let text = out.ok();
    let handled = handled.lock().unwrap();
    assert_eq!(handled.len(), 1);
    let (req, run) = &handled[0];
    assert_eq!(
        text,
        format!(
            "started run {} of deployment nightly etl\n",
            run.expect("a run id")
        )
    );
    assert_eq!(req.deployment, "nightly etl");
    assert_eq!(
        serde_json::Value::Object(req.parameters.clone()),
        serde_json::json!({ "size": 5, "name": "bob" })
    );
    let stored = rt.block_on(store.request(req.id)).unwrap();
    assert_eq!((stored.state, stored.run_id), (RequestState::Started, *run));
}

#[test]
fn deployment_run_rejected_by_the_serving_process() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir, store) = empty_history(&rt);
    register_two(&rt, &store);
    let why = "parameter \"n\" of flow etl expects an integer, got \"many\"";
    let handled = serve(&rt, &store, &["nightly etl"], Answer::Reject(why));
    let out = weft(
        &dir,
        &["deployment", "run", "nightly etl", "--param", "n=many"],
    );
    assert_eq!(out.fails(1), format!("error: {why}"));
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let handled = handled.lock().unwrap();
    assert_eq!(handled[0].0.parameters["n"], "many");
}

#[test]
fn deployment_run_without_a_serving_process_stays_queued() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir, store) = empty_history(&rt);
    register_two(&rt, &store);
    let started = std::time::Instant::now();
    let out = weft(
        &dir,
        &[
            "deployment",
            "run",
            "adhoc hello",
            "--wait",
            "1",
            "--param",
            "name=x",
        ],
    );
    assert_eq!(
        out.fails(1),
        "error: no process serving deployment \"adhoc hello\" picked the request up within \
         1s; it stays queued and runs when one does"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    // Queued: the next process serving it gets it.
    let queued = rt
        .block_on(store.claim_requests(&["adhoc hello".to_owned()]))
        .unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].parameters["name"], "x");
}

#[test]
fn deployment_run_of_an_unknown_deployment_or_with_bad_params() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir, store) = empty_history(&rt);
    register_two(&rt, &store);
    let out = weft(&dir, &["deployment", "run", "nightly"]);
    let line = out.fails(1);
    assert!(
        line.contains("no deployment named \"nightly\"")
            && line.contains("known: adhoc hello, nightly etl")
            && line.contains("a process serving it registers it"),
        "{line}"
    );
    for (param, needle) in [("size", "KEY=VALUE"), ("=5", "key before \"=\" is empty")] {
        let out = weft(
            &dir,
            &["deployment", "run", "nightly etl", "--param", param],
        );
        let line = out.fails(2);
        assert!(line.contains(needle), "{param}: {line}");
    }
    let twice = weft(
        &dir,
        &[
            "deployment",
            "run",
            "nightly etl",
            "--param",
            "n=1",
            "--param",
            "n=2",
        ],
    );
    assert!(twice.fails(2).contains("\"n\""), "{}", twice.stderr);
    // Nothing was queued by any of them.
    let queued = rt
        .block_on(store.claim_requests(&["nightly etl".to_owned()]))
        .unwrap();
    assert!(queued.is_empty(), "{queued:?}");
    // A usage mistake is found before the database is opened.
    let nowhere = weft_in(
        dir.path(),
        Some("postgres://postgres@127.0.0.1:1/test"),
        &[],
        &["deployment", "run", "x", "--param", "oops"],
    );
    assert!(nowhere.fails(2).contains("KEY=VALUE"));
}

#[test]
fn deployments_on_a_missing_or_unreachable_database() {
    let dir = TempDir::new();
    let db = dir.path().join("nothing-here.db");
    let url = format!("sqlite://{}", db.display());
    for args in [
        &["deployments"][..],
        &["deployment", "pause", "x"],
        &["deployment", "run", "x"],
    ] {
        let out = weft_in(dir.path(), Some(&url), &[], args);
        assert!(out.fails(1).contains("does not exist"), "{}", out.stderr);
        let out = weft_in(
            dir.path(),
            Some("postgres://postgres@127.0.0.1:1/test"),
            &[],
            args,
        );
        assert!(out.fails(1).contains("127.0.0.1:1"), "{}", out.stderr);
    }
    assert!(!db.exists(), "the database was created");
    let help = weft_in(dir.path(), None, &[], &["deployment", "--help"]);
    let text = help.ok();
    for word in ["run", "pause", "resume"] {
        assert!(text.contains(word), "{word} in:\n{text}");
    }
    let run_help = weft_in(dir.path(), None, &[], &["deployment", "run", "--help"]);
    assert!(
        run_help.ok().contains("--param") && run_help.stdout.contains("--wait"),
        "{}",
        run_help.stdout
    );
}

#[test]
fn postgres_deployments() {
    let schema = PgSchema::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(
            StoreOptions::new(POSTGRES)
                .schema(schema.0.clone())
                .connect(),
        )
        .expect("the PostgreSQL store opens");
    let last = register_two(&rt, &store);
    let dir = TempDir::new();
    let env = [("WEFT_DATABASE_SCHEMA", schema.0.as_str())];
    let pg = |args: &[&str]| weft_in(dir.path(), Some(POSTGRES), &env, args);

    let list = pg(&["deployments"]);
    let lines = data_lines(list.ok());
    assert_eq!(lines.len(), 2, "{}", list.stdout);
    assert!(
        lines[1].starts_with("nightly etl")
            && lines[1].contains("cron '0 9 * * 1-5' (Europe/Berlin)")
            && lines[1].contains(&last.to_string()),
        "{}",
        list.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(pg(&["deployments", "--json"]).ok()).unwrap();
    assert_eq!(json[1]["last_run"], last.to_string());

    assert_eq!(
        pg(&["deployment", "pause", "adhoc hello"]).ok(),
        "deployment adhoc hello paused\n"
    );
    assert!(rt.block_on(store.deployment("adhoc hello")).unwrap().paused);

    let handled = serve(&rt, &store, &["nightly etl", "adhoc hello"], Answer::Start);
    let out = pg(&[
        "deployment",
        "run",
        "nightly etl",
        "--param",
        "size=5",
        "--param",
        "name=bob",
    ]);
    let text = out.ok();
    {
        let handled = handled.lock().unwrap();
        let (req, run) = &handled[0];
        assert_eq!(
            text,
            format!("started run {} of deployment nightly etl\n", run.unwrap())
        );
        assert_eq!(
            serde_json::Value::Object(req.parameters.clone()),
            serde_json::json!({ "size": 5, "name": "bob" })
        );
    }
    let unknown = pg(&["deployment", "run", "nope", "--wait", "1"]);
    assert!(unknown.fails(1).contains("no deployment named \"nope\""));
}

// ---- subflows ----

#[flow]
async fn nightly(n: u32) -> u32 {
    let a = etl(n, false)?;
    let b = etl(n, true)?;
    a + b
}

#[test]
fn run_show_lists_subflow_runs_under_their_parent() {
    quiet_logs();
    let dir = TempDir::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(Store::connect(&dir.db_url())).unwrap();
    let run = rt.block_on(nightly::run_with(
        RunConfig::new().history(store.clone()),
        2,
    ));
    assert_eq!(run.state.kind, StateKind::Failed, "the second child failed");
    assert!(run.history.as_ref().unwrap().is_complete());
    // In the order they ended: find each by the node that ran it.
    let child = |node: u32| {
        run.subflows
            .iter()
            .find(|c| c.parent.is_some_and(|(_, n)| n == node))
            .unwrap()
    };
    let (ok_child, failed_child) = (child(0), child(1));

    let out = weft(&dir, &["run", "show", &run.id.to_string()]);
    let text = out.ok();
    assert!(text.contains("Subflow runs:"), "{text}");
    let ok_line = line_of(text, &format!("{}  {}", 0, ok_child.id));
    assert!(
        ok_line.contains("etl") && ok_line.contains("Completed"),
        "{ok_line}"
    );
    let failed_line = line_of(text, &format!("{}  {}", 1, failed_child.id));
    assert!(failed_line.contains("Failed"), "{failed_line}");
    // The parent's task runs show each subflow node with its child's state.
    assert!(line_of(text, "etl").contains("Completed"), "{text}");

    // A child's page names its parent and the node that ran it.
    let child = weft(&dir, &["run", "show", &failed_child.id.to_string()]);
    let parent_line = line_of(child.ok(), "parent");
    assert!(parent_line.contains(&run.id.to_string()) && parent_line.contains("(node 1)"));
    // The graph drawing shows the subflow nodes.
    let dot = weft(
        &dir,
        &["run", "graph", &run.id.to_string(), "--format", "dot"],
    );
    assert!(dot.ok().contains("shape=component"), "{}", dot.stdout);
}
