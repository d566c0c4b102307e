//! `weft pipeline check|run|graph FILE`: pipelines defined as data (shell commands as a DAG).

use crate::{Failure, GraphFormat};
use clap::Subcommand;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use weft_runtime::pipeline::params::parse_assignment;
use weft_runtime::pipeline::{ParamSpec, Pipeline, PipelineOutputs, MAX_WORKERS};
use weft_runtime::schedule::Schedule;
use weft_runtime::store::{PoolPlacement, StoreOptions};
use weft_runtime::{EventSink, FlowRun, RunConfig, RunEvent, StateKind};

#[derive(Debug, Subcommand)]
pub(crate) enum PipelineCommand {
    /// Check a pipeline file: every problem at once, each with its line and column
    Check {
        /// The pipeline file (TOML)
        file: PathBuf,
    },
    /// Run a pipeline file; exit status 0 only when it Completed
    #[command(
        long_about = "Run a pipeline file; exit status 0 only when it Completed.\n\nParameters \
        come from --param NAME=VALUE and --params FILE.json (a JSON object); a required value \
        still missing is asked for when stdin is a terminal. Values are checked against the \
        file's schema before anything runs. The run is recorded in the run history like a \
        flow run (`weft run show RUN_ID`).\n\nCtrl-C (SIGINT) or SIGTERM cancels the run: \
        running nodes get SIGTERM, then SIGKILL after a grace period, and the run is recorded \
        Cancelled (exit status 130, or 143 for SIGTERM); a second Ctrl-C kills them at once."
    )]
    Run {
        /// The pipeline file (TOML)
        file: PathBuf,
        /// A parameter, NAME=VALUE (repeatable)
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Parameters from a JSON file holding one object
        #[arg(long = "params", value_name = "FILE")]
        params_file: Option<PathBuf>,
        /// Nodes running at once, 1 to 100000 (default: the file's `workers`)
        #[arg(long, value_parser = parse_workers)]
        workers: Option<usize>,
    },
    /// Deploy a pipeline file to a work pool: the pool's workers (`weft worker`) run it
    #[command(
        long_about = "Deploy a pipeline file to a work pool: the pool's workers (`weft worker \
        --pool NAME`) run it, on --schedule if given and whenever asked (`weft deployment run \
        NAME`). The file is kept in the run history as this version; deploying a changed file \
        makes its runs run the new version. Values given here (--param, --params) are the \
        deployment's, checked now; a run may override them.",
        after_help = "Example:\n  weft pipeline deploy web_check.toml --pool ops --schedule 'every 5m' \
        --param host=example.com"
    )]
    Deploy {
        /// The pipeline file (TOML)
        file: PathBuf,
        /// The work pool whose workers run it
        #[arg(long, value_name = "NAME")]
        pool: String,
        /// The deployment's name (default: the pipeline's)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Run on this schedule: `every 5m`, `cron 0 3 * * *`, `cron 0 9 * * 1-5 in Europe/Paris`
        #[arg(long, value_name = "SPEC", value_parser = parse_schedule)]
        schedule: Option<Schedule>,
        /// A parameter, NAME=VALUE (repeatable)
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Parameters from a JSON file holding one object
        #[arg(long = "params", value_name = "FILE")]
        params_file: Option<PathBuf>,
        /// Schedule a run again when its worker dies, up to N times
        #[arg(long, default_value_t = 0, value_name = "N")]
        retries: u32,
        /// At most N runs of the deployment at once
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_active: Option<u32>,
    },
    /// Draw a pipeline file's graph
    Graph {
        /// The pipeline file (TOML)
        file: PathBuf,
        /// dot, mermaid or svg
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
}

/// Reads and checks a file; every problem goes to stderr on its own line (`file:line:col:
/// message`), then one `error:` line says nothing ran.
fn load(file: &Path) -> Result<Pipeline, Failure> {
    Pipeline::from_path(file).map_err(|e| {
        let mut err = std::io::stderr().lock();
        for line in e.to_string().lines() {
            let _ = writeln!(err, "{line}");
        }
        let n = e.problems.len();
        Failure {
            message: format!(
                "{}: {n} problem{} (nothing ran)",
                file.display(),
                if n == 1 { "" } else { "s" }
            ),
            code: 1,
        }
    })
}

