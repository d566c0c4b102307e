//! Checkpoints of a SQLite history off the writer's path.
//!
//! In WAL mode SQLite copies the log back into the database file (a checkpoint, with its
//! fsyncs) inside whichever commit crosses `wal_autocheckpoint`: one run in ~70 waited for it,
//! and it was a third of the writer's time. The writer turns that off and this thread, on a
//! connection of its own, checkpoints what was committed since its last turn. PASSIVE never
//! waits for the writer or for readers; a log that still grows past [`LIMIT_FRAMES`] (a
//! reader that never lets go, say) gets a RESTART checkpoint, which does wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// How often committed pages are copied back.
const INTERVAL: Duration = Duration::from_millis(50);
/// 64 MiB of 4 KiB pages.
const LIMIT_FRAMES: i64 = 16_384;

/// The checkpointing thread of one writer; dropping this stops it and waits for it, so its
/// connection is closed when the writer's is (the last one closed removes the log files, which
/// a reader of a read-only directory then does not need to create).
pub(crate) struct Checkpointer {
    commits: Arc<AtomicU64>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Checkpointer {
    /// Starts checkpointing the SQLite file at `path`; `None` if it cannot be opened (the
    /// writer then leaves checkpoints to SQLite).
    pub(crate) fn start(path: &str) -> Option<Checkpointer> {
        let conn = super::writer::open_sqlite(path).ok()?;
        let commits = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = mpsc::channel();
        let seen = commits.clone();
        let thread = std::thread::Builder::new()
            .name("weft-history-checkpoint".into())
            .spawn(move || run(&conn, &stopped, &seen))
            .ok()?;
        Some(Checkpointer {
            commits,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The writer committed a transaction.
    pub(crate) fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }
}

fn run(conn: &rusqlite::Connection, stopped: &mpsc::Receiver<()>, commits: &AtomicU64) {
    let mut done = 0;
    loop {
        match stopped.recv_timeout(INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = commits.load(Ordering::Relaxed);
        if now == done {
            continue;
        }
        done = now;
        match checkpoint(conn, "PASSIVE") {
            Ok((_, log)) if log > LIMIT_FRAMES => {
                let _ = checkpoint(conn, "RESTART");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(target: "weft::store", "Run history: checkpoint failed ({e})")
            }
        }
    }
}

/// Runs a checkpoint; SQLite's answer: (busy, frames in the log).
fn checkpoint(conn: &rusqlite::Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
}
