//! Result storage through the `object_store` crate (feature `object-store`): the in-memory and
//! local-file backends, which share their code path with S3, GCS and Azure.
#![cfg(feature = "object-store")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use weft::object_store;
use weft::prelude::*;
use weft::results::{decode_entry, ObjectStoreResults, ResultStore};

static RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h")]
async fn fetch(n: u32) -> Vec<u32> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    (0..n).collect()
}

#[flow(persist)]
async fn uses_fetch(n: u32) -> usize {
    let v = fetch(n)?;
    v.len()
}

#[tokio::test]
async fn cache_and_checkpoints_live_in_an_object_store() {
    let dir = std::env::temp_dir().join(format!("weft-os-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let backends: [Arc<dyn object_store::ObjectStore>; 2] = [
        Arc::new(object_store::memory::InMemory::new()),
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap()),
    ];
    for backend in backends {
        let before = RUNS.load(Ordering::SeqCst);
        let store = Arc::new(ObjectStoreResults::new(backend.clone()).with_prefix("weft/results"));
        let cfg = || RunConfig::new().result_store(store.clone());
        let first = uses_fetch::run_with(cfg(), 4).await;
        let second = uses_fetch::run_with(cfg(), 4).await;
        assert_eq!((first.result, second.result.clone()), (Ok(4), Ok(4)));
        assert_eq!(second.task("fetch").unwrap().state.kind, StateKind::Cached);
        assert_eq!(RUNS.load(Ordering::SeqCst) - before, 1);
        // The checkpoint of the first run is an object below the prefix.
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
    std::fs::remove_dir_all(dir).unwrap();
}
