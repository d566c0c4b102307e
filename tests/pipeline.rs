//! Pipelines from files on the engine: order, fail_fast, workers, timeouts, hostile parameters,
//! run history; the shipped example files.

use std::path::{Path, PathBuf};
use std::time::Duration;
use weft::pipeline::params::{parse_assignment, resolve};
use weft::pipeline::{Pipeline, PipelineOutputs};
use weft::prelude::*;

mod common;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-pipeline-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load(text: &str) -> Pipeline {
    Pipeline::from_toml(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

async fn run(p: &Pipeline, params: &[(&str, &str)]) -> FlowRun<PipelineOutputs> {
    let given: Vec<_> = params
        .iter()
        .map(|(k, v)| parse_assignment(&format!("{k}={v}")).unwrap())
        .collect();
    let values = resolve(&p.params, &given, None).unwrap_or_else(|e| panic!("{e}"));
    p.run_with(RunConfig::new().no_history(), &values).await
}

fn state_of(run: &FlowRun<PipelineOutputs>, id: &str) -> StateKind {
    run.task(id)
        .unwrap_or_else(|| panic!("node {id}"))
        .state
        .kind
}

/// Start and end of each node that ran, from its process's own timing.
fn spans(
    run: &FlowRun<PipelineOutputs>,
) -> Vec<(
    String,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
)> {
    run.result
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|n| {
            n.outcome
                .as_ref()
                .map(|o| (n.id.clone(), o.started, o.ended))
        })
        .collect()
}

const DAG: &str = r#"
name = "dag"
workers = 4
[[nodes]]
id = "a"
command = ["sh", "-c", "sleep 0.2; echo a"]
next = ["c"]
[[nodes]]
id = "b"
command = ["echo", "b"]
next = ["c"]
[[nodes]]
id = "c"
command = ["echo", "c"]
next = ["d"]
[[nodes]]
id = "d"
command = ["echo", "d"]
[[nodes]]
id = "lonely"
command = ["echo", "isolated"]
"#;

#[tokio::test]
async fn nodes_run_after_all_their_predecessors_completed() {
    let run = run(&load(DAG), &[]).await;
    assert!(run.is_successful(), "{}", run.state);
    let spans = spans(&run);
    let at = |id: &str| spans.iter().find(|s| s.0 == id).unwrap().clone();
    assert!(at("a").2 <= at("c").1 && at("b").2 <= at("c").1);
    assert!(at("c").2 <= at("d").1);
    assert_eq!(state_of(&run, "lonely"), StateKind::Completed); // an isolated node runs
    let out = run.result.as_ref().unwrap();
    let a = out.iter().find(|n| n.id == "a").unwrap();
    assert_eq!(a.outcome.as_ref().unwrap().stdout, b"a\n");
    assert_eq!(run.graph.edges.len(), 3);
}

const FAILING: &str = r#"
name = "failing"
workers = 3
fail_fast = FAIL_FAST
[[nodes]]
id = "bad"
command = ["sh", "-c", "sleep 0.2; echo broken >&2; exit 3"]
next = ["after_bad"]
[[nodes]]
id = "after_bad"
command = ["echo", "never"]
[[nodes]]
id = "slow"
script = "echo $$ > slow.pid; sleep 5; echo slow done"
workdir = "WORKDIR"
[[nodes]]
id = "quick"
command = ["echo", "quick"]
next = ["after_quick"]
[[nodes]]
id = "after_quick"
command = ["sh", "-c", "sleep 1; echo after quick"]
"#;

fn failing(fail_fast: bool, dir: &Path) -> Pipeline {
    load(
        &FAILING
            .replace("FAIL_FAST", &fail_fast.to_string())
            .replace("WORKDIR", &dir.display().to_string()),
    )
}

fn alive(pid: i32, comm: &str) -> bool {
    // `comm` names the program: a reused pid is another one. A zombie (exited, not reaped by
    // this container's init) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            s.contains(&format!("({comm})")) && !state.starts_with('Z')
        })
        .unwrap_or(false)
}