/// Runs a pipeline command; returns what it prints on stdout.
pub(crate) async fn execute(
    command: PipelineCommand,
    database: Option<String>,
    schema: Option<String>,
) -> Result<String, Failure> {
    match command {
        PipelineCommand::Check { file } => {
            let p = load(&file)?;
            Ok(format!(
                "{}: ok: pipeline '{}', {} nodes, {} parameters, version {}\n",
                file.display(),
                p.name,
                p.nodes.len(),
                p.params.len(),
                &p.hash[..p.hash.len().min(12)]
            ))
        }
        PipelineCommand::Graph { file, format } => {
            let g = load(&file)?.graph();
            let mut out = match format {
                GraphFormat::Dot => g.to_dot(),
                GraphFormat::Mermaid => g.to_mermaid(),
                GraphFormat::Svg => g.to_svg(),
            };
            if !out.ends_with('\n') {
                out.push('\n');
            }
            Ok(out)
        }
        PipelineCommand::Deploy {
            file,
            pool,
            name,
            schedule,
            params,
            params_file,
            retries,
            max_active,
        } => {
            let p = load(&file)?;
            let values: serde_json::Map<_, _> = gather(&params, params_file.as_deref())?
                .into_iter()
                .collect();
            let name = name.unwrap_or_else(|| p.name.clone());
            let mut placement = PoolPlacement::new(&pool).retries(retries);
            placement.max_active_runs = max_active;
            let store = crate::server::open(database, schema).await?;
            let when = schedule
                .as_ref()
                .map_or("when asked".to_owned(), |s| format!("{s} and when asked"));
            p.deploy(&store, &name, &placement, schedule, values)
                .await?;
            Ok(format!(
                "deployment {name} of pipeline '{}' (version {}) in work pool {pool}: its \
                 workers run it {when}\n",
                p.name,
                &p.hash[..p.hash.len().min(12)]
            ))
        }
        PipelineCommand::Run {
            file,
            params,
            params_file,
            workers,
        } => {
            let p = load(&file)?;
            let given = gather(&params, params_file.as_deref())?;
            let mut ask = |spec: &ParamSpec| prompt(spec);
            let interactive = std::io::stdin().is_terminal();
            let prompt: Option<&mut Prompt<'_>> = if interactive { Some(&mut ask) } else { None };
            // The schema, then a value that would become an option: refused before anything
            // runs (the server checks the same way).
            let values = p.values_for(&given, prompt).map_err(|e| Failure {
                message: e.0.join("; "),
                code: 2,
            })?;
            let mut config = RunConfig::new();
            if let Some(n) = workers {
                config = config.max_concurrency(n);
            }
            if let Some(url) = database {
                let mut options = StoreOptions::new(url);
                if let Some(s) = schema {
                    options = options.schema(s);
                }
                config = config.history(options.connect().await?);
            }
            weft_runtime::logging::init();
            // On a terminal a progress bar stays under the state lines.
            if std::io::stderr().is_terminal() {
                config = config.sink(std::sync::Arc::new(Progress::new(p.nodes.len())));
            }
            // Ctrl-C and SIGTERM cancel the run rather than leave its nodes running.
            let (run, stop) = p.run_until_stopped(config, &values).await;
            weft_runtime::logging::flush();
            weft_runtime::logging::status(None);
            let summary = summary(&run);
            if run.state.kind == StateKind::Completed && stop.is_none() {
                Ok(summary)
            } else {
                print!("{summary}");
                Err(Failure {
                    message: format!("pipeline '{}' ended {}", p.name, run.state),
                    code: stop.map_or(1, |s| s.exit_code()),
                })
            }
        }
    }
}

