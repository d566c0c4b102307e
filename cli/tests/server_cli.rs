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
