//! `cache_for`, `cache_version`, `cache_key` and `persist` against real result stores: hits,
//! misses, expiry, damaged entries, checkpoints.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weft::prelude::*;
use weft::results::{decode_entry, decode_value, LocalStore, MemoryStore, ResultStore};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Complaint {
    id: u32,
    company: String,
}

static EXTRACTS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h")]
async fn extract(size: u32) -> Result<Vec<Complaint>, String> {
    EXTRACTS.fetch_add(1, Ordering::SeqCst);
    Ok((0..size)
        .map(|id| Complaint {
            id,
            company: format!("bank {id}"),
        })
        .collect())
}

#[flow]
async fn etl(size: u32) -> usize {
    let raw = extract(size)?;
    raw.len()
}

fn config(store: &Arc<MemoryStore>) -> RunConfig {
    RunConfig::new().result_store(store.clone())
}

#[tokio::test]
async fn a_second_run_with_the_same_inputs_is_cached() {
    let store = Arc::new(MemoryStore::default());
    let before = EXTRACTS.load(Ordering::SeqCst);
    let first = etl::run_with(config(&store), 3).await;
    assert_eq!(
        first.task("extract").unwrap().state.kind,
        StateKind::Completed
    );
    let second = etl::run_with(config(&store), 3).await;
    assert_eq!(
        second.task("extract").unwrap().state.kind,
        StateKind::Cached
    );
    assert_eq!(second.task("extract").unwrap().attempts, 0);
    assert_eq!(second.result, Ok(3));
    assert!(second.is_successful());
    assert_eq!(
        EXTRACTS.load(Ordering::SeqCst) - before,
        1,
        "the body ran once"
    );
    // Other inputs, another key.
    let other = etl::run_with(config(&store), 4).await;
    assert_eq!(
        other.task("extract").unwrap().state.kind,
        StateKind::Completed
    );
    assert_eq!(store.len(), 2);
    assert!(store.keys().iter().all(|k| k.starts_with("cache/extract/")));
}

static VERSIONED: AtomicU32 = AtomicU32::new(0);

#[task(name = "score", cache_for = "1h", cache_version = "1")]
async fn score_v1(x: u32) -> u32 {
    VERSIONED.fetch_add(1, Ordering::SeqCst);
    x
}

#[task(name = "score", cache_for = "1h", cache_version = "2")]
async fn score_v2(x: u32) -> u32 {
    VERSIONED.fetch_add(1, Ordering::SeqCst);
    x * 10
}

#[flow]
async fn versions() -> (u32, u32) {
    let a = score_v1(1)?;
    #[wait_for(a)]
    let b = score_v2(1)?;
    (a, b)
}

#[tokio::test]
async fn cache_version_separates_entries_of_the_same_task() {
    let store = Arc::new(MemoryStore::default());
    let run = versions::run_with(config(&store)).await;
    assert_eq!(run.result, Ok((1, 10)));
    assert_eq!(
        VERSIONED.load(Ordering::SeqCst),
        2,
        "version 2 did not reuse version 1's entry"
    );
    assert_eq!(store.len(), 2);
}

static SHORT: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "50ms")]
async fn short_lived(x: u32) -> u32 {
    SHORT.fetch_add(1, Ordering::SeqCst);
    x
}

#[flow]
async fn uses_short(x: u32) -> u32 {
    let v = short_lived(x)?;
    v
}

#[tokio::test]
async fn expired_entries_are_ignored_and_replaced() {
    let store = Arc::new(MemoryStore::default());
    let _ = uses_short::run_with(config(&store), 1).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    let again = uses_short::run_with(config(&store), 1).await;
    assert_eq!(
        again.task("short_lived").unwrap().state.kind,
        StateKind::Completed
    );
    let third = uses_short::run_with(config(&store), 1).await;
    assert_eq!(
        third.task("short_lived").unwrap().state.kind,
        StateKind::Cached,
        "the fresh entry"
    );
    assert_eq!(SHORT.load(Ordering::SeqCst), 2);
}

#[task(cache_for = "1h")]
async fn damaged(x: u32) -> Vec<String> {
    vec![format!("value {x}")]
}

#[flow]
async fn uses_damaged(x: u32) -> Vec<String> {
    let v = damaged(x)?;
    v
}

#[tokio::test]
async fn damaged_entries_are_misses_never_wrong_values() {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 4] = [
        ("flipped byte", |b| *b.last_mut().unwrap() ^= 0x55),
        ("truncated", |b| b.truncate(b.len() / 2)),
        ("garbage", |b| *b = b"not an entry at all".to_vec()),
        // A valid frame around a payload that is not a Vec<String>.
        ("wrong type", |b| {
            *b = weft::results::encode_entry(&[0xff, 0xff, 0xff], None)
        }),
    ];
    for (what, damage) in damages {
        let store = Arc::new(MemoryStore::default());
        let first = uses_damaged::run_with(config(&store), 7).await;
        assert_eq!(first.result.as_deref(), Ok(&["value 7".to_owned()][..]));
        let key = store.keys().pop().unwrap();
        store.tamper(&key, damage);
        let run = uses_damaged::run_with(config(&store), 7).await;
        assert_eq!(
            run.task("damaged").unwrap().state.kind,
            StateKind::Completed,
            "{what}"
        );
        assert_eq!(
            run.result.as_deref(),
            Ok(&["value 7".to_owned()][..]),
            "{what}"
        );
        let healed = uses_damaged::run_with(config(&store), 7).await;
        assert_eq!(
            healed.task("damaged").unwrap().state.kind,
            StateKind::Cached,
            "{what}: rewritten"
        );
    }
}

