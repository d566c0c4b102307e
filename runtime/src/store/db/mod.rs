//! The store's database seam: queries with bound values, rows read by column, transactions,
//! over SQLite (through rusqlite, on blocking threads) or PostgreSQL (through sqlx, feature
//! `postgres`).
//!
//! The surface follows sqlx's (`query(..).bind(..).fetch_all(&pool)`, `row.try_get("col")`,
//! `pool.begin()`), so the store reads the same for both databases; a user's default build
//! compiles one SQLite driver and no sqlx. Placeholders are `$1`, `$2`... for both (SQLite reads
//! `$N` as the N-th value) or `?` for SQLite.

#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;
mod value;

pub(crate) use value::{Decode, Encode, Value};

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// A database error: what the database refused (with its code), or the connection's trouble.
#[derive(Debug)]
pub(crate) enum Error {
    /// The database refused the statement.
    Database(DbError),
    /// `fetch_one` found no row.
    RowNotFound,
    /// A column could not be read as the type asked for.
    Decode(String),
    /// The connection, the pool, or a thread failed.
    Io(String),
}

/// What the database said: SQLite's extended result code as a number, or PostgreSQL's SQLSTATE.
#[derive(Debug)]
pub(crate) struct DbError {
    code: Option<String>,
    message: String,
}

impl DbError {
    pub(crate) fn new(code: Option<String>, message: String) -> DbError {
        DbError { code, message }
    }
    pub(crate) fn code(&self) -> Option<Cow<'_, str>> {
        self.code.as_deref().map(Cow::Borrowed)
    }
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Database(e) => write!(f, "error returned from database: {e}"),
            Error::RowNotFound => f.write_str("no rows returned by a query that expected a row"),
            Error::Decode(e) => write!(f, "cannot read a column: {e}"),
            Error::Io(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// A pool of connections to one database. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(sqlite::Pool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// One connection, taken from the pool, or a transaction's.
pub(crate) enum Conn {
    Sqlite(sqlite::Conn),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    #[cfg(feature = "postgres")]
    PostgresTx(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// A transaction: statements run on it through `&mut *tx`; rolled back if dropped uncommitted.
pub(crate) struct Transaction {
    conn: Conn,
}

/// Where a statement runs: the pool (any free connection) or one connection.
pub(crate) enum Target<'e> {
    Pool(&'e Pool),
    Conn(&'e mut Conn),
}

/// What a statement can run on, as sqlx's `Executor`.
pub(crate) trait Executor<'e> {
    fn target(self) -> Target<'e>;
}

impl<'e> Executor<'e> for &'e Pool {
    fn target(self) -> Target<'e> {
        Target::Pool(self)
    }
}

impl<'e> Executor<'e> for &'e mut Conn {
    fn target(self) -> Target<'e> {
        Target::Conn(self)
    }
}

impl Pool {
    /// A pool of at most `max` connections to the SQLite database at `uri` (a `file:` URI, or
    /// `:memory:`), each set up with `setup` first.
    pub(crate) async fn open_sqlite(uri: String, setup: String, max: usize) -> Result<Pool> {
        Ok(Pool::Sqlite(sqlite::Pool::open(uri, setup, max).await?))
    }

    /// Starts a transaction (SQLite: `BEGIN IMMEDIATE`, so a read-then-write transaction waits
    /// for another writer instead of failing when it tries to write).
    pub(crate) async fn begin(&self) -> Result<Transaction> {
        let conn = match self {
            Pool::Sqlite(p) => Conn::Sqlite(p.begin().await?),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => Conn::PostgresTx(p.begin().await?),
        };
        Ok(Transaction { conn })
    }

    /// A connection of the pool's own, for statements that must share one (a session lock).
    pub(crate) async fn acquire(&self) -> Result<Conn> {
        Ok(match self {
            Pool::Sqlite(p) => Conn::Sqlite(p.acquire().await?),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => Conn::Postgres(p.acquire().await?),
        })
    }

    /// Runs several `;`-separated statements, binding nothing (settings, migration scripts).
    pub(crate) async fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Pool::Sqlite(p) => p.acquire().await?.execute_batch(sql.to_owned()).await,
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                sqlx::raw_sql(sql).execute(p).await?;
                Ok(())
            }
        }
    }

    /// Closes every connection; later statements fail.
    pub(crate) async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close(),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => p.close().await,
        }
    }
}

