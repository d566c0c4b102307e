//! Procedural macros of [weft](https://docs.rs/weft): `#[task]` and `#[flow]`.
//!
//! A thin shim: the work happens in plain functions over `proc_macro2` tokens (`task`,
//! `flow::analyze`, `flow::codegen`) so that unit tests run them without a compiler.

use proc_macro::TokenStream;

mod flow;
mod options;
mod task;

/// Marks a function as a task: an orchestrated unit of work with retries, timeouts, triggers
/// and state handlers. See the `weft` crate for the options.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Marks an `async fn` as a flow: its body becomes a dependency graph, built at compile time,
/// whose independent tasks run concurrently. See the `weft` crate for the rules.
#[proc_macro_attribute]
pub fn flow(args: TokenStream, item: TokenStream) -> TokenStream {
    flow::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
