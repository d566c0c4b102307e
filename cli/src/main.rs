//! `weft`: the command line of weft's run history. Lists recorded flow runs, shows one run's task
//! runs and logs, draws its graph colored by state, and counts each flow's runs by final state.
//! Lists the deployments processes serve, pauses and resumes them, and asks them for runs.
//!
//! It reads the database flow runs record into (`WEFT_DATABASE_URL`, else
//! `sqlite://$WEFT_HOME/.weft/weft.db`) and never creates one.

mod history;
mod limits;
mod pipeline;
mod pools;
mod render;
mod server;
mod worker;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use weft_runtime::store::{
    self, CancelOutcome, RequestState, RunFilter, Store, StoreError, StoreOptions,
};
use weft_runtime::StateKind;

/// How long the command waits for the database to answer before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often `weft deployment run` looks whether its request was started.
const POLL: Duration = Duration::from_millis(200);

/// Browse weft's run history: flow runs, their task runs, logs and graphs.
#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "Browse weft's run history: flow runs, their task runs, logs and graphs",
    long_about = "Browse weft's run history: flow runs, their task runs, logs and graphs.\n\n\
        Flow runs record into sqlite://$WEFT_HOME/.weft/weft.db (WEFT_HOME defaults to the \
        current directory), or into the database WEFT_DATABASE_URL names. This command reads \
        that database; it never creates one.",
    after_help = "Examples:\n  \
        weft runs --state failed\n  \
        weft run show 3f2a9c1d\n  \
        weft run graph 3f2a9c1d --format svg -o run.svg\n  \
        weft run cancel 3f2a9c1d --reason 'wrong input'\n  \
        weft --database postgres://me@db/weft flows\n  \
        weft deployments\n  \
        weft deployment run nightly-etl --param n=5 --param label=adhoc\n  \
        weft work-pool create etl --limit 4\n  \
        weft workers --pool etl\n  \
        weft history prune --older-than 30d --keep-failed --dry-run\n  \
        weft server start --port 4200"
)]
struct Cli {
    /// The run history database: sqlite://path/to/weft.db or postgres://user@host/database
    /// [default: sqlite://$WEFT_HOME/.weft/weft.db]
    #[arg(
        long,
        global = true,
        env = "WEFT_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database: Option<String>,

    /// The PostgreSQL schema holding weft's tables [default: weft]
    #[arg(
        long,
        global = true,
        env = "WEFT_DATABASE_SCHEMA",
        hide_env_values = true,
        value_name = "NAME"
    )]
    schema: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List recorded flow runs, newest first
    #[command(
        long_about = "List recorded flow runs, newest first.\n\nThe ID column shows the first \
        characters of each run's id, which `weft run show` and `weft run graph` accept."
    )]
    Runs(RunsArgs),
    /// Look at one flow run: its task runs and logs, or its graph
    #[command(subcommand)]
    Run(RunCommand),
    /// List the flows seen, with their runs counted by final state
    Flows {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// List the deployments processes serve: their schedules, last and next runs
    #[command(
        long_about = "List the deployments processes serve: their schedules, last and next \
        runs.\n\nA process serving flows records each of its deployments when it starts; a \
        deployment stays listed after its process stops."
    )]
    Deployments {
        /// Print JSON (full run ids, UTC times, parameters) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Run a deployment now, or pause and resume its schedule
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Create, list, pause, resume and limit the work pools workers serve
    #[command(subcommand)]
    WorkPool(pools::WorkPoolCommand),
    /// Run the pipeline deployments of a work pool, until Ctrl-C
    #[command(
        long_about = "Run the pipeline deployments of a work pool (`weft pipeline deploy FILE \
        --pool NAME`), until Ctrl-C or SIGTERM.\n\nThe worker registers itself (`weft workers`), \
        claims the pool's due runs (each run goes to one worker, within the pool's concurrency \
        limit), runs them with their commands in its working directory, and takes its turn as \
        the scheduler that creates the scheduled runs of every deployment of every pool. On \
        Ctrl-C or SIGTERM it claims no more runs and gives running ones 30 s before cancelling \
        them. Workers for #[flow]s are your own programs (weft::worker::Worker).",
        after_help = "Examples:\n  weft work-pool create ops\n  \
        weft pipeline deploy web_check.toml --pool ops --schedule 'every 5m'\n  \
        weft worker --pool ops"
    )]
    Worker(worker::WorkerArgs),
    /// Limit how many task runs with a tag run at once, across every process
    #[command(subcommand, name = "concurrency-limit")]
    ConcurrencyLimit(limits::LimitCommand),
    /// List the registered workers, online or offline by their heartbeats
    #[command(
        long_about = "List the registered workers, online or offline by their heartbeats.\n\n\
        A worker registers when it starts and deregisters when it stops. It is ONLINE while its \
        heartbeat is younger than 10 s and, when it runs on this host, its process is alive; \
        a worker that was killed stays listed, OFFLINE."
    )]
    Workers {
        /// Only the workers of this work pool
        #[arg(long, value_name = "NAME")]
        pool: Option<String>,

        /// Print JSON (full ids, UTC times) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Manage the run history itself: delete old runs
    #[command(subcommand)]
    History(history::HistoryCommand),
    /// Check, run or draw a pipeline file (shell commands as a DAG)
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Start the weft server: a JSON API over the run history
    #[command(subcommand)]
    Server(server::ServerCommand),
}

