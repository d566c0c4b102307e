//! Shared by the integration tests that use the PostgreSQL on 127.0.0.1:5432, and by those that
//! rebuild an older history layout.

#[allow(dead_code)] // each test file uses some of these
pub mod procs;

/// SQLite: the statements that turn a current history file's task_runs back into the table of
/// schema versions 1 to 4 (a rowid table with a key index; no lifecycle columns), dropping the
/// view that reads it.
#[allow(dead_code)] // each test file uses some of these
pub const OLD_TASK_RUNS: [&str; 3] = [
    "DROP VIEW run_logs",
    "DROP TABLE task_runs",
    "CREATE TABLE task_runs (flow_run_id TEXT NOT NULL, node BIGINT NOT NULL, \
     map_index BIGINT NOT NULL, task TEXT NOT NULL, state TEXT NOT NULL, message TEXT, \
     attempts BIGINT NOT NULL, started TEXT, ended TEXT, cache_key TEXT, result TEXT, \
     PRIMARY KEY (flow_run_id, node, map_index))",
];

/// SQLite: the statements that undo migration 12 (the run queue) on `flow_runs` and drop its
/// tables; the `deployments` columns it added are the caller's to drop (or the table).
#[allow(dead_code)] // each test file uses some of these
pub const UNDO_RUN_QUEUE: [&str; 14] = [
    "DROP TABLE leaders",
    "DROP TABLE concurrency_limits",
    "DROP TABLE concurrency_slots",
    "DROP INDEX flow_runs_slot",
    "DROP INDEX flow_runs_queue",
    "DROP INDEX flow_runs_pool_active",
    "DROP INDEX flow_runs_deployment_active",
    "ALTER TABLE flow_runs DROP COLUMN deployment",
    "ALTER TABLE flow_runs DROP COLUMN overrides",
    "ALTER TABLE flow_runs DROP COLUMN pool",
    "ALTER TABLE flow_runs DROP COLUMN scheduled",
    "ALTER TABLE flow_runs DROP COLUMN slot",
    "ALTER TABLE flow_runs DROP COLUMN worker",
    "ALTER TABLE flow_runs DROP COLUMN tries",
];

/// The test server (`WEFT_TEST_POSTGRES_URL`, default the local `test` database).
#[cfg(feature = "postgres")]
pub fn server_url() -> String {
    std::env::var("WEFT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A PostgreSQL schema of its own per test, dropped with [`Schema::drop`].
#[cfg(feature = "postgres")]
pub struct Schema {
    /// Its name (`weft_<tag>_<uuid>`).
    pub name: String,
    /// A pool on the server, outside the schema, for checks and the final drop.
    pub admin: sqlx::PgPool,
}

#[cfg(feature = "postgres")]
#[allow(dead_code)] // each test file uses some of these
impl Schema {
    /// A new schema name; fails the test, saying what to do, when PostgreSQL is not reachable.
    pub async fn new(tag: &str) -> Schema {
        let admin = sqlx::PgPool::connect(&server_url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable at {} ({e}): start it (`.ci/run` does), or set \
                     WEFT_TEST_POSTGRES_URL",
                    server_url()
                )
            });
        let name = format!("weft_{tag}_{}", uuid::Uuid::new_v4().simple());
        Schema { name, admin }
    }
    /// Store options for this schema on `url` (the server, or a proxy in front of it).
    pub fn options(&self, url: &str) -> weft::store::StoreOptions {
        weft::store::StoreOptions::new(url).schema(&self.name)
    }
    /// A store in this schema on the test server.
    pub async fn store(&self) -> weft::store::Store {
        self.options(&server_url()).connect().await.unwrap()
    }
    /// The migration versions applied in this schema.
    pub async fn versions(&self) -> Vec<i64> {
        sqlx::query_scalar(&format!(
            "SELECT version FROM \"{}\"._sqlx_migrations ORDER BY version",
            self.name
        ))
        .fetch_all(&self.admin)
        .await
        .unwrap()
    }
    /// Drops the schema and everything in it.
    pub async fn drop(self) {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones: the
/// database going away, as the client sees it.
#[cfg(feature = "postgres")]
pub struct Proxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    /// When set: the next message from a client that holds these bytes reaches the server, and
    /// then its connection is closed without the server's answer (see [`Proxy::lose_answer_to`]).
    lose: std::sync::Arc<std::sync::Mutex<Option<&'static [u8]>>>,
}

/// Relays bytes both ways between `client` and `server` until either closes; one task, so
/// that a message whose answer is to be lost ([`Proxy::lose_answer_to`]) is never answered.
#[cfg(feature = "postgres")]
async fn relay(
    client: &mut tokio::net::TcpStream,
    mut server: tokio::net::TcpStream,
    lose: &std::sync::Mutex<Option<&'static [u8]>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        tokio::select! {
            n = client.read(&mut up) => {
                let Ok(n @ 1..) = n else { return };
                let chunk = &up[..n];
                let lost = {
                    let mut lose = lose.lock().unwrap();
                    let hit = lose.is_some_and(|b| chunk.windows(b.len()).any(|w| w == b));
                    if hit {
                        *lose = None; // once
                    }
                    hit
                };
                if server.write_all(chunk).await.is_err() {
                    return;
                }
                if lost {
                    // Time for the server to act on it; the answer is never relayed.
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    return;
                }
            }
            n = server.read(&mut down) => {
                let Ok(n @ 1..) = n else { return };
                if client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(feature = "postgres")]
#[allow(dead_code)] // each test file uses some of these
impl Proxy {
    pub async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let up2 = up.clone();
        let lose = std::sync::Arc::new(std::sync::Mutex::new(None));
        let lose2 = lose.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client); // refused, as by a server that is down
                    continue;
                }
                let mut cuts = cuts.clone();
                cuts.borrow_and_update(); // only later cuts stop this connection
                let lose = lose2.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else {
                        return;
                    };
                    tokio::select! {
                        _ = relay(&mut client, server, &lose) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            up,
            cut,
            lose,
        }
    }
    /// The next message a client sends that holds `bytes` (say `b"COMMIT"`) reaches the server,
    /// which acts on it, and then the client's connection is closed before the answer comes
    /// back: the client cannot know whether it was done.
    pub fn lose_answer_to(&self, bytes: &'static [u8]) {
        *self.lose.lock().unwrap() = Some(bytes);
    }
    pub fn url(&self) -> String {
        server_url().replace(":5432", &format!(":{}", self.port))
    }
    pub fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
