//! Run history: every flow run, task run, state change and log line, recorded in a database.
//!
//! By default a flow run is recorded in an embedded SQLite file, `$WEFT_HOME/.weft/weft.db`
//! (`WEFT_HOME` defaults to the current directory). Set `WEFT_DATABASE_URL=postgres://...` to
//! record into PostgreSQL instead (feature `postgres` of `weft`): same tables, same migrations,
//! one code path over both (SQLite through rusqlite, PostgreSQL through sqlx).
//! `WEFT_HISTORY=off`, or [`RunConfig::no_history`], runs without.
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
mod db;
mod deploy;
mod limits;
mod lost_claims;
mod migrate;
mod open;
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
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use writer::Queue;

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

impl From<db::Error> for StoreError {
    fn from(e: db::Error) -> Self {
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
    pool: db::Pool,
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
        let shown = redact(&options.url);
        let (backend, url) =
            open::prepare_url(&options.url, options.create).map_err(|why| StoreError::BadUrl {
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
                    let pool = match open::connect_pool(backend, &url, &shown, &options).await {
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
        F: FnOnce(db::Pool, Backend) -> Fut,
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
    use super::open::prepare_url;
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
                        db::query(
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
                let rows = db::query(
                    "SELECT at, level, message FROM run_logs WHERE flow_run_id = $1 \
                     ORDER BY at, seq",
                )
                .bind(run)
                .fetch_all(&pool)
                .await?;
                let row = |r: &db::Row| -> Result<_, db::Error> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
                };
                Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(got, expected);
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }
}
