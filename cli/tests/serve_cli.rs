//! End to end: a real `Server` serving a deployment, and the real `weft` binary asking it for runs,
//! pausing and resuming it.

use std::process::{Command, Output};
use std::time::Duration;
use weft::prelude::*;
use weft::schedule::{Deployment, Server};
use weft::store::{RunFilter, Store};

#[task]
async fn count_rows(table: String, limit: u32) -> String {
    format!("{table}:{limit}")
}

#[flow]
async fn audit(table: String, limit: u32) -> String {
    let r = count_rows(table, limit)?;
    r
}

fn weft(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--database")
        .arg(url)
        .args(args)
        .env("WEFT_LOG", "off")
        .output()
        .unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_requested_from_the_cli_runs_once_with_its_parameters() {
    let dir = std::env::temp_dir().join(format!("weft-serve-cli-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}/weft.db", dir.display());
    let store = Store::connect(&url).await.unwrap();
    let d = Deployment::new("audit", audit::flow(), ("users".to_owned(), 10));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::new([d])
            .store(store.clone())
            .poll_every(Duration::from_millis(100))
            .run_until(async move {
                let _ = stopped.await;
            }),
    );
    for _ in 0..100 {
        if store.deployment("audit").await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let listed = weft(&url, &["deployments"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(text(&listed.stdout).contains("audit"));

    // The CLI blocks while it waits: off the runtime's threads.
    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        weft(&u, &["deployment", "run", "audit", "--param", "limit=5"])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let run_id: uuid::Uuid = stdout
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("a run id in {stdout:?}"));
    for _ in 0..100 {
        if store.run(run_id).await.is_ok_and(|r| r.run.ended.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = store.run(run_id).await.unwrap();
    assert_eq!(run.run.state, StateKind::Completed);
    assert_eq!(
        run.run.parameters,
        serde_json::json!({ "table": "users", "limit": 5 })
    );
    let runs = store.runs(&RunFilter::new().flow("audit")).await.unwrap();
    assert_eq!(runs.len(), 1, "the request ran once");

    // A value of the wrong type is refused before anything runs.
    let u = url.clone();
    let bad = tokio::task::spawn_blocking(move || {
        weft(&u, &["deployment", "run", "audit", "--param", "limit=many"])
    })
    .await
    .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = text(&bad.stderr);
    assert!(err.contains("`limit`") && err.contains("u32"), "{err}");
    assert_eq!(
        store
            .runs(&RunFilter::new().flow("audit"))
            .await
            .unwrap()
            .len(),
        1
    );

    // Pause and resume reach the serving process through the store.
    assert!(weft(&url, &["deployment", "pause", "audit"])
        .status
        .success());
    assert!(store.deployment("audit").await.unwrap().paused);
    assert!(weft(&url, &["deployment", "resume", "audit"])
        .status
        .success());
    assert!(!store.deployment("audit").await.unwrap().paused);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).ok();
}
