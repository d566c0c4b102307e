//! Retention: deleting old flow runs with everything recorded about them, in bounded batches.
//!
//! [`Store::prune`] is one pass (the `weft history prune` command); [`keep_pruning`] repeats it
//! in the background for a long-running process ([`Server`](crate::schedule::Server) starts it
//! when the store was opened with [`StoreOptions::retention`](super::StoreOptions::retention)).

use super::db;
use super::{ts, Store, StoreError};
use crate::state::StateKind;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::time::Duration;

/// Which runs to delete: those that ended (or, without an end, started) longer ago than
/// `older_than`, in a final state. A run still Scheduled, Pending, Running or Retrying is never
/// touched, nor are its subflow runs.
///
/// ```
/// use std::time::Duration;
/// use weft::store::Retention;
///
/// let r = Retention::parse("30d").unwrap().keep_failed(true);
/// assert_eq!(r.older_than, Duration::from_secs(30 * 86400));
/// assert!(Retention::parse("soon").unwrap_err().contains("30d"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Runs older than this are deleted.
    pub older_than: Duration,
    /// Keep runs that ended Failed, Crashed or TimedOut (default false).
    pub keep_failed: bool,
    /// Count what would be deleted, delete nothing (default false).
    pub dry_run: bool,
    /// Runs deleted per transaction (default 500), so the database stays usable meanwhile.
    pub batch: usize,
    /// How often [`keep_pruning`] prunes (default hourly).
    pub every: Duration,
}

impl Retention {
    /// Runs older than `older_than`.
    pub fn older_than(older_than: Duration) -> Retention {
        Retention {
            older_than,
            keep_failed: false,
            dry_run: false,
            batch: 500,
            every: Duration::from_secs(3600),
        }
    }
    /// Runs older than an age such as `30d`, `12h`, `1h 30m` (humantime).
    pub fn parse(age: &str) -> Result<Retention, String> {
        humantime::parse_duration(age.trim())
            .map(Retention::older_than)
            .map_err(|e| format!("invalid age {age:?}: {e} (expected e.g. 30d, 12h, 90m)"))
    }
    /// Keep runs that ended Failed, Crashed or TimedOut.
    pub fn keep_failed(mut self, keep: bool) -> Self {
        self.keep_failed = keep;
        self
    }
    /// Count what would be deleted without deleting it.
    pub fn dry_run(mut self, dry: bool) -> Self {
        self.dry_run = dry;
        self
    }
    /// Runs per transaction (at least 1).
    pub fn batch(mut self, runs: usize) -> Self {
        self.batch = runs.max(1);
        self
    }
    /// How often [`keep_pruning`] prunes.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_millis(10));
        self
    }

    /// Whether a run in `state` may be deleted.
    fn deletes(&self, state: StateKind) -> bool {
        state.is_final() && !(self.keep_failed && state.is_failed())
    }
    fn states(&self) -> Vec<&'static str> {
        StateKind::ALL
            .into_iter()
            .filter(|s| self.deletes(*s))
            .map(StateKind::as_str)
            .collect()
    }
}

/// What a prune deleted (or, dry, would delete): rows per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Runs older than this were pruned.
    pub cutoff: DateTime<Utc>,
    /// Nothing was deleted; the counts say what would have been.
    pub dry_run: bool,
    /// Flow runs (subflow runs included).
    pub flow_runs: u64,
    /// Task runs.
    pub task_runs: u64,
    /// State changes.
    pub state_changes: u64,
    /// Log lines.
    pub logs: u64,
    /// Pipeline nodes' outputs.
    pub node_outputs: u64,
    /// Transactions used.
    pub batches: u64,
}

impl PruneReport {
    /// Every row counted.
    pub fn total(&self) -> u64 {
        self.flow_runs + self.task_runs + self.state_changes + self.logs + self.node_outputs
    }
}

/// The tables keyed by `flow_run_id`.
const CHILD_TABLES: [&str; 4] = ["task_runs", "state_changes", "logs", "node_outputs"];

