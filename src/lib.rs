//! # weft
//!
//! Prefect-style workflows for Rust. Mark functions `#[task]`, write a flow as a plain async
//! function marked `#[flow]`, and the dependency graph is built at compile time: independent
//! tasks run concurrently, with retries, timeouts, triggers, state handlers and mapping.
//!
//! ```
//! use weft::prelude::*;
//!
//! #[task]
//! fn say_hello(name: String) -> String {
//!     format!("Hello, {name}!")
//! }
//!
//! #[flow(name = "my first flow!")]
//! async fn hello(name: String) -> String {
//!     let greeting = say_hello(name)?;
//!     greeting
//! }
//!
//! # #[tokio::main] async fn main() {
//! let run = hello("world".into()).await;
//! assert!(run.is_successful());
//! assert_eq!(run.result.unwrap(), "Hello, world!");
//! # }
//! ```
//!
//! See the README for the rules of a flow body and every option.

pub use weft_macros::{flow, task};
pub use weft_runtime::*;

/// The README's Rust examples, compiled and run as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Everything a flow author needs: `use weft::prelude::*;`.
pub mod prelude {
    pub use weft_macros::{flow, task};
    pub use weft_runtime::{
        EventSink, FlowError, FlowGraph, FlowRun, RunConfig, RunEvent, Signal, State, StateChange,
        StateKind, TaskCall, TaskError, TaskRun, TaskRunReport, Trigger,
    };
}
