//! Pipelines defined as data: shell-command DAGs read from a TOML file, with a typed parameter
//! schema, injection-proof command rendering and process-group timeouts, run by the same engine
//! as `#[flow]`.

pub mod argv;
mod deploy;
pub mod file;
pub mod params;
mod queue;
mod run;
pub mod shell;

pub(crate) use deploy::PipelineDeployment;
pub use file::{CheckError, NodeCommand, NodeSpec, Pipeline, Problem, MAX_WORKERS};
pub use params::{ParamErrors, ParamKind, ParamSpec, ParamValue, ParamValues};
pub use queue::QueuedRun;
pub use run::{NodeOutput, PipelineOutputs, Stop};
