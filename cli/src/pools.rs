//! `weft work-pool` and `weft workers`: the work pools workers serve, and the workers registered.

use crate::render::{date_time, Align, Table};
use crate::Failure;
use chrono::{DateTime, TimeZone, Utc};
use clap::Subcommand;
use std::fmt;
use weft_runtime::store::{self, Store, WorkPool, WorkPoolSpec, WorkerRecord};

#[derive(Debug, Subcommand)]
pub(crate) enum WorkPoolCommand {
    /// Create a work pool
    #[command(
        long_about = "Create a work pool: a name that deployments and the workers serving \
        them share, with an optional concurrency limit (the most runs of the pool running at \
        once across its workers).\n\nCreates the run history if there is none yet."
    )]
    Create {
        /// The pool's name (1 to 100 characters, no control characters)
        #[arg(value_name = "NAME")]
        name: String,

        /// At most this many runs of the pool at once (1 or more; no limit by default)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,

        /// What the pool is for
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// List the work pools: their limits, whether paused, their workers online
    Ls {
        /// Print JSON (UTC times) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Pause a work pool: its workers start no new runs until resumed
    Pause {
        /// The pool's name, as `weft work-pool ls` lists it
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Resume a paused work pool
    Resume {
        /// The pool's name, as `weft work-pool ls` lists it
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Delete a work pool that no worker is registered in
    Rm {
        /// The pool's name, as `weft work-pool ls` lists it
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Set a work pool's concurrency limit: a number (1 or more), or `none` for no limit
    SetLimit {
        /// The pool's name, as `weft work-pool ls` lists it
        #[arg(value_name = "NAME")]
        name: String,

        /// The most runs of the pool at once, or `none`
        #[arg(value_name = "N|none", value_parser = parse_limit)]
        limit: Limit,
    },
}

/// A concurrency limit as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit(Option<u32>);

/// `none` or a whole number of at least 1; 0 says to pause instead.
fn parse_limit(s: &str) -> Result<Limit, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Ok(Limit(None));
    }
    match s.parse::<u32>() {
        Ok(0) => {
            Err("0 would stop the pool: pause it instead (`weft work-pool pause NAME`)".into())
        }
        Ok(n) => Ok(Limit(Some(n))),
        Err(_) => Err(format!(
            "{s:?} is not a limit: give a whole number of 1 or more, or none"
        )),
    }
}

/// True for the commands that may create the history (creating a pool is a first step).
pub(crate) fn creates_history(command: &WorkPoolCommand) -> bool {
    matches!(command, WorkPoolCommand::Create { .. })
}

pub(crate) async fn work_pool(store: &Store, command: WorkPoolCommand) -> Result<String, Failure> {
    let tz = chrono::Local;
    match command {
        WorkPoolCommand::Create {
            name,
            limit,
            description,
        } => {
            let mut spec = WorkPoolSpec::new(name);
            spec.concurrency_limit = limit;
            spec.description = description;
            let pool = store.create_work_pool(&spec).await?;
            Ok(format!(
                "work pool {} created ({})\n",
                pool.name,
                limit_text(&pool)
            ))
        }
        WorkPoolCommand::Ls { json } => list(store, json, &tz).await,
        WorkPoolCommand::Pause { name } => {
            store.set_work_pool_paused(&name, true).await?;
            Ok(format!("work pool {name} paused\n"))
        }
        WorkPoolCommand::Resume { name } => {
            store.set_work_pool_paused(&name, false).await?;
            Ok(format!("work pool {name} resumed\n"))
        }
        WorkPoolCommand::Rm { name } => {
            store.delete_work_pool(&name).await?;
            Ok(format!("work pool {name} deleted\n"))
        }
        WorkPoolCommand::SetLimit { name, limit } => {
            let pool = store.set_work_pool_limit(&name, limit.0).await?;
            Ok(format!("work pool {name}: {}\n", limit_text(&pool)))
        }
    }
}

fn limit_text(pool: &WorkPool) -> String {
    match pool.concurrency_limit {
        Some(n) => format!("at most {n} runs at once"),
        None => "no concurrency limit".to_owned(),
    }
}

/// `weft work-pool ls`: the pools with their workers online and registered.
async fn list<Tz: TimeZone>(store: &Store, json: bool, tz: &Tz) -> Result<String, Failure>
where
    Tz::Offset: fmt::Display,
{
    let pools = store.work_pools().await?;
    let workers = store.workers(None).await?;
    let count = |name: &str, online: bool| {
        workers
            .iter()
            .filter(|w| w.pool == name && (w.online || !online))
            .count()
    };
    if json {
        let rows: Vec<serde_json::Value> = pools
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("workers".into(), count(&p.name, false).into());
                    obj.insert("workers_online".into(), count(&p.name, true).into());
                }
                v
            })
            .collect();
        return Ok(crate::json(rows.into()));
    }
    if pools.is_empty() {
        return Ok(format!(
            "no work pools in {} (create one with `weft work-pool create NAME`)\n",
            store.url()
        ));
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("STATUS", Align::Left),
        ("LIMIT", Align::Right),
        ("WORKERS", Align::Right),
        ("CREATED", Align::Left),
        ("DESCRIPTION", Align::Left),
    ]);
    for p in &pools {
        table.row(vec![
            p.name.clone(),
            if p.paused { "paused" } else { "active" }.to_owned(),
            p.concurrency_limit
                .map_or("-".to_owned(), |n| n.to_string()),
            format!("{}/{}", count(&p.name, true), count(&p.name, false)),
            date_time(p.created, tz),
            one_line(p.description.as_deref().unwrap_or("")),
        ]);
    }
    Ok(table.render())
}

