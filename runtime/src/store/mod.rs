//! Run history: every flow run, task run, state change and log line, recorded in a database.
//!
//! By default a flow run is recorded in an embedded SQLite file, `$WEFT_HOME/.weft/weft.db`
//! (`WEFT_HOME` defaults to the current directory). Set `WEFT_DATABASE_URL=postgres://...` to
//! record into PostgreSQL instead (feature `postgres` of `weft`): same tables, same migrations,
//! one code path through sqlx. `WEFT_HISTORY=off`, or [`RunConfig::no_history`], runs without.
//!
//! The engine never waits on the database: rows go to a bounded queue that a writer on the
//! store's own thread drains in batched transactions, retrying with backoff while the database
//! is away. A flow run waits for its rows when it ends (at most
//! [`StoreOptions::flush_timeout`]) and says in [`FlowRun::history`] how many were recorded
//! and how many were lost; the flow's result never depends on it.
//!
//! ```
//! use weft::prelude::*;
//! use weft::store::{RunFilter, Store};
//!
//! #[task] async fn extract() -> Vec<u32> { vec![1, 2, 3] }
//! #[task] fn total(xs: Vec<u32>) -> u32 { xs.iter().sum() }
//!
//! #[flow]
//! async fn etl() -> u32 {
//!     let xs = extract()?;
//!     let n = total(xs)?;
//!     n
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("weft-doc-{}", std::process::id()));
//! let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
//! let run = etl::run_with(RunConfig::new().history(store.clone())).await;
//! assert_eq!(run.history.as_ref().unwrap().lost, 0);
//!
//! let runs = store.runs(&RunFilter::new().flow("etl")).await?;
//! assert_eq!((runs[0].id, runs[0].state), (run.id, StateKind::Completed));
//! let detail = store.run(run.id).await?;
//! assert_eq!(detail.task_runs.len(), 2);
//! assert!(detail.to_dot().contains("\"extract\" -> \"total\""));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```
//!
//! [`RunConfig::no_history`]: crate::RunConfig::no_history
//! [`FlowRun::history`]: crate::FlowRun::history

pub mod browse;
mod cancel;
mod checkpoint;
mod counts;
mod deploy;
mod limits;
mod lost_claims;
mod pools;
mod query;
mod queue;
mod reaper;
pub(crate) mod record;
mod retention;
mod writer;

pub(crate) use cancel::host_name;
pub use cancel::{CancelOutcome, RunOwner};
pub use deploy::{DeploymentRecord, RequestState, RunRequest};
pub use limits::ConcurrencyLimit;
pub(crate) use limits::{wait_for_slots, Slots};
pub use pools::{WorkPool, WorkPoolSpec, WorkerId, WorkerInfo, WorkerRecord, MAX_NAME};
pub use query::{
    short_ids, CancelRequest, FlowSummary, LogRecord, NodeOutputRecord, RunDetail, RunFilter,
    RunPlacement, RunRecord, StateChangeRecord, TaskRunRecord, SHORT_ID,
};
pub use queue::{keep_scheduling, ClaimedRun, PoolPlacement, ScheduleReport, LATE_AFTER};
pub(crate) use queue::{LEAD_TTL, SCHEDULER};
pub use reaper::{keep_reaping, Reaped, REAP_EVERY};
pub use retention::{keep_pruning, PruneReport, Retention};

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, ConnectOptions, Connection, Executor};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use writer::Queue;

