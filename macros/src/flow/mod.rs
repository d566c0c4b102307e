//! `#[flow]`: parse the options and the function, analyze the body into a graph, then generate
//! the graph, the definition and the driver.

pub mod analyze;
mod codegen;

use crate::options::{self, Errors};
use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat};

const KNOWN: &[&str] = &[
    "name",
    "state_handlers",
    "fail_fast",
    "max_concurrency",
    "persist",
    "version",
];

/// Parsed and validated `#[flow(...)]` options.
#[derive(Default)]
pub struct FlowOpts {
    pub name: Option<String>,
    pub state_handlers: Vec<syn::Path>,
    pub fail_fast: bool,
    pub max_concurrency: Option<u64>,
    pub persist: bool,
    pub version: Option<String>,
}

fn parse_opts(args: TokenStream, errors: &mut Errors) -> FlowOpts {
    let mut o = FlowOpts::default();
    let mut seen: Vec<String> = Vec::new();
    for arg in options::parse_args(args, errors) {
        if seen.contains(&arg.key) {
            errors.at(arg.key_span, format!("`{}` is given twice", arg.key));
            continue;
        }
        seen.push(arg.key.clone());
        match arg.key.as_str() {
            "name" => o.name = options::non_empty_string(&arg, errors),
            "state_handlers" => o.state_handlers = options::paths(&arg, errors),
            "fail_fast" => o.fail_fast = options::boolean(&arg, errors).unwrap_or(false),
            "max_concurrency" => o.max_concurrency = options::int(&arg, errors, 1, u32::MAX as u64),
            "persist" => o.persist = options::boolean(&arg, errors).unwrap_or(false),
            "version" => o.version = options::non_empty_string(&arg, errors),
            _ => options::unknown_option(errors, &arg, KNOWN, "flow"),
        }
    }
    o
}

/// Does a type borrow (a reference or a lifetime)?
fn borrows(ty: &syn::Type) -> bool {
    let s = ty.to_token_stream().to_string();
    s.contains('&') || s.contains('\'')
}

pub struct FlowParam {
    pub ident: syn::Ident,
    pub mutable: bool,
    pub ty: syn::Type,
}

pub fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let opts = parse_opts(args, &mut errors);
    let func: ItemFn = match syn::parse2(item) {
        Ok(f) => f,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                "#[flow] goes on an `async fn` whose body calls tasks",
            ));
            return Err(errors.finish().unwrap_err());
        }
    };
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span(),
            "#[flow] needs an `async fn`: a flow run is awaited (`my_flow(..).await`); write `async fn`",
        );
    }
    if !sig.generics.params.is_empty() {
        errors.at(
            sig.generics.span(),
            "a flow can't be generic: give its parameters concrete types",
        );
    }
    if let syn::Safety::Unsafe(u) = &sig.safety {
        errors.at(u.span(), "a flow can't be an `unsafe fn`");
    }
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.at(
                r.span(),
                "#[flow] goes on a free function, not a method taking `self`",
            ),
            FnArg::Typed(pt) => {
                match &*pt.pat {
                    Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() => {
                        params.push(FlowParam {
                            ident: pi.ident.clone(),
                            mutable: pi.mutability.is_some(),
                            ty: (*pt.ty).clone(),
                        })
                    }
                    other => errors.at(
                        other.span(),
                        "a flow parameter is a plain name: `size: u32`",
                    ),
                }
                if borrows(&pt.ty) {
                    errors.spanned(
                        &pt.ty,
                        "flow parameters must be owned (no references or lifetimes): a flow run is \
                         spawned on a tokio worker; pass `T` or `Arc<T>` and let tasks borrow it with `&x`",
                    );
                }
            }
        }
    }
    if let syn::ReturnType::Type(_, t) = &sig.output {
        if matches!(**t, syn::Type::ImplTrait(_)) {
            errors.at(
                t.span(),
                "a flow's return type can't be `impl Trait`: name the type",
            );
        }
    }
    let idents: Vec<syn::Ident> = params.iter().map(|p| p.ident.clone()).collect();
    let model = match analyze::analyze(&idents, func.block.stmts.clone()) {
        Ok(m) => Some(m),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    errors.finish()?;
    Ok(codegen::generate(
        &func,
        &opts,
        &params,
        &model.expect("no errors, so a model"),
    ))
}