struct Db {
    name: String,
}

fn by_db_name(size: &u32, db: &Db) -> String {
    format!("{}:{size}", db.name)
}

static KEYED: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_key = by_db_name)]
async fn query(size: u32, db: &Db) -> u32 {
    KEYED.fetch_add(1, Ordering::SeqCst);
    size + db.name.len() as u32
}

#[flow]
async fn keyed(size: u32, db: Arc<Db>) -> u32 {
    let q = query(size, &db)?;
    q
}

#[tokio::test]
async fn a_cache_key_function_covers_inputs_that_do_not_serialize() {
    let store = Arc::new(MemoryStore::default());
    let db = Arc::new(Db {
        name: "prod".into(),
    });
    let a = keyed::run_with(config(&store), 1, db.clone()).await;
    let b = keyed::run_with(config(&store), 1, db.clone()).await;
    assert_eq!((&a.result, &b.result), (&Ok(5), &Ok(5)));
    assert_eq!(b.task("query").unwrap().state.kind, StateKind::Cached);
    assert_eq!(KEYED.load(Ordering::SeqCst), 1);
}

#[task(persist = true)]
async fn checkpoint(x: u32) -> Complaint {
    Complaint {
        id: x,
        company: "acme".into(),
    }
}

#[flow]
async fn persisted(x: u32) -> u32 {
    let c = checkpoint(x)?;
    c.id
}

#[tokio::test]
async fn persist_checkpoints_results_in_a_real_directory() {
    let dir = std::env::temp_dir().join(format!("weft-persist-{}", std::process::id()));
    let store = Arc::new(LocalStore::new(&dir));
    let run = persisted::run_with(RunConfig::new().result_store(store.clone()), 9).await;
    assert_eq!(run.result, Ok(9));
    let node = persisted::graph().node("c").unwrap().id;
    let key = format!("runs/{}/{node}.bin", run.id);
    assert!(dir.join(&key).is_file(), "{key}");
    let entry = decode_entry(&store.get(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!(entry.expires, None);
    let back: Complaint = decode_value(&entry.payload).unwrap();
    assert_eq!(
        back,
        Complaint {
            id: 9,
            company: "acme".into()
        }
    );
    std::fs::remove_dir_all(dir).unwrap();
}

static DAILY: AtomicU32 = AtomicU32::new(0);

#[task(target = "{date:%Y-%m-%d}/{task_name}-{size}.bin")]
async fn daily(size: u32) -> Vec<u32> {
    DAILY.fetch_add(1, Ordering::SeqCst);
    (0..size).collect()
}

#[flow]
async fn daily_flow(size: u32) -> usize {
    let d = daily(size)?;
    d.len()
}

#[task(target = "{region}/{task_name}.bin")]
async fn regional() -> u32 {
    1
}

#[flow]
async fn without_region(size: u32) -> u32 {
    let _ = size;
    let r = regional()?;
    r
}

#[tokio::test]
async fn an_existing_target_is_loaded_instead_of_running_the_task() {
    let dir = std::env::temp_dir().join(format!("weft-target-{}", uuid::Uuid::new_v4()));
    let store = Arc::new(LocalStore::new(&dir));
    let cfg = || RunConfig::new().result_store(store.clone());
    let first = daily_flow::run_with(cfg(), 3).await;
    assert_eq!(first.result, Ok(3));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(dir.join(&today).join("daily-3.bin").is_file());
    let second = daily_flow::run_with(cfg(), 3).await;
    let report = second.task("daily").unwrap();
    assert_eq!(report.state.kind, StateKind::Cached);
    assert_eq!(report.state.message.as_deref(), Some("its target exists"));
    assert_eq!(DAILY.load(Ordering::SeqCst), 1);
    let other = daily_flow::run_with(cfg(), 4).await;
    assert_eq!(
        other.task("daily").unwrap().state.kind,
        StateKind::Completed,
        "another parameter, another target"
    );

    let bad = without_region::run_with(cfg(), 1).await;
    let state = &bad.task("regional").unwrap().state;
    assert_eq!(state.kind, StateKind::Failed);
    assert!(state.message.as_deref().unwrap().contains("`{region}` is not a placeholder here; use one of date, task_name, flow_name, flow_run_id, size"), "{state}");
    std::fs::remove_dir_all(dir).unwrap();
}
