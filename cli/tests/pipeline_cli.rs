//! `weft pipeline check|run|graph` end to end: the real binary on real files and processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn weft(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("WEFT_HOME", home)
        .env_remove("WEFT_DATABASE_URL")
        .env("WEFT_LOG", "off")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-pipeline-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn check_reports_every_problem_with_its_position() {
    let dir = temp();
    let file = dir.join("broken.toml");
    std::fs::write(
        &file,
        r#"name = "broken"
workers = 0
params.ip = { type = "ip" }
[[nodes]]
id = "a"
script = "ping {ip}"
next = ["nowhere"]
[[nodes]]
id = "a"
command = ["echo"]
"#,
    )
    .unwrap();
    let out = weft(&dir, &["pipeline", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for needle in [
        "broken.toml:2:",
        "broken.toml:6:",
        "broken.toml:7:",
        "broken.toml:9:",
        "$ip",
    ] {
        assert!(err.contains(needle), "{needle} in {err}");
    }
    assert!(err.lines().count() >= 5, "one line per problem: {err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn run_fills_parameters_literally_and_exits_by_the_run_state() {
    let dir = temp();
    let file = dir.join("p.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "p"
[params.target]
type = "string"
required = true
[[nodes]]
id = "show"
command = ["printf", "%s", "{{target}}"]
workdir = "{dir}"
next = ["check"]
[[nodes]]
id = "check"
script = 'test "$target" = "ok"'
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    let p = file.to_str().unwrap();
    let ok = weft(&dir, &["pipeline", "run", p, "--param", "target=ok"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("Completed"));

    let hostile = weft(
        &dir,
        &["pipeline", "run", p, "--param", "target=x; touch FILE"],
    );
    assert_eq!(
        hostile.status.code(),
        Some(1),
        "the check node fails: {}",
        text(&hostile.stdout)
    );
    assert!(text(&hostile.stderr).contains("pipeline 'p' ended Failed"));
    assert!(!dir.join("FILE").exists());

    let missing = weft(&dir, &["pipeline", "run", p]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("`target`"),
        "{}",
        text(&missing.stderr)
    );

    // The runs are in the history like flow runs.
    let runs = weft(&dir, &["runs", "--flow", "p"]);
    assert!(runs.status.success(), "{}", text(&runs.stderr));
    assert_eq!(
        text(&runs.stdout).lines().count(),
        3,
        "{}",
        text(&runs.stdout)
    );
    // Each node's command and output, the hostile value printed as text, never run.
    let listed = text(&runs.stdout);
    let newest = listed
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let show = weft(&dir, &["run", "show", newest]);
    let shown = text(&show.stdout);
    assert!(shown.contains("Output:"), "{shown}");
    assert!(shown.contains("stdout | x; touch FILE"), "{shown}");
    assert!(shown.contains("--- check (exit 1)"), "{shown}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn graph_draws_the_file() {
    let dir = temp();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipelines/web_check.toml");
    let out = weft(
        &dir,
        &[
            "pipeline",
            "graph",
            root.to_str().unwrap(),
            "--format",
            "mermaid",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("flowchart TD"));
    let svg = weft(
        &dir,
        &[
            "pipeline",
            "graph",
            root.to_str().unwrap(),
            "--format",
            "svg",
        ],
    );
    assert!(text(&svg.stdout).starts_with("<svg"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_terminal_gets_a_progress_bar_under_the_state_lines() {
    // `script` gives the command a pseudo-terminal, as a person's shell would.
    if Command::new("script").arg("--version").output().is_err() {
        return;
    }
    let dir = temp();
    let file = dir.join("bar.toml");
    std::fs::write(
        &file,
        "name = \"bar\"\n[[nodes]]\nid = \"one\"\ncommand = [\"true\"]\nnext = [\"two\"]\n\
         [[nodes]]\nid = \"two\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let line = format!(
        "{} pipeline run {}",
        env!("CARGO_BIN_EXE_weft"),
        file.display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("WEFT_HOME", &dir)
        .env_remove("WEFT_LOG")
        .output()
        .unwrap();
    let all = text(&out.stdout);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("2/2 nodes"), "{all}");
    assert!(all.contains("Task 'two': Starting task run..."), "{all}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_missing_value_is_asked_for_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        return;
    }
    let dir = temp();
    let file = dir.join("ask.toml");
    std::fs::write(
        &file,
        "name = \"ask\"\n[params.who]\ntype = \"string\"\nrequired = true\n\
         description = \"whom to greet\"\n[[nodes]]\nid = \"greet\"\n\
         command = [\"echo\", \"hello {who}\"]\n",
    )
    .unwrap();
    let line = format!(
        "{} pipeline run {}",
        env!("CARGO_BIN_EXE_weft"),
        file.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("WEFT_HOME", &dir)
        .env("WEFT_LOG", "off")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Answer once the prompt is out: typed earlier, a loaded machine's terminal may take the
    // line before the program has set it up to read one.
    use std::io::{Read, Write};
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !text(&seen).contains("whom to greet") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "no prompt: {}", text(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"Marvin\n")
        .unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    let status = child.wait().unwrap();
    let all = text(&seen);
    assert!(status.success(), "{all}");
    assert!(
        all.contains("who (") && all.contains("whom to greet"),
        "the prompt: {all}"
    );
    let runs = weft(&dir, &["runs", "--flow", "ask", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(json[0]["parameters"]["who"], "Marvin");
    std::fs::remove_dir_all(dir).ok();
}

/// A pipeline of two nodes that each write their shell's pid, then become `sleep 30` (same pid):
/// `trap` makes them ignore SIGTERM (so only SIGKILL ends them).
fn sleepers(dir: &Path, ignore_term: bool) -> PathBuf {
    let file = dir.join("sleepers.toml");
    let trap = if ignore_term { "trap '' TERM; " } else { "" };
    let mut text = String::from("name = \"sleepers\"\nworkers = 2\n");
    for id in ["one", "two"] {
        text.push_str(&format!(
            "[[nodes]]\nid = \"{id}\"\nscript = \"{trap}echo $$ > {id}.pid; exec sleep 30\"\nworkdir = \"{}\"\n",
            dir.display()
        ));
    }
    std::fs::write(&file, text).unwrap();
    file
}

/// The pids both nodes wrote, once they have (at most 20 s).
fn node_pids(dir: &Path) -> Vec<i32> {
    for _ in 0..200 {
        let pids: Vec<i32> = ["one", "two"]
            .iter()
            .filter_map(|id| std::fs::read_to_string(dir.join(format!("{id}.pid"))).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        // The pid is written before `exec sleep`: wait until each really is the sleep.
        if pids.len() == 2 && pids.iter().all(|p| is_sleep(*p)) {
            return pids;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the nodes did not start");
}

/// `pid` is a live (not zombie) `sleep`: a recycled pid would be another program.
fn is_sleep(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            s.contains("(sleep)") && !state.starts_with('Z')
        })
        .unwrap_or(false)
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits for `child` (at most 30 s); kills it and fails when it does not end.
fn wait_for(child: &mut std::process::Child) -> std::process::ExitStatus {
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().ok();
    panic!("weft did not end after the signal");
}

/// The newest run of `sleepers` in the history is Cancelled and none of its task runs is left
/// Running (or Pending).
fn recorded_cancelled(dir: &Path) {
    let runs = weft(dir, &["runs", "--flow", "sleepers", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&runs.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&runs.stdout), text(&runs.stderr)));
    let id = json[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(json[0]["state"], "Cancelled", "{json}");
    let show = weft(dir, &["run", "show", &id, "--json"]);
    let detail: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let tasks = detail["task_runs"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{detail}");
    for t in tasks {
        assert_eq!(t["state"], "Cancelled", "{t}");
    }
}

fn interrupted_run_leaves_nothing(sig: &str, code: i32) {
    let dir = temp();
    let file = sleepers(&dir, false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["pipeline", "run", file.to_str().unwrap()])
        .env("WEFT_HOME", &dir)
        .env_remove("WEFT_DATABASE_URL")
        .env("WEFT_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pids = node_pids(&dir);
    signal(child.id(), sig);
    let status = wait_for(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(code), "{err}");
    for pid in pids {
        assert!(!is_sleep(pid), "node process {pid} survived {sig}");
    }
    assert!(err.contains("Cancelled"), "{err}");
    recorded_cancelled(&dir);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn sigint_cancels_the_run_and_kills_every_node() {
    interrupted_run_leaves_nothing("INT", 130);
}

#[test]
fn sigterm_cancels_the_run_and_kills_every_node() {
    interrupted_run_leaves_nothing("TERM", 143);
}

#[test]
fn a_second_interrupt_kills_at_once() {
    let dir = temp();
    // The nodes ignore SIGTERM: after one Ctrl-C they get SIGKILL only at the end of the grace.
    let file = sleepers(&dir, true);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["pipeline", "run", file.to_str().unwrap()])
        .env("WEFT_HOME", &dir)
        .env_remove("WEFT_DATABASE_URL")
        .env("WEFT_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pids = node_pids(&dir);
    signal(child.id(), "INT");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(pids.iter().all(|p| is_sleep(*p)), "SIGTERM is ignored");
    signal(child.id(), "INT");
    // Gone without waiting for the grace (2 s): SIGKILL went to every group at once.
    let mut gone = false;
    for _ in 0..10 {
        if pids.iter().all(|p| !is_sleep(*p)) {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(gone, "the second Ctrl-C did not kill the nodes at once");
    assert_eq!(wait_for(&mut child).code(), Some(130));
    recorded_cancelled(&dir);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn ctrl_c_on_a_terminal_cancels_the_run() {
    if Command::new("script").arg("--version").output().is_err() {
        return;
    }
    let dir = temp();
    let file = sleepers(&dir, false);
    let line = format!(
        "{} pipeline run {}",
        env!("CARGO_BIN_EXE_weft"),
        file.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("WEFT_HOME", &dir)
        .env("WEFT_LOG", "off")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pids = node_pids(&dir);
    use std::io::Write;
    // Ctrl-C, typed on the terminal: the line discipline sends SIGINT to weft's process group.
    child.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    child.stdin.as_mut().unwrap().flush().unwrap();
    let status = wait_for(&mut child);
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert_eq!(status.code(), Some(130), "{out}");
    for pid in pids {
        assert!(!is_sleep(pid), "node process {pid} survived Ctrl-C");
    }
    recorded_cancelled(&dir);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn out_of_range_workers_are_refused() {
    let dir = temp();
    let file = dir.join("w.toml");
    std::fs::write(
        &file,
        "name = \"w\"\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let p = file.to_str().unwrap();
    for n in ["18446744073709551615", "100001", "0"] {
        let out = weft(&dir, &["pipeline", "run", p, "--workers", n]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{n}: {err}");
        assert!(err.contains("--workers"), "{n}: {err}");
        assert!(!err.contains("internal error"), "{n}: {err}");
    }
    let ok = weft(&dir, &["pipeline", "run", p, "--workers", "100000"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    std::fs::write(
        &file,
        "name = \"w\"\nworkers = 9223372036854775807\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let out = weft(&dir, &["pipeline", "check", p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("w.toml:2:11: `workers` must be at most 100000"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_value_that_would_be_an_option_is_refused_before_the_run() {
    let dir = temp();
    let file = dir.join("sort.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"sort\"\n[params.f]\ntype = \"string\"\n[[nodes]]\nid = \"first\"\n\
             command = [\"touch\", \"RAN\"]\nworkdir = \"{d}\"\nnext = [\"sort\"]\n[[nodes]]\n\
             id = \"sort\"\ncommand = [\"sort\", \"-u\", \"{{f}}\"]\nworkdir = \"{d}\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let target = dir.join("FILE");
    let value = format!("f=-o{}", target.display());
    let out = weft(
        &dir,
        &["pipeline", "run", file.to_str().unwrap(), "--param", &value],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("parameter `f`") && err.contains("node `sort`") && err.contains("nothing ran"),
        "{err}"
    );
    assert!(!target.exists() && !dir.join("RAN").exists());
    std::fs::remove_dir_all(dir).ok();
}
