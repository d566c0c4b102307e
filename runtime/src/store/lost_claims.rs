//! Claims whose answer was lost: the claim's transaction may have committed although the worker
//! saw an error (the connection dropped while its COMMIT was on the way). Its runs are then
//! Pending and owned by a live process that does not know it has them: the reaper leaves them
//! alone (their owner heartbeats) and no worker would ever run them.
//!
//! Each claim stamps the `run_owners` rows it writes with its time (`since`). A claim that
//! failed leaves its stamp here, and the next claim of the same worker takes, in its own
//! transaction, the Pending runs this process owns under those stamps (re-stamping them, so that
//! no later recovery returns them again). A stamp is kept for [`KEEP`]: a COMMIT cut off on
//! its way may still be applied a moment after the error.

use super::queue::{claimed_run, ClaimedRun};
use super::{db, StoreError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the stamp of a failed claim is looked for.
const KEEP: Duration = Duration::from_secs(30);

/// One claim that failed.
struct Lost {
    pool: String,
    worker: String,
    stamp: String,
    at: Instant,
}

/// The stamps of this store's failed claims.
#[derive(Default)]
pub(super) struct LostClaims(Mutex<Vec<Lost>>);

impl LostClaims {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Lost>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stamps of worker `worker`'s failed claims in pool `pool` still worth looking for.
    pub(super) fn stamps(&self, pool: &str, worker: &str) -> Vec<String> {
        let mut lost = self.lock();
        lost.retain(|l| l.at.elapsed() < KEEP);
        lost.iter()
            .filter(|l| l.pool == pool && l.worker == worker)
            .map(|l| l.stamp.clone())
            .collect()
    }

    /// The claim of `worker` in `pool` stamped `stamp` failed: its runs may be ours.
    pub(super) fn failed(&self, pool: &str, worker: &str, stamp: &str) {
        self.lock().push(Lost {
            pool: pool.to_owned(),
            worker: worker.to_owned(),
            stamp: stamp.to_owned(),
            at: Instant::now(),
        });
    }
}

/// In a claim's transaction: the Pending runs of pool `pool` that process `process` owns under
/// one of `stamps`, re-stamped `now`.
pub(super) async fn recover(
    tx: &mut db::Transaction,
    process: &str,
    pool: &str,
    stamps: &[String],
    now: &str,
) -> Result<Vec<ClaimedRun>, StoreError> {
    if stamps.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..stamps.len()).map(|i| format!("${}", i + 3)).collect();
    let sql = format!(
        "SELECT f.id, f.deployment, f.overrides, f.scheduled, f.tries FROM flow_runs f \
         JOIN run_owners o ON o.flow_run_id = f.id WHERE o.process = $1 AND f.pool = $2 \
         AND f.state = 'Pending' AND o.since IN ({})",
        marks.join(", ")
    );
    let q = db::query(&sql).bind(process).bind(pool);
    let rows = stamps
        .iter()
        .fold(q, |q, s| q.bind(s.as_str()))
        .fetch_all(&mut **tx)
        .await?;
    let runs = rows
        .iter()
        .map(claimed_run)
        .collect::<Result<Vec<_>, _>>()?;
    for run in &runs {
        db::query("UPDATE run_owners SET since = $1 WHERE flow_run_id = $2 AND process = $3")
            .bind(now)
            .bind(run.id.to_string())
            .bind(process)
            .execute(&mut **tx)
            .await?;
    }
    if !runs.is_empty() {
        tracing::warn!(
            target: "weft",
            "Work pool '{pool}': {} run(s) claimed by a claim whose answer was lost are started \
             now",
            runs.len()
        );
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_kept_per_worker_and_pool() {
        let lost = LostClaims::default();
        lost.failed("etl", "w1", "a");
        lost.failed("etl", "w2", "b");
        lost.failed("ops", "w1", "c");
        assert_eq!(lost.stamps("etl", "w1"), ["a"]);
        assert_eq!(lost.stamps("ops", "w1"), ["c"]);
        assert!(lost.stamps("ops", "w2").is_empty());
    }
}
