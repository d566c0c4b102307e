//! Parsing `#[task(...)]` and `#[flow(...)]` arguments into typed options. Every problem is
//! collected with its span, so one compile shows them all.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta, Token};

/// Errors gathered while parsing; combined into one `syn::Error` at the end.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    pub fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }
    /// An error covering all of `tokens` (a span of one token would underline only its start).
    pub fn spanned(&mut self, tokens: impl quote::ToTokens, msg: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, msg));
    }
    pub fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// One `key = value` (or bare `key`) argument.
pub struct Arg {
    pub key: String,
    pub key_span: Span,
    pub value: Option<Expr>,
}

/// Splits the attribute arguments into `key = value` pairs.
pub fn parse_args(args: TokenStream, errors: &mut Errors) -> Vec<Arg> {
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(m) => m,
        Err(e) => {
            errors.push(e);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for meta in metas {
        match meta {
            Meta::Path(p) => match p.get_ident() {
                Some(id) => out.push(Arg {
                    key: id.to_string(),
                    key_span: id.span(),
                    value: None,
                }),
                None => errors.at(p.span(), "expected an option name such as `retries`"),
            },
            Meta::NameValue(nv) => match nv.path.get_ident() {
                Some(id) => out.push(Arg {
                    key: id.to_string(),
                    key_span: id.span(),
                    value: Some(nv.value),
                }),
                None => errors.at(nv.path.span(), "expected an option name such as `retries`"),
            },
            Meta::List(l) => errors.at(
                l.path.span(),
                format!(
                    "options are written `name = value`; write `{} = [..]`",
                    quote!(#l.path)
                ),
            ),
        }
    }
    out
}

/// "unknown option `retry`; did you mean `retries`?"
pub fn unknown_option(errors: &mut Errors, arg: &Arg, known: &[&str], what: &str) {
    let mut msg = format!("unknown {what} option `{}`", arg.key);
    if let Some(best) = closest(&arg.key, known) {
        msg.push_str(&format!("; did you mean `{best}`?"));
    }
    msg.push_str(&format!("\nknown options: {}", known.join(", ")));
    errors.at(arg.key_span, msg);
}

fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 2) || c.starts_with(word) || word.starts_with(c))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn value<'a>(arg: &'a Arg, errors: &mut Errors, example: &str) -> Option<&'a Expr> {
    if arg.value.is_none() {
        errors.at(
            arg.key_span,
            format!("`{}` needs a value: `{} = {example}`", arg.key, arg.key),
        );
    }
    arg.value.as_ref()
}

fn lit(e: &Expr) -> Option<&Lit> {
    match e {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(g) => lit(&g.expr),
        _ => None,
    }
}

pub fn string(arg: &Arg, errors: &mut Errors) -> Option<(String, Span)> {
    let e = value(arg, errors, "\"...\"")?;
    match lit(e) {
        Some(Lit::Str(s)) => Some((s.value(), s.span())),
        _ => {
            errors.at(e.span(), format!("`{}` takes a string literal", arg.key));
            None
        }
    }
}

pub fn non_empty_string(arg: &Arg, errors: &mut Errors) -> Option<String> {
    let (s, span) = string(arg, errors)?;
    if s.trim().is_empty() {
        errors.at(span, format!("`{}` must not be empty", arg.key));
        return None;
    }
    Some(s)
}

pub fn int(arg: &Arg, errors: &mut Errors, min: u64, max: u64) -> Option<u64> {
    let e = value(arg, errors, &min.max(1).to_string())?;
    match lit(e) {
        Some(Lit::Int(i)) => match i.base10_parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                errors.at(
                    i.span(),
                    format!("`{}` must be a whole number from {min} to {max}", arg.key),
                );
                None
            }
        },
        _ => {
            errors.at(e.span(), format!("`{}` takes a whole number", arg.key));
            None
        }
    }
}

pub fn float(arg: &Arg, errors: &mut Errors, min: f64, max: f64) -> Option<f64> {
    let e = value(arg, errors, &format!("{min:.1}"))?;
    let (v, span) = match lit(e) {
        Some(Lit::Float(f)) => (f.base10_parse::<f64>().ok(), f.span()),
        Some(Lit::Int(i)) => (i.base10_parse::<f64>().ok(), i.span()),
        _ => {
            errors.at(e.span(), format!("`{}` takes a number", arg.key));
            return None;
        }
    };
    match v {
        Some(v) if v >= min && v <= max => Some(v),
        _ => {
            let upper = if max.is_finite() {
                format!("{max:.1}")
            } else {
                "any larger number".to_owned()
            };
            errors.at(
                span,
                format!("`{}` must be between {min:.1} and {upper}", arg.key),
            );
            None
        }
    }
}

