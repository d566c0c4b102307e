//! `weft pipeline deploy` and `weft worker`, the real binary over a SQLite history in a
//! temporary `WEFT_HOME`: a pipeline deployed to a work pool runs on a `weft worker` process
//! when asked, with the values asked for; bad input is refused before anything is stored; the
//! worker stops on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn home() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-worker-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn weft_cmd(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.args(args)
        .current_dir(home)
        .env("WEFT_HOME", home)
        .env("WEFT_LOG", "info")
        .env_remove("WEFT_DATABASE_URL")
        .env_remove("WEFT_DATABASE_SCHEMA");
    cmd
}

/// Runs `weft args`, expects exit code `code`; returns stdout and stderr.
fn expect(home: &Path, args: &[&str], code: i32) -> (String, String) {
    let out: Output = weft_cmd(home, args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

const GREET: &str = r#"
name = "greet"

[params.word]
type = "regex"
default = "hi"
pattern = "^[a-z]+$"

[[nodes]]
id = "say"
command = ["echo", "word:", "{word}"]
"#;

/// A `weft worker` process, SIGKILLed if the test fails before stopping it.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_deployed_pipeline_runs_on_a_worker() {
    let home = home();
    std::fs::write(home.join("greet.toml"), GREET).unwrap();
    let (_, err) = expect(
        &home,
        &["pipeline", "deploy", "greet.toml", "--pool", "ops"],
        1,
    );
    assert!(err.contains("no work pool named \"ops\""), "{err}");
    expect(&home, &["work-pool", "create", "ops"], 0);
    let (_, err) = expect(
        &home,
        &[
            "pipeline",
            "deploy",
            "greet.toml",
            "--pool",
            "ops",
            "--param",
            "word=NOPE",
        ],
        1,
    );
    assert!(err.contains("parameter `word`"), "{err}");
    let (out, _) = expect(
        &home,
        &[
            "pipeline",
            "deploy",
            "greet.toml",
            "--pool",
            "ops",
            "--param",
            "word=hello",
        ],
        0,
    );
    assert!(
        out.starts_with("deployment greet of pipeline 'greet'"),
        "{out}"
    );
    assert!(out.contains("in work pool ops"), "{out}");

    let worker = weft_cmd(&home, &["worker", "--pool", "ops", "--name", "w1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut worker = WorkerProcess(worker);
    let (out, _) = expect(
        &home,
        &["deployment", "run", "greet", "--param", "word=world"],
        0,
    );
    assert!(out.starts_with("scheduled run "), "{out}");
    let id = out.split_whitespace().nth(2).unwrap().to_owned();
    let mut shown = String::new();
    wait_for(Duration::from_secs(30), "the run to complete", || {
        shown = expect(&home, &["run", "show", &id], 0).0;
        shown.contains("state       Completed")
    });
    assert!(shown.contains("word: world"), "{shown}");
    assert!(shown.contains("worker      w1"), "{shown}");
    assert!(
        shown.contains("deployment  greet (work pool ops)"),
        "{shown}"
    );
    let (out, _) = expect(&home, &["workers"], 0);
    assert!(out.contains("w1") && out.contains("ONLINE"), "{out}");

    // The deployment's own value, when a run asks for none.
    let (out, _) = expect(&home, &["deployment", "run", "greet"], 0);
    let id = out.split_whitespace().nth(2).unwrap().to_owned();
    wait_for(Duration::from_secs(30), "the second run", || {
        shown = expect(&home, &["run", "show", &id], 0).0;
        shown.contains("state       Completed")
    });
    assert!(shown.contains("word: hello"), "{shown}");

    let pid = worker.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = worker.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the worker did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let mut out = String::new();
    use std::io::Read;
    worker
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "Worker stopped.\n");
    let (out, _) = expect(&home, &["workers"], 0);
    assert!(!out.contains("w1"), "a stopped worker deregisters: {out}");
}
