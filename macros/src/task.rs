//! `#[task]`: parse the options and the function, check them, then generate the companion type
//! (options, body, mapping) and the call wrapper.

use crate::options::{self, Arg, Errors};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{FnArg, GenericParam, ItemFn, Lifetime, Pat, ReturnType, Type};

const KNOWN: &[&str] = &[
    "name",
    "retries",
    "retry_delay",
    "retry_backoff",
    "retry_jitter",
    "timeout",
    "state_handlers",
    "trigger",
    "tags",
    "cache_for",
    "cache_version",
    "cache_key",
    "persist",
    "target",
];

/// Parsed and validated `#[task(...)]` options.
#[derive(Default)]
struct TaskOpts {
    name: Option<String>,
    retries: u64,
    retry_delay: u64,
    retry_backoff: Option<f64>,
    retry_jitter: f64,
    timeout: Option<u64>,
    state_handlers: Vec<syn::Path>,
    trigger: Option<syn::Ident>,
    tags: Vec<String>,
    cache_for: Option<u64>,
    cache_version: Option<String>,
    cache_key: Option<syn::Path>,
    persist: bool,
    target: Option<String>,
}

fn parse_opts(args: TokenStream, errors: &mut Errors) -> TaskOpts {
    let mut o = TaskOpts::default();
    let mut seen: Vec<String> = Vec::new();
    let mut seen_spans: Vec<(String, Span)> = Vec::new();
    for arg in options::parse_args(args, errors) {
        if seen.contains(&arg.key) {
            errors.at(arg.key_span, format!("`{}` is given twice", arg.key));
            continue;
        }
        seen.push(arg.key.clone());
        seen_spans.push((arg.key.clone(), arg.key_span));
        match arg.key.as_str() {
            "name" => o.name = options::non_empty_string(&arg, errors),
            "retries" => o.retries = options::int(&arg, errors, 0, 1_000_000).unwrap_or(0),
            "retry_delay" => o.retry_delay = options::duration(&arg, errors).unwrap_or(0),
            "retry_backoff" => o.retry_backoff = options::float(&arg, errors, 1.0, f64::INFINITY),
            "retry_jitter" => {
                o.retry_jitter = options::float(&arg, errors, 0.0, 1.0).unwrap_or(0.0)
            }
            "timeout" => {
                o.timeout = options::duration(&arg, errors);
                if o.timeout == Some(0) {
                    errors.at(arg.value.span(), "`timeout` must be longer than zero");
                }
            }
            "state_handlers" => o.state_handlers = options::paths(&arg, errors),
            "trigger" => o.trigger = trigger(&arg, errors),
            "tags" => o.tags = options::strings(&arg, errors),
            "cache_for" => {
                o.cache_for = options::duration(&arg, errors);
                if o.cache_for == Some(0) {
                    errors.at(arg.value.span(), "`cache_for` must be longer than zero");
                }
            }
            "cache_version" => o.cache_version = options::string(&arg, errors).map(|(s, _)| s),
            "cache_key" => {
                let mut paths = options::paths(&arg, errors);
                if paths.len() == 1 {
                    o.cache_key = paths.pop();
                } else if !paths.is_empty() {
                    errors.at(
                        arg.key_span,
                        "`cache_key` takes one function: `cache_key = my_key`",
                    );
                }
            }
            "persist" => o.persist = options::boolean(&arg, errors).unwrap_or(false),
            "target" => {
                if let Some((t, span)) = options::string(&arg, errors) {
                    match check_target(&t) {
                        Ok(()) => o.target = Some(t),
                        Err(why) => errors.at(span, format!("`target` = {t:?}: {why}")),
                    }
                }
            }
            _ => options::unknown_option(errors, &arg, KNOWN, "task"),
        }
    }
    if o.cache_for.is_none() {
        for (key, given) in [
            ("cache_version", o.cache_version.is_some()),
            ("cache_key", o.cache_key.is_some()),
        ] {
            if given {
                let span = seen_spans.iter().find(|(k, _)| k == key).map(|(_, s)| *s);
                errors.at(
                    span.unwrap_or_else(Span::call_site),
                    format!("`{key}` shapes the cache, which is off: add `cache_for = \"1d\"` (how long a result stays valid)"),
                );
            }
        }
    }
    o
}