pub fn boolean(arg: &Arg, errors: &mut Errors) -> Option<bool> {
    let Some(e) = &arg.value else {
        return Some(true); // a bare flag
    };
    match lit(e) {
        Some(Lit::Bool(b)) => Some(b.value),
        _ => {
            errors.at(e.span(), format!("`{}` takes `true` or `false`", arg.key));
            None
        }
    }
}

/// A humantime duration such as "500ms", "2s", "1d", as nanoseconds.
pub fn duration(arg: &Arg, errors: &mut Errors) -> Option<u64> {
    let (s, span) = string(arg, errors)?;
    match humantime::parse_duration(&s) {
        Ok(d) => match u64::try_from(d.as_nanos()) {
            Ok(n) => Some(n),
            Err(_) => {
                errors.at(span, format!("`{}` = \"{s}\" is too long", arg.key));
                None
            }
        },
        Err(e) => {
            errors.at(
                span,
                format!(
                    "`{}` = \"{s}\" is not a duration ({e}); write e.g. \"500ms\", \"2s\", \"5m\" or \"1d\"",
                    arg.key
                ),
            );
            None
        }
    }
}

/// `[f, g]`: paths of state handler functions.
pub fn paths(arg: &Arg, errors: &mut Errors) -> Vec<syn::Path> {
    let Some(e) = value(arg, errors, "[my_handler]") else {
        return Vec::new();
    };
    let elems: Vec<&Expr> = match e {
        Expr::Array(a) => a.elems.iter().collect(),
        Expr::Path(_) => vec![e],
        _ => {
            errors.at(
                e.span(),
                format!("`{}` takes a list of functions: `[f, g]`", arg.key),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for el in elems {
        match el {
            Expr::Path(p) if p.qself.is_none() => out.push(p.path.clone()),
            _ => errors.at(el.span(), "expected the path of a function"),
        }
    }
    out
}

/// `["a", "b"]`: string literals.
pub fn strings(arg: &Arg, errors: &mut Errors) -> Vec<String> {
    let Some(e) = value(arg, errors, "[\"db\"]") else {
        return Vec::new();
    };
    let Expr::Array(a) = e else {
        errors.at(
            e.span(),
            format!("`{}` takes a list of strings: `[\"db\"]`", arg.key),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for el in &a.elems {
        match lit(el) {
            Some(Lit::Str(s)) => out.push(s.value()),
            _ => errors.at(el.span(), "expected a string literal"),
        }
    }
    out
}

/// `Duration::from_nanos(n)` through the hidden runtime path.
pub fn duration_tokens(nanos: u64) -> TokenStream {
    quote!(::weft::__private::Duration::from_nanos(#nanos))
}

/// `&[f as StateHandler, ...]`, each cast spanned at its path so a wrong signature points there.
pub fn handler_tokens(handlers: &[syn::Path]) -> TokenStream {
    let items = handlers
        .iter()
        .map(|h| quote_spanned!(h.span()=> #h as ::weft::StateHandler));
    quote!(&[#(#items),*])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_pick_the_nearest_option() {
        let known = ["retries", "retry_delay", "timeout"];
        assert_eq!(closest("retry", &known), Some("retries"));
        assert_eq!(closest("timout", &known), Some("timeout"));
        assert_eq!(closest("zzzzzzzz", &known), None);
    }

    #[test]
    fn every_bad_argument_is_reported() {
        let mut errors = Errors::default();
        let args = parse_args(quote!(retries = "x", timeout = 5), &mut errors);
        assert_eq!(args.len(), 2);
        assert!(int(&args[0], &mut errors, 0, 10).is_none());
        assert!(duration(&args[1], &mut errors).is_none());
        let msgs: Vec<String> = errors
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[1].contains("takes a string literal"));
    }

    #[test]
    fn durations_parse_humantime() {
        let mut errors = Errors::default();
        let args = parse_args(quote!(retry_delay = "1d", timeout = "2x"), &mut errors);
        assert_eq!(duration(&args[0], &mut errors), Some(86_400_000_000_000));
        assert_eq!(duration(&args[1], &mut errors), None);
        assert!(errors
            .finish()
            .unwrap_err()
            .to_string()
            .contains("not a duration"));
    }
}
