//! Global concurrency limits by tag (Prefect's tag concurrency limits).
//!
//! `weft concurrency-limit set db 5` ([`Store::set_concurrency_limit`]): from then on at most 5
//! task runs tagged `db` (`#[task(tags = ["db"])]`) run at once among every process recording
//! into this store: the workers of every pool, `serve`, plain programs. A task run takes one
//! **slot** per limited tag before its body starts (state Pending until it gets them, the
//! wait logged once) and gives them back when it ends, however it ends. A slot belongs to its
//! process: when the process dies (its heartbeat older than 10 s, or its pid gone on this
//! host) the slot is free again, so a killed process never leaks one.
//!
//! Limits are enforced where the run records history into the store that holds them; a run
//! with history off does not take slots. Task runs restored from checkpoints or the cache take
//! none.
//!
//! ```
//! use weft::store::Store;
//!
//! # #[tokio::main] async fn main() -> Result<(), weft::store::StoreError> {
//! let dir = std::env::temp_dir().join(format!("weft-doc-limits-{}", std::process::id()));
//! let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
//! store.set_concurrency_limit("db", 5).await?;
//! let limits = store.concurrency_limits().await?;
//! assert_eq!((limits[0].tag.as_str(), limits[0].limit, limits[0].active), ("db", 5, 0));
//! assert!(store.remove_concurrency_limit("db").await?);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use super::cancel::{host_name, pid_alive, STALE};
use super::db;
use super::{parse_ts, ts, Backend, Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a process trusts the limits it read before reading them again.
const FRESH: Duration = Duration::from_secs(1);
/// How often a task run waiting for a slot tries again.
pub(crate) const RETRY: Duration = Duration::from_millis(200);
/// The longest tag, in characters.
const MAX_TAG: usize = 100;

/// A concurrency limit as stored, with the slots in use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ConcurrencyLimit {
    /// The tag it limits.
    pub tag: String,
    /// At most this many task runs with the tag at once (0: none runs).
    pub limit: u32,
    /// Slots held now by live processes.
    pub active: u32,
    /// When it was last set.
    pub updated: DateTime<Utc>,
}

/// The limits by tag.
type Limits = Arc<HashMap<String, u32>>;

/// The limits a process read last, and when.
#[derive(Default)]
pub(crate) struct Cache(Mutex<Option<(Instant, Limits)>>);

