//! Result storage through the `object_store` crate (feature `object-store`): the in-memory and
//! local-file backends, and S3 against a real S3-compatible server on loopback (`moto_server`,
//! started here; or the endpoint in `WEFT_TEST_S3`). A run killed in one process resumes in
//! another that shares nothing with it but the bucket (or the directory): two machines.
//!
//! The S3 tests need `moto_server` on the PATH (`pip install 'moto[server]'`; `.ci/run` does it):
//! without it they fail saying so.
#![cfg(feature = "object-store")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft::object_store::{self, aws::AmazonS3Builder, ObjectStore};
use weft::prelude::*;
use weft::results::{decode_entry, ObjectStoreResults, ResultStore};

/// Runs of `fetch`, by input: tests running at once use different inputs.
static RUNS: Mutex<BTreeMap<u32, u32>> = Mutex::new(BTreeMap::new());

fn runs_of(n: u32) -> u32 {
    RUNS.lock().unwrap().get(&n).copied().unwrap_or(0)
}

#[task(cache_for = "1h")]
async fn fetch(n: u32) -> Vec<u32> {
    *RUNS.lock().unwrap().entry(n).or_default() += 1;
    (0..n).collect()
}

#[flow(persist)]
async fn uses_fetch(n: u32) -> usize {
    let v = fetch(n)?;
    v.len()
}

/// Two runs on `backend`: the second is served from the cache; the first's checkpoint is an
/// object below the prefix.
async fn cache_and_checkpoints(backend: Arc<dyn ObjectStore>, n: u32) {
    let before = runs_of(n);
    let store = Arc::new(ObjectStoreResults::new(backend.clone()).with_prefix("weft/results"));
    let cfg = || RunConfig::new().result_store(store.clone());
    let first = uses_fetch::run_with(cfg(), n).await;
    let second = uses_fetch::run_with(cfg(), n).await;
    let len = n as usize;
    assert_eq!((first.result, second.result.clone()), (Ok(len), Ok(len)));
    assert_eq!(second.task("fetch").unwrap().state.kind, StateKind::Cached);
    assert_eq!(runs_of(n) - before, 1);
    let node = uses_fetch::graph().node("v").unwrap().id;
    let key = format!("runs/{}/{node}.bin", first.id);
    let bytes = store.get(&key).await.unwrap().expect("checkpointed");
    assert!(decode_entry(&bytes).is_ok());
    let raw = backend
        .get(&object_store::path::Path::from(format!(
            "weft/results/{key}"
        )))
        .await
        .unwrap();
    assert_eq!(raw.bytes().await.unwrap().len(), bytes.len());
    assert!(store.get("../outside").await.is_err());
    assert_eq!(store.get("missing/key.bin").await.unwrap(), None);
}

