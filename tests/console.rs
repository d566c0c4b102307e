//! The default console subscriber speaks Prefect's phrasing. The flow runs in a child process
//! (this test binary, started again) so that its real stderr can be read.

use std::process::Command;
use weft::prelude::*;

#[task]
fn say_hello(name: String) -> String {
    format!("Hello, {name}!")
}

#[task(retries = 1)]
fn broken() -> Result<(), String> {
    Err("Server not available. Status code: 503".into())
}

#[task]
async fn inc(x: u32) -> u32 {
    x + 1
}

#[flow(name = "my first flow!")]
async fn hello(name: String) -> String {
    let g = say_hello(name)?;
    let _b = broken();
    let _many = inc::map(0..50);
    g
}

/// Runs only in the child: the default subscriber, a real stderr.
#[tokio::test]
async fn child_runs_a_flow() {
    if std::env::var_os("WEFT_CONSOLE_CHILD").is_none() {
        return;
    }
    let run = hello("world".into()).await;
    assert_eq!(run.result.unwrap(), "Hello, world!");
}

fn child_stderr(level: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_runs_a_flow",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("WEFT_CONSOLE_CHILD", "1")
    .env_remove("RUST_LOG")
    .env_remove("WEFT_LOG");
    if let Some(l) = level {
        cmd.env("WEFT_LOG", l);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn the_console_speaks_prefects_phrasing_in_order() {
    let err = child_stderr(None);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(" | ")).collect();
    // `HH:MM:SS.mmm | LEVEL   | message`
    for l in &lines {
        let (time, rest) = l.split_once(" | ").unwrap();
        assert_eq!(time.len(), 12, "{l}");
        assert!(
            ["INFO    | ", "WARN    | ", "ERROR   | "]
                .iter()
                .any(|p| rest.starts_with(p)),
            "{l}"
        );
    }
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.ends_with(needle))
            .unwrap_or_else(|| panic!("no line ending with {needle:?} in:\n{err}"))
    };
    let begin = pos("INFO    | Beginning Flow run for 'my first flow!'");
    let start = pos("INFO    | Task 'say_hello': Starting task run...");
    let done =
        pos("INFO    | Task 'say_hello': Finished task run for task with final state: 'Completed'");
    let retry = pos("WARN    | Task 'broken': Attempt 1 of 2 failed: Server not available. Status code: 503; retrying in 0s");
    let failed = pos(
        "ERROR   | Task 'broken': Finished task run for task with final state: 'Failed' (Server not available. Status code: 503)",
    );
    let end = lines
        .iter()
        .position(|l| l.contains("ERROR   | Flow run FAILED: some reference tasks failed"))
        .expect("the flow's final line");
    assert!(begin < start && start < done && done < end, "{err}");
    assert!(retry < failed && failed < end, "{err}");
    // Mapped elements stay at DEBUG; their summary is at INFO.
    pos("INFO    | Task 'inc': Starting mapped task run over 50 elements...");
    pos("INFO    | Task 'inc': Finished mapped task run: 50 Completed");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("Task 'inc': Starting task run"))
            .count(),
        0
    );
}

#[test]
fn weft_log_sets_the_level() {
    let debug = child_stderr(Some("debug"));
    assert_eq!(
        debug
            .lines()
            .filter(|l| l.ends_with("Task 'inc': Starting task run..."))
            .count(),
        50
    );
    let quiet = child_stderr(Some("off"));
    assert!(!quiet.contains(" | "), "{quiet}");
}