impl Store {
    /// Deletes the runs `retention` selects, with their task runs, state changes, logs, node
    /// outputs and subflow runs, `retention.batch` runs per transaction; or, with
    /// `dry_run`, counts them. Dropping the future stops it between two transactions.
    pub async fn prune(&self, retention: &Retention) -> Result<PruneReport, StoreError> {
        let cutoff = Utc::now()
            - chrono::Duration::from_std(retention.older_than)
                .unwrap_or_else(|_| chrono::Duration::days(365 * 1000));
        let mut report = PruneReport {
            cutoff,
            dry_run: retention.dry_run,
            ..Default::default()
        };
        // Keyset paging by (started, id): a dry run, or runs kept because of their subflows,
        // are not read again.
        let mut after: Option<(String, String)> = None;
        loop {
            let (r, page_after) = (retention.clone(), after.take());
            let (counts, next, full) = self
                .with_pool(
                    move |pool, _| async move { one_batch(&pool, &r, cutoff, page_after).await },
                )
                .await?;
            let Some(counts) = counts else {
                return Ok(report);
            };
            report.flow_runs += counts.flow_runs;
            report.task_runs += counts.task_runs;
            report.state_changes += counts.state_changes;
            report.logs += counts.logs;
            report.node_outputs += counts.node_outputs;
            report.batches += 1;
            if !full {
                return Ok(report);
            }
            after = next;
        }
    }
}

/// One page of at most `r.batch` runs after `after`, in one transaction: what it deleted (None:
/// no run left), where the next page starts, and whether this one was full.
async fn one_batch(
    pool: &db::Pool,
    r: &Retention,
    cutoff: DateTime<Utc>,
    after: Option<(String, String)>,
) -> Result<(Option<PruneReport>, Option<(String, String)>, bool), StoreError> {
    let states = r.states();
    // Top-level runs only (or runs whose parent is gone): a subflow run goes with its parent.
    // (`started < cutoff` is implied, and lets the database use its index on `started`.)
    let mut sql = format!(
        "SELECT id, started FROM flow_runs f WHERE state IN ({}) \
         AND started < {1} AND COALESCE(ended, started) < {1} \
         AND (parent_run IS NULL OR NOT EXISTS (SELECT 1 FROM flow_runs p WHERE p.id = f.parent_run))",
        marks(1, states.len()),
        mark(states.len() + 1),
    );
    if after.is_some() {
        let n = states.len() + 2;
        sql.push_str(&format!(
            " AND (started > {} OR (started = {} AND id > {}))",
            mark(n),
            mark(n + 1),
            mark(n + 2)
        ));
    }
    sql.push_str(&format!(" ORDER BY started, id LIMIT {}", r.batch));
    let mut q = db::query(&sql);
    for s in &states {
        q = q.bind(*s);
    }
    q = q.bind(ts(cutoff));
    if let Some((started, id)) = &after {
        q = q
            .bind(started.clone())
            .bind(started.clone())
            .bind(id.clone());
    }
    let rows = q.fetch_all(pool).await?;
    let Some(last) = rows.last() else {
        return Ok((None, None, false));
    };
    let next = Some((last.try_get("started")?, last.try_get("id")?));
    let mut roots = Vec::with_capacity(rows.len());
    for row in &rows {
        roots.push(row.try_get::<String, _>("id")?);
    }
    let ids = with_subflows(pool, r, roots).await?;
    let mut counts = PruneReport::default();
    batch(pool, r, &states, &ids, &mut counts).await?;
    Ok((Some(counts), next, rows.len() >= r.batch))
}