/// A migration's SQL: one script for both databases, or one for each where they differ.
enum Script {
    Both(&'static str),
    Each {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

impl Script {
    fn sql(&self, backend: Backend) -> &'static str {
        match (self, backend) {
            (Script::Both(sql), _) => sql,
            (Script::Each { sqlite, .. }, Backend::Sqlite) => sqlite,
            (Script::Each { postgres, .. }, Backend::Postgres) => postgres,
        }
    }
}

/// The schema versions this build knows; a database at a later version is refused.
const MIGRATIONS: &[(i64, &str, Script)] = &[
    (
        1,
        "history",
        Script::Both(include_str!("migrations/0001_history.sql")),
    ),
    (
        2,
        "deployments",
        Script::Both(include_str!("migrations/0002_deployments.sql")),
    ),
    (
        3,
        "pipelines",
        Script::Both(include_str!("migrations/0003_pipelines.sql")),
    ),
    (
        4,
        "subflows",
        Script::Both(include_str!("migrations/0004_subflows.sql")),
    ),
    (
        5,
        "task lifecycle",
        Script::Both(include_str!("migrations/0005_task_lifecycle.sql")),
    ),
    (
        6,
        "compact keys",
        Script::Each {
            sqlite: concat!(
                include_str!("migrations/0006_compact_keys.sqlite.sql"),
                include_str!("migrations/0006_run_logs.sql")
            ),
            postgres: concat!(
                include_str!("migrations/0006_compact_keys.postgres.sql"),
                include_str!("migrations/0006_run_logs.sql")
            ),
        },
    ),
    (
        7,
        "cancellation",
        Script::Both(include_str!("migrations/0007_cancellation.sql")),
    ),
    (
        8,
        "browse indexes",
        Script::Each {
            sqlite: include_str!("migrations/0008_browse_indexes.sqlite.sql"),
            postgres: include_str!("migrations/0008_browse_indexes.postgres.sql"),
        },
    ),
    (
        9,
        "run counts and log rows",
        Script::Each {
            sqlite: concat!(
                include_str!("migrations/0009_run_counts.sqlite.sql"),
                include_str!("migrations/0009_run_counts_backfill.sql"),
                include_str!("migrations/0009_run_logs.sql")
            ),
            postgres: concat!(
                include_str!("migrations/0009_run_counts.postgres.sql"),
                include_str!("migrations/0009_run_counts_backfill.sql"),
                include_str!("migrations/0009_run_logs.sql")
            ),
        },
    ),
    (
        10,
        "leases",
        Script::Both(include_str!("migrations/0010_leases.sql")),
    ),
    (
        11,
        "work pools",
        Script::Both(include_str!("migrations/0011_work_pools.sql")),
    ),
    (
        12,
        "run queue",
        Script::Both(include_str!("migrations/0012_run_queue.sql")),
    ),
];

fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Why the store could not be opened or read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is not one weft records into.
    BadUrl {
        /// The URL (password hidden).
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The database could not be reached or opened.
    Connect {
        /// The URL (password hidden).
        url: String,
        /// The driver's error.
        error: String,
    },
    /// The file is not a database (garbage, a truncated or zeroed header, another file type);
    /// it is left untouched.
    NotADatabase {
        /// The file's path.
        path: String,
        /// The driver's error.
        error: String,
    },
    /// The database did not answer within [`StoreOptions::connect_timeout`].
    Timeout {
        /// The URL (password hidden).
        url: String,
        /// How long was waited.
        after: Duration,
        /// What was being done.
        doing: String,
    },
    /// The history cannot be written: a read-only file, directory or file system, or a
    /// read-only PostgreSQL session. Found when a store that records opens, so no run's
    /// rows are queued to be lost.
    ReadOnly {
        /// The URL (password hidden).
        url: String,
        /// The driver's error.
        error: String,
    },
    /// The database was written by a newer weft; it is left untouched.
    SchemaTooNew {
        /// The URL (password hidden).
        url: String,
        /// The database's schema version.
        found: i64,
        /// The newest version this weft knows.
        supported: i64,
    },
    /// The database holds no weft run history, and the store was opened not to create it
    /// ([`StoreOptions::create_if_missing`]); it was left untouched.
    NoHistory {
        /// The URL (password hidden).
        url: String,
    },
    /// Creating or upgrading the tables failed.
    Migrate {
        /// The URL (password hidden).
        url: String,
        /// The error.
        error: String,
    },
    /// A query failed.
    Query(String),
    /// No recorded run has this id (or id prefix).
    RunNotFound(String),
    /// Several runs start with this id prefix.
    AmbiguousRun {
        /// The prefix asked for.
        prefix: String,
        /// Some of the runs it matches.
        matches: Vec<uuid::Uuid>,
    },
    /// No deployment of this name is recorded.
    DeploymentNotFound {
        /// The name asked for.
        name: String,
        /// The names recorded, sorted.
        known: Vec<String>,
    },
    /// No run request has this id.
    RequestNotFound(uuid::Uuid),
    /// A value given to the store is refused (a work pool or worker name, a concurrency limit);
    /// the message says why and what to give instead.
    Invalid(String),
    /// A work pool of this name already exists.
    WorkPoolExists(String),
    /// No work pool of this name exists.
    WorkPoolNotFound {
        /// The name asked for.
        name: String,
        /// The names that exist, sorted.
        known: Vec<String>,
    },
    /// No worker of this id is registered (it deregistered, or never registered).
    WorkerNotFound(uuid::Uuid),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::BadUrl { url, why } => write!(f, "cannot use {url} for run history: {why}"),
            StoreError::Connect { url, error } => write!(
                f,
                "cannot open the run history database {url}: {error} (check WEFT_DATABASE_URL, or \
                 that the server is running)"
            ),
            StoreError::NotADatabase { path, .. } => write!(
                f,
                "not a weft history (file is not a database): {path}; it was left untouched \
                 (move it away, or point WEFT_HOME or WEFT_DATABASE_URL elsewhere)"
            ),
            StoreError::Timeout { url, after, doing } => write!(
                f,
                "the run history database {url} did not answer within {after:?} ({doing}); \
                 check that the server is running and answering (WEFT_DATABASE_URL)"
            ),
            StoreError::ReadOnly { url, error } => write!(
                f,
                "the run history database {url} cannot be written: {error} (check the \
                 permissions and free space of WEFT_HOME, or WEFT_DATABASE_URL)"
            ),
            StoreError::SchemaTooNew {
                url,
                found,
                supported,
            } => write!(
                f,
                "the run history database {url} has schema version {found}, newer than this weft \
                 knows ({supported}); it was left untouched: upgrade weft, or point \
                 WEFT_DATABASE_URL / WEFT_HOME elsewhere"
            ),
            StoreError::NoHistory { url } => write!(
                f,
                "{url} holds no weft run history; it was left untouched (run a flow first, or \
                 point WEFT_HOME, WEFT_DATABASE_URL or WEFT_DATABASE_SCHEMA at the history)"
            ),
            StoreError::Migrate { url, error } => {
                write!(f, "cannot create the run history tables in {url}: {error}")
            }
            StoreError::Query(e) => write!(f, "run history query failed: {e}"),
            StoreError::RunNotFound(id) => write!(
                f,
                "no flow run {id} in the run history (`weft runs` lists the recorded ones)"
            ),
            StoreError::AmbiguousRun { prefix, matches } => {
                let ids: Vec<String> = matches.iter().map(|u| u.to_string()).collect();
                write!(
                    f,
                    "run id prefix {prefix:?} matches several runs ({}); give more characters",
                    ids.join(", ")
                )
            }
            StoreError::DeploymentNotFound { known, .. } if known.is_empty() => {
                write!(f, "no deployments recorded yet: serve one first")
            }
            StoreError::DeploymentNotFound { name, known } => write!(
                f,
                "no deployment named {name:?}; known: {} (a process serving it registers it)",
                known.join(", ")
            ),
            StoreError::RequestNotFound(id) => write!(f, "no run request {id} in the store"),
            StoreError::Invalid(why) => f.write_str(why),
            StoreError::WorkPoolExists(name) => write!(
                f,
                "a work pool named {name:?} already exists (`weft work-pool ls` lists them; \
                 choose another name, or change this one with `weft work-pool set-limit`, \
                 `pause` or `resume`)"
            ),
            StoreError::WorkPoolNotFound { name, known } if known.is_empty() => write!(
                f,
                "no work pool named {name:?}: there are none yet (create one with \
                 `weft work-pool create NAME`)"
            ),
            StoreError::WorkPoolNotFound { name, known } => write!(
                f,
                "no work pool named {name:?}; known: {} (`weft work-pool ls` lists them)",
                known.join(", ")
            ),
            StoreError::WorkerNotFound(id) => write!(
                f,
                "no worker {id} is registered (`weft workers` lists them; a worker that was \
                 removed registers again)"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Query(e.to_string())
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// How to open a [`Store`]: the URL and the writer's patience.
///
/// ```
/// use std::time::Duration;
/// use weft::store::StoreOptions;
///
/// # #[tokio::main] async fn main() {
/// let err = StoreOptions::new("mysql://localhost/db")
///     .retry_for(Duration::from_secs(5))
///     .connect()
///     .await
///     .unwrap_err();
/// assert!(err.to_string().contains("sqlite://"), "{err}"); // says which URLs work
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StoreOptions {
    url: String,
    retry_for: Duration,
    flush_timeout: Duration,
    queue_capacity: usize,
    schema: String,
    create: bool,
    connect_timeout: Duration,
    retention: Option<Retention>,
}

impl StoreOptions {
    /// A store at `url`: `sqlite://path/to/file.db` (created if missing) or
    /// `postgres://user@host/db` (feature `postgres`).
    pub fn new(url: impl Into<String>) -> StoreOptions {
        StoreOptions {
            url: url.into(),
            retry_for: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(10),
            queue_capacity: 1 << 16,
            schema: std::env::var("WEFT_DATABASE_SCHEMA")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "weft".to_owned()),
            create: true,
            connect_timeout: Duration::from_secs(5),
            retention: None,
        }
    }
    /// How long opening the store may wait on the database, for each step (connecting, creating
    /// the schema, migrating; default 5 s). A server that accepts the connection and never
    /// answers is a [`StoreError::Timeout`], not a wait without end.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d.max(Duration::from_millis(1));
        self
    }
    /// Old runs to delete in the background: a long-running process holding the store (a
    /// [`Server`](crate::schedule::Server)) runs [`keep_pruning`] with it. Default none.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = Some(retention);
        self
    }
    /// Whether a missing history is created (default true): the SQLite file, the PostgreSQL
    /// schema, weft's tables. Readers such as the `weft` CLI say there is no history instead,
    /// and leave the database as they found it.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
    /// How long the writer retries a batch while the database is away before counting its rows
    /// as lost (default 30 s).
    pub fn retry_for(mut self, d: Duration) -> Self {
        self.retry_for = d;
        self
    }
    /// How long a flow run waits, when it ends, for its rows to be written (default 10 s).
    pub fn flush_timeout(mut self, d: Duration) -> Self {
        self.flush_timeout = d;
        self
    }
    /// Rows that may wait for the writer (default 65,536); past them the engine waits for the
    /// writer to take them, so nothing is dropped.
    pub fn queue_capacity(mut self, rows: usize) -> Self {
        self.queue_capacity = rows.max(1);
        self
    }
    /// The PostgreSQL schema holding weft's tables (default `$WEFT_DATABASE_SCHEMA`, else
    /// `weft`; created if missing), so they never meet an application's own tables or
    /// migrations.
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = name.into();
        self
    }
    /// Opens the database, creating or upgrading weft's tables.
    pub async fn connect(self) -> Result<Store, StoreError> {
        Store::open(self).await
    }
}

