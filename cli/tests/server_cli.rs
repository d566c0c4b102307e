//! `weft server start` end to end: the real binary refuses to listen beyond loopback without a
//! token, serves the API on loopback, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn weft(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
    c.env("WEFT_HOME", home)
        .env_remove("WEFT_DATABASE_URL")
        .env_remove("WEFT_API_TOKEN")
        .env_remove("WEFT_API_TOKEN_FILE")
        .env_remove("WEFT_API_READ_TOKEN");
    c
}

fn temp_home() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-server-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn beyond_loopback_without_a_token_is_refused() {
    let home = temp_home();
    let out = weft(&home)
        .args(["server", "start", "--host", "0.0.0.0", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without a token") && err.contains("WEFT_API_TOKEN"),
        "{err}"
    );
    let out = weft(&home)
        .args(["server", "start", "--token", "short"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serves_the_api_and_stops_on_sigterm() {
    let home = temp_home();
    let mut child = weft(&home)
        .args(["server", "start", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(url) = line.strip_prefix("Check out the dashboard at http://") {
            break url.to_owned();
        }
    };
    assert!(url.starts_with("127.0.0.1:"), "{url}");
    let mut s = std::net::TcpStream::connect(&url).unwrap();
    write!(
        s,
        "GET /api/runs HTTP/1.1\r\nHost: {url}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(r#"{"runs":[],"next_cursor":null}"#),
        "{answer}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{status:?}");
    assert!(rest.iter().any(|l| l == "Server stopped."), "{rest:?}");
}

const SLEEPY: &str = r#"
name = "cli_sleepy"
[params.secs]
type = "int"
required = true
[[nodes]]
id = "mark"
command = ["touch", "started-here"]
next = ["nap"]
[[nodes]]
id = "nap"
command = ["sleep", "{secs}"]
"#;

/// A raw HTTP request to `addr`; the whole answer.
fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// Processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| *c == want)
        .count()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn runs_pipelines_in_its_directory_and_cancels_them_on_sigterm() {
    let home = temp_home();
    let file = home.join("sleepy.toml");
    std::fs::write(&file, SLEEPY).unwrap();
    let recorded = weft(&home)
        .current_dir(&home)
        .args([
            "pipeline",
            "run",
            file.to_str().unwrap(),
            "--param",
            "secs=0",
        ])
        .output()
        .unwrap();
    assert!(recorded.status.success(), "{recorded:?}");
    std::fs::remove_file(home.join("started-here")).unwrap();
    let workdir = home.join("work");
    std::fs::create_dir_all(&workdir).unwrap();
    let mut child = weft(&home)
        .current_dir(&workdir)
        .args(["server", "start", "--port", "0", "--pipeline-workers", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server's address").unwrap();
        if let Some(a) = line.strip_prefix("Check out the dashboard at http://") {
            break a.to_owned();
        }
    };
    let body = r#"{"parameters": {"secs": 3602001}}"#;
    let answer = http(&addr, "POST", "/api/pipelines/cli_sleepy/runs", body);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let run = answer.split("\"run\":\"").nth(1).unwrap()[..36].to_owned();
    let argv = ["sleep", "3602001"];
    wait_until("the node runs", || processes(&argv) == 1);
    assert!(
        workdir.join("started-here").exists(),
        "in the server's directory"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(processes(&argv), 0, "no node is left running");
    let shown = weft(&home).args(["run", "show", &run]).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("Cancelled"), "{text}");
    assert!(!text.contains("Running"), "{text}");
}