/// Waits (at most 10 s, polling) for `pid` to be gone; its /proc line if it is not.
async fn gone(pid: i32, comm: &str) -> Result<(), String> {
    for _ in 0..100 {
        if !alive(pid, comm) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

#[tokio::test]
async fn fail_fast_cancels_running_nodes_and_starts_no_new_one() {
    let dir = temp_dir("failfast");
    let run = run(&failing(true, &dir), &[]).await;
    assert_eq!(run.state.kind, StateKind::Failed);
    assert_eq!(state_of(&run, "bad"), StateKind::Failed);
    assert!(run
        .task("bad")
        .unwrap()
        .state
        .message
        .as_deref()
        .unwrap()
        .contains("exit code 3: broken"));
    assert_eq!(state_of(&run, "after_bad"), StateKind::NotRun);
    assert_eq!(state_of(&run, "slow"), StateKind::Cancelled);
    // `after_quick` either never started or was cancelled: it never completed.
    assert_ne!(state_of(&run, "after_quick"), StateKind::Completed);
    let pid: i32 = std::fs::read_to_string(dir.join("slow.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if let Err(stat) = gone(pid, "sh").await {
        panic!("the cancelled node's process group was not killed: still running: {stat}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn without_fail_fast_independent_branches_finish() {
    let dir = temp_dir("nofailfast");
    let run = run(&failing(false, &dir), &[]).await;
    assert_eq!(run.state.kind, StateKind::Failed);
    assert_eq!(state_of(&run, "after_bad"), StateKind::NotRun);
    assert_eq!(state_of(&run, "slow"), StateKind::Completed);
    assert_eq!(state_of(&run, "after_quick"), StateKind::Completed);
    std::fs::remove_dir_all(dir).ok();
}

fn parallel(workers: usize) -> Pipeline {
    let mut text = format!("name = \"par{workers}\"\nworkers = {workers}\n");
    for i in 0..3 {
        text.push_str(&format!(
            "[[nodes]]\nid = \"n{i}\"\ncommand = [\"sleep\", \"0.3\"]\n"
        ));
    }
    load(&text)
}

fn overlaps(
    spans: &[(
        String,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )],
) -> bool {
    spans
        .iter()
        .enumerate()
        .any(|(i, a)| spans.iter().skip(i + 1).any(|b| a.1 < b.2 && b.1 < a.2))
}

#[tokio::test]
async fn one_worker_never_overlaps_three_do() {
    let one = run(&parallel(1), &[]).await;
    assert!(one.is_successful());
    assert_eq!(spans(&one).len(), 3);
    assert!(!overlaps(&spans(&one)));
    let three = run(&parallel(3), &[]).await;
    assert!(three.is_successful());
    assert!(overlaps(&spans(&three)));
}

#[tokio::test]
async fn a_node_past_its_timeout_ends_timed_out_with_its_processes_gone() {
    let dir = temp_dir("timeout");
    let p = load(&format!(
        r#"
name = "timeout"
[[nodes]]
id = "forever"
script = "sleep 1000 & echo $! > child.pid; ping_without_count() {{ sleep 1000; }}; ping_without_count"
workdir = "{}"
timeout = "300ms"
"#,
        dir.display()
    ));
    let run = run(&p, &[]).await;
    assert_eq!(state_of(&run, "forever"), StateKind::TimedOut);
    assert!(run
        .task("forever")
        .unwrap()
        .state
        .message
        .as_deref()
        .unwrap()
        .contains("timed out"));
    let pid: i32 = std::fs::read_to_string(dir.join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if let Err(stat) = gone(pid, "sleep").await {
        panic!("a child survived the timeout: still running: {stat}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn hostile_parameters_never_reach_a_shell() {
    let dir = temp_dir("hostile");
    let p = load(&format!(
        r#"
name = "hostile"
workers = 1
[params.value]
type = "string"
required = true
[[nodes]]
id = "argv"
command = ["printf", "%s", "{{value}}"]
workdir = "{dir}"
[[nodes]]
id = "script"
script = 'printf "%s" "$value"'
workdir = "{dir}"
"#,
        dir = dir.display()
    ));
    for value in [
        "127.0.0.1; touch FILE",
        "$(touch FILE)",
        "`touch FILE`",
        "a\ntouch FILE",
        "'\"; touch FILE; \"'",
        "-rf",
    ] {
        if value.starts_with('-') {
            // A leading `-` in a whole argument is refused before anything runs: see
            // `a_leading_dash_is_refused_before_anything_runs`.
            continue;
        }
        let run = run(&p, &[("value", value)]).await;
        assert!(run.is_successful(), "{value:?}: {}", run.state);
        for node in run.result.as_ref().unwrap() {
            assert_eq!(
                node.outcome.as_ref().unwrap().stdout,
                value.as_bytes(),
                "{}",
                node.id
            );
        }
        assert!(!dir.join("FILE").exists(), "{value:?} ran a command");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_pipeline_run_is_recorded_like_a_flow_run() {
    let dir = temp_dir("history");
    let store = weft::store::Store::connect(&format!("sqlite://{}/weft.db", dir.display()))
        .await
        .unwrap();
    let p = load(DAG);
    let values = resolve(&p.params, &[], None).unwrap();
    let run = p
        .run_with(RunConfig::new().history(store.clone()), &values)
        .await;
    assert!(run.history.as_ref().unwrap().is_complete());
    let detail = store.run(run.id).await.unwrap();
    assert_eq!(detail.run.flow, "dag");
    assert_eq!(detail.task_runs.len(), 5);
    assert!(detail
        .task_runs
        .iter()
        .all(|t| t.state == StateKind::Completed));
    assert!(detail.to_dot().contains("\"a\" -> \"c\""));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn the_shipped_pipelines_check_and_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipelines");
    let web = Pipeline::from_path(root.join("web_check.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(web.start_nodes().len() > 1);
    let backup = Pipeline::from_path(root.join("backup.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(!backup.nodes.is_empty());
    // web_check pings; it runs where `ping` exists (.ci/run installs it).
    if std::process::Command::new("ping")
        .arg("-V")
        .output()
        .is_ok()
    {
        let run = run(&web, &[("count", "1")]).await;
        assert!(run.is_successful(), "{}: {:#?}", run.state, run.task_runs);
    }
}

async fn outputs_are_recorded_as_bytes(store: weft::store::Store) {
    let p = load(
        r#"
name = "outputs"
[[nodes]]
id = "latin1"
command = ["printf", "caf\\351\\n"]
next = ["fails"]
[[nodes]]
id = "fails"
script = "echo partial; echo 'disk full' >&2; exit 4"
"#,
    );
    let values = resolve(&p.params, &[], None).unwrap();
    let run = p
        .run_with(RunConfig::new().history(store.clone()), &values)
        .await;
    assert_eq!(run.state.kind, StateKind::Failed);
    assert!(run.history.as_ref().unwrap().is_complete());
    let detail = store.run(run.id).await.unwrap();
    assert_eq!(detail.node_outputs.len(), 2);
    let latin1 = &detail.node_outputs[0];
    assert_eq!(latin1.stdout, b"caf\xe9\n"); // the bytes, as written
    assert_eq!(latin1.stdout_lossy(), "caf\u{fffd}\n"); // shown lossily, never an error
    assert_eq!(latin1.exit_code, Some(0));
    assert!(latin1.command.contains("printf"));
    let fails = &detail.node_outputs[1];
    assert_eq!(
        (fails.exit_code, fails.stdout.as_slice()),
        (Some(4), &b"partial\n"[..])
    );
    assert_eq!(fails.stderr_lossy(), "disk full\n");
    let source = store
        .pipeline_source("outputs", &detail.run.flow_version)
        .await
        .unwrap()
        .expect("the file's version is recorded");
    assert!(source.contains("disk full"));
}

#[tokio::test]
async fn sqlite_node_outputs_are_recorded_as_bytes() {
    let dir = temp_dir("outputs");
    let store = weft::store::Store::connect(&format!("sqlite://{}/weft.db", dir.display()))
        .await
        .unwrap();
    outputs_are_recorded_as_bytes(store).await;
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_node_outputs_are_recorded_as_bytes() {
    let schema = common::Schema::new("pipe").await;
    outputs_are_recorded_as_bytes(schema.store().await).await;
    schema.drop().await;
}

#[tokio::test]
async fn long_output_is_cut_in_the_history_and_kept_whole_in_the_result_store() {
    let dir = temp_dir("long");
    let store = weft::store::Store::connect(&format!("sqlite://{}/weft.db", dir.display()))
        .await
        .unwrap();
    let results = std::sync::Arc::new(weft::results::MemoryStore::default());
    let p = load(
        r#"
name = "long"
[[nodes]]
id = "loud"
script = "head -c 3145728 /dev/zero | tr '\\000' a; echo oops >&2"
"#,
    );
    let values = resolve(&p.params, &[], None).unwrap();
    let run = p
        .run_with(
            RunConfig::new()
                .history(store.clone())
                .result_store(results.clone()),
            &values,
        )
        .await;
    assert!(run.is_successful(), "{}", run.state);
    let detail = store.run(run.id).await.unwrap();
    let out = &detail.node_outputs[0];
    assert_eq!(out.stdout.len(), 1 << 20, "the history keeps the first MiB");
    assert_eq!(out.stdout_total, 3 << 20);
    let key = out
        .stdout_key
        .clone()
        .expect("the whole stream went to the result store");
    assert_eq!(out.stderr_key, None);
    let entry = weft::results::ResultStore::get(&*results, &key)
        .await
        .unwrap()
        .unwrap();
    let whole = weft::results::decode_entry(&entry).unwrap();
    assert_eq!(whole.payload.len(), 3 << 20);
    assert!(whole.payload.iter().all(|b| *b == b'a'));
    std::fs::remove_dir_all(dir).ok();
}

/// Every hostile value of the README's list, `FILE` being a file of `dir`.
fn hostile_values(dir: &Path) -> Vec<String> {
    let file = dir.join("FILE");
    let file = file.display();
    vec![
        format!("127.0.0.1; touch {file}"),
        format!("$(touch {file})"),
        format!("`touch {file}`"),
        format!("a\ntouch {file}"),
        format!("'\"; touch {file}; echo '\""),
        format!("x && touch {file}"),
        format!("x | touch {file}"),
        format!("x || touch {file} &"),
        format!("> {file}"),
        "*".to_string(),
        format!("{}/*", dir.display()),
        "~ ? [a-z] {a,b}".to_string(),
        format!("-o{file}"),
        format!("-oProxyCommand=touch {file}"),
        format!("--output={file}"),
        "-rf".to_string(),
    ]
}

fn given(p: &Pipeline, params: &[(&str, &str)]) -> weft::pipeline::ParamValues {
    let given: Vec<_> = params
        .iter()
        .map(|(k, v)| parse_assignment(&format!("{k}={v}")).unwrap())
        .collect();
    resolve(&p.params, &given, None).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn hostile_values_in_every_position_never_run_a_command() {
    let dir = temp_dir("positions");
    // A value may fill a whole argument, the start, the end or the middle of one, follow a `--`,
    // be a positional argument of a shell's script, or reach a script as "$v".
    let p = load(
        r#"
name = "positions"
workers = 1
[params.v]
type = "string"
required = true
[[nodes]]
id = "whole"
command = ["printf", "[%s]", "{v}"]
[[nodes]]
id = "start"
command = ["printf", "[%s]", "{v}.txt"]
[[nodes]]
id = "end"
command = ["printf", "[%s]", "--host={v}"]
[[nodes]]
id = "middle"
command = ["printf", "[%s]", "a {v} b"]
[[nodes]]
id = "after_dashes"
command = ["/bin/echo", "--", "{v}"]
[[nodes]]
id = "positional"
command = ["sh", "-c", "printf '[%s]' \"$1\"", "sh", "x{v}"]
[[nodes]]
id = "script"
script = 'printf "[%s]" "$v"'
"#,
    );
    for value in hostile_values(&dir) {
        let values = given(&p, &[("v", &value)]);
        let run = p.run_with(RunConfig::new().no_history(), &values).await;
        let outputs = run.result.as_ref().unwrap();
        if value.starts_with('-') {
            // As a whole argument or its start it would be an option: nothing runs.
            assert_eq!(run.state.kind, StateKind::Failed, "{value:?}");
            let why = run.state.message.clone().unwrap_or_default();
            assert!(
                why.contains("`v`") && why.contains("`whole`") && why.contains("`start`"),
                "{value:?}: {why}"
            );
            assert!(
                outputs.iter().all(|n| n.outcome.is_none()),
                "{value:?} ran a node"
            );
        } else {
            assert!(run.is_successful(), "{value:?}: {}", run.state);
            let out = |id: &str| {
                let n = outputs.iter().find(|n| n.id == id).unwrap();
                String::from_utf8(n.outcome.as_ref().unwrap().stdout.clone()).unwrap()
            };
            assert_eq!(out("whole"), format!("[{value}]"));
            assert_eq!(out("start"), format!("[{value}.txt]"));
            assert_eq!(out("end"), format!("[--host={value}]"));
            assert_eq!(out("middle"), format!("[a {value} b]"));
            assert_eq!(out("after_dashes"), format!("-- {value}\n"));
            assert_eq!(out("positional"), format!("[x{value}]"));
            assert_eq!(out("script"), format!("[{value}]"));
        }
        assert!(!dir.join("FILE").exists(), "{value:?} ran a command");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_placeholder_in_a_shells_code_is_refused_when_the_file_is_checked() {
    let dir = temp_dir("shellcode");
    let text = format!(
        r#"
name = "web_check"
[params.ip]
type = "string"
[[nodes]]
id = "ping"
command = ["sh", "-c", "echo ping -c 1 {{ip}}"]
workdir = "{}"
"#,
        dir.display()
    );
    match Pipeline::from_toml(&text, "shellcode.toml") {
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.starts_with("shellcode.toml:7:24: `{ip}` is in the code `sh -c` runs"),
                "{shown}"
            );
            assert!(shown.contains("\"$ip\""), "{shown}");
        }
        Ok(p) => {
            // What the check let through: show that it runs a command.
            for value in hostile_values(&dir) {
                let values = given(&p, &[("ip", &value)]);
                let _ = p.run_with(RunConfig::new().no_history(), &values).await;
            }
            let ran = dir.join("FILE").exists();
            panic!("the file passed the check (and a value ran a command: {ran})");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_leading_dash_is_refused_before_anything_runs() {
    let dir = temp_dir("dash");
    let p = load(&format!(
        r#"
name = "sort"
workers = 1
[params.ip]
type = "string"
required = true
[[nodes]]
id = "first"
command = ["touch", "RAN"]
workdir = "{dir}"
next = ["sort"]
[[nodes]]
id = "sort"
command = ["sort", "-u", "{{ip}}"]
workdir = "{dir}"
"#,
        dir = dir.display()
    ));
    std::fs::write(dir.join("in.txt"), "b\na\n").unwrap();
    let file = dir.join("FILE");
    let refused = run(&p, &[("ip", &format!("-o{}", file.display()))]).await;
    assert_eq!(refused.state.kind, StateKind::Failed);
    let why = refused.state.message.clone().unwrap_or_default();
    assert!(
        why.contains("parameter `ip`")
            && why.contains("node `sort`")
            && why.contains("allow_leading_dash"),
        "{why}"
    );
    assert!(!file.exists(), "the value became an option of sort");
    assert!(!dir.join("RAN").exists(), "a node ran before the refusal");
    // An ordinary value runs.
    let ok = run(&p, &[("ip", "in.txt")]).await;
    assert!(ok.is_successful(), "{}", ok.state);
    assert!(dir.join("RAN").exists());
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn ssh_never_gets_a_value_as_an_option() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("ssh");
    // A fake ssh that does what the real one does with -oProxyCommand=...: runs it.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ssh = bin.join("ssh");
    std::fs::write(
        &ssh,
        "#!/bin/sh\nfor a; do case \"$a\" in -oProxyCommand=*) sh -c \"${a#-oProxyCommand=}\";; esac; done\necho \"ssh $*\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = load(&format!(
        r#"
name = "uptime"
[params.host]
type = "string"
required = true
[[nodes]]
id = "uptime"
command = ["ssh", "-o", "BatchMode=yes", "{{host}}", "uptime"]
workdir = "{dir}"
env = {{ PATH = "{bin}:/usr/bin:/bin" }}
"#,
        dir = dir.display(),
        bin = bin.display()
    ));
    let file = dir.join("FILE");
    let run = run(
        &p,
        &[("host", &format!("-oProxyCommand=touch {}", file.display()))],
    )
    .await;
    assert_eq!(run.state.kind, StateKind::Failed);
    assert!(!file.exists(), "ssh ran the value as its ProxyCommand");
    let ok = run_ok(&p, "example.org").await;
    assert_eq!(ok, "ssh -o BatchMode=yes example.org uptime\n");
    std::fs::remove_dir_all(dir).ok();
}

async fn run_ok(p: &Pipeline, host: &str) -> String {
    let run = run(p, &[("host", host)]).await;
    assert!(run.is_successful(), "{}", run.state);
    let out = &run.result.as_ref().unwrap()[0];
    String::from_utf8(out.outcome.as_ref().unwrap().stdout.clone()).unwrap()
}

#[tokio::test]
async fn a_leading_dash_is_allowed_where_the_file_says_so() {
    let p = load(
        r#"
name = "dashes"
workers = 1
[params.opt]
type = "string"
allow_leading_dash = true
default = "x"
[params.n]
type = "int"
default = 1
[params.delta]
type = "int"
min = -10
default = 0
[[nodes]]
id = "opt"
command = ["printf", "[%s]", "{opt}"]
[[nodes]]
id = "n"
command = ["printf", "[%s]", "{n}"]
[[nodes]]
id = "delta"
command = ["printf", "[%s]", "{delta}"]
"#,
    );
    let stdout = |run: &FlowRun<PipelineOutputs>, id: &str| {
        let n = run
            .result
            .as_ref()
            .unwrap()
            .iter()
            .find(|n| n.id == id)
            .unwrap();
        String::from_utf8(n.outcome.as_ref().unwrap().stdout.clone()).unwrap()
    };
    let ok = run(&p, &[("opt", "-v"), ("delta", "-3")]).await;
    assert!(ok.is_successful(), "{}", ok.state);
    assert_eq!(stdout(&ok, "opt"), "[-v]");
    assert_eq!(stdout(&ok, "delta"), "[-3]");
    // An int without a negative `min` is not expected to start with `-`.
    let refused = run(&p, &[("n", "-5")]).await;
    assert_eq!(refused.state.kind, StateKind::Failed);
    let why = refused.state.message.clone().unwrap_or_default();
    assert!(
        why.contains("parameter `n`") && why.contains("node `n`"),
        "{why}"
    );
}