impl Store {
    /// Sets the limit of tag `tag` to `limit` task runs at once (0 stops every task run with
    /// the tag from starting), creating it or replacing it. [`StoreError::Invalid`] for an
    /// empty or overlong tag.
    pub async fn set_concurrency_limit(&self, tag: &str, limit: u32) -> Result<(), StoreError> {
        let tag = check_tag(tag)?;
        self.with_pool(move |pool, _| async move {
            let now = ts(Utc::now());
            db::query(
                "INSERT INTO concurrency_limits (tag, slots, updated) VALUES ($1, $2, $3) \
                 ON CONFLICT (tag) DO UPDATE SET slots = excluded.slots, updated = excluded.updated",
            )
            .bind(tag)
            .bind(i64::from(limit))
            .bind(now)
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await?;
        self.inner.limits.forget();
        Ok(())
    }

    /// Every limit, by tag, with the slots live processes hold.
    pub async fn concurrency_limits(&self) -> Result<Vec<ConcurrencyLimit>, StoreError> {
        self.with_pool(move |pool, _| async move {
            let rows = db::query("SELECT tag, slots, updated FROM concurrency_limits ORDER BY tag")
                .fetch_all(&pool)
                .await?;
            let live = live_processes(&pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let tag: String = r.try_get("tag")?;
                let active = active_slots(&pool, &tag, &live).await?;
                out.push(ConcurrencyLimit {
                    tag,
                    limit: u32::try_from(r.try_get::<i64, _>("slots")?).unwrap_or(0),
                    active,
                    updated: parse_ts(&r.try_get::<String, _>("updated")?)?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Removes the limit of tag `tag` (and its slots): false when there was none.
    pub async fn remove_concurrency_limit(&self, tag: &str) -> Result<bool, StoreError> {
        let tag = tag.to_owned();
        let removed = self
            .with_pool(move |pool, _| async move {
                let mut tx = pool.begin().await?;
                let done = db::query("DELETE FROM concurrency_limits WHERE tag = $1")
                    .bind(&tag)
                    .execute(&mut *tx)
                    .await?;
                db::query("DELETE FROM concurrency_slots WHERE tag = $1")
                    .bind(&tag)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            })
            .await?;
        self.inner.limits.forget();
        Ok(removed)
    }

    /// The limited tags among `tags` (read again at most every second).
    pub(crate) async fn limited_tags(&self, tags: &[&str]) -> Result<Vec<String>, StoreError> {
        let limits = match self.inner.limits.get() {
            Some(l) => l,
            None => {
                let read = self
                    .with_pool(move |pool, _| async move {
                        let rows = db::query("SELECT tag, slots FROM concurrency_limits")
                            .fetch_all(&pool)
                            .await?;
                        rows.iter()
                            .map(|r| {
                                let n = r.try_get::<i64, _>("slots")?;
                                Ok((r.try_get("tag")?, u32::try_from(n).unwrap_or(0)))
                            })
                            .collect::<Result<HashMap<String, u32>, StoreError>>()
                    })
                    .await?;
                self.inner.limits.put(read)
            }
        };
        let mut found: Vec<String> = tags
            .iter()
            .filter(|t| limits.contains_key(**t))
            .map(|t| (*t).to_owned())
            .collect();
        // One order for every process: two runs never each hold a slot the other waits for.
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// Takes one slot of each of `tags` for task run `key`, all or none: None when taken, else
    /// the first tag whose slots are all held (by live processes).
    pub(crate) async fn take_slots(
        &self,
        tags: &[String],
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let inner = self.inner.clone();
        let (tags, key) = (tags.to_vec(), key.to_owned());
        self.with_pool(move |pool, backend| async move {
            let now = ts(Utc::now());
            let mut tx = pool.begin().await?;
            // A write first: this process's heartbeat, and the write lock on SQLite.
            inner.owners.beat(&mut tx, &now).await?;
            for tag in &tags {
                if !room_for_one(&mut tx, backend, tag).await? {
                    return Ok(Some(tag.clone()));
                }
                db::query(
                    "INSERT INTO concurrency_slots (tag, holder, task_run, since) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(tag)
                .bind(&inner.owners.process)
                .bind(&key)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(None)
        })
        .await
    }

    /// Gives back the slots task run `key` of this process holds.
    pub(crate) async fn release_slots(&self, key: &str) -> Result<(), StoreError> {
        let (key, process) = (key.to_owned(), self.inner.owners.process.clone());
        self.with_pool(move |pool, _| async move {
            db::query("DELETE FROM concurrency_slots WHERE holder = $1 AND task_run = $2")
                .bind(process)
                .bind(key)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }
}

impl Cache {
    fn get(&self) -> Option<Limits> {
        let c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        c.as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, l)| l.clone())
    }
    fn put(&self, limits: HashMap<String, u32>) -> Limits {
        let limits = Arc::new(limits);
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), limits.clone()));
        limits
    }
    fn forget(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn check_tag(tag: &str) -> Result<String, StoreError> {
    let t = tag.trim();
    if t.is_empty() || t.chars().count() > MAX_TAG || t.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "bad tag {tag:?}: a tag is 1 to {MAX_TAG} characters without control characters, as \
             written in #[task(tags = [...])]"
        )));
    }
    Ok(t.to_owned())
}

/// The ids of the processes alive now (fresh heartbeat; on this host, a live pid).
async fn live_processes<'e>(db: impl db::Executor<'e>) -> Result<Vec<String>, StoreError> {
    let rows = db::query("SELECT id, host, pid, heartbeat FROM processes WHERE heartbeat > $1")
        .bind(ts(
            Utc::now() - chrono::Duration::from_std(STALE).unwrap_or_default()
        ))
        .fetch_all(db)
        .await?;
    let mut live = Vec::with_capacity(rows.len());
    for r in rows {
        let host: String = r.try_get("host")?;
        let pid = u32::try_from(r.try_get::<i64, _>("pid")?).unwrap_or(0);
        if host != host_name() || pid_alive(pid) {
            live.push(r.try_get("id")?);
        }
    }
    Ok(live)
}

/// The slots of `tag` that live processes hold.
async fn active_slots(pool: &db::Pool, tag: &str, live: &[String]) -> Result<u32, StoreError> {
    let holders: Vec<String> =
        db::query_scalar("SELECT holder FROM concurrency_slots WHERE tag = $1")
            .bind(tag)
            .fetch_all(pool)
            .await?;
    Ok(holders.iter().filter(|h| live.contains(h)).count() as u32)
}

/// In the taking transaction: frees the slots of dead holders of `tag`, then says whether one
/// is left. On PostgreSQL the limit's row is locked until the transaction ends, so two takers
/// never both take the last slot.
async fn room_for_one(
    tx: &mut db::Transaction,
    backend: Backend,
    tag: &str,
) -> Result<bool, StoreError> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let limit: Option<i64> = db::query_scalar(&format!(
        "SELECT slots FROM concurrency_limits WHERE tag = $1{lock}"
    ))
    .bind(tag)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(limit) = limit else {
        return Ok(true); // removed meanwhile: no limit
    };
    // Read under the lock: a holder that took its slot since is seen with its heartbeat.
    let live = live_processes(&mut **tx).await?;
    let holders: Vec<String> =
        db::query_scalar("SELECT holder FROM concurrency_slots WHERE tag = $1")
            .bind(tag)
            .fetch_all(&mut **tx)
            .await?;
    let mut held = 0;
    for h in &holders {
        if live.contains(h) {
            held += 1;
        } else {
            db::query("DELETE FROM concurrency_slots WHERE tag = $1 AND holder = $2")
                .bind(tag)
                .bind(h)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(held < limit)
}

/// The slots a task run holds: given back when dropped (however the run ends).
pub(crate) struct Slots {
    store: Store,
    key: String,
}

impl Drop for Slots {
    fn drop(&mut self) {
        let (store, key) = (self.store.clone(), std::mem::take(&mut self.key));
        self.store.inner.runtime.spawn(async move {
            if let Err(e) = store.release_slots(&key).await {
                tracing::debug!(target: "weft::store", "Concurrency slots of {key}: {e}");
            }
        });
    }
}

/// Waits until task run `key` holds a slot of each limited tag among `tags`: Ok(None) when
/// none is limited, Err(()) when `cancelled` became true while waiting. Logs the wait once.
pub(crate) async fn wait_for_slots(
    store: &Store,
    tags: &[&str],
    key: String,
    task: &str,
    cancelled: impl Fn() -> bool,
) -> Result<Option<Slots>, ()> {
    let limited = match store.limited_tags(tags).await {
        Ok(l) if l.is_empty() => return Ok(None),
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                target: "weft",
                "Task '{task}': concurrency limits cannot be read ({e}): starting without them"
            );
            return Ok(None);
        }
    };
    let mut said = false;
    loop {
        match store.take_slots(&limited, &key).await {
            Ok(None) => {
                return Ok(Some(Slots {
                    store: store.clone(),
                    key,
                }))
            }
            Ok(Some(tag)) if !said => {
                said = true;
                tracing::info!(
                    target: "weft",
                    "Task '{task}': waiting for a slot of concurrency limit '{tag}'"
                );
            }
            Ok(Some(_)) => {}
            Err(e) => tracing::debug!(target: "weft", "Task '{task}': concurrency slots: {e}"),
        }
        if cancelled() {
            return Err(());
        }
        tokio::time::sleep(RETRY).await;
    }
}