/// A run history database (SQLite or PostgreSQL). Cheap to clone; reads and writes happen on
/// the store's own thread, so a store opened in one tokio runtime serves every other.
///
/// ```
/// use weft::store::{RunFilter, Store};
///
/// # #[tokio::main] async fn main() -> Result<(), weft::store::StoreError> {
/// let dir = std::env::temp_dir().join(format!("weft-doc-store-{}", std::process::id()));
/// let store = Store::connect(&format!("sqlite://{}/history.db", dir.display())).await?;
/// assert!(store.runs(&RunFilter::new()).await?.is_empty());
/// assert!(store.url().starts_with("sqlite://"));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pool: AnyPool,
    url: String,
    backend: Backend,
    options: StoreOptions,
    queue: Queue,
    runtime: tokio::runtime::Handle,
    /// The runs of this process that this store records and that are still going.
    owners: cancel::Owners,
    /// The concurrency limits this process read last.
    limits: limits::Cache,
    /// Claims that failed and may have committed all the same.
    lost_claims: lost_claims::LostClaims,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl Store {
    /// Opens the store at `url` with default options (see [`StoreOptions::new`]).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        StoreOptions::new(url).connect().await
    }

    /// The store flow runs record into unless told otherwise: `WEFT_DATABASE_URL` if set, else
    /// `sqlite://$WEFT_HOME/.weft/weft.db`. Opened once per URL and process.
    pub async fn open_default() -> Result<Store, StoreError> {
        static OPENED: tokio::sync::Mutex<Vec<(String, Store)>> =
            tokio::sync::Mutex::const_new(Vec::new());
        let url = default_url();
        let mut opened = OPENED.lock().await;
        if let Some((_, s)) = opened.iter().find(|(u, _)| *u == url) {
            return Ok(s.clone());
        }
        let store = Store::connect(&url).await?;
        opened.push((url, store.clone()));
        Ok(store)
    }

    /// The database's URL, password hidden.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub(crate) fn queue(&self) -> &Queue {
        &self.inner.queue
    }
    pub(crate) fn options(&self) -> &StoreOptions {
        &self.inner.options
    }
    /// The retention the store was opened with ([`StoreOptions::retention`]).
    pub fn retention(&self) -> Option<&Retention> {
        self.inner.options.retention.as_ref()
    }

    async fn open(options: StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let shown = redact(&options.url);
        let (backend, url) =
            prepare_url(&options.url, options.create).map_err(|why| StoreError::BadUrl {
                url: shown.clone(),
                why,
            })?;
        // The store's own thread: its pool and writer outlive whichever runtime opened it
        // (a test's, a CLI command's).
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shown_err = shown.clone();
        let thread_err = move |e: std::io::Error| StoreError::Connect {
            url: shown_err,
            error: format!("cannot start the history thread: {e}"),
        };
        std::thread::Builder::new()
            .name("weft-history".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(StoreError::Connect {
                            url: shown,
                            error: e.to_string(),
                        }));
                        return;
                    }
                };
                rt.block_on(async move {
                    let pool = match connect_pool(backend, &url, &shown, &options).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let inner = Arc::new(Inner {
                        pool,
                        url: shown,
                        backend,
                        queue: Queue::new(options.queue_capacity),
                        options,
                        runtime: tokio::runtime::Handle::current(),
                        owners: cancel::Owners::new(),
                        limits: limits::Cache::default(),
                        lost_claims: lost_claims::LostClaims::default(),
                    });
                    let store = Store {
                        inner: inner.clone(),
                    };
                    let pool = inner.pool.clone();
                    if tx.send(Ok(store)).is_ok() {
                        writer::run(inner).await;
                    } else {
                        drop(inner);
                    }
                    pool.close().await;
                });
            })
            .map_err(thread_err)?;
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Query(
                "the run history thread stopped while opening".to_owned(),
            ))
        })
    }

    /// Runs `f` with the pool on the store's thread.
    async fn with_pool<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(AnyPool, Backend) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let task = self
            .inner
            .runtime
            .spawn(f(self.inner.pool.clone(), self.inner.backend));
        task.await.map_err(|e| StoreError::Query(e.to_string()))?
    }
}

