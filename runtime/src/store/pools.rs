//! Work pools and the worker registry.
//!
//! A **work pool** ([`WorkPool`]) groups the deployments a set of workers serve: a name, an
//! optional concurrency limit (the most runs of the pool running at once) and a paused flag.
//! Anyone with the store, such as `weft work-pool`, creates, lists, pauses, resumes and limits
//! pools ([`Store::create_work_pool`], [`Store::set_work_pool_paused`],
//! [`Store::set_work_pool_limit`]).
//!
//! A **worker** is a process serving a pool. It registers itself when it starts
//! ([`Store::register_worker`]: host, pid, version, the flows it can run), refreshes its
//! heartbeat while it lives ([`Store::worker_heartbeat`]) and deregisters when it stops
//! ([`Store::deregister_worker`]). [`Store::workers`] lists them, each online or offline by its
//! heartbeat: a worker whose heartbeat is older than the stale time the zombie reaper uses
//! (10 s), or whose pid is gone on this host, is offline.
//!
//! Claiming a pool's Scheduled runs is the queue module's ([`Store::claim_runs`]).
//!
//! ```
//! use weft::store::{Store, WorkPoolSpec, WorkerInfo};
//!
//! # #[tokio::main] async fn main() -> Result<(), weft::store::StoreError> {
//! let dir = std::env::temp_dir().join(format!("weft-doc-pools-{}", std::process::id()));
//! let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
//! store
//!     .create_work_pool(&WorkPoolSpec::new("etl").limit(4).description("nightly loads"))
//!     .await?;
//! assert!(store.create_work_pool(&WorkPoolSpec::new("etl")).await.is_err()); // taken
//!
//! let info = WorkerInfo::this_process("etl", "loader-1", vec!["load@1.0.0".into()]);
//! let id = store.register_worker(&info).await?;
//! store.worker_heartbeat(id).await?;
//! let workers = store.workers(Some("etl")).await?;
//! assert_eq!((workers[0].id, workers[0].online), (id, true));
//!
//! store.set_work_pool_paused("etl", true).await?;
//! assert!(store.work_pool("etl").await?.paused);
//! assert!(store.deregister_worker(id).await?);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use super::cancel::{host_name, pid_alive, STALE};
use super::{parse_ts, ts, Store, StoreError};
use chrono::{DateTime, Utc};

use super::db;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The longest work pool or worker name, in characters.
pub const MAX_NAME: usize = 100;
/// The longest work pool description, in characters.
const MAX_DESCRIPTION: usize = 1000;

/// A work pool to create ([`Store::create_work_pool`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkPoolSpec {
    /// Its name: 1 to 100 characters, no control characters, no leading or trailing spaces.
    pub name: String,
    /// The most runs of the pool that may run at once across its workers; None: no limit.
    pub concurrency_limit: Option<u32>,
    /// What the pool is for, shown in listings.
    pub description: Option<String>,
    /// Whether it starts paused.
    pub paused: bool,
}

impl WorkPoolSpec {
    /// A pool named `name`: no limit, no description, not paused.
    pub fn new(name: impl Into<String>) -> WorkPoolSpec {
        WorkPoolSpec {
            name: name.into(),
            concurrency_limit: None,
            description: None,
            paused: false,
        }
    }
    /// At most `n` runs at once (0 is refused when the pool is created: pause it instead).
    pub fn limit(mut self, n: u32) -> Self {
        self.concurrency_limit = Some(n);
        self
    }
    /// What the pool is for.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }
}

/// A work pool as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkPool {
    /// Its name (unique in the store).
    pub name: String,
    /// The most runs of the pool that may run at once; None: no limit.
    pub concurrency_limit: Option<u32>,
    /// True while paused: its workers start no new runs.
    pub paused: bool,
    /// What it is for.
    pub description: Option<String>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it was last changed.
    pub updated: DateTime<Utc>,
}

/// A registered worker's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct WorkerId(pub Uuid);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for WorkerId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse()
            .map(WorkerId)
            .map_err(|e| format!("bad worker id {s:?}: {e} (`weft workers` lists them)"))
    }
}

