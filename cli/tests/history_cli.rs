//! `weft history prune` and the history's faults, end to end: the real binary on a real SQLite
//! file (old runs, a corrupted file) and a server that accepts connections and never answers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use weft::prelude::*;
use weft::store::Store;

#[task]
fn double(x: u32) -> u32 {
    x * 2
}

#[task]
async fn refuse(x: u32) -> Result<u32, String> {
    Err(format!("{x} refused"))
}

#[flow]
async fn ok_flow(x: u32) -> u32 {
    let y = double(x)?;
    y
}

#[flow]
async fn bad_flow(x: u32) -> u32 {
    let y = refuse(x)?;
    y
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("weft-cli-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn db(&self) -> PathBuf {
        self.0.join("weft.db")
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.db().display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Out {
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{}\n{}", self.stdout, self.stderr);
        &self.stdout
    }
    fn fails(&self) -> &str {
        assert_eq!(self.code, Some(1), "{}\n{}", self.stdout, self.stderr);
        assert_eq!(self.stderr.lines().count(), 1, "{:?}", self.stderr);
        assert!(self.stderr.starts_with("error: "), "{}", self.stderr);
        self.stderr.trim_end()
    }
}

fn weft(cwd: &Path, database: Option<&str>, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(cwd)
        .env_remove("WEFT_DATABASE_URL")
        .env_remove("WEFT_DATABASE_SCHEMA")
        .env_remove("WEFT_HOME");
    if let Some(db) = database {
        cmd.args(["--database", db]);
    }
    let start = Instant::now();
    let out = cmd.args(args).output().expect("the weft binary runs");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        took: start.elapsed(),
    }
}

/// Runs of each kind in `dir`'s database, two of them moved 40 days back: (old ok, old
/// failed, new ok).
fn history(dir: &TempDir) -> (String, String, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::connect(&dir.url()).await.unwrap();
        let config = || RunConfig::new().history(store.clone());
        let old_ok = ok_flow::run_with(config(), 1).await;
        let old_bad = bad_flow::run_with(config(), 2).await;
        let new_ok = ok_flow::run_with(config(), 3).await;
        for r in [&old_ok.history, &old_bad.history, &new_ok.history] {
            assert!(r.as_ref().unwrap().is_complete(), "{r:?}");
        }
        let admin = sqlx::SqlitePool::connect(&dir.url()).await.unwrap();
        let at = (chrono::Utc::now() - chrono::Duration::days(40))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        sqlx::query(&format!(
            "UPDATE flow_runs SET started = '{at}', ended = '{at}' WHERE id IN ('{}', '{}')",
            old_ok.id, old_bad.id
        ))
        .execute(&admin)
        .await
        .unwrap();
        (
            old_ok.id.to_string(),
            old_bad.id.to_string(),
            new_ok.id.to_string(),
        )
    })
}