/// `WEFT_DATABASE_URL`, else the SQLite file under `WEFT_HOME`.
pub fn default_url() -> String {
    if let Some(url) = std::env::var("WEFT_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return url;
    }
    let home = std::env::var_os("WEFT_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    format!("sqlite://{}", home.join(".weft").join("weft.db").display())
}

/// True unless `WEFT_HISTORY` is `off` (or `0`, `false`, `no`).
pub(crate) fn enabled_by_env() -> bool {
    !matches!(
        std::env::var("WEFT_HISTORY").ok().as_deref().map(str::trim),
        Some("off" | "0" | "false" | "no" | "OFF")
    )
}

/// The URL with its password replaced by `***`.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((creds, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = creds.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_owned()
}

/// Checks the URL and makes it the driver's: SQLite files are created (with their directory).
fn prepare_url(url: &str, create: bool) -> Result<(Backend, String), String> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err("no file path after `sqlite://`".to_owned());
        }
        if !create && path != ":memory:" && !std::path::Path::new(path).exists() {
            return Err(format!(
                "{path} does not exist: no run has been recorded there (run a flow first, or set \
                 WEFT_HOME or WEFT_DATABASE_URL)"
            ));
        }
        if path != ":memory:" {
            if let Some(dir) = std::path::Path::new(path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
            }
        }
        let mode = if create { "mode=rwc" } else { "mode=rw" };
        let query = match query {
            Some(q) if q.contains("mode=") => q.to_owned(),
            Some(q) => format!("{q}&{mode}"),
            None => mode.to_owned(),
        };
        let encoded: String = path
            .chars()
            .map(|c| match c {
                '%' => "%25".to_owned(),
                '?' => "%3F".to_owned(),
                '#' => "%23".to_owned(),
                ' ' => "%20".to_owned(),
                c => c.to_string(),
            })
            .collect();
        return Ok((Backend::Sqlite, format!("sqlite://{encoded}?{query}")));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if cfg!(feature = "postgres") {
            return Ok((Backend::Postgres, url.to_owned()));
        }
        return Err(
            "this build has no PostgreSQL support; enable the `postgres` feature of weft"
                .to_owned(),
        );
    }
    Err("expected sqlite://path/to/file.db or postgres://user@host/database".to_owned())
}