/// What a worker says about itself when it registers ([`Store::register_worker`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The pool it serves (must exist).
    pub pool: String,
    /// Its name, for people: 1 to 100 characters, no control characters.
    pub name: String,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The weft (or application) version it runs.
    pub version: String,
    /// The flows it can run, as `name@version`.
    pub flows: Vec<String>,
}

impl WorkerInfo {
    /// This process as a worker of `pool`: its host name, pid and weft's version.
    pub fn this_process(
        pool: impl Into<String>,
        name: impl Into<String>,
        flows: Vec<String>,
    ) -> WorkerInfo {
        WorkerInfo {
            pool: pool.into(),
            name: name.into(),
            host: host_name().to_owned(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            flows,
        }
    }
}

/// A registered worker, as [`Store::workers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerRecord {
    /// Its id.
    pub id: WorkerId,
    /// The pool it serves.
    pub pool: String,
    /// Its name.
    pub name: String,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The version it runs.
    pub version: String,
    /// The flows it can run, as `name@version`.
    pub flows: Vec<String>,
    /// When it registered.
    pub started: DateTime<Utc>,
    /// When it last said it was alive.
    pub heartbeat: DateTime<Utc>,
    /// True when its heartbeat is younger than the stale time (10 s) and, if it runs on this
    /// host, its pid is alive.
    pub online: bool,
}

/// Refuses an empty, too long or unprintable name; `what` is "work pool" or "worker".
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    let bad = |why: String| {
        Err(StoreError::Invalid(format!(
            "bad {what} name {name:?}: {why}"
        )))
    };
    if name.trim().is_empty() {
        return bad(format!(
            "give the {what} a name (1 to {MAX_NAME} characters)"
        ));
    }
    if name.chars().count() > MAX_NAME {
        return bad(format!(
            "longer than {MAX_NAME} characters; give a shorter one"
        ));
    }
    if name.chars().any(char::is_control) {
        return bad("control characters (newlines, tabs, escapes) are not allowed".into());
    }
    if name.trim() != name {
        return bad("remove the leading or trailing spaces".into());
    }
    Ok(())
}

fn check_description(text: &str) -> Result<(), StoreError> {
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(StoreError::Invalid(format!(
            "the work pool description is longer than {MAX_DESCRIPTION} characters; shorten it"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(StoreError::Invalid(
            "the work pool description holds control characters; remove them".into(),
        ));
    }
    Ok(())
}

/// Refuses a limit of 0: a pool that runs nothing is a paused one.
fn check_limit(name: &str, limit: Option<u32>) -> Result<(), StoreError> {
    if limit == Some(0) {
        return Err(StoreError::Invalid(format!(
            "a concurrency limit of 0 would stop work pool {name:?}: pause it instead \
             (`weft work-pool pause {name}`), or give a limit of 1 or more (`none`: no limit)"
        )));
    }
    Ok(())
}

const POOL_COLS: &str = "name, concurrency_limit, paused, description, created, updated";
const WORKER_COLS: &str = "id, pool, name, host, pid, version, flows, started, heartbeat";

fn pool_of(row: &db::Row) -> Result<WorkPool, StoreError> {
    let limit: Option<i64> = row.try_get("concurrency_limit")?;
    let paused: i64 = row.try_get("paused")?;
    Ok(WorkPool {
        name: row.try_get("name")?,
        concurrency_limit: limit.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        paused: paused != 0,
        description: row.try_get("description")?,
        created: parse_ts(&row.try_get::<String, _>("created")?)?,
        updated: parse_ts(&row.try_get::<String, _>("updated")?)?,
    })
}

fn worker_of(row: &db::Row, now: DateTime<Utc>) -> Result<WorkerRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let flows: String = row.try_get("flows")?;
    let pid: i64 = row.try_get("pid")?;
    let mut w = WorkerRecord {
        id: id.parse().map_err(StoreError::Query)?,
        pool: row.try_get("pool")?,
        name: row.try_get("name")?,
        host: row.try_get("host")?,
        pid: u32::try_from(pid).unwrap_or(0),
        version: row.try_get("version")?,
        flows: serde_json::from_str(&flows).map_err(|e| {
            StoreError::Query(format!(
                "bad flows {flows:?} of worker {id} in the store: {e}"
            ))
        })?,
        started: parse_ts(&row.try_get::<String, _>("started")?)?,
        heartbeat: parse_ts(&row.try_get::<String, _>("heartbeat")?)?,
        online: false,
    };
    w.online = is_online(&w, now);
    Ok(w)
}

/// A fresh heartbeat and, on this host, a live pid.
fn is_online(w: &WorkerRecord, now: DateTime<Utc>) -> bool {
    let fresh = (now - w.heartbeat).to_std().unwrap_or_default() < STALE;
    fresh && (w.host != host_name() || pid_alive(w.pid))
}

/// The error for a pool `name` that does not exist, with the names that do.
pub(super) async fn pool_not_found(pool: &db::Pool, name: String) -> StoreError {
    match db::query_scalar::<String>("SELECT name FROM work_pools ORDER BY name")
        .fetch_all(pool)
        .await
    {
        Ok(known) => StoreError::WorkPoolNotFound { name, known },
        Err(e) => e.into(),
    }
}

/// [`StoreError::WorkPoolNotFound`] unless pool `name` exists.
pub(super) async fn pool_exists(pool: &db::Pool, name: &str) -> Result<(), StoreError> {
    let found = db::query_scalar::<String>("SELECT name FROM work_pools WHERE name = $1")
        .bind(name.to_owned())
        .fetch_optional(pool)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(pool_not_found(pool, name.to_owned()).await),
    }
}