fn count_line(out: &str, what: &str) -> u64 {
    out.lines()
        .find(|l| l.trim_start().starts_with(what))
        .unwrap_or_else(|| panic!("no {what} in {out}"))
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn prune_deletes_old_runs_dry_run_first_keep_failed_then_all() {
    let dir = TempDir::new("prune");
    let (old_ok, old_bad, new_ok) = history(&dir);
    let url = dir.url();
    let db = Some(url.as_str());

    let dry = weft(
        &dir.0,
        db,
        &["history", "prune", "--older-than", "30d", "--dry-run"],
    );
    let text = dry.ok();
    assert!(text.starts_with("would delete 2 flow runs"), "{text}");
    assert!(text.contains("dry run: nothing was deleted"), "{text}");
    assert!(count_line(text, "task runs") >= 2, "{text}");
    assert!(count_line(text, "state changes") >= 4, "{text}");
    let listed = weft(&dir.0, db, &["runs", "--json"]);
    assert_eq!(listed.ok().matches("\"id\"").count(), 3);

    let kept = weft(
        &dir.0,
        db,
        &["history", "prune", "--older-than", "30d", "--keep-failed"],
    );
    let text = kept.ok();
    assert!(text.starts_with("deleted 1 flow runs"), "{text}");
    assert!(text.contains("failed ones kept"), "{text}");
    let runs = weft(&dir.0, db, &["runs", "--json"]).ok().to_owned();
    assert!(!runs.contains(&old_ok) && runs.contains(&old_bad) && runs.contains(&new_ok));

    let all = weft(
        &dir.0,
        db,
        &["history", "prune", "--older-than", "30d", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(all.ok()).unwrap();
    assert_eq!(v["flow_runs"], 1, "{v}");
    assert_eq!(v["dry_run"], false, "{v}");
    assert!(v["task_runs"].as_u64().unwrap() >= 1, "{v}");
    let runs = weft(&dir.0, db, &["runs", "--json"]).ok().to_owned();
    assert!(!runs.contains(&old_bad) && runs.contains(&new_ok), "{runs}");
    let gone = weft(&dir.0, db, &["run", "show", &old_bad]);
    assert!(gone.fails().contains("no flow run"), "{}", gone.stderr);

    // A bad age is a usage error, before the database is opened.
    let bad = weft(&dir.0, db, &["history", "prune", "--older-than", "a month"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("30d"), "{}", bad.stderr);
    // --older-than is required.
    assert_eq!(weft(&dir.0, db, &["history", "prune"]).code, Some(2));
}

#[test]
fn prune_never_creates_a_history() {
    let dir = TempDir::new("prune-missing");
    let url = dir.url();
    let out = weft(
        &dir.0,
        Some(&url),
        &["history", "prune", "--older-than", "1d"],
    );
    assert!(out.fails().contains("does not exist"), "{}", out.stderr);
    assert!(!dir.db().exists());
}

/// 4 KiB of garbage, a zeroed header, a truncated file: one line at once, the file untouched.
#[test]
fn a_file_that_is_not_a_database_is_refused_at_once() {
    let dir = TempDir::new("garbage");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut real = Vec::new();
    {
        let other = TempDir::new("real");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = Store::connect(&other.url()).await.unwrap();
            let run = ok_flow::run_with(RunConfig::new().history(store.clone()), 1).await;
            assert!(run.history.unwrap().is_complete());
        });
        // Checkpointed into the main file when the store's last connection closed, or not:
        // either way the file starts with SQLite's header.
        real.extend(std::fs::read(other.db()).unwrap());
    }
    let mut zeroed = real.clone();
    zeroed[..100].fill(0);
    for (what, bytes) in [("garbage", garbage), ("zeroed header", zeroed)] {
        std::fs::write(dir.db(), &bytes).unwrap();
        // `weft runs` with WEFT_HOME's default file.
        let home = dir.0.join("home");
        std::fs::create_dir_all(home.join(".weft")).unwrap();
        std::fs::write(home.join(".weft/weft.db"), &bytes).unwrap();
        for out in [
            weft(&dir.0, Some(&dir.url()), &["runs"]),
            weft(
                &dir.0,
                Some(&dir.url()),
                &["history", "prune", "--older-than", "1d"],
            ),
            {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
                cmd.env_remove("WEFT_DATABASE_URL").env("WEFT_HOME", &home);
                let start = Instant::now();
                let o = cmd.arg("flows").output().unwrap();
                Out {
                    code: o.status.code(),
                    stdout: String::from_utf8(o.stdout).unwrap(),
                    stderr: String::from_utf8(o.stderr).unwrap(),
                    took: start.elapsed(),
                }
            },
        ] {
            let line = out.fails();
            assert!(
                line.contains("not a weft history (file is not a database): "),
                "{what}: {line}"
            );
            assert!(line.contains("weft.db"), "{what}: {line}");
            assert!(out.took < Duration::from_secs(3), "{what}: {:?}", out.took);
        }
        assert_eq!(std::fs::read(dir.db()).unwrap(), bytes, "{what}: untouched");
        // From Rust: the error variant, at once.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let start = Instant::now();
        let err = rt.block_on(Store::connect(&dir.url())).unwrap_err();
        assert!(
            matches!(err, weft::store::StoreError::NotADatabase { .. }),
            "{what}: {err:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(std::fs::read(dir.db()).unwrap(), bytes, "{what}: untouched");
    }
    // A valid header over a truncated file: the driver's own check, still one line.
    std::fs::write(dir.db(), &real[..real.len().min(100)]).unwrap();
    let out = weft(&dir.0, Some(&dir.url()), &["runs"]);
    let line = out.fails();
    assert!(out.took < Duration::from_secs(3), "{:?}: {line}", out.took);
    assert!(
        line.contains("not a weft history") || line.contains("holds no weft run history"),
        "{line}"
    );
}

/// A listener on loopback that accepts connections and never answers.
fn silent_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    port
}

#[test]
fn a_server_that_never_answers_fails_in_one_line_within_the_connect_timeout() {
    let port = silent_server();
    let dir = TempDir::new("silent");
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let out = weft(&dir.0, Some(&url), &["runs"]);
    let line = out.fails();
    assert!(line.contains("did not answer within 5s"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(
        out.took < Duration::from_secs(9),
        "{:?} (the CLI's own limit is 15 s)",
        out.took
    );
}

/// `weft history prune` on a PostgreSQL schema of its own (`WEFT_TEST_POSTGRES_URL`, default
/// the local `test` database).
#[test]
fn prune_on_postgres() {
    let server = std::env::var("WEFT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("weft_prune_cli_{}", uuid::Uuid::new_v4().simple());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = rt.block_on(sqlx::PgPool::connect(&server)).unwrap();
    let (old, new) = rt.block_on(async {
        let store = weft::store::StoreOptions::new(&server)
            .schema(&schema)
            .connect()
            .await
            .unwrap();
        let config = || RunConfig::new().history(store.clone());
        let old = ok_flow::run_with(config(), 1).await;
        let new = ok_flow::run_with(config(), 2).await;
        for r in [&old.history, &new.history] {
            assert!(r.as_ref().unwrap().is_complete(), "{r:?}");
        }
        let at = (chrono::Utc::now() - chrono::Duration::days(40))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        sqlx::query(&format!(
            "UPDATE \"{schema}\".flow_runs SET started = '{at}', ended = '{at}' WHERE id = '{}'",
            old.id
        ))
        .execute(&admin)
        .await
        .unwrap();
        (old.id.to_string(), new.id.to_string())
    });
    let dir = TempDir::new("pg");
    let args = [
        "--schema",
        &schema,
        "history",
        "prune",
        "--older-than",
        "30d",
    ];
    let out = weft(&dir.0, Some(&server), &args);
    let text = out.ok();
    assert!(text.starts_with("deleted 1 flow runs"), "{text}");
    assert!(count_line(text, "task runs") >= 1, "{text}");
    let runs = weft(
        &dir.0,
        Some(&server),
        &["--schema", &schema, "runs", "--json"],
    );
    let runs = runs.ok();
    assert!(!runs.contains(&old) && runs.contains(&new), "{runs}");
    rt.block_on(async {
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&admin)
            .await
            .unwrap();
    });
}
