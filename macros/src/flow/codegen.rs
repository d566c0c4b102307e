//! Code for a flow: the companion type with the graph and the definition, and the driver in
//! which every task node is a future awaiting exactly its inputs.

use super::analyze::{BindingKind, EdgeKind, FlowModel, Mode, NodeStmt, TaskStmt};
use super::{FlowOpts, FlowParam};
use crate::options;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use std::collections::BTreeSet;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Expr, Ident, ItemFn};

fn hidden(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

fn handle(i: usize) -> Ident {
    format_ident!("__h{}", i, span = Span::mixed_site())
}

fn slot(b: usize) -> Ident {
    format_ident!("__s{}", b, span = Span::mixed_site())
}

/// The node's `&'static TaskOptions`, read from the driver's array inside the node's block.
fn opts_local(i: usize) -> Ident {
    format_ident!("__o{}", i, span = Span::mixed_site())
}

/// Handles per tuple local of the driver. A coroutine's layout pass compares every local held
/// across an `.await` with every other (quadratic): a thousand handle locals made rustc spend
/// most of a 1,000-statement flow's build there; a few dozen tuples keep it small, while
/// tuples short enough keep type inference from refolding one huge tuple type.
const HANDLES_PER_LOCAL: usize = 32;

/// Where the driver keeps each task node's handle and options: the `k`-th task node's handle
/// is field `k % HANDLES_PER_LOCAL` of tuple local `k / HANDLES_PER_LOCAL`, its options
/// element `k` of one array local.
struct Places {
    /// Per node: its index among task nodes (`None` for glue).
    task_index: Vec<Option<usize>>,
}

impl Places {
    fn new(m: &FlowModel) -> Self {
        let mut k = 0;
        let task_index = m
            .nodes
            .iter()
            .map(|n| match n.stmt {
                NodeStmt::Task(_) => {
                    k += 1;
                    Some(k - 1)
                }
                NodeStmt::Glue(_) => None,
            })
            .collect();
        Places { task_index }
    }

    fn index(&self, node: usize) -> usize {
        self.task_index[node].expect("handles belong to task nodes")
    }

    /// The place of node `i`'s handle, `__hc3.7`.
    fn handle(&self, i: usize) -> TokenStream {
        let k = self.index(i);
        let local = format_ident!("__hc{}", k / HANDLES_PER_LOCAL, span = Span::mixed_site());
        let field = syn::Index::from(k % HANDLES_PER_LOCAL);
        quote!(#local.#field)
    }

    /// Node `i`'s `&'static TaskOptions`, `__o[12]`.
    fn opts(&self, i: usize) -> TokenStream {
        let k = proc_macro2::Literal::usize_unsuffixed(self.index(i));
        let all = hidden("__o");
        quote!(#all[#k])
    }
}

fn clone_fn(b: usize) -> Ident {
    format_ident!("__c{}", b, span = Span::mixed_site())
}

/// The called function and its argument count (`f(a, b)` → `f`, 2).
fn callee(t: &TaskStmt) -> (&Expr, usize) {
    match &t.call {
        Expr::Call(c) => (&*c.func, c.args.len()),
        _ => unreachable!("task statements hold calls"),
    }
}

/// `(_, _, ..)`: the argument tuple of a call with `n` arguments, for `TaskFn::<..>`.
fn args_tuple(n: usize) -> TokenStream {
    let holes = (0..n).map(|_| quote!(_));
    quote!((#(#holes,)*))
}

/// The task's options (`&'static TaskOptions`). A plain function here is the one compile error
/// of the statement, at the function's name (`TaskFn` says what to do).
fn task_options(t: &TaskStmt) -> TokenStream {
    let comp = &t.companion;
    if t.is_map {
        return quote_spanned!(comp.span()=> &<#comp as __weft::Task>::OPTIONS);
    }
    let (func, n) = callee(t);
    let args = args_tuple(n);
    quote_spanned!(func.span()=> __weft::TaskFn::<#args>::options(&#func))
}

/// What the node is: a task, a mapped task or a subflow.
fn task_kind(t: &TaskStmt) -> TokenStream {
    if t.is_map {
        return quote!(__weft::NodeKind::Map);
    }
    let (func, n) = callee(t);
    let args = args_tuple(n);
    quote_spanned!(func.span()=> __weft::TaskFn::<#args>::kind(&#func))
}

/// Where a task output taken by value needs a clone check, and which: the second taker of an
/// output taken twice, or the first taker of an output others borrow.
fn clone_checks(m: &FlowModel, places: &Places) -> TokenStream {
    let mut out = TokenStream::new();
    for (b, bind) in m.bindings.iter().enumerate() {
        let BindingKind::Task { stmt: p, .. } = bind.kind else {
            continue;
        };
        // Readers that take the value, in written order, with the span of their use.
        let mut takers: Vec<(usize, Span)> = bind
            .handle_readers
            .iter()
            .filter(|(_, mode)| *mode == Mode::Own)
            .filter_map(|(node, _)| {
                let NodeStmt::Task(t) = &m.nodes[*node].stmt else {
                    return None;
                };
                let input = t.inputs.iter().find(|i| i.binding == b)?;
                Some((*node, input.span))
            })
            .collect();
        if let Some(g) = bind.glue_reads_at {
            takers.push((g, bind.name.span()));
        }
        takers.sort_by_key(|(node, _)| *node);
        let h = places.handle(p);
        let c = clone_fn(b);
        let check = if bind.shared() {
            // Glue takes a shared output after its readers: only node takers clone.
            let Some((_, span)) = takers.iter().find(|(n, _)| Some(*n) != bind.glue_reads_at)
            else {
                continue;
            };
            let at = Span::mixed_site().located_at(*span);
            quote_spanned!(at=> <_ as __weft::BorrowedAndTaken>::clone_fn(__weft::shared_type(&#h)))
        } else if takers.len() >= 2 {
            // At the user's token, but marked as generated: rustc suggests no edit of it.
            let at = Span::mixed_site().located_at(takers[1].1);
            quote_spanned!(at=> <_ as __weft::TakenTwice>::clone_fn(__weft::output_type(&#h)))
        } else {
            continue;
        };
        out.extend(quote!(let #c = #check;));
    }
    out
}

/// `&x` → `x` where the node already holds `x` as a reference.
struct Unref<'a> {
    borrowed: &'a BTreeSet<String>,
}

impl VisitMut for Unref<'_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        if let Expr::Reference(r) = e {
            if r.mutability.is_none() {
                if let Some(id) = super::analyze::plain_ident(&r.expr) {
                    if self.borrowed.contains(&id.to_string()) {
                        *e = (*r.expr).clone();
                        return;
                    }
                }
            }
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }
}

pub fn generate(
    func: &ItemFn,
    opts: &FlowOpts,
    params: &[FlowParam],
    m: &FlowModel,
) -> TokenStream {
    let fn_name = &func.sig.ident;
    let vis = &func.vis;
    let attrs = &func.attrs;
    let flow_name = opts.name.clone().unwrap_or_else(|| fn_name.to_string());
    let ret_ty = match &func.sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, t) => quote!(#t),
    };
    // A body returning a `Result` fails the run with its `Err`; as a subflow node its output
    // is the `Ok` value, as for a task.
    let ok_ty = match &func.sig.output {
        syn::ReturnType::Type(_, t) => crate::task::result_ok_type(t),
        syn::ReturnType::Default => None,
    };
    let (out_ty, failure, value) = match &ok_ty {
        Some(t) => (
            quote!(#t),
            quote!(::weft::__private::result_failure),
            quote!(::weft::__private::result_ok),
        ),
        None => (
            ret_ty.clone(),
            quote!(::weft::__private::no_failure),
            quote!(::weft::__private::plain_value),
        ),
    };
    let cx = hidden("__cx");
    let cx_arc = hidden("__cx_arc");
    let set = hidden("__set");
    let config = hidden("__weft_config");
    let stop = hidden("__stop");

    // ---- The graph, as data.
    let nodes = m.nodes.iter().enumerate().map(|(i, n)| {
        let id = i as u32;
        let text = &n.text;
        let line = n.line;
        let (kind, task, binding) = match &n.stmt {
            NodeStmt::Task(t) => {
                let kind = task_kind(t);
                let opts = task_options(t);
                let task = quote!(#opts.name);
                let binding = match t.binding {
                    Some(b) => {
                        let name = m.bindings[b].name.to_string();
                        quote!(::core::option::Option::Some(#name))
                    }
                    None => quote!(::core::option::Option::None),
                };
                (kind, task, binding)
            }
            NodeStmt::Glue(_) => (
                quote!(__weft::NodeKind::Glue),
                quote!(""),
                quote!(::core::option::Option::None),
            ),
        };
        quote!(__weft::graph_node(#id, #kind, #task, #binding, #text, #line))
    });
    let edges = m.edges.iter().map(|e| {
        let (from, to) = (e.from as u32, e.to as u32);
        let kind = match e.kind {
            EdgeKind::Data => quote!(Data),
            EdgeKind::Order => quote!(Order),
            EdgeKind::Glue => quote!(Glue),
        };
        let b = &e.binding;
        quote!(__weft::graph_edge(#from, #to, __weft::EdgeKind::#kind, #b))
    });
    let fail_fast = opts.fail_fast;
    let persist = opts.persist;
    let version = match &opts.version {
        Some(v) => quote! { ::std::option::Option::Some(#v) },
        None => quote! { ::std::option::Option::None },
    };
    let max_concurrency = match opts.max_concurrency {
        Some(n) => {
            let n = n as usize;
            quote!(::core::option::Option::Some(#n))
        }
        None => quote!(::core::option::Option::None),
    };
    let handlers = options::handler_tokens(&opts.state_handlers);

    // ---- The driver.
    let param_idents: Vec<&Ident> = params.iter().map(|p| &p.ident).collect();
    let param_types: Vec<&syn::Type> = params.iter().map(|p| &p.ty).collect();
    let param_names: Vec<String> = params.iter().map(|p| p.ident.to_string()).collect();
    let param_index: Vec<syn::Index> = (0..params.len()).map(syn::Index::from).collect();
    let rebind_params = params.iter().map(|p| {
        let id = &p.ident;
        if p.mutable {
            quote!(#[allow(unused_mut)] let mut #id = #id;)
        } else {
            quote!(let #id = #id;)
        }
    });
    let items = &m.items;
    let places = Places::new(m);
    let clone_checks = clone_checks(m, &places);

    let handles = handle_locals(m, &places);
    // Slots for glue locals that tasks borrow.
    let slots = m
        .bindings
        .iter()
        .enumerate()
        .filter(|(_, bind)| bind.kind != BindingKind::Param && !bind.local_borrowers.is_empty())
        .map(|(b, _)| {
            let s = slot(b);
            quote!(let #s = __weft::Slot::new();)
        });

    // The sequence: node creations at their start points, interleaved with glue.
    let mut put_done: BTreeSet<usize> = BTreeSet::new();
    let mut seq = TokenStream::new();
    let creations_after = |point: Option<usize>| {
        m.nodes
            .iter()
            .enumerate()
            .filter_map(move |(i, n)| match &n.stmt {
                NodeStmt::Task(t) if t.start_after == point => Some((i, t)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let emit_creations =
        |point: Option<usize>, seq: &mut TokenStream, put_done: &mut BTreeSet<usize>| {
            for (i, t) in creations_after(point) {
                let node = node_creation(m, &places, i, t, &cx, &set, put_done, seq);
                seq.extend(node);
            }
        };
    emit_creations(None, &mut seq, &mut put_done);
    let mut tail = quote!();
    for (j, n) in m.nodes.iter().enumerate() {
        let NodeStmt::Glue(g) = &n.stmt else { continue };
        for &b in &g.resolves {
            let bind = &m.bindings[b];
            let BindingKind::Task { stmt: p, .. } = bind.kind else {
                continue;
            };
            let h = places.handle(p);
            let name = &bind.name;
            let name_str = name.to_string();
            let read = if bind.shared() {
                quote!(take_after_readers())
            } else if bind.owned_readers() >= 2 {
                let c = clone_fn(b);
                quote!(take_or_clone(#c))
            } else {
                quote!(take())
            };
            let mutability = if bind.mutable { quote!(mut) } else { quote!() };
            seq.extend(quote_spanned! {name.span()=>
                let #mutability #name = match #h.#read.await {
                    ::core::option::Option::Some(__v) => __v,
                    ::core::option::Option::None => {
                        match __weft::stop_body(&#stop, #h.missing(#name_str)).await {}
                    }
                };
            });
        }
        let stmt = &g.stmt;
        if g.is_tail {
            if let syn::Stmt::Expr(e, None) = &stmt {
                tail = quote!(#e);
            }
        } else {
            seq.extend(quote!(#stmt));
        }
        emit_creations(Some(j), &mut seq, &mut put_done);
    }

    let doc = format!(
        "Companion of the flow `{flow_name}`: its compile-time graph (`{fn_name}::graph()`), its \
         definition, and `{fn_name}::run_with(config, ..)` to run it with a [`RunConfig`](::weft::RunConfig)."
    );
    quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #fn_name {}

        impl #fn_name {
            /// The flow's name.
            pub const NAME: &'static str = #flow_name;

            /// The flow's dependency graph, built at compile time.
            #vis fn graph() -> &'static ::weft::FlowGraph {
                Self::definition().graph
            }

            /// The flow as a value with typed parameters, for
            /// [`Deployment::new`](::weft::schedule::Deployment::new).
            #[allow(clippy::all, unused_imports)]
            #vis fn flow() -> ::weft::schedule::FlowHandle<(#(#param_types,)*), #ret_ty> {
                ::weft::schedule::FlowHandle::__new(
                    Self::definition(),
                    |config, params| ::weft::__private::Box::pin(Self::run_with(config, #(params.#param_index),*)),
                    |base, overrides| {
                        use ::weft::__private::{ParamCloneFallback as _, ParamCloneVia as _, ParamFromJsonFallback as _, ParamFromJsonViaSerde as _};
                        ::weft::__private::check_param_names(overrides, &[#(#param_names),*])?;
                        ::std::result::Result::Ok((#(
                            match overrides.get(#param_names) {
                                ::std::option::Option::Some(value) => (&&::weft::__private::ParamFromJson::<#param_types>::new(#param_names, value)).weft_from_json()?,
                                ::std::option::Option::None => (&&::weft::__private::ParamClone(&base.#param_index, #param_names)).weft_clone()?,
                            },
                        )*))
                    },
                    |params| {
                        use ::weft::__private::{ParamJsonFallback as _, ParamJsonViaDisplay as _, ParamJsonViaSerde as _};
                        ::weft::__private::params_value(::std::vec![#((
                            #param_names,
                            (&&&::weft::__private::ParamJson(&params.#param_index)).weft_json()
                        )),*])
                    },
                )
            }

            /// The flow's definition: name, options and graph.
            #vis fn definition() -> &'static ::weft::FlowDef {
                use ::weft::__private as __weft;
                // Built on first use: node names come from the tasks' options.
                static GRAPH: ::weft::__private::OnceLock<::weft::__private::FlowGraph> = ::weft::__private::OnceLock::new();
                static DEF: ::weft::__private::OnceLock<::weft::FlowDef> = ::weft::__private::OnceLock::new();
                const EDGES: &[::weft::__private::Edge] = &[#(#edges),*];
                DEF.get_or_init(|| ::weft::FlowDef {
                    name: #flow_name,
                    fail_fast: #fail_fast,
                    persist: #persist,
                    max_concurrency: #max_concurrency,
                    state_handlers: #handlers,
                    version: #version,
                    graph: GRAPH.get_or_init(|| ::weft::__private::FlowGraph {
                        name: ::weft::__private::Cow::Borrowed(#flow_name),
                        nodes: ::weft::__private::Cow::Owned(::std::vec![#(#nodes),*]),
                        edges: ::weft::__private::Cow::Borrowed(EDGES),
                    }),
                })
            }

            /// Runs the flow with a [`RunConfig`](::weft::RunConfig) (run id, option overrides,
            /// event sinks).
            #[allow(clippy::all, unused_braces, unreachable_code)]
            #vis async fn run_with(#config: ::weft::RunConfig, #(#param_idents: #param_types),*) -> ::weft::FlowRun<#ret_ty> {
                // Shorter paths in the code of every statement (a large flow's source is mostly paths).
                use ::weft::__private as __weft;
                let #config = #config.with_params(::std::vec![#((
                    #param_names,
                    {
                        #[allow(unused_imports)]
                        use ::weft::__private::{ParamFallback as _, ParamViaDisplay as _};
                        (&&::weft::__private::ParamText(&#param_idents)).weft_text()
                    }
                )),*]);
                let #config = if #config.records_history() {
                    #[allow(unused_imports)]
                    use ::weft::__private::{ParamJsonFallback as _, ParamJsonViaDisplay as _, ParamJsonViaSerde as _};
                    let json = ::weft::__private::params_json(::std::vec![#((
                        #param_names,
                        (&&&::weft::__private::ParamJson(&#param_idents)).weft_json()
                    )),*]);
                    #config.with_params_json(json)
                } else {
                    #config
                };
                ::weft::__private::run_flow(Self::definition(), #config, #failure, move |#cx_arc| async move {
                    let #cx: &::weft::__private::FlowCtx = &#cx_arc;
                    #(#rebind_params)*
                    #(#items)*
                    #handles
                    #clone_checks
                    #(#slots)*
                    let #stop = ::weft::__private::BodyStop::new();
                    let #set = ::weft::__private::NodeSet::new();
                    ::weft::__private::drive_flow::<#ret_ty>(&#set, &#stop, async {
                        #seq
                        #tail
                    })
                    .await
                })
                .await
            }
        }

        impl ::weft::__private::Task for #fn_name {
            const OPTIONS: ::weft::__private::TaskOptions = ::weft::__private::TaskOptions::named(#flow_name);
            const KIND: ::weft::__private::NodeKind = ::weft::__private::NodeKind::Flow;
            type Output = #out_ty;
        }

        impl ::weft::FlowFn for #fn_name {
            type Return = #ret_ty;
            fn def() -> &'static ::weft::FlowDef {
                Self::definition()
            }
            fn value(r: #ret_ty) -> ::core::option::Option<#out_ty> {
                #value(r)
            }
        }

        #(#attrs)*
        #[allow(clippy::all)]
        #vis fn #fn_name(#(#param_idents: #param_types),*) -> ::weft::FlowCall<#fn_name> {
            ::weft::FlowCall::__new(move |__weft_config| {
                ::weft::__private::Box::pin(#fn_name::run_with(__weft_config, #(#param_idents),*))
            })
        }
    }
}

/// The driver's options array and handle tuples (see [`Places`]): a handle per task node,
/// `Owned<()>` when nobody reads the value.
fn handle_locals(m: &FlowModel, places: &Places) -> TokenStream {
    let tasks: Vec<(usize, &TaskStmt)> = m
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &n.stmt {
            NodeStmt::Task(t) => Some((i, t)),
            NodeStmt::Glue(_) => None,
        })
        .collect();
    if tasks.is_empty() {
        return TokenStream::new();
    }
    let all = hidden("__o");
    let n = tasks.len();
    let opts = tasks.iter().map(|(_, t)| task_options(t));
    let mut out = quote! {
        let #all: [&'static __weft::TaskOptions; #n] = [#(#opts),*];
    };
    for (c, chunk) in tasks.chunks(HANDLES_PER_LOCAL).enumerate() {
        let local = format_ident!("__hc{}", c, span = Span::mixed_site());
        let handles = chunk.iter().map(|(i, t)| {
            let o = places.opts(*i);
            let name = quote!(#o.name);
            let (kind, readers) = match t.binding.map(|b| &m.bindings[b]) {
                Some(b) if b.shared() => (quote!(Shared), b.handle_readers.len() as u32),
                Some(b) if b.owned_readers() > 0 => (quote!(Owned), b.owned_readers()),
                _ => return quote!(__weft::Owned::<()>::new(#name, 0)),
            };
            if t.is_map {
                return quote!(__weft::#kind::new(#name, #readers));
            }
            // Typed by the producer: rustc then has nothing left to infer about the handle
            // when it checks the statements after this one (typing it is half the time of the
            // type check of a large flow).
            let (func, n) = callee(t);
            let args = args_tuple(n);
            let of = Ident::new(
                if t.checked { "value_type" } else { "full_type" },
                func.span(),
            );
            // All at the function's name: for a plain function, the one error there says it all.
            quote_spanned!(func.span()=>
                __weft::#kind::typed(__weft::TaskFn::<#args>::#of(&#func), #name, #readers))
        });
        out.extend(quote!(let #local = (#(#handles,)*);));
    }
    out
}

/// Creates the future of task node `i` and starts it.
#[allow(clippy::too_many_arguments)]
fn node_creation(
    m: &FlowModel,
    places: &Places,
    i: usize,
    t: &TaskStmt,
    cx: &Ident,
    set: &Ident,
    put_done: &mut BTreeSet<usize>,
    body: &mut TokenStream,
) -> TokenStream {
    let me = handle(i);
    let node = i as u32;
    let mut prelude = TokenStream::new(); // outside the future: slot puts, borrows, handle refs
    let mut waits = TokenStream::new(); // inside: await the inputs
    let mut upstream = Vec::new();
    let mut missing_names = Vec::new();
    let mut locals = TokenStream::new();
    let mut guards = Vec::new(); // held until the node ends, however it ends
    let mut deref = TokenStream::new(); // inside, after the missing check: `Arc<T>` -> `&T`
    let mut borrowed: BTreeSet<String> = BTreeSet::new();
    let mut refs: BTreeSet<usize> = BTreeSet::new();
    refs.insert(i);

    // Arguments that read no handle are evaluated now, in written order, like any Rust call;
    // the others inside the node once their handles deliver.
    let handle_names: BTreeSet<String> = t
        .inputs
        .iter()
        .filter(|i| i.via_handle)
        .map(|i| m.bindings[i.binding].name.to_string())
        .collect();
    let mut call = match &t.call {
        Expr::Call(c) => c.clone(),
        _ => unreachable!("task statements hold calls"),
    };
    let mut deferred_idents: BTreeSet<String> = BTreeSet::new();
    let mut eager: Vec<(usize, Expr)> = Vec::new();
    for (k, arg) in call.args.iter().enumerate() {
        let mut ids = Vec::new();
        super::analyze::idents_in(quote!(#arg), &mut ids);
        if ids.iter().any(|id| handle_names.contains(&id.to_string())) {
            deferred_idents.extend(ids.iter().map(|i| i.to_string()));
        } else {
            eager.push((k, arg.clone()));
        }
    }
    let mut slotted: BTreeSet<String> = BTreeSet::new();
    for input in &t.inputs {
        let b = &m.bindings[input.binding];
        let name = &b.name;
        if input.via_handle {
            let BindingKind::Task { stmt: p, .. } = b.kind else {
                continue;
            };
            refs.insert(p);
            let h = handle(p);
            let c = clone_fn(input.binding);
            let read = match (b.shared(), input.mode) {
                (true, Mode::Borrow) => quote!(get()),
                (true, Mode::Own) => quote!(get_cloned(#c)),
                (false, _) if b.owned_readers() >= 2 => quote!(take_or_clone(#c)),
                (false, _) => quote!(take()),
            };
            if b.shared() {
                guards.push(quote!(#h.reader()));
                if input.mode == Mode::Borrow {
                    borrowed.insert(name.to_string());
                    deref.extend(quote!(let #name = &*#name;));
                }
            }
            waits.extend(quote!(let #name = #h.#read.await;));
            upstream.push(quote!(#h.upstream()));
            missing_names.push(name.clone());
        } else if input.mode == Mode::Borrow {
            // The borrow must outlive the body's block: a local is parked in a slot first.
            if b.kind != BindingKind::Param {
                slotted.insert(name.to_string());
                let s = slot(input.binding);
                // In the body, not the node's block: the body goes on with the lent `&T`.
                if put_done.insert(input.binding) {
                    body.extend(quote!(let #name = #s.put(#name);));
                }
            }
            if deferred_idents.contains(&name.to_string()) {
                borrowed.insert(name.to_string());
                let r = format_ident!("__b_{}", name, span = Span::mixed_site());
                if b.kind == BindingKind::Param {
                    prelude.extend(quote!(let #r = &#name;));
                } else {
                    prelude.extend(quote!(let #r = #name;));
                }
                locals.extend(quote!(let #name = #r;));
            }
        }
        // Owned locals are moved into the node by the call itself.
    }
    for (k, arg) in eager {
        let mut arg = arg;
        Unref { borrowed: &slotted }.visit_expr_mut(&mut arg);
        let a = format_ident!("__a{}", k, span = Span::mixed_site());
        prelude.extend(quote_spanned!(arg.span()=> let #a = #arg;));
        call.args[k] = syn::parse_quote!(#a);
    }
    for &w in &t.wait_for {
        let BindingKind::Task { stmt: p, .. } = m.bindings[w].kind else {
            continue;
        };
        refs.insert(p);
        let h = handle(p);
        waits.extend(quote!(#h.finished().await;));
        upstream.push(quote!(#h.upstream()));
    }
    for p in &refs {
        let h = handle(*p);
        let place = places.handle(*p);
        prelude.extend(quote!(let #h = &#place;));
    }
    let o = opts_local(i);
    let o_place = places.opts(i);
    prelude.extend(quote!(let #o = #o_place;));

    let never_ran = if t.checked
        || t.is_map
        || t.binding
            .is_none_or(|b| !m.bindings[b].shared() && m.bindings[b].owned_readers() == 0)
    {
        quote!(set_never_ran)
    } else {
        quote!(set_never_ran_result)
    };
    let handle_type = if t.binding.is_some_and(|b| m.bindings[b].shared()) {
        quote!(Shared)
    } else {
        quote!(Owned)
    };
    let missing_check = if missing_names.is_empty() {
        quote!()
    } else {
        let somes = missing_names
            .iter()
            .map(|n| quote!(::core::option::Option::Some(#n)));
        quote! {
            let (#(#somes,)*) = (#(#missing_names,)*) else {
                return #me.#never_ran(__weft::missing_input(#cx, #node, #o, &__up));
            };
        }
    };
    let mut call = Expr::Call(call);
    Unref {
        borrowed: &borrowed,
    }
    .visit_expr_mut(&mut call);
    let reads_value = t.binding.is_some_and(|b| m.bindings[b].is_read());
    let store = match (reads_value, t.checked) {
        (false, _) => quote!(ran_unread),
        (true, true) => quote!(ran),
        (true, false) => quote!(ran_full),
    };
    // Typed only when empty: otherwise the elements say what it holds.
    let up = if upstream.is_empty() {
        quote!(let __up: [(&'static str, &::weft::State); 0] = [];)
    } else {
        quote!(let __up = [#(#upstream),*];)
    };
    let run = if t.is_map {
        let call_span = t.call.span();
        quote_spanned! {call_span=> __weft::run_node(#cx, #node, &__up, #call) }
    } else {
        // Through `TaskFn`, so that a plain function is one error, at its name.
        let Expr::Call(c) = &call else {
            unreachable!("task statements hold calls")
        };
        let (func, args) = (&c.func, c.args.iter());
        let holes = args_tuple(c.args.len());
        let span = func.span();
        quote_spanned! {span=>
            __weft::run_node(#cx, #node, &__up, __weft::TaskFn::<#holes>::call(&#func, (#(#args,)*)))
        }
    };
    quote! {
        {
            #prelude
            let #cx = #cx;
            __weft::spawn_node(
                &#set, #cx, #node, #o, #me,
                __weft::#handle_type::#never_ran,
                (#(#guards,)*),
                __weft::node_body(async move {
                    #waits
                    #up
                    #missing_check
                    #deref
                    #locals
                    #me.#store(#run.await);
                }),
            );
        }
    }
}