impl Conn {
    /// Runs several `;`-separated statements, binding nothing.
    pub(crate) async fn execute_batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => c.execute_batch(sql.to_owned()).await,
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => {
                sqlx::raw_sql(sql).execute(&mut **c).await?;
                Ok(())
            }
            #[cfg(feature = "postgres")]
            Conn::PostgresTx(c) => {
                sqlx::raw_sql(sql).execute(&mut **c).await?;
                Ok(())
            }
        }
    }

    /// Closes the connection instead of giving it back to the pool: a session's locks and
    /// settings end with it.
    pub(crate) async fn close(self) {
        match self {
            Conn::Sqlite(c) => c.close(),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => {
                use sqlx::Connection;
                let _ = c.detach().close().await;
            }
            #[cfg(feature = "postgres")]
            Conn::PostgresTx(c) => drop(c),
        }
    }
}

impl Transaction {
    pub(crate) async fn commit(self) -> Result<()> {
        self.end(true).await
    }
    pub(crate) async fn rollback(self) -> Result<()> {
        self.end(false).await
    }
    async fn end(self, commit: bool) -> Result<()> {
        match self.conn {
            Conn::Sqlite(c) => c.finish(if commit { "COMMIT" } else { "ROLLBACK" }).await,
            #[cfg(feature = "postgres")]
            Conn::PostgresTx(t) if commit => Ok(t.commit().await?),
            #[cfg(feature = "postgres")]
            Conn::PostgresTx(t) => Ok(t.rollback().await?),
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => Ok(()),
        }
    }
}

impl Deref for Transaction {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for Transaction {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// A row: its values by column.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    columns: std::sync::Arc<[String]>,
    values: Vec<Value>,
}

/// A column, by name or by position.
pub(crate) trait ColumnIndex: fmt::Debug + Copy {
    fn index(self, row: &Row) -> Option<usize>;
}

impl ColumnIndex for &str {
    fn index(self, row: &Row) -> Option<usize> {
        row.columns.iter().position(|c| c == self)
    }
}

impl ColumnIndex for usize {
    fn index(self, row: &Row) -> Option<usize> {
        (self < row.values.len()).then_some(self)
    }
}

impl Row {
    pub(crate) fn new(columns: std::sync::Arc<[String]>, values: Vec<Value>) -> Row {
        Row { columns, values }
    }
    /// The value of a column as `T`.
    pub(crate) fn try_get<T: Decode, I: ColumnIndex>(&self, i: I) -> Result<T> {
        let at = i
            .index(self)
            .ok_or_else(|| Error::Decode(format!("no column {i:?}")))?;
        T::decode(&self.values[at]).map_err(|e| Error::Decode(format!("column {i:?}: {e}")))
    }
}

/// A statement and its bound values.
#[must_use = "a query does nothing until it is executed or fetched"]
pub(crate) struct Query<'q> {
    sql: &'q str,
    args: Vec<Value>,
}

/// A statement whose rows are read as their first column.
#[must_use = "a query does nothing until it is fetched"]
pub(crate) struct QueryScalar<'q, T> {
    query: Query<'q>,
    _out: std::marker::PhantomData<fn() -> T>,
}

/// What `execute` did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    rows_affected: u64,
}

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A statement; bind its values in placeholder order.
pub(crate) fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        args: Vec::new(),
    }
}

/// A statement returning one column.
pub(crate) fn query_scalar<T: Decode>(sql: &str) -> QueryScalar<'_, T> {
    QueryScalar {
        query: query(sql),
        _out: std::marker::PhantomData,
    }
}

/// How a statement's rows are wanted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Nothing,
    One,
    All,
}