#[derive(Debug, Subcommand)]
enum DeploymentCommand {
    /// Ask the process serving a deployment for a run now, and wait until it starts
    #[command(
        long_about = "Ask the process serving a deployment for a run now, and wait until it \
        starts.\n\nThe request is queued in the database; the process serving the deployment \
        picks it up within a second or two, checks the parameters and starts the run. If no \
        process picks it up within --wait seconds, the command fails but the request stays \
        queued: it runs when a process serving the deployment starts."
    )]
    Run {
        /// The deployment's name, as `weft deployments` lists it
        #[arg(value_name = "NAME")]
        name: String,

        /// A parameter overriding the deployment's default, as KEY=VALUE (repeatable). VALUE is
        /// read as JSON when it is JSON (5, true, "x", [1,2]), else taken as text
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,

        /// How many seconds to wait for the run to start
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        wait: u64,
    },
    /// Pause a deployment: its schedule starts no runs until resumed
    Pause {
        /// The deployment's name, as `weft deployments` lists it
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Resume a paused deployment's schedule
    Resume {
        /// The deployment's name, as `weft deployments` lists it
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Args)]
struct RunsArgs {
    /// Only runs of this flow (its name, e.g. "my first flow!")
    #[arg(long, value_name = "NAME")]
    flow: Option<String>,

    /// Only runs in this state: completed, failed, running, cancelled, crashed, timed_out, ...
    #[arg(long, value_name = "STATE")]
    state: Option<String>,

    /// At most this many runs
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,

    /// Print JSON (full ids, UTC times, parameters) instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    /// Show a flow run: its state and parameters, every task run, its log lines
    Show {
        /// The run's id, or its first characters (at least 4, as `weft runs` shows them)
        #[arg(value_name = "RUN_ID")]
        run_id: String,

        /// List every element of large mapped tasks (by default, more than 50 elements of one
        /// task are cut to the first 20)
        #[arg(long)]
        all: bool,

        /// Print the whole record (graph, task runs, state changes, logs) as JSON
        #[arg(long)]
        json: bool,
    },
    /// Draw a flow run's graph, its tasks colored by the states they ended in
    Graph {
        /// The run's id, or its first characters (at least 4, as `weft runs` shows them)
        #[arg(value_name = "RUN_ID")]
        run_id: String,

        /// The drawing's format
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,

        /// Write the drawing to this file instead of stdout
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Cancel a running flow run, whichever process runs it
    #[command(
        long_about = "Cancel a running flow run, whichever process runs it.\n\nThe request goes \
        into the run history; the process running the run (a `serve` process, `weft pipeline \
        run`, any program recording its runs there) notices it within about a second: its \
        running tasks end Cancelled (a pipeline node's process group is stopped) and the run \
        ends Cancelled. A run that no live process owns (its process was killed, or its host \
        went away: no heartbeat for 10 s) is marked Cancelled at once. A run that has already \
        ended is left as it is (exit status 1)."
    )]
    Cancel {
        /// The run's id, or its first characters (at least 4, as `weft runs` shows them)
        #[arg(value_name = "RUN_ID")]
        run_id: String,

        /// Why: the cancelled run's message
        #[arg(
            long,
            value_name = "TEXT",
            default_value = "cancelled with `weft run cancel`"
        )]
        reason: String,
    },
}