/// `roots` and their subflow runs, all levels down; a tree holding a run that is not final
/// (or, keeping failed runs, a failed one) is left out whole.
async fn with_subflows(
    pool: &db::Pool,
    r: &Retention,
    roots: Vec<String>,
) -> Result<Vec<String>, StoreError> {
    // Each run's root, to drop a whole tree when one of its runs must stay.
    let mut root_of: Vec<(String, String)> = roots.iter().map(|r| (r.clone(), r.clone())).collect();
    let mut keep_roots: HashSet<String> = HashSet::new();
    let mut level: Vec<(String, String)> = root_of.clone();
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(500) {
            let sql = format!(
                "SELECT id, parent_run, state FROM flow_runs WHERE parent_run IN ({})",
                marks(1, chunk.len())
            );
            let mut q = db::query(&sql);
            for (id, _) in chunk {
                q = q.bind(id.clone());
            }
            for row in q.fetch_all(pool).await? {
                let id: String = row.try_get("id")?;
                let parent: String = row.try_get("parent_run")?;
                let state: String = row.try_get("state")?;
                let root = chunk
                    .iter()
                    .find(|(c, _)| *c == parent)
                    .map(|(_, root)| root.clone())
                    .unwrap_or_default();
                let deletable = state.parse::<StateKind>().is_ok_and(|s| r.deletes(s));
                if !deletable {
                    keep_roots.insert(root.clone());
                }
                next.push((id, root));
            }
        }
        root_of.extend(next.iter().cloned());
        level = next;
    }
    Ok(root_of
        .into_iter()
        .filter(|(_, root)| !keep_roots.contains(root))
        .map(|(id, _)| id)
        .collect())
}

/// One transaction: the runs still in a deletable state (a run resumed meanwhile is spared),
/// then everything keyed by them.
async fn batch(
    pool: &db::Pool,
    r: &Retention,
    states: &[&'static str],
    ids: &[String],
    report: &mut PruneReport,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    // Checked again inside the transaction.
    let sql = format!(
        "{} FROM flow_runs WHERE id IN ({}) AND state IN ({}) RETURNING id",
        if r.dry_run { "SELECT id" } else { "DELETE" },
        marks(1, ids.len()),
        marks(ids.len() + 1, states.len()),
    );
    let sql = if r.dry_run {
        sql.replace(" RETURNING id", "")
    } else {
        sql
    };
    let mut q = db::query(&sql);
    for id in ids {
        q = q.bind(id.clone());
    }
    for s in states {
        q = q.bind(*s);
    }
    let gone: Vec<String> = q
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>("id"))
        .collect::<Result<_, _>>()?;
    report.flow_runs += gone.len() as u64;
    if !gone.is_empty() {
        for table in CHILD_TABLES {
            let set = marks(1, gone.len());
            let n = if r.dry_run {
                let sql = format!("SELECT COUNT(*) FROM {table} WHERE flow_run_id IN ({set})");
                let mut q = db::query_scalar::<i64>(&sql);
                for id in &gone {
                    q = q.bind(id.clone());
                }
                q.fetch_one(&mut *tx).await?.max(0) as u64
            } else {
                let sql = format!("DELETE FROM {table} WHERE flow_run_id IN ({set})");
                let mut q = db::query(&sql);
                for id in &gone {
                    q = q.bind(id.clone());
                }
                q.execute(&mut *tx).await?.rows_affected()
            };
            match table {
                "task_runs" => report.task_runs += n,
                "state_changes" => report.state_changes += n,
                "logs" => report.logs += n,
                _ => report.node_outputs += n,
            }
        }
    }
    if r.dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(())
}

/// Placeholder `n` (both databases number them so).
fn mark(n: usize) -> String {
    format!("${n}")
}

/// `count` placeholders numbered from `first`, comma-separated.
fn marks(first: usize, count: usize) -> String {
    (first..first + count)
        .map(mark)
        .collect::<Vec<_>>()
        .join(",")
}

/// Prunes `store` by `retention` now and then every `retention.every`, logging what each pass
/// removed, until the returned future is dropped. A failed pass is logged and retried at the
/// next one. For long-running processes (a server, a worker): `tokio::spawn(keep_pruning(..))`.
pub async fn keep_pruning(store: Store, retention: Retention) {
    loop {
        match store.prune(&retention).await {
            Ok(r) if r.total() > 0 => tracing::info!(
                target: "weft::store",
                "Run history retention: deleted {} flow runs older than {} ({} task runs, {} \
                 state changes, {} log lines, {} node outputs)",
                r.flow_runs,
                humantime::format_duration(retention.older_than),
                r.task_runs,
                r.state_changes,
                r.logs,
                r.node_outputs
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(target: "weft::store", "Run history retention failed: {e}"),
        }
        tokio::time::sleep(retention.every).await;
    }
}