/// `fut`, or [`StoreError::Timeout`] after `limit`.
async fn within<T>(
    limit: Duration,
    shown: &str,
    doing: &str,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(StoreError::Timeout {
            url: shown.to_owned(),
            after: limit,
            doing: doing.to_owned(),
        })
    })
}

/// SQLite's file header: anything else (but an empty file, a database yet to be written) is not
/// a database, and is refused at once instead of the pool retrying it until it times out.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The path of a SQLite driver URL (`sqlite://path?query`), decoded.
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    if path == ":memory:" {
        return None;
    }
    Some(
        path.replace("%20", " ")
            .replace("%3F", "?")
            .replace("%23", "#")
            .replace("%25", "%"),
    )
}

/// Refuses a file that is not a SQLite database by its header.
fn check_sqlite_file(path: &str) -> Result<(), StoreError> {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(()); // missing (created) or unreadable (the driver says why)
    };
    let mut head = Vec::with_capacity(16);
    if let Err(e) = file.by_ref().take(16).read_to_end(&mut head) {
        return Err(StoreError::Connect {
            url: format!("sqlite://{path}"),
            error: e.to_string(),
        });
    }
    if head.is_empty() || head.as_slice() == SQLITE_HEADER {
        return Ok(());
    }
    Err(StoreError::NotADatabase {
        path: path.to_owned(),
        error: "the file does not start with SQLite's header".to_owned(),
    })
}

