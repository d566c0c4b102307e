//! Opening a store: the URL checked, the file or server reached, the tables made current.

use super::db::{self, Pool};
use super::{migrate, Backend, StoreError, StoreOptions};
use std::future::Future;
#[cfg(feature = "postgres")]
use std::sync::Arc;
use std::time::Duration;

/// Checks the URL and makes it the driver's: SQLite files are created (with their directory).
pub(super) fn prepare_url(url: &str, create: bool) -> Result<(Backend, String), String> {
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
        return Ok((Backend::Sqlite, format!("file:{encoded}?{query}")));
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
pub(super) async fn within<T>(
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

/// The path of a SQLite driver URI (`file:path?query`), decoded.
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("file:")?;
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
fn is_not_a_database(e: &db::Error) -> bool {
    match e {
        db::Error::Database(d) => {
            let code = d.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
            matches!(code & 0xff, 11 | 26)
                || d.message().contains("file is not a database")
                || d.message().contains("malformed")
        }
        _ => false,
    }
}

/// Opens the pool, creates or upgrades weft's tables, and checks that a recording store can
/// write.
pub(super) async fn connect_pool(
    backend: Backend,
    url: &str,
    shown: &str,
    store: &StoreOptions,
) -> Result<Pool, StoreError> {
    let pool = match backend {
        Backend::Sqlite => open_sqlite(url, shown, store).await?,
        Backend::Postgres => open_postgres(url, shown, store).await?,
    };
    // Migrating may wait for another process migrating the same database: a longer limit.
    within(
        store.connect_timeout * 4,
        shown,
        "creating or upgrading weft's tables",
        migrate::migrate(&pool, backend, shown, store.create),
    )
    .await?;
    if store.create {
        check_writable(&pool, backend, shown, store.connect_timeout).await?;
    }
    Ok(pool)
}

async fn open_sqlite(url: &str, shown: &str, store: &StoreOptions) -> Result<Pool, StoreError> {
    let limit = store.connect_timeout;
    let file = sqlite_path(url);
    let connect_err = |e: db::Error| match &file {
        Some(path) if is_not_a_database(&e) => StoreError::NotADatabase {
            path: path.clone(),
            error: e.to_string(),
        },
        _ => StoreError::Connect {
            url: shown.to_owned(),
            error: e.to_string(),
        },
    };
    let mut url = url.to_owned();
    if let Some(path) = &file {
        check_sqlite_file(path)?;
        if let Some(why) = unwritable_wal_dir(path) {
            if store.create {
                return Err(StoreError::ReadOnly {
                    url: shown.to_owned(),
                    error: why,
                });
            }
            // Nothing can change it: read it as it is, without the files SQLite cannot create.
            url.push_str("&immutable=1");
        }
    }
    // WAL lets readers and other processes' writers go on while one writes; NORMAL sync is
    // durable across application crashes, which is what history needs.
    let setup =
        "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536";
    // In memory, each connection would be a database of its own: one connection.
    let max = if file.is_some() { 4 } else { 1 };
    let pool = within(limit, shown, "reading the file", async {
        let pool = Pool::open_sqlite(url, setup.to_owned(), max)
            .await
            .map_err(connect_err)?;
        // Reading the schema tells a file that is not a database apart at once, rather than
        // by the first query of the first run.
        db::query("SELECT COUNT(*) FROM sqlite_master")
            .fetch_one(&pool)
            .await
            .map_err(connect_err)?;
        Ok(pool)
    })
    .await?;
    if store.create {
        within(limit, shown, "switching to WAL", async {
            retry_busy(|| pool.execute_batch("PRAGMA journal_mode = WAL"))
                .await
                .map_err(connect_err)
        })
        .await?;
    }
    Ok(pool)
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str, shown: &str, _: &StoreOptions) -> Result<Pool, StoreError> {
    Err(StoreError::BadUrl {
        url: shown.to_owned(),
        why: "this build has no PostgreSQL support; enable the `postgres` feature of weft".into(),
    })
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, shown: &str, store: &StoreOptions) -> Result<Pool, StoreError> {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use sqlx::{ConnectOptions, Connection, Executor};
    use std::str::FromStr;
    let limit = store.connect_timeout;
    let connect_err = |e: sqlx::Error| StoreError::Connect {
        url: shown.to_owned(),
        error: e.to_string(),
    };
    let options = PgConnectOptions::from_str(url)
        .map_err(connect_err)?
        .log_statements(log::LevelFilter::Off)
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(3600));
    let schema = store.schema.replace('"', "");
    // One connection first: a server that does not answer is told apart here rather than by
    // the pool retrying until it times out.
    let mut conn = within(limit, shown, "connecting", async {
        options.connect().await.map_err(connect_err)
    })
    .await?;
    // Its own schema keeps weft's tables and migration records apart from the application's.
    let exists: Option<String> = within(limit, shown, "looking for weft's schema", async {
        sqlx::query_scalar(
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
    // Closing waits on the server too; a silent one is not waited for.
    let _ = tokio::time::timeout(limit, conn.close()).await;
    let setup: Arc<str> = format!("SET search_path TO \"{schema}\"").into();
    let pool = within(limit, shown, "opening the connection pool", async {
        PgPoolOptions::new()
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
    Ok(Pool::Postgres(pool))
}

/// Refuses a history a recording store cannot write, at open rather than by losing every row of
/// the first run. A database busy with another writer past `limit` counts as writable.
async fn check_writable(
    pool: &Pool,
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
            let probe = db::query("UPDATE _sqlx_migrations SET version = version WHERE 1 = 0")
                .execute(pool);
            match tokio::time::timeout(limit, probe).await {
                Ok(Err(db::Error::Database(e))) => {
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
                db::query_scalar::<String>("SELECT current_setting('transaction_read_only')")
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
async fn retry_busy<F, Fut>(mut op: F) -> Result<(), db::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), db::Error>>,
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