/// Checks a target template's syntax: `{name}` placeholders (identifiers; flow parameters are
/// only known at run time) and `{date:<strftime>}` formats.
fn check_target(t: &str) -> Result<(), String> {
    if t.trim().is_empty() {
        return Err("a target is a non-empty path template".into());
    }
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err("a `{` is never closed".into());
        };
        let inner = &rest[open + 1..open + close];
        let (name, format) = match inner.split_once(':') {
            Some((n, f)) => (n, Some(f)),
            None => (inner, None),
        };
        let ident = name.starts_with(|c: char| c.is_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !ident {
            return Err(format!(
                "`{{{inner}}}` is not a placeholder: use {{date}}, {{date:%Y-%m-%d}}, {{task_name}}, {{flow_name}}, {{flow_run_id}} or a flow parameter's name"
            ));
        }
        match (name, format) {
            ("date", Some(f)) => check_strftime(f)?,
            (_, Some(_)) => return Err(format!("only `date` takes a format, not `{name}`")),
            _ => {}
        }
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err("a `}` has no matching `{`".into());
    }
    Ok(())
}

fn check_strftime(f: &str) -> Result<(), String> {
    const SPECS: &str = "aAbBcCdDeFgGhHIjklmMnpPrRsStTuUVwWxXyYzZ%+";
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        let mut spec = chars.next();
        while spec
            .is_some_and(|s| "-_0^#".contains(s) || s.is_ascii_digit() || s == '.' || s == ':')
        {
            spec = chars.next();
        }
        match spec {
            Some(s) if SPECS.contains(s) || s == 'f' => {}
            Some(s) => return Err(format!("`%{s}` is not a strftime conversion")),
            None => return Err("the date format ends with a lone `%`".into()),
        }
    }
    Ok(())
}

const TRIGGERS: &[(&str, &str)] = &[
    ("all_successful", "AllSuccessful"),
    ("all_finished", "AllFinished"),
    ("any_failed", "AnyFailed"),
    ("always", "Always"),
];

fn trigger(arg: &Arg, errors: &mut Errors) -> Option<syn::Ident> {
    let names: Vec<&str> = TRIGGERS.iter().map(|(n, _)| *n).collect();
    let Some(syn::Expr::Path(p)) = &arg.value else {
        errors.at(
            arg.value.as_ref().map_or(arg.key_span, |v| v.span()),
            format!("`trigger` takes one of: {}", names.join(", ")),
        );
        return None;
    };
    let id = p.path.get_ident()?;
    match TRIGGERS.iter().find(|(n, _)| id == n) {
        Some((_, variant)) => Some(syn::Ident::new(variant, id.span())),
        None => {
            errors.at(
                id.span(),
                format!("unknown trigger `{id}`; use one of: {}", names.join(", ")),
            );
            None
        }
    }
}

/// Replaces elided lifetimes (`&T`, `'_`) in parameter types by the call's lifetime `'w`.
struct NameElided<'a> {
    lifetime: &'a Lifetime,
    found: bool,
}

impl VisitMut for NameElided<'_> {
    fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
        if r.lifetime.is_none() {
            r.lifetime = Some(self.lifetime.clone());
        }
        self.found = true;
        syn::visit_mut::visit_type_reference_mut(self, r);
    }
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if l.ident == "_" {
            *l = self.lifetime.clone();
        }
        self.found = true;
    }
    fn visit_type_impl_trait_mut(&mut self, _: &mut syn::TypeImplTrait) {}
}

fn has_impl_trait(ty: &Type) -> Option<Span> {
    struct Find(Option<Span>);
    impl<'ast> syn::visit::Visit<'ast> for Find {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.0.get_or_insert(t.span());
        }
    }
    let mut f = Find(None);
    syn::visit::visit_type(&mut f, ty);
    f.0
}

fn borrows(ty: &Type) -> bool {
    let mut probe = NameElided {
        lifetime: &Lifetime::new("'w", Span::call_site()),
        found: false,
    };
    let mut ty = ty.clone();
    probe.visit_type_mut(&mut ty);
    probe.found
}