/// Why SQLite could not open the file at `path` in WAL mode: its directory cannot be written
/// and its shared-memory file (`-shm`, which SQLite creates on opening) is not there, as once
/// the last process writing it has closed it. None when the directory is writable.
fn unwritable_wal_dir(path: &str) -> Option<String> {
    let path = std::path::Path::new(path);
    let shm = format!("{}-shm", path.display());
    if !path.exists() || std::path::Path::new(&shm).exists() {
        return None;
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let probe = dir.join(format!(".weft-write-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
        Err(e) => Some(format!(
            "its directory {} is read-only ({e}), and SQLite must create {} there to write it",
            dir.display(),
            shm
        )),
    }
}

/// True for SQLite's "file is not a database" (26) and "database disk image is malformed" (11).
fn is_not_a_database(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
            matches!(code & 0xff, 11 | 26)
                || d.message().contains("file is not a database")
                || d.message().contains("malformed")
        }
        _ => false,
    }
}

async fn connect_pool(
    backend: Backend,
    url: &str,
    shown: &str,
    store: &StoreOptions,
) -> Result<AnyPool, StoreError> {
    let limit = store.connect_timeout;
    let sqlite_file = match backend {
        Backend::Sqlite => sqlite_path(url),
        Backend::Postgres => None,
    };
    let connect_err = |e: sqlx::Error| match &sqlite_file {
        Some(path) if is_not_a_database(&e) => StoreError::NotADatabase {
            path: path.clone(),
            error: e.to_string(),
        },
        _ => StoreError::Connect {
            url: shown.to_owned(),
            error: e.to_string(),
        },
    };
    let mut url = Cow::Borrowed(url);
    if let Some(path) = &sqlite_file {
        check_sqlite_file(path)?;
        if let Some(why) = unwritable_wal_dir(path) {
            if store.create {
                return Err(StoreError::ReadOnly {
                    url: shown.to_owned(),
                    error: why,
                });
            }
            // Nothing can change it: read it as it is, without the files SQLite cannot create.
            url = Cow::Owned(format!("{url}&immutable=true"));
        }
    }
    let options = AnyConnectOptions::from_str(&url)
        .map_err(connect_err)?
        .log_statements(log::LevelFilter::Off)
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(3600));
    let schema = store.schema.replace('"', "");
    let setup: Arc<str> = match backend {
        // WAL lets readers and other processes' writers go on while one writes; NORMAL sync is
        // durable across application crashes, which is what history needs.
        Backend::Sqlite => {
            "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA cache_size = -65536"
                .into()
        }
        Backend::Postgres => format!("SET search_path TO \"{schema}\"").into(),
    };
    // One connection first: a file that is not a database, or a server that does not answer,
    // is told apart here rather than by the pool retrying until it times out.
    let mut conn = within(limit, shown, "connecting", async {
        options.connect().await.map_err(connect_err)
    })
    .await?;
    if backend == Backend::Sqlite {
        within(limit, shown, "reading the file", async {
            // Another process creating the file may hold its lock for a moment.
            conn.execute(&*setup).await.map_err(connect_err)?;
            sqlx::query("SELECT COUNT(*) FROM sqlite_master")
                .fetch_one(&mut conn)
                .await
                .map_err(connect_err)
        })
        .await?;
    }
    if backend == Backend::Postgres {
        // Its own schema keeps weft's tables and migration records apart from the application's.
        let exists: Option<(String,)> = within(limit, shown, "looking for weft's schema", async {
            sqlx::query_as(
                "SELECT schema_name::text FROM information_schema.schemata WHERE schema_name = $1",
            )
            .bind(&schema)
            .fetch_optional(&mut conn)
            .await
            .map_err(connect_err)
        })
        .await?;
        if exists.is_none() && !store.create {
            return Err(StoreError::NoHistory {
                url: format!("{shown} (schema \"{schema}\")"),
            });
        }
        if exists.is_none() {
            // Two processes may race here; the loser's error is harmless.
            let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            let _ = within(limit, shown, "creating weft's schema", async {
                conn.execute(&*create).await.map_err(connect_err)
            })
            .await;
        }
    }
    // Closing waits on the server too; a silent one is not waited for.
    let _ = tokio::time::timeout(limit, conn.close()).await;
    let pool = within(limit, shown, "opening the connection pool", async {
        AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(limit.max(Duration::from_secs(5)))
            .after_connect(move |conn, _| {
                let setup = setup.clone();
                Box::pin(async move {
                    conn.execute(&*setup).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_err)
    })
    .await?;
    if backend == Backend::Sqlite && store.create {
        within(limit, shown, "switching to WAL", async {
            retry_busy(|| async {
                pool.execute("PRAGMA journal_mode = WAL").await?;
                Ok(())
            })
            .await
            .map_err(connect_err)
        })
        .await?;
    }
    // Migrating may wait for another process migrating the same database: a longer limit.
    within(
        limit * 4,
        shown,
        "creating or upgrading weft's tables",
        migrate(&pool, backend, shown, store.create),
    )
    .await?;
    if store.create {
        check_writable(&pool, backend, shown, limit).await?;
    }
    Ok(pool)
}

/// Refuses a history a recording store cannot write, at open rather than by losing every row of
/// the first run. A database busy with another writer past `limit` counts as writable.
async fn check_writable(
    pool: &AnyPool,
    backend: Backend,
    shown: &str,
    limit: Duration,
) -> Result<(), StoreError> {
    let read_only = |error: String| StoreError::ReadOnly {
        url: shown.to_owned(),
        error,
    };
    match backend {
        Backend::Sqlite => {
            // Takes the write lock (and creates the WAL files) without changing a row.
            let probe = sqlx::query("UPDATE _sqlx_migrations SET version = version WHERE 1 = 0")
                .execute(pool);
            match tokio::time::timeout(limit, probe).await {
                Ok(Err(sqlx::Error::Database(e))) => {
                    let code = e.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
                    // READONLY, IOERR, FULL, CANTOPEN, PERM.
                    if matches!(code & 0xff, 8 | 10 | 13 | 14 | 3) {
                        return Err(read_only(e.message().to_owned()));
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        }
        Backend::Postgres => {
            let probe =
                sqlx::query_scalar::<_, String>("SELECT current_setting('transaction_read_only')")
                    .fetch_one(pool);
            match tokio::time::timeout(limit, probe).await {
                Ok(Ok(on)) if on == "on" => Err(read_only(
                    "the session is read-only (transaction_read_only is on: a standby, or \
                     default_transaction_read_only)"
                        .to_owned(),
                )),
                _ => Ok(()),
            }
        }
    }
}

/// Retries `op` a few times: another process may hold SQLite's lock, or be creating the tables.
async fn retry_busy<F, Fut>(mut op: F) -> Result<(), sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), sqlx::Error>>,
{
    let mut tries = 0;
    loop {
        match op().await {
            Ok(()) => return Ok(()),
            Err(e) if tries < 8 => {
                tries += 1;
                tracing::debug!(target: "weft::store", "retrying after {e}");
                tokio::time::sleep(Duration::from_millis(25 << tries.min(5))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Refuses a database from a newer weft, then applies the missing migrations.
async fn migrate(
    pool: &AnyPool,
    backend: Backend,
    shown: &str,
    create: bool,
) -> Result<(), StoreError> {
    // Before anything could alter it: a missing table means a new database.
    let found: Option<Option<i64>> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .ok();
    if found.is_none() && !create {
        return Err(StoreError::NoHistory {
            url: shown.to_owned(),
        });
    }
    let found = found.flatten().unwrap_or(0);
    if found > latest_version() {
        return Err(StoreError::SchemaTooNew {
            url: shown.to_owned(),
            found,
            supported: latest_version(),
        });
    }
    if found == latest_version() {
        return Ok(());
    }
    let migrator = Migrator {
        migrations: Cow::Owned(
            MIGRATIONS
                .iter()
                .map(|(v, name, script)| {
                    Migration::new(
                        *v,
                        Cow::Borrowed(*name),
                        MigrationType::Simple,
                        Cow::Borrowed(script.sql(backend)),
                        false,
                    )
                })
                .collect(),
        ),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    let mut tries = 0;
    loop {
        // On a connection of its own, closed after each attempt: sqlx's migrator keeps its
        // (PostgreSQL: database-wide advisory) lock when a migration fails, and a pooled
        // connection holding it would make every later attempt, of this process or another,
        // wait on it for ever.
        let attempt = async {
            let mut conn = pool.acquire().await?.detach();
            let outcome = migrator.run(&mut conn).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
            outcome
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            // Another process migrating the same file at once: its work is ours on retry.
            Err(_) if tries < 8 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(25 << tries.min(5))).await;
            }
            Err(e) => {
                return Err(StoreError::Migrate {
                    url: shown.to_owned(),
                    error: e.to_string(),
                })
            }
        }
    }
}

/// A timestamp as stored: RFC 3339, UTC, microseconds (sorts in time order as text).
pub(crate) fn ts(at: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // By hand: the writer formats hundreds of thousands of these, and strftime parsing showed
    // in its profile.
    fn digits(out: &mut String, v: u32, width: u32) {
        for i in (0..width).rev() {
            out.push(char::from(b'0' + (v / 10u32.pow(i) % 10) as u8));
        }
    }
    let mut s = String::with_capacity(27);
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    }
    digits(&mut s, year as u32, 4);
    s.push('-');
    digits(&mut s, at.month(), 2);
    s.push('-');
    digits(&mut s, at.day(), 2);
    s.push('T');
    digits(&mut s, at.hour(), 2);
    s.push(':');
    digits(&mut s, at.minute(), 2);
    s.push(':');
    digits(&mut s, at.second(), 2);
    s.push('.');
    digits(&mut s, at.nanosecond() % 1_000_000_000 / 1000, 6);
    s.push('Z');
    s
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Query(format!("bad timestamp {s:?} in the history: {e}")))
}

/// How much of a flow run's history was recorded: [`FlowRun::history`](crate::FlowRun::history).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryReport {
    /// The database (password hidden).
    pub store: String,
    /// Rows written.
    pub recorded: u64,
    /// Rows given up on (the database stayed away longer than the writer's retries), or
    /// refused: rows about a run that another process reaped while this one was taken for dead
    /// (`error` says so).
    pub lost: u64,
    /// False when the run ended before the database confirmed its rows (they are still being
    /// retried in the background), or when the store could not be opened at all (`error` says
    /// why; nothing of the run was recorded).
    pub confirmed: bool,
    /// The last error met, if any.
    pub error: Option<String>,
}

impl HistoryReport {
    /// A run that was not recorded at all: the store could not be opened.
    pub(crate) fn unrecorded(e: &StoreError) -> HistoryReport {
        HistoryReport {
            store: redact(&default_url()),
            recorded: 0,
            lost: 0,
            confirmed: false,
            error: Some(format!("not recorded: {e}")),
        }
    }
    /// True when every row was written.
    pub fn is_complete(&self) -> bool {
        self.confirmed && self.lost == 0 && self.error.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            redact("postgres://me:secret@db:5432/x"),
            "postgres://me:***@db:5432/x"
        );
        assert_eq!(redact("postgres://me@db/x"), "postgres://me@db/x");
        let dir = std::env::temp_dir().join("weft url test");
        let (b, u) = prepare_url(&format!("sqlite://{}/a.db", dir.display()), true).unwrap();
        assert_eq!(b, Backend::Sqlite);
        assert!(u.ends_with("weft%20url%20test/a.db?mode=rwc"), "{u}");
        assert!(prepare_url("sqlite://", true).is_err());
        assert!(prepare_url("mysql://x", true)
            .unwrap_err()
            .contains("postgres://"));
        let missing = prepare_url("sqlite:///nonexistent/weft.db", false).unwrap_err();
        assert!(missing.contains("does not exist"), "{missing}");
    }

    #[test]
    fn timestamps_sort_as_text() {
        let a = Utc::now();
        let b = a + chrono::Duration::microseconds(1);
        assert!(ts(a) < ts(b));
        assert_eq!(
            parse_ts(&ts(a)).unwrap().timestamp_micros(),
            a.timestamp_micros()
        );
        assert_eq!(ts(a), a.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
    }

    /// The `run_logs` view words a task run's lines exactly as the engine logs them, for every
    /// final state, with and without a message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_logs_words_lifecycle_lines_as_the_engine() {
        use crate::logging::{Finished, Starting};
        use crate::state::StateKind;
        use uuid::Uuid;
        let dir = std::env::temp_dir().join(format!("weft-run-logs-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display()))
            .await
            .unwrap();
        let run = Uuid::now_v7().to_string();
        let finals: Vec<StateKind> = StateKind::ALL
            .iter()
            .copied()
            .filter(|k| k.is_final())
            .collect();
        let mut expected = Vec::new();
        for (node, &kind) in finals.iter().enumerate() {
            for (map_index, message) in [(-1i64, None), (0, Some("it's <gone>"))] {
                let at = format!("2026-11-30T10:00:{:02}.{:06}Z", node, map_index + 1);
                expected.push((at.clone(), "INFO".to_owned(), Starting("t'ask").to_string()));
                let line = Finished {
                    task: "t'ask",
                    kind,
                    message,
                };
                expected.push((
                    at.clone(),
                    line.level().as_str().to_owned(),
                    line.to_string(),
                ));
                let run = run.clone();
                store
                    .with_pool(move |pool, _| async move {
                        sqlx::query(
                            "INSERT INTO task_runs (flow_run_id, node, map_index, task, state, \
                             message, attempts, started, ended, lifecycle_in_row) \
                             VALUES ($1, $2, $3, 't''ask', $4, $5, 1, $6, $6, 7)",
                        )
                        .bind(run)
                        .bind(node as i64)
                        .bind(map_index)
                        .bind(kind.as_str())
                        .bind(message)
                        .bind(at)
                        .execute(&pool)
                        .await?;
                        Ok(())
                    })
                    .await
                    .unwrap();
            }
        }
        let got: Vec<(String, String, String)> = store
            .with_pool(move |pool, _| async move {
                Ok(sqlx::query_as(
                    "SELECT at, level, message FROM run_logs WHERE flow_run_id = $1 \
                     ORDER BY at, seq",
                )
                .bind(run)
                .fetch_all(&pool)
                .await?)
            })
            .await
            .unwrap();
        assert_eq!(got, expected);
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }
}
