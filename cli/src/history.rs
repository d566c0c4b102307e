//! `weft history prune`: deletes old runs with everything recorded about them.

use crate::Failure;
use clap::{Args, Subcommand};
use weft_runtime::store::{Retention, Store};

#[derive(Debug, Subcommand)]
pub(crate) enum HistoryCommand {
    /// Delete runs that ended longer ago than --older-than, with their task runs, state changes,
    /// logs, node outputs and subflow runs
    #[command(
        long_about = "Delete runs that ended longer ago than --older-than, with their \
        task runs, state changes, logs, node outputs and subflow runs.\n\nOnly runs in a final \
        state are deleted: a run still Scheduled, Pending, Running or Retrying is never touched, \
        nor is any run of its subflow tree. Runs are deleted 500 per transaction, so flows may \
        go on recording into the same database meanwhile."
    )]
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete runs older than this age: 30d, 12h, 90m, "1d 12h"
    #[arg(long, value_name = "AGE")]
    pub(crate) older_than: String,

    /// Keep runs that ended Failed, Crashed or TimedOut
    #[arg(long)]
    pub(crate) keep_failed: bool,

    /// Count what would be deleted; delete nothing
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Print the counts as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

/// The retention `--older-than` asks for, checked before the database is opened.
pub(crate) fn retention(args: &PruneArgs) -> Result<Retention, Failure> {
    Retention::parse(&args.older_than)
        .map(|r| r.keep_failed(args.keep_failed).dry_run(args.dry_run))
        .map_err(|e| Failure::usage(format!("invalid value for --older-than: {e}")))
}

pub(crate) async fn prune(
    store: &Store,
    args: &PruneArgs,
    retention: Retention,
) -> Result<String, Failure> {
    let report = store.prune(&retention).await?;
    if args.json {
        let value = serde_json::to_value(&report).unwrap_or_default();
        return Ok(crate::json(value));
    }
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let kept = if args.keep_failed {
        ", failed ones kept"
    } else {
        ""
    };
    let mut out = format!(
        "{verb} {} flow runs that ended before {} (older than {}{kept}) from {}\n",
        report.flow_runs,
        report
            .cutoff
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S"),
        args.older_than.trim(),
        store.url()
    );
    for (table, n) in [
        ("flow runs", report.flow_runs),
        ("task runs", report.task_runs),
        ("state changes", report.state_changes),
        ("log lines", report.logs),
        ("node outputs", report.node_outputs),
    ] {
        out.push_str(&format!("  {table:<14} {n:>10}\n"));
    }
    if report.dry_run {
        out.push_str("dry run: nothing was deleted\n");
    }
    Ok(out)
}
