//! A `#[flow]` as a value: what `my_flow::flow()` returns (deployments, workers).

use crate::flow::{FlowDef, FlowRun, RunConfig};
use crate::task::BoxFuture;

type Overrides = serde_json::Map<String, serde_json::Value>;

/// A `#[flow]` as a value, with typed parameters `P` (a tuple of the flow's parameters) and
/// return type `R`: what `my_flow::flow()` returns, for
/// [`Deployment::new`](super::Deployment::new).
// Its runners are only called by deployments, which need the `history` feature.
#[cfg_attr(not(feature = "history"), allow(dead_code))]
pub struct FlowHandle<P, R> {
    pub(super) def: &'static FlowDef,
    pub(super) run: fn(RunConfig, P) -> BoxFuture<'static, FlowRun<R>>,
    pub(super) with_overrides: fn(&P, &Overrides) -> Result<P, String>,
    pub(super) params_json: fn(&P) -> serde_json::Value,
}

impl<P, R> FlowHandle<P, R> {
    /// Built by `#[flow]`.
    #[doc(hidden)]
    pub fn __new(
        def: &'static FlowDef,
        run: fn(RunConfig, P) -> BoxFuture<'static, FlowRun<R>>,
        with_overrides: fn(&P, &Overrides) -> Result<P, String>,
        params_json: fn(&P) -> serde_json::Value,
    ) -> Self {
        FlowHandle {
            def,
            run,
            with_overrides,
            params_json,
        }
    }
    /// The flow's definition.
    pub fn definition(&self) -> &'static FlowDef {
        self.def
    }
}

impl<P, R> Clone for FlowHandle<P, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P, R> Copy for FlowHandle<P, R> {}