/// `--workers N`: 1 to [`MAX_WORKERS`] (a larger count is refused here rather than overflow the
/// engine's semaphore).
fn parse_workers(text: &str) -> Result<usize, String> {
    let n: u128 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number from 1 to {MAX_WORKERS}"))?;
    if n == 0 || n > MAX_WORKERS as u128 {
        return Err(format!("must be from 1 to {MAX_WORKERS}, not {n}"));
    }
    Ok(n as usize)
}

/// `--param`s and `--params FILE`, the command line winning.
fn gather(
    params: &[String],
    file: Option<&Path>,
) -> Result<Vec<(String, serde_json::Value)>, Failure> {
    let mut given = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| Failure {
            message: format!("cannot read {}: {e}", path.display()),
            code: 1,
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Failure {
            message: format!("{}: not JSON: {e}", path.display()),
            code: 2,
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(Failure::usage(format!(
                "{}: expected a JSON object of parameters",
                path.display()
            )));
        };
        given.extend(map);
    }
    for p in params {
        given.push(parse_assignment(p).map_err(Failure::usage)?);
    }
    Ok(given)
}

/// The progress bar of a pipeline run: nodes done, running and failed.
struct Progress {
    total: usize,
    nodes: std::sync::Mutex<std::collections::HashMap<u32, StateKind>>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            nodes: Default::default(),
        }
    }
}

impl EventSink for Progress {
    fn on_event(&self, e: &RunEvent) {
        let Some(id) = e.task_run_id else {
            return;
        };
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.insert(id.node, e.state.kind);
        let done = nodes.values().filter(|k| k.is_final()).count();
        let running = nodes
            .values()
            .filter(|k| matches!(k, StateKind::Running | StateKind::Retrying))
            .count();
        let failed = nodes.values().filter(|k| k.is_failed()).count();
        weft_runtime::logging::status(Some(bar(done, running, failed, self.total)));
    }
}

/// `[##########--------------]  12/30 nodes · 2 running · 1 failed`
fn bar(done: usize, running: usize, failed: usize, total: usize) -> String {
    const WIDTH: usize = 24;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    format!(
        "[{}{}] {done:>4}/{total} nodes · {running} running · {failed} failed",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled)
    )
}

/// How `resolve` asks for a missing value.
type Prompt<'a> = dyn FnMut(&ParamSpec) -> Option<String> + 'a;

/// Asks for a missing required value on the terminal (as Python's `input()` would).
fn prompt(spec: &ParamSpec) -> Option<String> {
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "{} ({}){}: ",
        spec.name,
        spec.kind.expected(),
        spec.description
            .as_deref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default()
    );
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    (!line.is_empty()).then_some(line)
}

/// A line per node: state, exit code, duration; then the run id.
fn summary(run: &FlowRun<PipelineOutputs>) -> String {
    let mut out = String::new();
    let outputs = run.result.as_ref().ok();
    for r in &run.task_runs {
        let outcome = outputs
            .and_then(|o| o.iter().find(|n| n.id == r.task))
            .and_then(|n| n.outcome.as_ref());
        let exit = match outcome {
            Some(o) => match (o.exit_code, o.signal) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(s)) => format!("signal {s}"),
                _ => "-".to_owned(),
            },
            None => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<16} {:<10} {:<9} {:>8.2?}\n",
            r.task,
            r.state.kind.to_string(),
            exit,
            r.duration()
        ));
    }
    out.push_str(&format!(
        "run {}: {}   (weft run show {})\n",
        run.id, run.state.kind, run.id
    ));
    out
}

/// `--schedule SPEC`, as `weft deployments` shows schedules.
fn parse_schedule(text: &str) -> Result<Schedule, String> {
    text.trim().parse::<Schedule>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn the_bar_fills_with_finished_nodes() {
        assert_eq!(
            bar(0, 1, 0, 4),
            "[------------------------]    0/4 nodes · 1 running · 0 failed"
        );
        assert_eq!(
            bar(2, 1, 1, 4),
            "[############------------]    2/4 nodes · 1 running · 1 failed"
        );
        assert!(bar(4, 0, 0, 4).starts_with(&format!("[{}]", "#".repeat(24))));
        assert!(bar(0, 0, 0, 0).starts_with(&format!("[{}]", "#".repeat(24))));
    }
}