/// A description on one line of a table.
fn one_line(text: &str) -> String {
    crate::render::truncate(&text.replace(['\n', '\r', '\t'], " "), 60)
}

/// `weft workers [--pool NAME]`.
pub(crate) async fn workers(
    store: &Store,
    pool: Option<&str>,
    json: bool,
) -> Result<String, Failure> {
    let workers = store.workers(pool).await?;
    if json {
        let value = serde_json::to_value(&workers).map_err(|e| Failure {
            message: format!("cannot write the workers as JSON: {e}"),
            code: 1,
        })?;
        return Ok(crate::json(value));
    }
    if workers.is_empty() {
        let of = pool
            .map(|p| format!(" in work pool {p}"))
            .unwrap_or_default();
        return Ok(format!("no workers registered{of} in {}\n", store.url()));
    }
    Ok(workers_table(&workers, &chrono::Local, Utc::now()))
}

/// The workers as a table, each ONLINE or OFFLINE, its last heartbeat as an age at `now`.
pub(crate) fn workers_table<Tz: TimeZone>(
    workers: &[WorkerRecord],
    tz: &Tz,
    now: DateTime<Utc>,
) -> String
where
    Tz::Offset: fmt::Display,
{
    let ids: Vec<_> = workers.iter().map(|w| w.id.0).collect();
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("POOL", Align::Left),
        ("NAME", Align::Left),
        ("HOST", Align::Left),
        ("PID", Align::Right),
        ("VERSION", Align::Left),
        ("FLOWS", Align::Left),
        ("STARTED", Align::Left),
        ("LAST HEARTBEAT", Align::Left),
        ("STATUS", Align::Left),
    ]);
    for (w, id) in workers.iter().zip(store::short_ids(&ids)) {
        let age = (now - w.heartbeat).to_std().unwrap_or_default();
        table.row(vec![
            id,
            w.pool.clone(),
            w.name.clone(),
            w.host.clone(),
            w.pid.to_string(),
            w.version.clone(),
            one_line(&w.flows.join(", ")),
            date_time(w.started, tz),
            ago(age),
            if w.online { "ONLINE" } else { "OFFLINE" }.to_owned(),
        ]);
    }
    table.render()
}

/// An age in whole units: `3s ago`, `5m ago`, `2h 10m ago`, `3d 4h ago`.
fn ago(age: std::time::Duration) -> String {
    let s = age.as_secs();
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h {}m ago", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h ago", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit("none"), Ok(Limit(None)));
        assert_eq!(parse_limit(" 5 "), Ok(Limit(Some(5))));
        assert!(parse_limit("0").unwrap_err().contains("pause"));
        assert!(parse_limit("-1").unwrap_err().contains("whole number"));
    }

    #[test]
    fn ages_read_in_whole_units() {
        let ago = |s| ago(std::time::Duration::from_secs(s));
        assert_eq!(ago(0), "0s ago");
        assert_eq!(ago(59), "59s ago");
        assert_eq!(ago(61), "1m ago");
        assert_eq!(ago(2 * 3600 + 600), "2h 10m ago");
        assert_eq!(ago(3 * 86400 + 4 * 3600), "3d 4h ago");
    }
}
