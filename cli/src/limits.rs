//! `weft concurrency-limit`: global concurrency limits by task tag.

use crate::render::{date_time, Align, Table};
use crate::Failure;
use clap::Subcommand;
use weft_runtime::store::Store;

#[derive(Debug, Subcommand)]
pub(crate) enum LimitCommand {
    /// Limit how many task runs with a tag run at once, across every process
    #[command(
        long_about = "Limit how many task runs with a tag run at once, across every process \
        recording into this run history (workers, `serve`, plain programs).\n\nA task run tagged \
        TAG (#[task(tags = [\"TAG\"])]) waits, Pending, until it gets one of the N slots, and \
        gives it back when it ends. A slot held by a process that died is free again once the \
        process is known dead (its heartbeat older than 10 s, or its pid gone on this host). \
        0 stops every task run with the tag from starting.\n\nCreates the run history if there \
        is none yet."
    )]
    Set {
        /// The tag, as written in #[task(tags = [...])]
        #[arg(value_name = "TAG")]
        tag: String,

        /// At most this many task runs with the tag at once
        #[arg(value_name = "N")]
        limit: u32,
    },
    /// List the concurrency limits and the slots in use
    Ls {
        /// Print JSON (UTC times) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Remove a tag's concurrency limit
    Rm {
        /// The tag, as `weft concurrency-limit ls` lists it
        #[arg(value_name = "TAG")]
        tag: String,
    },
}

/// True for the commands that may create the history.
pub(crate) fn creates_history(command: &LimitCommand) -> bool {
    matches!(command, LimitCommand::Set { .. })
}

pub(crate) async fn concurrency_limit(
    store: &Store,
    command: LimitCommand,
) -> Result<String, Failure> {
    match command {
        LimitCommand::Set { tag, limit } => {
            store.set_concurrency_limit(&tag, limit).await?;
            Ok(format!(
                "concurrency limit {}: at most {limit} task run(s) at once\n",
                tag.trim()
            ))
        }
        LimitCommand::Ls { json } => {
            let limits = store.concurrency_limits().await?;
            if json {
                return Ok(crate::json(
                    serde_json::to_value(&limits).unwrap_or_default(),
                ));
            }
            if limits.is_empty() {
                return Ok(format!(
                    "no concurrency limits in {} (set one with `weft concurrency-limit set TAG N`)\n",
                    store.url()
                ));
            }
            let mut table = Table::new(&[
                ("TAG", Align::Left),
                ("LIMIT", Align::Right),
                ("ACTIVE", Align::Right),
                ("SET", Align::Left),
            ]);
            for l in &limits {
                table.row(vec![
                    l.tag.clone(),
                    l.limit.to_string(),
                    l.active.to_string(),
                    date_time(l.updated, &chrono::Local),
                ]);
            }
            Ok(table.render())
        }
        LimitCommand::Rm { tag } => match store.remove_concurrency_limit(&tag).await? {
            true => Ok(format!("concurrency limit {tag} removed\n")),
            false => Err(Failure::usage(format!(
                "no concurrency limit on tag {tag:?} (`weft concurrency-limit ls` lists them)"
            ))),
        },
    }
}