/// A drawing of a run's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GraphFormat {
    /// Graphviz DOT (render with `dot -Tpng`)
    Dot,
    /// A Mermaid flowchart (renders in GitHub and GitLab markdown)
    Mermaid,
    /// A standalone SVG image, laid out by weft (no Graphviz needed)
    Svg,
}

/// Why the command failed: a message for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    /// A usage mistake clap could not see (exit code 2, like clap's own).
    pub(crate) fn usage(message: String) -> Failure {
        Failure { message, code: 2 }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure {
            message: e.to_string(),
            code: 1,
        }
    }
}

fn main() -> ExitCode {
    // A bug would otherwise print a backtrace: one line says where instead (exit code 101).
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(
            io::stderr(),
            "error: internal error (please report it): {}",
            info.to_string().replace('\n', " ")
        );
    }));
    let cli = Cli::parse();
    // The server answers requests on both cores; every other command is one at a time.
    let mut runtime = match cli.command {
        Command::Server(_) | Command::Worker(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let result = runtime
        .enable_all()
        .build()
        .map_err(|e| Failure {
            message: format!("cannot start: {e}"),
            code: 1,
        })
        .and_then(|rt| rt.block_on(execute(cli)));
    match result.and_then(|out| emit(&out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // One line, whatever the message held.
            let message = f.message.replace('\n', " ");
            let _ = writeln!(io::stderr(), "error: {message}");
            ExitCode::from(f.code)
        }
    }
}

/// Writes the command's output; a closed pipe (`weft runs | head -3`) is not an error.
fn emit(out: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure {
            message: format!("cannot write the output: {e}"),
            code: 1,
        }),
        _ => Ok(()),
    }
}

