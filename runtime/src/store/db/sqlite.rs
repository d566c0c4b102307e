//! SQLite through rusqlite: a few connections, each statement run on a blocking thread so the
//! store's runtime never waits on a file lock.

use super::{Done, Error, Query, Result, Row, Value, Want};
use rusqlite::types::{ToSqlOutput, ValueRef};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, message) => Error::Database(super::DbError::new(
                Some(f.extended_code.to_string()),
                message.unwrap_or_else(|| f.to_string()),
            )),
            e => Error::Io(e.to_string()),
        }
    }
}

fn joined(e: tokio::task::JoinError) -> Error {
    Error::Io(format!("a SQLite statement's thread failed: {e}"))
}

/// A pool of connections to one file (or one in-memory database, on a single connection).
#[derive(Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    /// A `file:` URI.
    uri: String,
    /// Run on every new connection.
    setup: String,
    idle: Mutex<Vec<rusqlite::Connection>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
}

/// A connection taken from the pool; given back when dropped (rolled back first if a
/// transaction was left open).
pub(crate) struct Conn {
    shared: Arc<Shared>,
    /// None while a statement runs on it, or once it is lost with a dropped statement.
    conn: Option<rusqlite::Connection>,
    in_tx: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// Opens the first connection at once, so a bad file fails here.
    pub(crate) async fn open(uri: String, setup: String, max: usize) -> Result<Pool> {
        let pool = Pool {
            shared: Arc::new(Shared {
                uri,
                setup,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max.max(1))),
                closed: AtomicBool::new(false),
            }),
        };
        drop(pool.acquire().await?);
        Ok(pool)
    }

    pub(crate) async fn acquire(&self) -> Result<Conn> {
        let shared = &self.shared;
        let permit = shared
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Io("the SQLite pool is closed".to_owned()))?;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Error::Io("the SQLite pool is closed".to_owned()));
        }
        let idle = shared.idle.lock().ok().and_then(|mut v| v.pop());
        let conn = match idle {
            Some(c) => c,
            None => {
                let (uri, setup) = (shared.uri.clone(), shared.setup.clone());
                tokio::task::spawn_blocking(move || connect(&uri, &setup))
                    .await
                    .map_err(joined)??
            }
        };
        Ok(Conn {
            shared: shared.clone(),
            conn: Some(conn),
            in_tx: false,
            _permit: permit,
        })
    }

    pub(crate) async fn begin(&self) -> Result<Conn> {
        let mut conn = self.acquire().await?;
        conn.execute_batch("BEGIN IMMEDIATE".to_owned()).await?;
        conn.in_tx = true;
        Ok(conn)
    }

    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Ok(mut idle) = self.shared.idle.lock() {
            idle.clear();
        }
    }
}

fn connect(uri: &str, setup: &str) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    // The URI's `mode=` says whether the file may be created.
    let conn = rusqlite::Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(setup)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl Conn {
    /// Runs `f` with the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self
            .conn
            .take()
            .ok_or_else(|| Error::Io("the SQLite connection was lost".to_owned()))?;
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let out = f(&conn);
            (conn, out)
        })
        .await
        .map_err(joined)?;
        self.conn = Some(conn);
        out
    }

    pub(super) async fn run(&mut self, q: Query<'_>, want: Want) -> Result<(Done, Vec<Row>)> {
        let sql = q.sql.to_owned();
        let args = q.args;
        self.with(move |c| statement(c, &sql, &args, want)).await
    }

    pub(crate) async fn execute_batch(&mut self, sql: String) -> Result<()> {
        self.with(move |c| Ok(c.execute_batch(&sql)?)).await
    }

    /// Ends the transaction with `COMMIT` or `ROLLBACK`; on failure it is rolled back on drop.
    pub(crate) async fn finish(mut self, sql: &str) -> Result<()> {
        self.execute_batch(sql.to_owned()).await?;
        self.in_tx = false;
        Ok(())
    }

    /// Closes the connection instead of giving it back.
    pub(crate) fn close(mut self) {
        self.conn = None;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // A rollback takes no lock it does not hold: quick, so done here.
        if (self.in_tx || !conn.is_autocommit()) && conn.execute_batch("ROLLBACK").is_err() {
            return;
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut idle) = self.shared.idle.lock() {
            idle.push(conn);
        }
    }
}

/// One value as SQLite takes it.
struct Bound<'a>(&'a Value);

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null(_) => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::Float(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Binds `args` to the placeholders: `?` in order, `$N` or `?N` to the N-th value.
fn bind(stmt: &mut rusqlite::Statement<'_>, args: &[Value]) -> Result<()> {
    for i in 1..=stmt.parameter_count() {
        let at = match stmt.parameter_name(i) {
            None => i - 1,
            Some(name) => name
                .get(1..)
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .map(|n| n - 1)
                .ok_or_else(|| Error::Io(format!("unsupported placeholder {name}")))?,
        };
        let value = args.get(at).ok_or_else(|| {
            Error::Io(format!(
                "placeholder {} has no value ({} bound)",
                at + 1,
                args.len()
            ))
        })?;
        stmt.raw_bind_parameter(i, Bound(value))?;
    }
    Ok(())
}

fn read(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null(super::value::Kind::Text),
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn statement(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Value],
    want: Want,
) -> Result<(Done, Vec<Row>)> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    let width = stmt.column_count();
    if width == 0 {
        let n = stmt.raw_execute()?;
        return Ok((
            Done {
                rows_affected: n as u64,
            },
            Vec::new(),
        ));
    }
    let columns: Arc<[String]> = stmt.column_names().into_iter().map(String::from).collect();
    let read_only = stmt.readonly();
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(r) = rows.next()? {
        if want == Want::Nothing {
            continue;
        }
        let values = (0..width)
            .map(|i| r.get_ref(i).map(read))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(Row::new(columns.clone(), values));
        if want == Want::One {
            break;
        }
    }
    drop(rows);
    let rows_affected = if read_only { 0 } else { conn.changes() };
    Ok((Done { rows_affected }, out))
}