#[tokio::test]
async fn cache_and_checkpoints_live_in_an_object_store() {
    let dir = temp_dir("weft-os");
    cache_and_checkpoints(Arc::new(object_store::memory::InMemory::new()), 4).await;
    let files = object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap();
    cache_and_checkpoints(Arc::new(files), 4).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn cache_and_checkpoints_live_in_s3() {
    let s3 = S3::start();
    let bucket = s3.create_bucket();
    cache_and_checkpoints(s3_backend(&s3.endpoint, &bucket), 5).await;
}

// ---------- an S3-compatible server on loopback

/// An S3 endpoint: `WEFT_TEST_S3` (a URL whose server creates buckets on an unsigned PUT, as
/// moto does), or a `moto_server` of this test's own on a free port, killed on drop.
struct S3 {
    endpoint: String,
    server: Option<Child>,
}

const INSTALL_MOTO: &str = "install it with `pip install 'moto[server]'` (.ci/run does), or set \
                            WEFT_TEST_S3 to the URL of an S3-compatible server";

impl S3 {
    fn start() -> S3 {
        if let Ok(endpoint) = std::env::var("WEFT_TEST_S3") {
            return S3 {
                endpoint,
                server: None,
            };
        }
        let port = free_port();
        let log = std::env::temp_dir().join(format!("weft-moto-{port}.log"));
        let server = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server ({e}): {INSTALL_MOTO}"));
        let mut s3 = S3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            server: Some(server),
        };
        let up = s3.answers();
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::remove_file(&log).ok();
        assert!(
            up,
            "moto_server did not answer ({}): {INSTALL_MOTO}",
            said.trim()
        );
        s3
    }

    /// Waits until the server answers; false if it exits or stays silent for 30 s.
    fn answers(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ureq::get(&self.endpoint).call().is_ok() {
                return true;
            }
            if let Some(server) = &mut self.server {
                if server.try_wait().unwrap().is_some() {
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// A new, empty bucket (`object_store` cannot create buckets: a plain PUT does).
    fn create_bucket(&self) -> String {
        let bucket = format!("weft-{}", uuid::Uuid::new_v4().simple());
        ureq::put(&format!("{}/{bucket}", self.endpoint))
            .send_bytes(&[])
            .expect("create a bucket");
        bucket
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            server.kill().ok();
            server.wait().ok();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client of `bucket` at `endpoint`, built the way a worker builds its own.
fn s3_backend(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    let s3 = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(bucket)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    Arc::new(s3)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------- a run killed on one machine, resumed on another

/// Appends `line` to the file at `path`: which task ran where, in both processes.
fn log_line(path: &str, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

/// Set in the child only: the store it uses (`s3 ENDPOINT BUCKET` or `file DIR`).
const BACKEND_VAR: &str = "WEFT_OS_BACKEND";

#[task]
fn first_half(log: String) -> u32 {
    log_line(&log, "first_half");
    20
}

#[task]
fn second_half(log: String, x: u32) -> u32 {
    if std::env::var_os(BACKEND_VAR).is_some() {
        std::thread::sleep(Duration::from_secs(60)); // the child is killed here
    }
    log_line(&log, "second_half");
    x + 1
}

#[flow(persist)]
async fn two_halves(log: String) -> u32 {
    let a = first_half(log.clone())?;
    let b = second_half(log, a)?;
    b
}

/// The results in the store `spec` names, through clients of their own.
fn results_in(spec: &str) -> Arc<ObjectStoreResults> {
    let backend = match spec.split_once(' ') {
        Some(("s3", at)) => {
            let (endpoint, bucket) = at.split_once(' ').unwrap();
            s3_backend(endpoint, bucket)
        }
        Some(("file", dir)) => {
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap())
        }
        _ => panic!("unknown backend {spec:?}"),
    };
    Arc::new(ObjectStoreResults::new(backend).with_prefix("weft"))
}

/// Runs only in the child: machine A.
#[tokio::test]
async fn child_runs_two_halves() {
    let Ok(spec) = std::env::var(BACKEND_VAR) else {
        return;
    };
    let id = std::env::var("WEFT_OS_RUN_ID").unwrap().parse().unwrap();
    let config = RunConfig::new()
        .run_id(id)
        .result_store(results_in(&spec))
        .no_history();
    // Killed in `second_half`: the run never returns.
    let _ = two_halves::run_with(config, std::env::var("WEFT_OS_LOG").unwrap()).await;
}

/// Machine A (a child process) runs `two_halves` until `first_half`'s checkpoint is in the
/// store `spec`, and is SIGKILLed; machine B (this process, with clients of its own) resumes
/// the run: `first_half` is restored, not run again.
async fn killed_on_one_machine_resumed_on_another(spec: &str) {
    let dir = temp_dir("weft-os-resume");
    let log = dir.join("ran.log").to_string_lossy().into_owned();
    let id = uuid::Uuid::new_v4();
    let mut a = Command::new(std::env::current_exe().unwrap())
        .args(["child_runs_two_halves", "--exact", "--test-threads=1"])
        .env(BACKEND_VAR, spec)
        .env("WEFT_OS_RUN_ID", id.to_string())
        .env("WEFT_OS_LOG", &log)
        .env("WEFT_LOG", "off")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let node = two_halves::graph().node("a").unwrap().id;
    wait_for_entry(&results_in(spec), &format!("runs/{id}/{node}.bin"), &mut a).await;
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();

    let config = RunConfig::new()
        .resume(id)
        .result_store(results_in(spec))
        .no_history();
    let run = two_halves::run_with(config, log.clone()).await;
    assert_eq!(run.result, Ok(21));
    let first = &run.task("first_half").unwrap().state;
    assert_eq!(first.kind, StateKind::Cached);
    assert_eq!(
        first.message.as_deref(),
        Some("restored from this run's checkpoint")
    );
    let ran = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ran, "first_half\nsecond_half\n", "each half ran once");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Polls `store` for `key` while `child` lives (at most 60 s).
async fn wait_for_entry(store: &ObjectStoreResults, key: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.get(key).await.unwrap().is_none() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended ({status}) before writing {key}");
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the child never wrote {key}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_run_killed_on_one_machine_resumes_on_another_from_s3() {
    let s3 = S3::start();
    let spec = format!("s3 {} {}", s3.endpoint, s3.create_bucket());
    killed_on_one_machine_resumed_on_another(&spec).await;
}

#[tokio::test]
async fn a_run_killed_in_one_process_resumes_in_another_from_a_shared_directory() {
    let dir = temp_dir("weft-os-shared");
    killed_on_one_machine_resumed_on_another(&format!("file {}", dir.display())).await;
    std::fs::remove_dir_all(dir).unwrap();
}