/// Runs the command; returns what it prints on stdout.
async fn execute(cli: Cli) -> Result<String, Failure> {
    // Pipelines need no history to check or draw, and create one to run.
    if let Command::Pipeline(command) = cli.command {
        return pipeline::execute(command, cli.database, cli.schema).await;
    }
    if let Command::Server(command) = cli.command {
        return server::execute(command, cli.database, cli.schema).await;
    }
    if let Command::Worker(args) = cli.command {
        return worker::execute(args, cli.database, cli.schema).await;
    }
    // Checked before connecting, so a typo never waits on the database.
    let state = match &cli.command {
        Command::Runs(RunsArgs { state: Some(s), .. }) => Some(
            s.parse::<StateKind>()
                .map_err(|e| Failure::usage(format!("invalid value for --state: {e}")))?,
        ),
        _ => None,
    };
    let params = match &cli.command {
        Command::Deployment(DeploymentCommand::Run { params, .. }) => parse_params(params)?,
        _ => serde_json::Map::new(),
    };
    let retention = match &cli.command {
        Command::History(history::HistoryCommand::Prune(args)) => Some(history::retention(args)?),
        _ => None,
    };
    let create = match &cli.command {
        Command::WorkPool(c) => pools::creates_history(c),
        Command::ConcurrencyLimit(c) => limits::creates_history(c),
        _ => false,
    };
    let store = open(&cli, create).await?;
    if matches!(
        cli.command,
        Command::Runs(_) | Command::Run(RunCommand::Show { .. })
    ) {
        reap(&store).await;
    }
    let tz = chrono::Local;
    match cli.command {
        Command::Runs(args) => {
            let mut filter = RunFilter::new().limit(args.limit);
            if let Some(flow) = &args.flow {
                filter = filter.flow(flow.clone());
            }
            if let Some(state) = state {
                filter = filter.state(state);
            }
            let runs = store.runs(&filter).await?;
            if args.json {
                let runs: Vec<serde_json::Value> = runs
                    .iter()
                    .map(|r| {
                        let mut v = serde_json::to_value(r).unwrap_or_default();
                        if let (Some(obj), Some(_)) = (v.as_object_mut(), r.ended) {
                            obj.insert(
                                "duration_ms".into(),
                                (r.duration().as_millis() as u64).into(),
                            );
                        }
                        v
                    })
                    .collect();
                return Ok(json(runs.into()));
            }
            if runs.is_empty() {
                return Ok(no_runs(&store, &args, state).await);
            }
            Ok(render::runs_table(&runs, &tz))
        }
        Command::Run(RunCommand::Show { run_id, all, json }) => {
            let id = store.resolve_run(&run_id).await?;
            let detail = store.run(id).await?;
            if json {
                let value = serde_json::to_value(&detail).map_err(|e| Failure {
                    message: format!("cannot write the run as JSON: {e}"),
                    code: 1,
                })?;
                return Ok(self::json(value));
            }
            Ok(render::run_detail(&detail, all, &tz))
        }
        Command::Run(RunCommand::Graph {
            run_id,
            format,
            output,
        }) => {
            let id = store.resolve_run(&run_id).await?;
            let detail = store.run(id).await?;
            let mut drawing = match format {
                GraphFormat::Dot => detail.to_dot(),
                GraphFormat::Mermaid => detail.to_mermaid(),
                GraphFormat::Svg => detail.to_svg(),
            };
            if !drawing.ends_with('\n') {
                drawing.push('\n');
            }
            match output {
                None => Ok(drawing),
                Some(path) => {
                    std::fs::write(&path, drawing).map_err(|e| Failure {
                        message: format!("cannot write {}: {e}", path.display()),
                        code: 1,
                    })?;
                    Ok(format!("wrote {}\n", path.display()))
                }
            }
        }
        Command::Run(RunCommand::Cancel { run_id, reason }) => {
            let id = store.resolve_run(&run_id).await?;
            cancel_run(&store, id, &reason).await
        }
        Command::Flows { json } => {
            let flows = store.flows().await?;
            if json {
                let flows: Vec<serde_json::Value> = flows
                    .iter()
                    .map(|f| {
                        let c = render::FlowCounts::of(f);
                        let by_state: serde_json::Map<String, serde_json::Value> = f
                            .by_state
                            .iter()
                            .map(|(k, n)| (k.to_string(), (*n).into()))
                            .collect();
                        serde_json::json!({
                            "name": f.name,
                            "versions": f.versions,
                            "runs": f.runs,
                            "completed": c.completed,
                            "failed": c.failed,
                            "cancelled": c.cancelled,
                            "other": c.other,
                            "by_state": by_state,
                            "last_run": f.last_run,
                        })
                    })
                    .collect();
                return Ok(self::json(flows.into()));
            }
            if flows.is_empty() {
                return Ok(format!("no flows recorded in {}\n", store.url()));
            }
            Ok(render::flows_table(&flows, &tz))
        }
        Command::Deployments { json } => {
            let deployments = store.deployments().await?;
            if json {
                let value = serde_json::to_value(&deployments).map_err(|e| Failure {
                    message: format!("cannot write the deployments as JSON: {e}"),
                    code: 1,
                })?;
                return Ok(self::json(value));
            }
            if deployments.is_empty() {
                return Ok(format!("no deployments recorded in {}\n", store.url()));
            }
            let pools = store.deployment_pools().await?;
            Ok(render::deployments_table(&deployments, &pools, &tz))
        }
        Command::Deployment(DeploymentCommand::Run { name, wait, .. }) => {
            run_deployment(&store, &name, params, Duration::from_secs(wait)).await
        }
        Command::Deployment(DeploymentCommand::Pause { name }) => {
            store.set_paused(&name, true).await?;
            Ok(format!("deployment {name} paused\n"))
        }
        Command::Deployment(DeploymentCommand::Resume { name }) => {
            store.set_paused(&name, false).await?;
            Ok(format!("deployment {name} resumed\n"))
        }
        Command::WorkPool(command) => pools::work_pool(&store, command).await,
        Command::ConcurrencyLimit(command) => limits::concurrency_limit(&store, command).await,
        Command::Workers { pool, json } => pools::workers(&store, pool.as_deref(), json).await,
        Command::History(history::HistoryCommand::Prune(args)) => {
            let retention = retention.expect("parsed above");
            history::prune(&store, &args, retention).await
        }
        Command::Pipeline(_) | Command::Server(_) | Command::Worker(_) => {
            unreachable!("pipeline, server and worker commands return before the store opens")
        }
    }
}

