//! Pipelines defined as data (seed 003): shell-command DAGs read from a TOML file, with a typed
//! parameter schema, injection-proof command rendering and process-group timeouts, run by the
//! same engine as `#[flow]`.

pub mod file;
pub mod params;
mod run;
pub mod shell;

pub use file::{CheckError, NodeCommand, NodeSpec, Pipeline, Problem};
pub use params::{ParamErrors, ParamKind, ParamSpec, ParamValue, ParamValues};
pub use run::{NodeOutput, PipelineOutputs};