impl Store {
    /// Creates a work pool. [`StoreError::WorkPoolExists`] when the name is taken,
    /// [`StoreError::Invalid`] for a bad name or description, or a limit of 0.
    ///
    /// ```
    /// use weft::store::{Store, StoreError, WorkPoolSpec};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), StoreError> {
    /// # let dir = std::env::temp_dir().join(format!("weft-doc-pool-{}", std::process::id()));
    /// let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
    /// let pool = store.create_work_pool(&WorkPoolSpec::new("gpu").limit(2)).await?;
    /// assert_eq!((pool.concurrency_limit, pool.paused), (Some(2), false));
    ///
    /// let taken = store.create_work_pool(&WorkPoolSpec::new("gpu")).await.unwrap_err();
    /// assert_eq!(taken, StoreError::WorkPoolExists("gpu".into()));
    /// let zero = store.set_work_pool_limit("gpu", Some(0)).await.unwrap_err();
    /// assert!(zero.to_string().contains("pause it instead"));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn create_work_pool(&self, spec: &WorkPoolSpec) -> Result<WorkPool, StoreError> {
        check_name("work pool", &spec.name)?;
        check_limit(&spec.name, spec.concurrency_limit)?;
        spec.description
            .as_deref()
            .map(check_description)
            .transpose()?;
        let (spec, name) = (spec.clone(), spec.name.clone());
        self.with_pool(move |pool, _| async move {
            let now = ts(Utc::now());
            let done = db::query(&format!(
                "INSERT INTO work_pools ({POOL_COLS}) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (name) DO NOTHING"
            ))
            .bind(spec.name.clone())
            .bind(spec.concurrency_limit.map(i64::from))
            .bind(i64::from(spec.paused))
            .bind(spec.description.clone())
            .bind(now.clone())
            .bind(now)
            .execute(&pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::WorkPoolExists(spec.name));
            }
            Ok(())
        })
        .await?;
        self.work_pool(&name).await
    }

    /// Every work pool, by name.
    pub async fn work_pools(&self) -> Result<Vec<WorkPool>, StoreError> {
        self.with_pool(move |pool, _| async move {
            db::query(&format!("SELECT {POOL_COLS} FROM work_pools ORDER BY name"))
                .fetch_all(&pool)
                .await?
                .iter()
                .map(pool_of)
                .collect()
        })
        .await
    }

    /// The work pool `name`, or [`StoreError::WorkPoolNotFound`] with the known names.
    pub async fn work_pool(&self, name: &str) -> Result<WorkPool, StoreError> {
        let name = name.to_owned();
        self.with_pool(move |pool, _| async move {
            let row = db::query(&format!(
                "SELECT {POOL_COLS} FROM work_pools WHERE name = $1"
            ))
            .bind(name.clone())
            .fetch_optional(&pool)
            .await?;
            match row {
                Some(row) => pool_of(&row),
                None => Err(pool_not_found(&pool, name).await),
            }
        })
        .await
    }

    /// Pauses (`true`) or resumes (`false`) work pool `name`; pausing a paused pool is no
    /// error. Returns the pool as it is now.
    pub async fn set_work_pool_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<WorkPool, StoreError> {
        self.update_pool(name, "paused", Some(i64::from(paused)))
            .await
    }

    /// Sets work pool `name`'s concurrency limit (None: no limit). A limit of 0 is refused
    /// ([`StoreError::Invalid`]): pause the pool instead. Returns the pool as it is now.
    pub async fn set_work_pool_limit(
        &self,
        name: &str,
        limit: Option<u32>,
    ) -> Result<WorkPool, StoreError> {
        check_limit(name, limit)?;
        self.update_pool(name, "concurrency_limit", limit.map(i64::from))
            .await
    }

    /// Sets column `col` of pool `name` to `value` (and `updated` to now).
    async fn update_pool(
        &self,
        name: &str,
        col: &'static str,
        value: Option<i64>,
    ) -> Result<WorkPool, StoreError> {
        let owned = name.to_owned();
        self.with_pool(move |pool, _| async move {
            let done = db::query(&format!(
                "UPDATE work_pools SET {col} = $1, updated = $2 WHERE name = $3"
            ))
            .bind(value)
            .bind(ts(Utc::now()))
            .bind(owned.clone())
            .execute(&pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(pool_not_found(&pool, owned).await);
            }
            Ok(())
        })
        .await?;
        self.work_pool(name).await
    }

    /// Deletes work pool `name`. Refused ([`StoreError::Invalid`]) while workers are
    /// registered in it, online or not: they deregister when they stop.
    pub async fn delete_work_pool(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.with_pool(move |pool, _| async move {
            pool_exists(&pool, &name).await?;
            let workers: i64 = db::query_scalar("SELECT COUNT(*) FROM workers WHERE pool = $1")
                .bind(name.clone())
                .fetch_one(&pool)
                .await?;
            if workers > 0 {
                return Err(StoreError::Invalid(format!(
                    "work pool {name:?} has {workers} registered worker(s) (`weft workers --pool \
                     {name}`); stop them first"
                )));
            }
            db::query("DELETE FROM work_pools WHERE name = $1")
                .bind(name)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }
}

impl Store {
    /// Registers a worker of pool `info.pool` (which must exist: else
    /// [`StoreError::WorkPoolNotFound`]), its heartbeat now. Returns its new id.
    pub async fn register_worker(&self, info: &WorkerInfo) -> Result<WorkerId, StoreError> {
        check_name("worker", &info.name)?;
        let info = info.clone();
        let id = WorkerId(Uuid::now_v7());
        self.with_pool(move |pool, _| async move {
            pool_exists(&pool, &info.pool).await?;
            let now = ts(Utc::now());
            db::query(&format!(
                "INSERT INTO workers ({WORKER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(id.to_string())
            .bind(info.pool)
            .bind(info.name)
            .bind(info.host)
            .bind(i64::from(info.pid))
            .bind(info.version)
            .bind(serde_json::to_string(&info.flows).unwrap_or_else(|_| "[]".into()))
            .bind(now.clone())
            .bind(now)
            .execute(&pool)
            .await?;
            Ok(id)
        })
        .await
    }

    /// Refreshes worker `id`'s heartbeat. [`StoreError::WorkerNotFound`] when it is not
    /// registered (it was deregistered): the worker should register again.
    pub async fn worker_heartbeat(&self, id: WorkerId) -> Result<(), StoreError> {
        self.with_pool(move |pool, _| async move {
            let done = db::query("UPDATE workers SET heartbeat = $1 WHERE id = $2")
                .bind(ts(Utc::now()))
                .bind(id.to_string())
                .execute(&pool)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::WorkerNotFound(id.0));
            }
            Ok(())
        })
        .await
    }

    /// Removes worker `id` from the registry; false when it was not registered.
    pub async fn deregister_worker(&self, id: WorkerId) -> Result<bool, StoreError> {
        self.with_pool(move |pool, _| async move {
            let done = db::query("DELETE FROM workers WHERE id = $1")
                .bind(id.to_string())
                .execute(&pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    /// The registered workers, of one pool or of all, by pool and start; each online or
    /// offline by its heartbeat. [`StoreError::WorkPoolNotFound`] for a pool that does not
    /// exist.
    ///
    /// ```
    /// use weft::store::{Store, WorkPoolSpec, WorkerInfo};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), weft::store::StoreError> {
    /// # let dir = std::env::temp_dir().join(format!("weft-doc-workers-{}", std::process::id()));
    /// let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
    /// store.create_work_pool(&WorkPoolSpec::new("etl")).await?;
    /// let me = WorkerInfo::this_process("etl", "here", vec!["etl@1".into()]);
    /// let mut elsewhere = WorkerInfo::this_process("etl", "there", vec![]);
    /// elsewhere.host = "another-host".into();
    /// let a = store.register_worker(&me).await?;
    /// let b = store.register_worker(&elsewhere).await?;
    ///
    /// // Both heartbeats are fresh: both are online.
    /// let workers = store.workers(Some("etl")).await?;
    /// let online: Vec<_> = workers.iter().map(|w| (w.id, w.online)).collect();
    /// assert_eq!(online, [(a, true), (b, true)]);
    /// store.deregister_worker(b).await?;
    /// assert_eq!(store.workers(None).await?.len(), 1);
    /// assert!(store.workers(Some("nope")).await.is_err());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn workers(&self, pool_name: Option<&str>) -> Result<Vec<WorkerRecord>, StoreError> {
        let pool_name = pool_name.map(str::to_owned);
        self.with_pool(move |pool, _| async move {
            let rows = match &pool_name {
                Some(name) => {
                    pool_exists(&pool, name).await?;
                    db::query(&format!(
                        "SELECT {WORKER_COLS} FROM workers WHERE pool = $1 ORDER BY started, id"
                    ))
                    .bind(name.clone())
                    .fetch_all(&pool)
                    .await?
                }
                None => {
                    db::query(&format!(
                        "SELECT {WORKER_COLS} FROM workers ORDER BY pool, started, id"
                    ))
                    .fetch_all(&pool)
                    .await?
                }
            };
            let now = Utc::now();
            rows.iter().map(|r| worker_of(r, now)).collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_with_what_to_do() {
        assert!(check_name("work pool", "etl-1 (eu)").is_ok());
        let msg = |n: &str| check_name("work pool", n).unwrap_err().to_string();
        assert!(msg("").contains("give the work pool a name"), "{}", msg(""));
        assert!(msg(&"x".repeat(101)).contains("shorter"));
        assert!(msg("a\nb").contains("control characters"));
        assert!(msg(" a").contains("leading or trailing"));
        assert!(check_name("worker", &"é".repeat(100)).is_ok());
    }

    #[test]
    fn a_limit_of_zero_says_pause() {
        let e = check_limit("etl", Some(0)).unwrap_err().to_string();
        assert!(e.contains("weft work-pool pause etl"), "{e}");
        assert!(check_limit("etl", None).is_ok() && check_limit("etl", Some(1)).is_ok());
    }

    #[test]
    fn worker_ids_parse_back() {
        let id = WorkerId(Uuid::now_v7());
        assert_eq!(id.to_string().parse::<WorkerId>(), Ok(id));
        assert!("nope"
            .parse::<WorkerId>()
            .unwrap_err()
            .contains("weft workers"));
    }
}