/// The `T` of a body returning `Result<T, E>`: any type whose name ends in `Result` and has
/// type arguments (`io::Result<T>`, `anyhow::Result<T>`, an `AppResult<T>` alias); a macro sees
/// names, not types, so another alias of `Result` must follow that naming to be fallible.
pub(crate) fn result_ok_type(ret: &Type) -> Option<Type> {
    let Type::Path(p) = ret else { return None };
    let last = p.path.segments.last()?;
    if !last.ident.to_string().ends_with("Result") {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}

pub fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let opts = parse_opts(args, &mut errors);
    let func: ItemFn = match syn::parse2(item) {
        Ok(f) => f,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                "#[task] goes on a function: `fn name(..) -> T` or `async fn name(..) -> T`",
            ));
            return Err(errors.finish().unwrap_err());
        }
    };
    let sig = &func.sig;
    if let Some(c) = &sig.constness {
        errors.at(c.span(), "a task can't be a `const fn`");
    }
    if let syn::Safety::Unsafe(u) = &sig.safety {
        errors.at(
            u.span(),
            "a task can't be an `unsafe fn`: wrap the unsafe code in a safe function",
        );
    }
    if let Some(a) = &sig.abi {
        errors.at(a.span(), "a task can't have an `extern` ABI");
    }
    if let Some(v) = &sig.variadic {
        errors.at(v.span(), "a task can't be variadic");
    }
    for p in &sig.generics.params {
        match p {
            GenericParam::Const(c) => {
                errors.at(c.span(), "a task can't have const generic parameters")
            }
            GenericParam::Type(t) => errors.at(
                t.span(),
                "a task can't be generic over types: its output type is part of its definition; \
                 write a task per concrete type (they can share a generic helper function)",
            ),
            GenericParam::Lifetime(_) => {}
        }
    }
    let is_async = sig.asyncness.is_some();
    let fn_name = &sig.ident;
    let task_name = opts.name.clone().unwrap_or_else(|| fn_name.to_string());
    let w = Lifetime::new("'w", Span::call_site());

    // Parameters: their names in the wrapper, their types with elided lifetimes named `'w`.
    let mut names = Vec::new();
    let mut call_types = Vec::new();
    let mut any_borrow = false;
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => errors.spanned(
                r,
                "#[task] goes on a free function, not on a method taking `self`: make it a free \
                 function and pass the value as a parameter",
            ),
            FnArg::Typed(pt) => {
                if let Some(span) = has_impl_trait(&pt.ty) {
                    errors.at(
                        span,
                        "a task parameter can't be `impl Trait`: use a generic type parameter",
                    );
                }
                let name = match &*pt.pat {
                    Pat::Ident(id) if id.subpat.is_none() => {
                        syn::Ident::new(&id.ident.to_string(), id.ident.span())
                    }
                    _ => format_ident!("__arg{}", i),
                };
                names.push(name);
                let borrowed = borrows(&pt.ty);
                if borrowed && !is_async {
                    errors.spanned(
                        &pt.ty,
                        format!(
                            "sync task `{fn_name}` runs on a thread of its own, so its inputs must be \
                             owned: parameter `{}` borrows; take `Arc<..>` or an owned value, or make \
                             the task `async`",
                            pt.pat.to_token_stream()
                        ),
                    );
                }
                let mut ty = (*pt.ty).clone();
                if borrowed {
                    any_borrow = true;
                    NameElided {
                        lifetime: &w,
                        found: false,
                    }
                    .visit_type_mut(&mut ty);
                }
                call_types.push(ty);
            }
        }
    }
    let (ret_ty, output_ty, fallible) = match &sig.output {
        ReturnType::Default => (quote!(()), quote!(()), false),
        ReturnType::Type(_, t) => {
            if let Some(span) = has_impl_trait(t) {
                errors.at(
                    span,
                    "a task's return type can't be `impl Trait`: name the type",
                );
            }
            match result_ok_type(t) {
                Some(ok) => (t.to_token_stream(), ok.to_token_stream(), true),
                None => (t.to_token_stream(), t.to_token_stream(), false),
            }
        }
    };
    errors.finish()?;

    let vis = &func.vis;
    let attrs = &func.attrs;
    let cfg_attrs: Vec<_> = attrs.iter().filter(|a| a.path().is_ident("cfg")).collect();
    let body_block = &func.block;
    let (_, _, where_clause) = sig.generics.split_for_impl();
    let user_params = &sig.generics.params;
    let body_inputs = &sig.inputs;
    let asyncness = &sig.asyncness;
    // Generics of the wrapper and of the TaskBody impl: the user's, plus `'w` when borrowing
    // (every user lifetime outlives the call).
    let mut impl_params: Vec<TokenStream> = Vec::new();
    if any_borrow {
        let bounds: Vec<_> = sig.generics.lifetimes().map(|l| &l.lifetime).collect();
        impl_params.push(quote!(#w));
        for p in user_params {
            match p {
                GenericParam::Lifetime(l) => {
                    let lt = &l.lifetime;
                    let lb = &l.bounds;
                    let colon = if lb.is_empty() {
                        quote!(:)
                    } else {
                        quote!(: #lb +)
                    };
                    impl_params.push(quote!(#lt #colon #w));
                }
                other => impl_params.push(other.to_token_stream()),
            }
        }
        let _ = bounds;
    } else {
        impl_params.extend(user_params.iter().map(|p| p.to_token_stream()));
    }
    let call_lt = if any_borrow {
        quote!(#w)
    } else {
        quote!('static)
    };
    let args_ty = quote!((#(#call_types,)*));

    let body_call = quote!(#fn_name::body);
    let idx = (0..names.len()).map(syn::Index::from);
    let destructure = quote!(let (#(#names,)*) = __args;);
    let convert = |call: TokenStream| {
        if fallible {
            quote!(::weft::__private::from_result(#call))
        } else {
            quote!(::weft::__private::Attempt::Ok(#call))
        }
    };
    let attempt_body = if is_async {
        let done = convert(quote!(#body_call(#(#names),*).await));
        quote!(async move { #destructure #done })
    } else {
        let done = convert(quote!(#body_call(#(#names),*)));
        quote!(::weft::__private::blocking(move || { #destructure #done }))
    };
    let next_args = if opts.retries == 0 {
        quote!(__args.take().expect("a task without retries runs once"))
    } else {
        let clones = call_types
            .iter()
            .zip(idx)
            .map(|(ty, i)| {
                // At the user's type, marked as generated: rustc suggests no edit of it.
                let at = Span::mixed_site().located_at(ty.span());
                let input = quote!(&__a.#i);
                quote_spanned!(at=> { let __weft_input = #input; (<_ as ::weft::__private::RetriedInput>::clone_fn(::weft::__private::type_of(__weft_input)))(__weft_input) })
            });
        quote! {
            if __last {
                __args.take().expect("arguments are kept until the last attempt")
            } else {
                let __a = __args.as_ref().expect("arguments are kept until the last attempt");
                (#(#clones,)*)
            }
        }
    };

    let retries = opts.retries as u32;
    let retry_delay = options::duration_tokens(opts.retry_delay);
    let backoff = opts.retry_backoff.unwrap_or(1.0);
    let jitter = opts.retry_jitter;
    let timeout = match opts.timeout {
        Some(n) => {
            let d = options::duration_tokens(n);
            quote!(::core::option::Option::Some(#d))
        }
        None => quote!(::core::option::Option::None),
    };
    let trigger = opts
        .trigger
        .clone()
        .unwrap_or_else(|| syn::Ident::new("AllSuccessful", Span::call_site()));
    let tags = &opts.tags;
    let handlers = options::handler_tokens(&opts.state_handlers);
    let blocking = !is_async;
    let cache_for = match opts.cache_for {
        Some(n) => {
            let d = options::duration_tokens(n);
            quote!(::core::option::Option::Some(#d))
        }
        None => quote!(::core::option::Option::None),
    };
    let cache_version = opts.cache_version.clone().unwrap_or_default();
    let persist = opts.persist;
    let target = match &opts.target {
        Some(t) => quote!(::core::option::Option::Some(#t)),
        None => quote!(::core::option::Option::None),
    };
    let stores = opts.cache_for.is_some() || opts.persist || opts.target.is_some();
    let output_codec = if stores {
        let span = match &sig.output {
            ReturnType::Type(_, t) => t.span(),
            ReturnType::Default => sig.ident.span(),
        };
        let enc = quote_spanned!(span=> ::weft::__private::encode_output::<#output_ty>(__v));
        let dec = quote_spanned!(span=> ::weft::__private::decode_output::<#output_ty>(__b));
        quote! {
            fn encode_output(__v: &Self::Output) -> ::core::option::Option<::core::result::Result<::std::vec::Vec<u8>, ::std::string::String>> {
                ::core::option::Option::Some(#enc)
            }
            fn decode_output(__b: &[u8]) -> ::core::option::Option<::core::result::Result<Self::Output, ::std::string::String>> {
                ::core::option::Option::Some(#dec)
            }
        }
    } else if output_ty.to_string().contains(['&', '\'']) {
        // A borrowed output is never stored (and would confuse the specialization below).
        quote!()
    } else {
        // Best effort, for flows with `persist` and for resuming runs: serde outputs are
        // stored, others are not (autoref specialization picks the serde path when it applies).
        quote! {
            fn encode_output(__v: &#output_ty) -> ::core::option::Option<::core::result::Result<::std::vec::Vec<u8>, ::std::string::String>> {
                #[allow(unused_imports)]
                use ::weft::__private::{StoreFallback as _, StoreViaSerde as _};
                (&&::weft::__private::Storable(__v)).weft_encode()
            }
            fn decode_output(__b: &[u8]) -> ::core::option::Option<::core::result::Result<#output_ty, ::std::string::String>> {
                #[allow(unused_imports)]
                use ::weft::__private::{RestoreFallback as _, RestoreViaSerde as _};
                (&&::weft::__private::Restorable::<#output_ty>(::core::marker::PhantomData)).weft_decode(__b)
            }
        }
    };
    let cache_inputs = match (&opts.cache_for, &opts.cache_key) {
        (None, _) => quote!(),
        (Some(_), Some(key_fn)) => {
            // The key function gets every input by reference (reference inputs as they are).
            let refs = call_types.iter().enumerate().map(|(i, ty)| {
                let i = syn::Index::from(i);
                if matches!(ty, Type::Reference(_)) {
                    quote!(__a.#i)
                } else {
                    quote!(&__a.#i)
                }
            });
            quote! {
                fn cache_inputs(__a: &#args_ty) -> ::core::option::Option<::core::result::Result<::std::vec::Vec<u8>, ::std::string::String>> {
                    ::core::option::Option::Some(::core::result::Result::Ok(
                        ::std::string::ToString::to_string(&#key_fn(#(#refs),*)).into_bytes(),
                    ))
                }
            }
        }
        (Some(_), None) => {
            let each = call_types.iter().enumerate().map(|(i, ty)| {
                let i = syn::Index::from(i);
                quote_spanned!(ty.span()=> { let __weft_input = &__a.#i; ::weft::__private::cache_input(__weft_input) })
            });
            quote! {
                fn cache_inputs(__a: &#args_ty) -> ::core::option::Option<::core::result::Result<::std::vec::Vec<u8>, ::std::string::String>> {
                    ::core::option::Option::Some(::weft::__private::encode_inputs(&(#(#each,)*)))
                }
            }
        }
    };

    let map_fn = if names.is_empty() {
        quote!()
    } else {
        let (item_ty, to_tuple) = if names.len() == 1 {
            let t = &call_types[0];
            (quote!(#t), quote!(|__x| (__x,)))
        } else {
            (args_ty.clone(), quote!(|__x| __x))
        };
        quote! {
            /// Maps the task over `items`: one task run per element, concurrently, results in
            /// input order. Elements are the task's argument (a tuple for several parameters).
            #vis fn map<#(#impl_params,)* __I>(items: __I) -> ::weft::__private::MapCall<#call_lt, #fn_name, #args_ty>
            where
                __I: ::core::iter::IntoIterator<Item = #item_ty>,
                #where_clause
            {
                ::weft::__private::MapCall::new(items.into_iter().map(#to_tuple).collect())
            }
        }
    };
    let where_preds = where_clause.map(|w| &w.predicates);
    let doc = format!("Companion of the task `{task_name}`: its options, its undecorated body (`{fn_name}::body`) and its mapped form (`{fn_name}::map`).");

    Ok(quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #(#cfg_attrs)*
        #vis struct #fn_name {}

        #(#cfg_attrs)*
        impl #fn_name {
            /// The undecorated body, for unit tests: runs it directly, without orchestration.
            #[allow(clippy::too_many_arguments)]
            #vis #asyncness fn body<#user_params>(#body_inputs) -> #ret_ty #where_clause #body_block

            #map_fn
        }

        #(#cfg_attrs)*
        impl ::weft::__private::Task for #fn_name {
            const OPTIONS: ::weft::__private::TaskOptions = ::weft::__private::TaskOptions {
                name: #task_name,
                retries: #retries,
                retry_delay: #retry_delay,
                retry_backoff: #backoff,
                retry_jitter: #jitter,
                timeout: #timeout,
                trigger: ::weft::__private::Trigger::#trigger,
                tags: &[#(#tags),*],
                state_handlers: #handlers,
                blocking: #blocking,
                cache_for: #cache_for,
                cache_version: #cache_version,
                persist: #persist,
                target: #target,
            };
            type Output = #output_ty;
            #output_codec
        }

        #(#cfg_attrs)*
        #[allow(clippy::all)]
        impl<#(#impl_params),*> ::weft::__private::TaskBody<#args_ty> for #fn_name
        where #where_preds
        {
            fn next_args(__args: &mut ::core::option::Option<#args_ty>, __last: bool) -> #args_ty {
                let _ = __last;
                #next_args
            }
            fn attempt<'__weft_a>(__args: #args_ty) -> ::weft::__private::BoxFuture<'__weft_a, ::weft::__private::Attempt<#output_ty>>
            where
                #args_ty: '__weft_a,
            {
                ::weft::__private::Box::pin(#attempt_body)
            }
            #cache_inputs
        }

        #(#attrs)*
        #[allow(clippy::all)]
        #vis fn #fn_name<#(#impl_params),*>(#(#names: #call_types),*) -> ::weft::__private::TaskCall<#call_lt, #fn_name, #args_ty> #where_clause {
            ::weft::__private::TaskCall::new((#(#names,)*))
        }
    })
}