/// The `--param KEY=VALUE` options as a JSON object: each VALUE is JSON if it parses as JSON,
/// else a string. A missing `=`, an empty key or a key given twice is a usage error.
fn parse_params(raw: &[String]) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    let mut params = serde_json::Map::new();
    for p in raw {
        let Some((key, value)) = p.split_once('=') else {
            return Err(Failure::usage(format!(
                "invalid --param {p:?}: expected KEY=VALUE, such as --param n=5"
            )));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(Failure::usage(format!(
                "invalid --param {p:?}: the key before \"=\" is empty"
            )));
        }
        if params.contains_key(key) {
            return Err(Failure::usage(format!(
                "--param {key:?} is given more than once"
            )));
        }
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        params.insert(key.to_owned(), value);
    }
    Ok(params)
}

/// `weft deployment run`: queues the request, then waits up to `wait` for the serving process
/// to start (or reject) it.
async fn run_deployment(
    store: &Store,
    name: &str,
    params: serde_json::Map<String, serde_json::Value>,
    wait: Duration,
) -> Result<String, Failure> {
    let id = store.request_run(name, params).await?;
    let deadline = tokio::time::Instant::now().checked_add(wait);
    loop {
        let request = store.request(id).await?;
        match request.state {
            RequestState::Started => {
                let Some(run) = request.run_id else {
                    return Ok(format!("started a run of deployment {name}\n"));
                };
                // A deployment of a work pool: the run waits in the pool's queue.
                let queued = store.run_record(run).await.ok().and_then(|r| r.placement);
                return Ok(match queued {
                    Some(p) => format!(
                        "scheduled run {run} of deployment {name}: a worker of work pool {} \
                         runs it (`weft workers` lists them)\n",
                        p.pool
                    ),
                    None => format!("started run {run} of deployment {name}\n"),
                });
            }
            RequestState::Rejected => {
                return Err(Failure {
                    message: request.message.unwrap_or_else(|| {
                        format!("the process serving deployment {name:?} rejected the run")
                    }),
                    code: 1,
                })
            }
            RequestState::Requested | RequestState::Claimed => {}
        }
        let now = tokio::time::Instant::now();
        match deadline {
            Some(deadline) if now >= deadline => {
                let secs = wait.as_secs();
                let message = if request.state == RequestState::Claimed {
                    format!(
                        "the process serving deployment {name:?} took the request but did not \
                         start the run within {secs}s (request {id})"
                    )
                } else {
                    format!(
                        "no process serving deployment {name:?} picked the request up within \
                         {secs}s; it stays queued and runs when one does"
                    )
                };
                return Err(Failure { message, code: 1 });
            }
            Some(deadline) => tokio::time::sleep(POLL.min(deadline - now)).await,
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// `weft run cancel`: asks for the run's cancellation and says what became of it.
async fn cancel_run(
    store: &Store,
    id: weft_runtime::Uuid,
    reason: &str,
) -> Result<String, Failure> {
    match store.request_cancel(id, reason).await? {
        CancelOutcome::Requested { owner: Some(owner) } => Ok(format!(
            "cancellation of run {id} requested: {owner} is cancelling it\n"
        )),
        CancelOutcome::Requested { owner: None } => Ok(format!(
            "cancellation of run {id} requested: it has just started; its process cancels it \
             within a few seconds\n"
        )),
        CancelOutcome::NotOwned { owner } => Ok(format!(
            "run {id} is not owned by a live process{}: marked Cancelled\n",
            owner
                .map(|o| format!(" (it was run by {o})"))
                .unwrap_or_default()
        )),
        CancelOutcome::NotStarted => Ok(format!(
            "run {id} was waiting in its work pool's queue: marked Cancelled, it never starts\n"
        )),
        CancelOutcome::AlreadyFinal { state } => Err(Failure {
            message: format!("run {id} already finished ({state}): nothing to cancel"),
            code: 1,
        }),
        other => Err(Failure {
            message: format!("run {id}: {other:?}"),
            code: 1,
        }),
    }
}

/// Marks Crashed the runs whose process is gone, so that the list shows them as they are
/// (`Store::reap`). A history this command cannot write, or a slow database, is shown as it is.
async fn reap(store: &Store) {
    let _ = tokio::time::timeout(Duration::from_secs(5), store.reap()).await;
}

/// Opens the history named by `--database` / `WEFT_DATABASE_URL`, else the default SQLite file,
/// creating it only when `create` is true.
async fn open(cli: &Cli, create: bool) -> Result<Store, StoreError> {
    let url = cli
        .database
        .clone()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(store::default_url);
    let schema = cli
        .schema
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| std::env::var("WEFT_DATABASE_SCHEMA").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "weft".to_owned());
    let options = StoreOptions::new(url.clone())
        .create_if_missing(create)
        .schema(schema.clone());
    let timed_out = || StoreError::Connect {
        url: render::redact(&url),
        error: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
    };
    tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

/// What `weft runs` says when nothing matches: whether the history is empty or the filters
/// left nothing.
async fn no_runs(store: &Store, args: &RunsArgs, state: Option<StateKind>) -> String {
    let mut filters = Vec::new();
    if let Some(flow) = &args.flow {
        filters.push(format!("flow {flow:?}"));
    }
    if let Some(state) = state {
        filters.push(format!("state {state}"));
    }
    let any = store.runs(&RunFilter::new().limit(1)).await;
    if filters.is_empty() || matches!(any, Ok(ref r) if r.is_empty()) {
        format!("no runs recorded in {}\n", store.url())
    } else {
        format!(
            "no runs with {} in {}\n",
            filters.join(" and "),
            store.url()
        )
    }
}

/// Pretty JSON and a newline.
pub(crate) fn json(value: serde_json::Value) -> String {
    let mut s = format!("{value:#}");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_commands() {
        let cli = Cli::try_parse_from([
            "weft", "run", "graph", "abcd", "--format", "svg", "-o", "x.svg",
        ])
        .unwrap();
        match cli.command {
            Command::Run(RunCommand::Graph { format, output, .. }) => {
                assert_eq!(format, GraphFormat::Svg);
                assert_eq!(output, Some(PathBuf::from("x.svg")));
            }
            other => panic!("{other:?}"),
        }
        let err =
            Cli::try_parse_from(["weft", "run", "graph", "abcd", "--format", "png"]).unwrap_err();
        assert!(err.to_string().contains("mermaid"), "{err}");
        assert!(Cli::try_parse_from(["weft", "runs", "--limit", "0"]).is_err());
        let cli = Cli::try_parse_from([
            "weft",
            "deployment",
            "run",
            "nightly etl",
            "--param",
            "n=5",
            "--param",
            "label=x",
            "--wait",
            "3",
        ])
        .unwrap();
        match cli.command {
            Command::Deployment(DeploymentCommand::Run { name, params, wait }) => {
                assert_eq!((name.as_str(), wait), ("nightly etl", 3));
                assert_eq!(params, ["n=5", "label=x"]);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["weft", "deployment", "run", "d"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Deployment(DeploymentCommand::Run { wait: 10, .. })
        ));
        assert!(Cli::try_parse_from(["weft", "deployment", "pause"]).is_err());
    }

    #[test]
    fn params_parse_as_json_or_text() {
        let raw = |ps: &[&str]| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let params = parse_params(&raw(&[
            "size=5",
            "name=bob",
            "flag=true",
            "quoted=\"x\"",
            "list=[1,2]",
            "empty=",
            "expr=a=b",
            "float=2.5",
            "nothing=null",
            "obj={\"a\":1}",
            "broken=[1,",
        ]))
        .unwrap();
        assert_eq!(
            serde_json::Value::Object(params),
            serde_json::json!({
                "size": 5,
                "name": "bob",
                "flag": true,
                "quoted": "x",
                "list": [1, 2],
                "empty": "",
                "expr": "a=b",
                "float": 2.5,
                "nothing": null,
                "obj": {"a": 1},
                "broken": "[1,",
            })
        );
        for (bad, needle) in [
            (&["size"][..], "KEY=VALUE"),
            (&["=5"], "key before"),
            (&[" =5"], "key before"),
            (&["n=1", "n=2"], "more than once"),
        ] {
            let f = parse_params(&raw(bad)).unwrap_err();
            assert_eq!(f.code, 2, "{bad:?}");
            assert!(f.message.contains(needle), "{bad:?}: {}", f.message);
        }
    }
}
