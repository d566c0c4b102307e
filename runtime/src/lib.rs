//! Runtime of [weft](https://docs.rs/weft): states, the engine, flow graphs and their drawings.
//! Users depend on the `weft` facade crate, which re-exports this one with the macros.

#![warn(missing_docs)]

mod engine;
pub mod flow;
pub mod graph;
mod handlers;
pub mod logging;
#[cfg(feature = "pipeline")]
pub mod pipeline;
pub mod results;
pub mod rules;
pub mod schedule;
pub mod state;
#[cfg(feature = "history")]
pub mod store;
#[cfg(not(feature = "history"))]
#[path = "no_history.rs"]
mod store;
mod subflow;
pub mod task;
pub mod viz;
#[cfg(feature = "history")]
pub mod worker;

mod driver;

/// The `tracing` crate: what task bodies log with `weft::tracing::info!(..)` goes to the console
/// and into the run's history.
pub use tracing;

/// Run ids ([`RunConfig::run_id`], [`RunConfig::resume`], [`FlowRun::id`]), re-exported so that
/// you need not depend on `uuid` at the same version.
pub use uuid::Uuid;

/// The timestamps of states and reports ([`State::timestamp`], [`FlowRun::started`]).
pub use chrono::{DateTime, Utc};

/// The `object_store` crate, for building S3, GCS or Azure backends (feature `object-store`).
#[cfg(feature = "object-store")]
pub use object_store;

pub use flow::{
    CancelHandle, EventSink, FlowDef, FlowError, FlowRun, Handoff, HandoffTask, RunConfig, RunEvent,
};
pub use graph::{CycleError, Edge, EdgeKind, FlowGraph, Node, NodeKind};
pub use schedule::{Schedule, ScheduleError};
pub use state::{RunKind, State, StateChange, StateHandler, StateKind, TaskRunId};
#[cfg(feature = "history")]
pub use store::{HistoryReport, Store, StoreError};
pub use subflow::{FlowCall, FlowFn};
pub use task::{
    MapCall, Signal, Task, TaskCall, TaskError, TaskOptions, TaskRun, TaskRunReport, Trigger,
};

/// What macro-generated code calls. Not a public API: names and signatures change freely.
#[doc(hidden)]
pub mod __private {
    pub use crate::driver::*;
    pub use crate::engine::blocking;
    pub use crate::flow::FlowCtx;
    pub use crate::graph::{Edge, EdgeKind, FlowGraph, Node, NodeKind};
    pub use crate::rules::{BorrowedAndTaken, RetriedInput, TakenTwice, TaskFn};
    pub use crate::task::{
        Attempt, BoxFuture, MapCall, Signal, Task, TaskBody, TaskCall, TaskOptions, Trigger,
    };
    pub use crate::{FlowDef, FlowError, FlowRun, RunConfig, State};
    pub use std::borrow::Cow;
    pub use std::boxed::Box;
    pub use std::sync::OnceLock;
    pub use std::time::Duration;