impl<'q> Query<'q> {
    pub(crate) fn bind(mut self, v: impl Encode) -> Self {
        self.args.push(v.encode());
        self
    }
    pub(crate) async fn execute<'e>(self, on: impl Executor<'e>) -> Result<Done> {
        Ok(run(on.target(), self, Want::Nothing).await?.0)
    }
    pub(crate) async fn fetch_all<'e>(self, on: impl Executor<'e>) -> Result<Vec<Row>> {
        Ok(run(on.target(), self, Want::All).await?.1)
    }
    pub(crate) async fn fetch_optional<'e>(self, on: impl Executor<'e>) -> Result<Option<Row>> {
        Ok(run(on.target(), self, Want::One)
            .await?
            .1
            .into_iter()
            .next())
    }
    pub(crate) async fn fetch_one<'e>(self, on: impl Executor<'e>) -> Result<Row> {
        self.fetch_optional(on).await?.ok_or(Error::RowNotFound)
    }
}

impl<'q, T: Decode> QueryScalar<'q, T> {
    pub(crate) fn bind(mut self, v: impl Encode) -> Self {
        self.query = self.query.bind(v);
        self
    }
    pub(crate) async fn fetch_all<'e>(self, on: impl Executor<'e>) -> Result<Vec<T>> {
        let rows = self.query.fetch_all(on).await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }
    pub(crate) async fn fetch_optional<'e>(self, on: impl Executor<'e>) -> Result<Option<T>> {
        match self.query.fetch_optional(on).await? {
            Some(r) => Ok(Some(r.try_get(0)?)),
            None => Ok(None),
        }
    }
    pub(crate) async fn fetch_one<'e>(self, on: impl Executor<'e>) -> Result<T> {
        self.query.fetch_one(on).await?.try_get(0)
    }
}

async fn run(on: Target<'_>, q: Query<'_>, want: Want) -> Result<(Done, Vec<Row>)> {
    match on {
        Target::Pool(Pool::Sqlite(p)) => p.acquire().await?.run(q, want).await,
        Target::Conn(Conn::Sqlite(c)) => c.run(q, want).await,
        #[cfg(feature = "postgres")]
        Target::Pool(Pool::Postgres(p)) => postgres::run(p, q, want).await,
        #[cfg(feature = "postgres")]
        Target::Conn(Conn::Postgres(c)) => postgres::run(&mut **c, q, want).await,
        #[cfg(feature = "postgres")]
        Target::Conn(Conn::PostgresTx(c)) => postgres::run(&mut **c, q, want).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_binds_numbered_placeholders_and_rolls_back_dropped_transactions() {
        let dir = std::env::temp_dir().join(format!("weft-db-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let uri = format!("file:{}/t.db?mode=rwc", dir.display());
        let pool = Pool::open_sqlite(uri, "PRAGMA busy_timeout = 2000".into(), 2)
            .await
            .unwrap();
        pool.execute_batch("CREATE TABLE t (a INTEGER, b TEXT)")
            .await
            .unwrap();
        // `$N` is the N-th value wherever and however often it appears.
        let done = query("INSERT INTO t (b, a) VALUES ($2, $1), ($2, $1 + 1)")
            .bind(1i64)
            .bind("x")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 2);
        let rows = query("SELECT a, b FROM t WHERE b = ? ORDER BY a")
            .bind("x")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].try_get::<i64, _>("a").unwrap(), 2);
        assert_eq!(rows[1].try_get::<String, _>(1).unwrap(), "x");
        assert!(rows[1].try_get::<String, _>("a").is_err());

        let mut tx = pool.begin().await.unwrap();
        query("DELETE FROM t").execute(&mut *tx).await.unwrap();
        drop(tx);
        // The dropped transaction released its write lock: the pool writes at once.
        query("INSERT INTO t (a, b) VALUES ($1, $2)")
            .bind(3i64)
            .bind(None::<String>)
            .execute(&pool)
            .await
            .unwrap();
        let n: i64 = query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 3, "the delete was rolled back");
        let b: Option<Option<String>> = query_scalar("SELECT b FROM t WHERE a = 3")
            .fetch_optional(&pool)
            .await
            .unwrap();
        assert_eq!(b, Some(None));

        let missing = query_scalar::<i64>("SELECT a FROM t WHERE a = 99")
            .fetch_one(&pool)
            .await;
        assert!(matches!(missing, Err(Error::RowNotFound)));
        let err = query("INSERT INTO nope VALUES (1)")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no such table: nope"), "{err}");
        pool.close().await;
        assert!(query("SELECT 1").execute(&pool).await.is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
