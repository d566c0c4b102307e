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
    use std::io::Write;
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"Marvin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let all = text(&out.stdout);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("who (") && all.contains("whom to greet"),
        "the prompt: {all}"
    );
    let runs = weft(&dir, &["runs", "--flow", "ask", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(json[0]["parameters"]["who"], "Marvin");
    std::fs::remove_dir_all(dir).ok();
}