    /// Converts a body's `Result` into an attempt outcome; a [`Signal`] error keeps its meaning.
    pub fn from_result<T, E: std::fmt::Display + 'static>(r: Result<T, E>) -> Attempt<T> {
        match r {
            Ok(v) => Attempt::Ok(v),
            Err(e) => match (&e as &dyn std::any::Any).downcast_ref::<Signal>() {
                Some(Signal::Fail(m)) => Attempt::Fail(m.clone()),
                Some(Signal::Skip(m)) => Attempt::Skip(m.clone()),
                Some(Signal::Retry(m)) => Attempt::Retry(m.clone()),
                None => Attempt::Fail(e.to_string()),
            },
        }
    }

    /// Encodes a cached or persisted output.
    pub fn encode_output<T: StorableOutput>(v: &T) -> Result<Vec<u8>, String> {
        crate::results::encode_value(v)
    }
    /// Decodes a cached or persisted output.
    pub fn decode_output<T: StorableOutput>(bytes: &[u8]) -> Result<T, String> {
        crate::results::decode_value(bytes)
    }
    /// Encodes the inputs of a cache key.
    pub fn encode_inputs<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, String> {
        crate::results::encode_value(v)
    }
    /// Best-effort storage of a task output (autoref specialization): serde types through
    /// [`StoreViaSerde`], everything else through [`StoreFallback`], which stores nothing.
    pub struct Storable<'a, T>(pub &'a T);
    /// The serde path of [`Storable`].
    pub trait StoreViaSerde {
        /// The encoded value.
        fn weft_encode(&self) -> Option<Result<Vec<u8>, String>>;
    }
    impl<T: serde::Serialize> StoreViaSerde for &Storable<'_, T> {
        fn weft_encode(&self) -> Option<Result<Vec<u8>, String>> {
            Some(crate::results::encode_value(self.0))
        }
    }
    /// The fallback of [`Storable`]: not stored.
    pub trait StoreFallback {
        /// Nothing.
        fn weft_encode(&self) -> Option<Result<Vec<u8>, String>> {
            None
        }
    }
    impl<T> StoreFallback for Storable<'_, T> {}

    /// Best-effort restoring of a task output, the counterpart of [`Storable`].
    pub struct Restorable<T>(pub std::marker::PhantomData<T>);
    /// The serde path of [`Restorable`].
    pub trait RestoreViaSerde {
        /// The output type.
        type Value;
        /// The decoded value.
        fn weft_decode(&self, bytes: &[u8]) -> Option<Result<Self::Value, String>>;
    }
    impl<T: serde::de::DeserializeOwned> RestoreViaSerde for &Restorable<T> {
        type Value = T;
        fn weft_decode(&self, bytes: &[u8]) -> Option<Result<T, String>> {
            Some(crate::results::decode_value(bytes))
        }
    }
    /// The fallback of [`Restorable`]: nothing to restore.
    pub trait RestoreFallback {
        /// The output type.
        type Value;
        /// Nothing.
        fn weft_decode(&self, _bytes: &[u8]) -> Option<Result<Self::Value, String>> {
            None
        }
    }
    impl<T> RestoreFallback for Restorable<T> {
        type Value = T;
    }

    /// A flow parameter as text for target templates, when it is `Display` (autoref
    /// specialization as for [`Storable`]).
    pub struct ParamText<'a, T>(pub &'a T);
    /// The `Display` path of [`ParamText`].
    pub trait ParamViaDisplay {
        /// The text.
        fn weft_text(&self) -> Option<String>;
    }
    impl<T: std::fmt::Display> ParamViaDisplay for &ParamText<'_, T> {
        fn weft_text(&self) -> Option<String> {
            Some(self.0.to_string())
        }
    }
    /// The fallback of [`ParamText`]: no text.
    pub trait ParamFallback {
        /// Nothing.
        fn weft_text(&self) -> Option<String> {
            None
        }
    }
    impl<T> ParamFallback for ParamText<'_, T> {}

    /// A flow parameter as JSON for the run history: serde types as themselves, `Display` types
    /// as their text, others as null (autoref specialization as for [`Storable`]).
    pub struct ParamJson<'a, T>(pub &'a T);
    /// The serde path of [`ParamJson`].
    pub trait ParamJsonViaSerde {
        /// The JSON value.
        fn weft_json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> ParamJsonViaSerde for &&ParamJson<'_, T> {
        fn weft_json(&self) -> serde_json::Value {
            serde_json::to_value(self.0).unwrap_or(serde_json::Value::Null)
        }
    }
    /// The `Display` path of [`ParamJson`].
    pub trait ParamJsonViaDisplay {
        /// The text as a JSON string.
        fn weft_json(&self) -> serde_json::Value;
    }
    impl<T: std::fmt::Display> ParamJsonViaDisplay for &ParamJson<'_, T> {
        fn weft_json(&self) -> serde_json::Value {
            serde_json::Value::String(self.0.to_string())
        }
    }
    /// The fallback of [`ParamJson`]: null.
    pub trait ParamJsonFallback {
        /// Null.
        fn weft_json(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
    }
    impl<T> ParamJsonFallback for ParamJson<'_, T> {}

    /// The parameters as one JSON object, as text.
    pub fn params_json(params: Vec<(&'static str, serde_json::Value)>) -> String {
        params_value(params).to_string()
    }

    /// The parameters as one JSON object; a huge value is replaced by a note of its size.
    pub fn params_value(params: Vec<(&'static str, serde_json::Value)>) -> serde_json::Value {
        const MAX: usize = 64 * 1024;
        let mut map = serde_json::Map::new();
        for (name, value) in params {
            let text = value.to_string();
            let value = if text.len() > MAX {
                serde_json::Value::String(format!("<{} bytes of JSON, not recorded>", text.len()))
            } else {
                value
            };
            map.insert(name.to_owned(), value);
        }
        serde_json::Value::Object(map)
    }

    /// Parameter overrides of a requested run (`weft deployment run NAME --param k=v`).
    pub type JsonMap = serde_json::Map<String, serde_json::Value>;

    /// Refuses overrides naming no parameter of the flow.
    pub fn check_param_names(overrides: &JsonMap, known: &[&str]) -> Result<(), String> {
        match overrides.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) if known.is_empty() => Err(format!(
                "the flow takes no parameters, so `{k}` cannot be set"
            )),
            Some(k) => Err(format!(
                "the flow has no parameter `{k}`; its parameters are: {}",
                known.join(", ")
            )),
        }
    }

    /// A parameter's value from JSON, when its type deserializes (autoref specialization as
    /// for [`Storable`]).
    pub struct ParamFromJson<'a, T> {
        name: &'static str,
        value: &'a serde_json::Value,
        ty: std::marker::PhantomData<fn() -> T>,
    }
    impl<'a, T> ParamFromJson<'a, T> {
        /// The parameter `name` set to `value`.
        pub fn new(name: &'static str, value: &'a serde_json::Value) -> Self {
            ParamFromJson {
                name,
                value,
                ty: std::marker::PhantomData,
            }
        }
    }
    /// The serde path of [`ParamFromJson`].
    pub trait ParamFromJsonViaSerde<T> {
        /// The value, or why it does not fit the parameter's type.
        fn weft_from_json(&self) -> Result<T, String>;
    }
    impl<T: serde::de::DeserializeOwned> ParamFromJsonViaSerde<T> for &ParamFromJson<'_, T> {
        fn weft_from_json(&self) -> Result<T, String> {
            // A text value may stand for a number or a bool the command line could not type.
            let parsed = serde_json::from_value::<T>(self.value.clone()).or_else(|e| {
                match self
                    .value
                    .as_str()
                    .map(serde_json::from_str::<serde_json::Value>)
                {
                    Some(Ok(v)) => serde_json::from_value::<T>(v).map_err(|_| e),
                    _ => Err(e),
                }
            });
            parsed.map_err(|e| {
                format!(
                    "parameter `{}` expects {}, got {}: {e}",
                    self.name,
                    std::any::type_name::<T>(),
                    self.value
                )
            })
        }
    }
    /// The fallback of [`ParamFromJson`]: the type cannot be set from outside.
    pub trait ParamFromJsonFallback<T> {
        /// An error naming the parameter.
        fn weft_from_json(&self) -> Result<T, String>;
    }
    impl<T> ParamFromJsonFallback<T> for ParamFromJson<'_, T> {
        fn weft_from_json(&self) -> Result<T, String> {
            Err(format!(
                "parameter `{}` ({}) cannot be set from outside the program: its type does not implement serde's Deserialize",
                self.name,
                std::any::type_name::<T>()
            ))
        }
    }

    /// A deployment's default parameter, copied for a run when its type is `Clone`.
    pub struct ParamClone<'a, T>(pub &'a T, pub &'static str);
    /// The `Clone` path of [`ParamClone`].
    pub trait ParamCloneVia<T> {
        /// A copy.
        fn weft_clone(&self) -> Result<T, String>;
    }
    impl<T: Clone> ParamCloneVia<T> for &ParamClone<'_, T> {
        fn weft_clone(&self) -> Result<T, String> {
            Ok(self.0.clone())
        }
    }
    /// The fallback of [`ParamClone`].
    pub trait ParamCloneFallback<T> {
        /// An error naming the parameter.
        fn weft_clone(&self) -> Result<T, String>;
    }
    impl<T> ParamCloneFallback<T> for ParamClone<'_, T> {
        fn weft_clone(&self) -> Result<T, String> {
            Err(format!("parameter `{}` is not Clone", self.1))
        }
    }

    /// Checks one input of a task with `cache_for` (spanned at its type by the macro).
    pub fn cache_input<T: CacheInput + ?Sized>(v: &T) -> &T {
        v
    }

    /// An output that can be cached or persisted.
    #[diagnostic::on_unimplemented(
        message = "task output `{Self}` must implement serde's `Serialize` and `Deserialize` to be cached or persisted",
        label = "stored in the result store",
        note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
    )]
    pub trait StorableOutput: serde::Serialize + serde::de::DeserializeOwned {}
    impl<T: serde::Serialize + serde::de::DeserializeOwned> StorableOutput for T {}

    /// An input that takes part in a cache key.
    #[diagnostic::on_unimplemented(
        message = "task input `{Self}` must implement serde's `Serialize` to be part of a cache key (`cache_for`)",
        label = "hashed into the cache key",
        note = "derive `serde::Serialize`, or give the task `cache_key = my_fn` computing a key from its inputs"
    )]
    pub trait CacheInput: serde::Serialize {}
    impl<T: serde::Serialize + ?Sized> CacheInput for T {}

    /// Runs a flow (see [`crate::flow`]); `failure` says whether the body's value is a
    /// failure (an `Err` of a `Result` return type) and why.
    pub async fn run_flow<R, F, Fut>(
        def: &'static FlowDef,
        config: RunConfig,
        failure: fn(&R) -> Option<String>,
        driver: F,
    ) -> FlowRun<R>
    where
        F: FnOnce(std::sync::Arc<FlowCtx>) -> Fut,
        Fut: std::future::Future<Output = Result<R, FlowError>> + Send + 'static,
        R: Send + 'static,
    {
        crate::flow::run_flow(def, config, failure, driver).await
    }

    /// The failure of a flow body returning a `Result`: its `Err`'s text.
    pub fn result_failure<T, E: std::fmt::Display>(r: &Result<T, E>) -> Option<String> {
        r.as_ref().err().map(ToString::to_string)
    }
    /// A flow body that is not a `Result` never fails by its value.
    pub fn no_failure<R>(_: &R) -> Option<String> {
        None
    }
    /// A subflow node's output: the body's value, or the `Ok` value of a `Result`.
    pub fn result_ok<T, E>(r: Result<T, E>) -> Option<T> {
        r.ok()
    }
    /// A subflow node's output: the body's value.
    pub fn plain_value<R>(r: R) -> Option<R> {
        Some(r)
    }
}
