//! `weft server start`: the weft server (its JSON API, later the dashboard) over the run history.

use crate::Failure;
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use weft_runtime::store::{self, StoreOptions};
use weft_server::{Server, ServerConfig, Token};

/// How long starting waits for the database to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Subcommand)]
pub(crate) enum ServerCommand {
    /// Start the server: the JSON API over the run history (docs at /docs), until Ctrl-C
    #[command(
        long_about = "Start the server: the JSON API over the run history, described at /docs \
        and /api/openapi.json, until Ctrl-C or SIGTERM.\n\nIt listens on 127.0.0.1 unless told \
        otherwise; any other address needs a token (--token, WEFT_API_TOKEN, or --token-file / \
        WEFT_API_TOKEN_FILE), which every /api request must then send as `Authorization: \
        Bearer <token>`. A --read-token may read but change nothing. Prefer the environment or \
        a file to --token: other users of the machine can see a command's arguments.\n\n\
        Operators may run recorded pipelines from the dashboard (Run on /pipelines) or the API \
        (POST /api/pipelines/NAME/runs): the server executes them itself, --pipeline-workers at \
        once, with their commands in the server's working directory. Ctrl-C or SIGTERM cancels \
        the runs it is executing before it stops.",
        after_help = "Examples:\n  \
        weft server start\n  \
        WEFT_API_TOKEN=$(openssl rand -hex 32) weft server start --host 0.0.0.0 --port 8080"
    )]
    Start(StartArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// The address to listen on (anything but loopback needs a token)
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "IP")]
    host: IpAddr,

    /// The port to listen on (0: any free port)
    #[arg(long, default_value_t = 4200)]
    port: u16,

    /// The operator token: may read and change (at least 16 characters)
    #[arg(
        long,
        env = "WEFT_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,

    /// A file whose first line is the operator token
    #[arg(
        long,
        env = "WEFT_API_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "token"
    )]
    token_file: Option<PathBuf>,

    /// A read-only token: may read everything, change nothing (needs --token too)
    #[arg(
        long,
        env = "WEFT_API_READ_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    read_token: Option<String>,

    /// Another origin whose pages may send state-changing requests (repeatable), e.g.
    /// https://weft.example.com
    #[arg(long = "origin", value_name = "URL")]
    origins: Vec<String>,

    /// Pipeline runs started from the dashboard or the API that this server executes at once,
    /// in its working directory (4 more per worker may wait); 0: it runs none
    #[arg(long, default_value_t = weft_server::DEFAULT_PIPELINE_WORKERS, value_name = "N",
          value_parser = parse_pipeline_workers)]
    pipeline_workers: usize,
}

/// `--pipeline-workers N`: 0 to [`weft_server::MAX_PIPELINE_WORKERS`].
fn parse_pipeline_workers(text: &str) -> Result<usize, String> {
    let max = weft_server::MAX_PIPELINE_WORKERS;
    match text.trim().parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("expected a whole number from 0 to {max}")),
    }
}

/// Runs the command until Ctrl-C or SIGTERM; returns what it prints last.
pub(crate) async fn execute(
    command: ServerCommand,
    database: Option<String>,
    schema: Option<String>,
) -> Result<String, Failure> {
    let ServerCommand::Start(args) = command;
    let config = config(&args)?;
    let addr = SocketAddr::new(args.host, args.port);
    let store = open(database, schema).await?;
    let server = Server::bind(store.clone(), config, addr)
        .await
        .map_err(|e| Failure {
            message: e.to_string(),
            code: 1,
        })?;
    let shown = server.local_addr();
    // Runs whose process died end Crashed within a few seconds of the stale time.
    let reaper = tokio::spawn(store::keep_reaping(store.clone()));
    // The schedules of pooled deployments keep firing while the server lives, workers or not.
    let scheduler = tokio::spawn(store::keep_scheduling(store.clone()));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Run history: {}", store.url());
    let _ = writeln!(out, "API documentation at http://{shown}/docs");
    let _ = writeln!(out, "Check out the dashboard at http://{shown}");
    let _ = out.flush();
    drop(out);
    let ran = server.run().await;
    reaper.abort();
    scheduler.abort();
    ran.map_err(|e| Failure {
        message: e.to_string(),
        code: 1,
    })?;
    Ok("Server stopped.\n".to_owned())
}

/// The tokens and origins the arguments give, each mistake a usage error.
fn config(args: &StartArgs) -> Result<ServerConfig, Failure> {
    let usage = |what: &str, e: String| Failure::usage(format!("invalid {what}: {e}"));
    let mut config = ServerConfig::new().pipeline_workers(args.pipeline_workers);
    // An empty variable (`WEFT_API_TOKEN=`) is no token, not a short one.
    let given = |t: &Option<String>| t.clone().filter(|t| !t.trim().is_empty());
    let token = match (given(&args.token), &args.token_file) {
        (Some(t), _) => Some(Token::new(t.trim()).map_err(|e| usage("--token", e))?),
        (None, Some(path)) => Some(Token::from_file(path).map_err(|e| usage("--token-file", e))?),
        (None, None) => None,
    };
    if let Some(t) = token {
        config = config.token(t);
    }
    if let Some(t) = given(&args.read_token) {
        config = config.read_token(Token::new(t.trim()).map_err(|e| usage("--read-token", e))?);
    }
    for origin in &args.origins {
        config = config.allow_origin(origin.clone());
    }
    Ok(config)
}

/// Opens (creating if need be) the history named by `--database` / `WEFT_DATABASE_URL`, else
/// the SQLite file under `WEFT_HOME`.
pub(crate) async fn open(
    database: Option<String>,
    schema: Option<String>,
) -> Result<store::Store, Failure> {
    let url = database
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(store::default_url);
    let schema = schema
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "weft".to_owned());
    let options = StoreOptions::new(url).schema(schema);
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Failure {
            message: format!(
                "the run history database did not answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            ),
            code: 1,
        }),
    }
}
