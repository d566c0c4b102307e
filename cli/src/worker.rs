//! `weft worker --pool NAME`: a worker that runs the pipeline deployments of a work pool.

use crate::Failure;
use clap::Args;
use weft_runtime::worker::Worker;

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The work pool to serve (`weft work-pool create NAME` makes one)
    #[arg(long, value_name = "NAME")]
    pool: String,

    /// Its name in `weft workers` and on the runs it runs (default: host:pid)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// At most this many runs at once
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
}

/// Works until Ctrl-C or SIGTERM; returns what it prints last.
pub(crate) async fn execute(
    args: WorkerArgs,
    database: Option<String>,
    schema: Option<String>,
) -> Result<String, Failure> {
    let store = crate::server::open(database, schema).await?;
    weft_runtime::logging::init();
    let mut worker = Worker::new(&args.pool)
        .pipelines(true)
        .store(store)
        .limit(args.limit as usize);
    if let Some(name) = args.name {
        worker = worker.name(name);
    }
    let ran = worker.run().await;
    weft_runtime::logging::flush();
    ran.map_err(|e| Failure {
        message: e.to_string(),
        code: 1,
    })?;
    Ok("Worker stopped.\n".to_owned())
}
