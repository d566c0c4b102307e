//! Statements of a flow body → nodes, bindings and edges, with every error spanned.
//!
//! Plain functions over syn trees, so unit tests call them without a compiler.
//!
//! The model: the body is ordinary sequential Rust ("glue") in which each top-level statement
//! calling a task is lifted out as a node. A task's output is a *handle* until glue first reads
//! it; from then on it is a glue local like any other. A task node starts as early as the glue
//! locals it reads allow, and waits for the handles it reads.

use proc_macro2::{Spacing, Span, TokenStream, TokenTree};
use quote::ToTokens;
use std::collections::BTreeSet;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, Ident, Pat, Stmt, Token};

/// How a node reads a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `&x`, `x.method()`: a reference is enough.
    Borrow,
    /// Anything else: the node takes the value.
    Own,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingKind {
    Param,
    Glue { stmt: usize },
    Task { stmt: usize, checked: bool },
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub name: Ident,
    /// `let mut x = task()?;`: the body may mutate it once it reads it.
    pub mutable: bool,
    pub kind: BindingKind,
    /// Task nodes that read this output while it is still a handle, in order.
    pub handle_readers: Vec<(usize, Mode)>,
    /// The glue statement that first reads this task output.
    pub glue_reads_at: Option<usize>,
    /// Task statements whose nodes borrow this local (a param or glue local).
    pub local_borrowers: Vec<usize>,
    /// Task nodes whose outputs flow into this binding.
    pub provenance: BTreeSet<usize>,
}

impl Binding {
    pub fn is_task(&self) -> bool {
        matches!(self.kind, BindingKind::Task { .. })
    }
    /// Some task node borrows the output: readers share it, owners clone it, and glue takes it
    /// once they all finished.
    pub fn shared(&self) -> bool {
        self.handle_readers.iter().any(|(_, m)| *m == Mode::Borrow)
    }
    /// Readers that take the output by value (glue counts once), for an unshared output.
    pub fn owned_readers(&self) -> u32 {
        let tasks = self
            .handle_readers
            .iter()
            .filter(|(_, m)| *m == Mode::Own)
            .count() as u32;
        tasks + u32::from(self.glue_reads_at.is_some())
    }
    /// Whether anyone reads the output at all.
    pub fn is_read(&self) -> bool {
        !self.handle_readers.is_empty() || self.glue_reads_at.is_some()
    }
}

pub type BindingId = usize;

#[derive(Debug)]
pub struct Input {
    pub binding: BindingId,
    /// Where the call first mentions it.
    pub span: Span,
    pub mode: Mode,
    /// Read through the handle (true) or as a local of the body (false).
    pub via_handle: bool,
}

#[derive(Debug)]
pub struct TaskStmt {
    pub call: Expr,
    /// The task's companion type (the called path without `::map`).
    pub companion: syn::Path,
    pub is_map: bool,
    pub checked: bool,
    pub binding: Option<BindingId>,
    pub inputs: Vec<Input>,
    pub wait_for: Vec<BindingId>,
    /// The node is created after this glue statement (None: at the start).
    pub start_after: Option<usize>,
}

#[derive(Debug)]
pub struct GlueStmt {
    pub stmt: Stmt,
    /// Task outputs this statement reads first, awaited before it runs.
    pub resolves: Vec<BindingId>,
    pub is_tail: bool,
}

#[derive(Debug)]
pub enum NodeStmt {
    Task(TaskStmt),
    Glue(GlueStmt),
}

#[derive(Debug)]
pub struct Node {
    pub stmt: NodeStmt,
    pub text: String,
    pub line: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeKind {
    Data,
    Order,
    Glue,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub kind: EdgeKind,
    pub binding: String,
}

#[derive(Debug)]
pub struct FlowModel {
    pub items: Vec<Stmt>,
    pub nodes: Vec<Node>,
    pub bindings: Vec<Binding>,
    pub edges: Vec<Edge>,
}

impl FlowModel {
    #[cfg(test)]
    pub fn task(&self, i: usize) -> Option<&TaskStmt> {
        match &self.nodes[i].stmt {
            NodeStmt::Task(t) => Some(t),
            NodeStmt::Glue(_) => None,
        }
    }
}

/// A call `f(..)` (or `f(..)?`) whose callee is a lowercase path: a task call by the flow rule.
pub fn task_call(expr: &Expr) -> Option<(&syn::ExprCall, bool)> {
    let (call, checked) = match expr {
        Expr::Try(t) => match &*t.expr {
            Expr::Call(c) => (c, true),
            _ => return None,
        },
        Expr::Call(c) => (c, false),
        _ => return None,
    };
    let Expr::Path(p) = &*call.func else {
        return None;
    };
    if p.qself.is_some() {
        return None;
    }
    // Modules and functions are snake_case; types and enum variants (`Vec::new`, `Some`) are not,
    // and neither are the primitive types (`u32::max`).
    const PRIMITIVES: &[&str] = &[
        "bool", "char", "str", "f32", "f64", "i8", "i16", "i32", "i64", "i128", "isize", "u8",
        "u16", "u32", "u64", "u128", "usize",
    ];
    if p.path.segments.len() > 1 && PRIMITIVES.iter().any(|t| p.path.segments[0].ident == t) {
        return None;
    }
    let lowercase = p.path.segments.iter().all(|s| {
        s.ident
            .to_string()
            .starts_with(|c: char| c.is_lowercase() || c == '_')
    });
    lowercase.then_some((call, checked))
}

/// Identifiers a token stream mentions, macros included, and the implicit captures of format
/// strings (`"{name}"`, `"{name:>8}"`), so `println!("{raw:?}")` reads `raw`.
pub fn idents_in(tokens: TokenStream, out: &mut Vec<Ident>) {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let punct = |i: usize| match tts.get(i) {
        Some(TokenTree::Punct(p)) => Some((p.as_char(), p.spacing())),
        _ => None,
    };
    for (i, tt) in tts.iter().enumerate() {
        match tt {
            TokenTree::Ident(id) => {
                // `x.len`, `a::b`: a member or a path segment, not a local. (`a..b` is a range.)
                let member = i >= 1
                    && punct(i - 1).is_some_and(|(c, _)| c == '.')
                    && !(i >= 2 && punct(i - 2).is_some_and(|(c, _)| c == '.'));
                let segment = i >= 2
                    && punct(i - 1).is_some_and(|(c, _)| c == ':')
                    && punct(i - 2).is_some_and(|(c, sp)| c == ':' && sp == Spacing::Joint);
                // `name!(..)` is a macro, `name::` a path prefix.
                let macro_or_prefix = punct(i + 1).is_some_and(|(c, sp)| {
                    (c == '!' && sp == Spacing::Alone) || (c == ':' && sp == Spacing::Joint)
                });
                if !member && !segment && !macro_or_prefix {
                    out.push(id.clone());
                }
            }
            TokenTree::Group(g) => idents_in(g.stream(), out),
            TokenTree::Literal(l) => format_captures(l, out),
            TokenTree::Punct(_) => {}
        }
    }
}

fn format_captures(lit: &proc_macro2::Literal, out: &mut Vec<Ident>) {
    let text = lit.to_string();
    if !(text.starts_with('"') || text.starts_with("r\"") || text.starts_with("r#")) {
        return;
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            if bytes.get(i + 1) == Some(&b'{') {
                i += 2;
                continue;
            }
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            let name = &text[start..end];
            let closes = matches!(bytes.get(end), Some(b'}') | Some(b':'));
            if closes && name.starts_with(|c: char| c.is_alphabetic() || c == '_') {
                out.push(Ident::new(name, lit.span()));
            }
            i = end;
        } else {
            i += 1;
        }
    }
}

/// How an argument mentions an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// `&x`
    Ref,
    /// `x.method()`
    Receiver,
    /// anything else
    Bare,
}

/// Mentions of plain identifiers in a task call's arguments, with how each is used, and
/// whether the arguments do more than read values (call a function, use a macro, read a
/// path such as a static): such arguments are evaluated where the statement stands.
struct ArgUse {
    uses: Vec<(Ident, Use)>,
    effects: bool,
}

/// `Some`, `Config`, `Color::Red`: a constructor or a type, which reads nothing.
fn camel(id: &Ident) -> bool {
    let s = id.to_string();
    s.starts_with(|c: char| c.is_uppercase()) && s.chars().any(|c| c.is_lowercase())
}

impl<'ast> Visit<'ast> for ArgUse {
    fn visit_expr(&mut self, e: &'ast Expr) {
        match e {
            Expr::Reference(r) if r.mutability.is_none() => {
                if let Some(id) = plain_ident(&r.expr) {
                    self.uses.push((id.clone(), Use::Ref));
                    return;
                }
            }
            Expr::MethodCall(m) => {
                if let Some(id) = plain_ident(&m.receiver) {
                    self.uses.push((id.clone(), Use::Receiver));
                    for a in &m.args {
                        self.visit_expr(a);
                    }
                    return;
                }
            }
            Expr::Path(p) => {
                if let Some(id) = plain_ident(e) {
                    self.uses.push((id.clone(), Use::Bare));
                } else if !p.path.segments.last().is_some_and(|s| camel(&s.ident)) {
                    self.effects = true;
                }
                return;
            }
            Expr::Call(c) => {
                match &*c.func {
                    Expr::Path(p) if p.path.segments.last().is_some_and(|s| camel(&s.ident)) => {}
                    _ => self.effects = true,
                }
                for a in &c.args {
                    self.visit_expr(a);
                }
                return;
            }
            _ => {}
        }
        syn::visit::visit_expr(self, e);
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.effects = true;
        let mut ids = Vec::new();
        idents_in(m.tokens.clone(), &mut ids);
        self.uses.extend(ids.into_iter().map(|i| (i, Use::Bare)));
    }
}

pub fn plain_ident(e: &Expr) -> Option<&Ident> {
    match e {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => p.path.get_ident(),
        Expr::Paren(p) => plain_ident(&p.expr),
        _ => None,
    }
}

/// Can glue statement code stop the body early (`return`, `?`, a panic: `panic!`, `assert!`,
/// `.unwrap()`, `.expect(..)`)? Tasks are not started ahead of such a statement, so a body that
/// stops early never starts tasks written after it.
fn may_exit(stmt: &Stmt) -> bool {
    struct Find(bool);
    impl<'ast> Visit<'ast> for Find {
        fn visit_expr_return(&mut self, _: &'ast syn::ExprReturn) {
            self.0 = true;
        }
        fn visit_expr_try(&mut self, t: &'ast syn::ExprTry) {
            self.0 = true;
            syn::visit::visit_expr_try(self, t);
        }
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            // `.unwrap()` and `.expect(..)` may panic, which stops the body too.
            if m.method == "unwrap" || m.method == "expect" {
                self.0 = true;
            }
            syn::visit::visit_expr_method_call(self, m);
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
        fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
        fn visit_item(&mut self, _: &'ast syn::Item) {}
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            // `?` or `return` hidden in a macro's tokens (not in its strings: `"{x:?}"`).
            fn exits(tokens: TokenStream) -> bool {
                tokens.into_iter().any(|tt| match tt {
                    TokenTree::Punct(p) => p.as_char() == '?',
                    TokenTree::Ident(i) => i == "return",
                    TokenTree::Group(g) => exits(g.stream()),
                    TokenTree::Literal(_) => false,
                })
            }
            const PANICS: &[&str] = &[
                "panic",
                "assert",
                "assert_eq",
                "assert_ne",
                "unreachable",
                "todo",
                "unimplemented",
            ];
            let panics = m
                .path
                .segments
                .last()
                .is_some_and(|s| PANICS.iter().any(|p| s.ident == p));
            if panics || exits(m.tokens.clone()) {
                self.0 = true;
            }
        }
    }
    let mut f = Find(false);
    f.visit_stmt(stmt);
    f.0
}

fn pattern_idents(pat: &Pat, out: &mut Vec<Ident>) {
    struct Collect<'a>(&'a mut Vec<Ident>);
    impl<'ast> Visit<'ast> for Collect<'_> {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.0.push(p.ident.clone());
            syn::visit::visit_pat_ident(self, p);
        }
        // `Some(x)` and paths of constants are not bindings.
        fn visit_path(&mut self, _: &'ast syn::Path) {}
    }
    Collect(out).visit_pat(pat);
}

fn line_of(span: Span) -> u32 {
    span.start().line as u32
}

fn stmt_text(stmt: &Stmt) -> String {
    let s = stmt.to_token_stream().to_string();
    let s = s.replace(" (", "(").replace("( ", "(").replace(" )", ")");
    let s = s.replace(" ?", "?").replace(" ,", ",").replace(" ;", ";");
    s.replace(" . ", ".")
        .replace(" :: ", "::")
        .replace("& ", "&")
}

/// Takes `#[wait_for(..)]` off a statement's attributes.
fn take_wait_for(
    attrs: &mut Vec<syn::Attribute>,
    errors: &mut crate::options::Errors,
) -> Vec<Ident> {
    let mut out = Vec::new();
    attrs.retain(|a| {
        if !a.path().is_ident("wait_for") {
            return true;
        }
        match a.parse_args_with(Punctuated::<Ident, Token![,]>::parse_terminated) {
            Ok(ids) if !ids.is_empty() => out.extend(ids),
            Ok(_) => errors.at(
                a.span(),
                "`#[wait_for(..)]` names at least one task output: `#[wait_for(table)]`",
            ),
            Err(e) => errors.push(syn::Error::new(
                e.span(),
                "`#[wait_for(..)]` takes the names of earlier task outputs: `#[wait_for(a, b)]`",
            )),
        }
        false
    });
    out
}

fn stmt_attrs(stmt: &mut Stmt) -> Option<&mut Vec<syn::Attribute>> {
    match stmt {
        Stmt::Local(l) => Some(&mut l.attrs),
        Stmt::Macro(m) => Some(&mut m.attrs),
        Stmt::Expr(e, _) => match e {
            Expr::Call(c) => Some(&mut c.attrs),
            Expr::Try(t) => Some(&mut t.attrs),
            Expr::MethodCall(m) => Some(&mut m.attrs),
            Expr::Macro(m) => Some(&mut m.attrs),
            Expr::Await(a) => Some(&mut a.attrs),
            Expr::Assign(a) => Some(&mut a.attrs),
            Expr::Path(p) => Some(&mut p.attrs),
            Expr::Block(b) => Some(&mut b.attrs),
            Expr::If(i) => Some(&mut i.attrs),
            Expr::ForLoop(f) => Some(&mut f.attrs),
            Expr::Match(m) => Some(&mut m.attrs),
            _ => None,
        },
        Stmt::Item(_) => None,
    }
}

/// Builds the model of a flow body. `params` are the flow's parameter names.
pub fn analyze(params: &[Ident], body: Vec<Stmt>) -> syn::Result<FlowModel> {
    let mut errors = crate::options::Errors::default();
    let mut bindings: Vec<Binding> = params
        .iter()
        .map(|p| Binding {
            name: p.clone(),
            mutable: false,
            kind: BindingKind::Param,
            handle_readers: Vec::new(),
            glue_reads_at: None,
            local_borrowers: Vec::new(),
            provenance: BTreeSet::new(),
        })
        .collect();
    // Name → binding, innermost last.
    let mut scope: Vec<(String, BindingId)> = params
        .iter()
        .enumerate()
        .map(|(i, p)| (p.to_string(), i))
        .collect();
    let lookup = |scope: &Vec<(String, BindingId)>, name: &str| {
        scope.iter().rev().find(|(n, _)| n == name).map(|(_, b)| *b)
    };

    // Every name the body binds at top level, with its statement, to tell "later" from "unknown".
    let mut later_names: Vec<(String, usize, u32)> = Vec::new();
    let mut items = Vec::new();
    let mut stmts: Vec<Stmt> = Vec::new();
    let body_len = body.len();
    for (i, stmt) in body.into_iter().enumerate() {
        match stmt {
            Stmt::Item(_) => items.push(stmt),
            // A task call in tail position: bind it, then return the binding.
            Stmt::Expr(e, None) if i + 1 == body_len && task_call(&e).is_some() => {
                let tail = Ident::new("__weft_tail", Span::call_site());
                let span = e.span();
                stmts.push(syn::parse_quote_spanned!(span=> let #tail = #e;));
                stmts.push(Stmt::Expr(syn::parse_quote_spanned!(span=> #tail), None));
            }
            _ => stmts.push(stmt),
        }
    }
    for (i, s) in stmts.iter().enumerate() {
        if let Stmt::Local(l) = s {
            let mut ids = Vec::new();
            pattern_idents(&l.pat, &mut ids);
            for id in ids {
                later_names.push((id.to_string(), i, line_of(id.span())));
            }
        }
    }

    let mut nodes: Vec<Node> = Vec::new();
    let mut edges: BTreeSet<Edge> = BTreeSet::new();
    // The last glue statement that is a barrier (may exit early) so far.
    let mut barrier: Option<usize> = None;
    // For each binding, the last glue statement that mentioned or defined it.
    let mut last_glue_touch: Vec<Option<usize>> = vec![None; bindings.len()];
    // The latest glue statement so far, and where each task node starts.
    let mut last_glue: Option<usize> = None;
    let n_stmts = stmts.len();
    let mut node_start: Vec<Option<usize>> = vec![None; n_stmts];

    for (idx, mut stmt) in stmts.into_iter().enumerate() {
        let span = stmt.span();
        let line = line_of(span);
        let wait_names = match stmt_attrs(&mut stmt) {
            Some(attrs) => take_wait_for(attrs, &mut errors),
            None => Vec::new(),
        };
        let text = stmt_text(&stmt);

        // Is it a task statement?
        let call_info = match &stmt {
            Stmt::Local(l) => match &l.init {
                Some(init) if init.diverge.is_none() => {
                    task_call(&init.expr).map(|(c, checked)| (c.clone(), checked, Some(&l.pat)))
                }
                _ => None,
            },
            Stmt::Expr(e, Some(_)) => task_call(e).map(|(c, checked)| (c.clone(), checked, None)),
            _ => None,
        };

        if let Some((call, checked, pat)) = call_info {
            // The binding, if any.
            let mut bind_ident = None;
            let mut bind_mut = false;
            if let Some(pat) = pat {
                let inner = match pat {
                    Pat::Type(t) => &*t.pat,
                    p => p,
                };
                match inner {
                    Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() => {
                        bind_ident = Some(pi.ident.clone());
                        bind_mut = pi.mutability.is_some();
                    }
                    Pat::Wild(_) => {}
                    other => errors.at(
                        other.span(),
                        "a task statement binds the task's output to one name (`let rows = transform(raw)?;`); \
                         destructure it in a following statement. (If the function called here is not a \
                         #[task], it is plain code: wrap the call in a block, `let (a, b) = { f(..) };`)",
                    ),
                }
            }
            let Expr::Path(func) = &*call.func else {
                unreachable!("task_call checked it")
            };
            let mut path = func.path.clone();
            let is_map = path.segments.len() >= 2 && path.segments.last().unwrap().ident == "map";
            if is_map {
                path.segments.pop();
                let last = path.segments.pop().unwrap();
                path.segments.push(last);
            }
            for seg in path.segments.iter_mut() {
                seg.arguments = syn::PathArguments::None;
            }

            // Inputs.
            // How each argument reads each binding. A handle is borrowed only for `&x` (the
            // node then lends it); anything else takes the value. An argument that reads no
            // handle is evaluated when the node is created, so a local needs to stay put only
            // for `&x`; in an argument that waits for a handle, a local read by `&x` or
            // `x.m()` is lent to the node, and moved otherwise.
            let handle_now = |b: BindingId, bindings: &Vec<Binding>| {
                bindings[b].is_task() && bindings[b].glue_reads_at.is_none()
            };
            let mut inputs: Vec<Input> = Vec::new();
            let mut effects = false;
            for arg in &call.args {
                let mut uses = ArgUse {
                    uses: Vec::new(),
                    effects: false,
                };
                uses.visit_expr(arg);
                effects |= uses.effects;
                let deferred = uses.uses.iter().any(|(id, _)| {
                    lookup(&scope, &id.to_string()).is_some_and(|b| handle_now(b, &bindings))
                });
                for (id, how) in uses.uses {
                    let Some(b) = lookup(&scope, &id.to_string()) else {
                        // A name the flow does not bind (a static, a const): read where written.
                        if !camel(&id) {
                            effects = true;
                        }
                        continue;
                    };
                    let via_handle = handle_now(b, &bindings);
                    let mode = match (via_handle, deferred, how) {
                        (true, _, Use::Ref) => Mode::Borrow,
                        (true, _, _) => Mode::Own,
                        (false, true, Use::Bare) => Mode::Own,
                        (false, true, _) => Mode::Borrow,
                        (false, false, Use::Ref) => Mode::Borrow,
                        (false, false, _) => Mode::Own,
                    };
                    match inputs.iter_mut().find(|i| i.binding == b) {
                        Some(existing) => {
                            // A handle taken anywhere is taken; a local lent anywhere is lent.
                            let wins = if via_handle { Mode::Own } else { Mode::Borrow };
                            if mode == wins {
                                existing.mode = wins;
                            }
                        }
                        None => inputs.push(Input {
                            binding: b,
                            span: id.span(),
                            mode,
                            via_handle,
                        }),
                    }
                }
            }
            // wait_for targets.
            let mut wait_for = Vec::new();
            for w in &wait_names {
                let name = w.to_string();
                match lookup(&scope, &name) {
                    Some(b) if bindings[b].is_task() => {
                        if !wait_for.contains(&b) {
                            wait_for.push(b);
                        }
                    }
                    Some(_) => errors.at(
                        w.span(),
                        format!(
                            "`#[wait_for({name})]`: `{name}` is a plain value, not the output of a task; \
                             wait_for names an earlier `let {name} = some_task(..);`"
                        ),
                    ),
                    None => match later_names.iter().find(|(n, s, _)| *n == name && *s >= idx) {
                        Some((_, s, _)) if *s == idx => errors.at(
                            w.span(),
                            format!("`#[wait_for({name})]`: a task can't wait for its own output"),
                        ),
                        Some((_, _, l)) => errors.at(
                            w.span(),
                            format!(
                                "`#[wait_for({name})]`: `{name}` is bound later in the flow (line {l}), so \
                                 waiting for it would be a cycle; move this statement below it"
                            ),
                        ),
                        None => errors.at(
                            w.span(),
                            format!("`#[wait_for({name})]`: no task output named `{name}` before this statement"),
                        ),
                    },
                }
            }

            // Record readers, provenance edges, and where the node can start: after any glue
            // that may leave the body, after its producers are created, after the glue that
            // last touched a local it reads, and where it stands if its arguments have effects.
            let mut start_after = barrier;
            if effects {
                start_after = start_after.max(last_glue);
            }
            for input in &inputs {
                let b = &mut bindings[input.binding];
                if input.via_handle {
                    b.handle_readers.push((idx, input.mode));
                    if let BindingKind::Task { stmt, .. } = b.kind {
                        start_after = start_after.max(node_start[stmt]);
                        edges.insert(Edge {
                            from: stmt,
                            to: idx,
                            kind: EdgeKind::Data,
                            binding: b.name.to_string(),
                        });
                    }
                } else {
                    if input.mode == Mode::Borrow {
                        b.local_borrowers.push(idx);
                    }
                    start_after = start_after.max(last_glue_touch[input.binding]);
                    for &p in &b.provenance {
                        edges.insert(Edge {
                            from: p,
                            to: idx,
                            kind: EdgeKind::Glue,
                            binding: b.name.to_string(),
                        });
                    }
                    if let BindingKind::Glue { stmt } = b.kind {
                        edges.insert(Edge {
                            from: stmt,
                            to: idx,
                            kind: EdgeKind::Data,
                            binding: b.name.to_string(),
                        });
                    }
                }
            }
            for &w in &wait_for {
                if let BindingKind::Task { stmt, .. } = bindings[w].kind {
                    start_after = start_after.max(node_start[stmt]);
                    edges.insert(Edge {
                        from: stmt,
                        to: idx,
                        kind: EdgeKind::Order,
                        binding: bindings[w].name.to_string(),
                    });
                }
            }
            let binding = bind_ident.map(|id| {
                let bid = bindings.len();
                bindings.push(Binding {
                    name: id.clone(),
                    mutable: bind_mut,
                    kind: BindingKind::Task { stmt: idx, checked },
                    handle_readers: Vec::new(),
                    glue_reads_at: None,
                    local_borrowers: Vec::new(),
                    provenance: [idx].into_iter().collect(),
                });
                last_glue_touch.push(None);
                scope.push((id.to_string(), bid));
                bid
            });
            node_start[idx] = start_after;
            nodes.push(Node {
                stmt: NodeStmt::Task(TaskStmt {
                    call: Expr::Call(call),
                    companion: path,
                    is_map,
                    checked,
                    binding,
                    inputs,
                    wait_for,
                    start_after,
                }),
                text,
                line,
            });
            continue;
        }

        // Glue.
        for w in &wait_names {
            errors.at(
                w.span(),
                "`#[wait_for(..)]` goes on a statement that calls a task; this statement is plain Rust (glue), \
                 which already runs in written order",
            );
        }
        // What the statement reads: for `let pat = init else { .. };` not the names it binds.
        let mut mentioned = Vec::new();
        match &stmt {
            Stmt::Local(l) => {
                if let Some(init) = &l.init {
                    idents_in(init.expr.to_token_stream(), &mut mentioned);
                    if let Some((_, div)) = &init.diverge {
                        idents_in(div.to_token_stream(), &mut mentioned);
                    }
                }
            }
            other => idents_in(other.to_token_stream(), &mut mentioned),
        }
        let mut resolves = Vec::new();
        let mut provenance = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for id in mentioned {
            let Some(b) = lookup(&scope, &id.to_string()) else {
                continue;
            };
            if !seen.insert(b) {
                continue;
            }
            let bind = &mut bindings[b];
            if let BindingKind::Task { stmt, checked } = bind.kind {
                if bind.glue_reads_at.is_none() {
                    bind.glue_reads_at = Some(idx);
                    resolves.push(b);
                    // A missing `?` value stops the body here, like `?` would.
                    if checked {
                        barrier = Some(idx);
                    }
                    edges.insert(Edge {
                        from: stmt,
                        to: idx,
                        kind: EdgeKind::Data,
                        binding: bind.name.to_string(),
                    });
                }
            }
            provenance.extend(bind.provenance.iter().copied());
            last_glue_touch[b] = Some(idx);
        }
        if may_exit(&stmt) {
            barrier = Some(idx);
        }
        last_glue = Some(idx);
        if let Stmt::Local(l) = &stmt {
            let mut ids = Vec::new();
            pattern_idents(&l.pat, &mut ids);
            for id in ids {
                let bid = bindings.len();
                bindings.push(Binding {
                    name: id.clone(),
                    mutable: false,
                    kind: BindingKind::Glue { stmt: idx },
                    handle_readers: Vec::new(),
                    glue_reads_at: None,
                    local_borrowers: Vec::new(),
                    provenance: provenance.clone(),
                });
                last_glue_touch.push(Some(idx));
                scope.push((id.to_string(), bid));
            }
        }
        let is_tail = idx + 1 == n_stmts && matches!(stmt, Stmt::Expr(_, None));
        nodes.push(Node {
            stmt: NodeStmt::Glue(GlueStmt {
                stmt,
                resolves,
                is_tail,
            }),
            text,
            line,
        });
    }
    errors.finish()?;
    Ok(FlowModel {
        items,
        nodes,
        bindings,
        edges: edges.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn model(params: &[&str], body: TokenStream) -> syn::Result<FlowModel> {
        let block: syn::Block = syn::parse2(quote!({ #body })).unwrap();
        let params: Vec<Ident> = params
            .iter()
            .map(|p| Ident::new(p, Span::call_site()))
            .collect();
        analyze(&params, block.stmts)
    }

    fn edges(m: &FlowModel) -> Vec<(usize, usize, EdgeKind)> {
        m.edges.iter().map(|e| (e.from, e.to, e.kind)).collect()
    }

    #[test]
    fn seed_004_upstream_edges() {
        let m = model(
            &[],
            quote! {
                let t1 = task1();
                let t2 = task2();
                #[wait_for(t1, t2)] let t3 = task3();
                #[wait_for(t3)] let t4 = task4();
                #[wait_for(t4)] let t5 = task5();
                #[wait_for(t4)] let t6 = task6();
                #[wait_for(t2, t6)] let t7 = task7();
                #[wait_for(t2, t3)] let t8 = task8();
            },
        )
        .unwrap();
        assert_eq!(m.nodes.len(), 8);
        let mut got = edges(&m);
        got.sort();
        let want: Vec<(usize, usize, EdgeKind)> = [
            (0, 2),
            (1, 2),
            (2, 3),
            (3, 4),
            (3, 5),
            (1, 6),
            (5, 6),
            (1, 7),
            (2, 7),
        ]
        .iter()
        .map(|&(a, b)| (a, b, EdgeKind::Order))
        .collect();
        let mut want = want;
        want.sort();
        assert_eq!(got, want);
        // Every node can start at once: no glue in between.
        assert!((0..8).all(|i| m.task(i).unwrap().start_after.is_none()));
    }

    #[test]
    fn data_flows_through_handles_and_glue() {
        let m = model(
            &["size", "db"],
            quote! {
                let table = create_table(&db);
                let raw = extract(size)?;
                let n = raw.len();
                let rows = transform(raw, n)?;
                #[wait_for(table)]
                let loaded = load(rows, &db)?;
                loaded
            },
        )
        .unwrap();
        // extract -> glue `n` (data), extract -> transform through glue, glue n -> transform.
        let e = edges(&m);
        assert!(e.contains(&(1, 2, EdgeKind::Data)));
        assert!(e.contains(&(1, 3, EdgeKind::Glue)));
        assert!(e.contains(&(3, 4, EdgeKind::Data)));
        assert!(e.contains(&(0, 4, EdgeKind::Order)));
        // `raw` is read by glue first, so `transform` gets the glue local, created after glue 2.
        let t = m.task(3).unwrap();
        assert_eq!(t.start_after, Some(2));
        assert!(t
            .inputs
            .iter()
            .all(|i| !i.via_handle || m.bindings[i.binding].name == "n"));
        // `db` is a borrowed param; `table` and `extract` start at once.
        assert_eq!(m.task(0).unwrap().inputs[0].mode, Mode::Borrow);
        assert_eq!(m.task(1).unwrap().start_after, None);
        // `load` borrows db and reads `rows` through its handle.
        let load = m.task(4).unwrap();
        assert_eq!(load.start_after, Some(2), "after its producer `transform`");
        assert!(load
            .inputs
            .iter()
            .any(|i| i.via_handle && i.mode == Mode::Own));
    }

    #[test]
    fn an_output_read_by_two_tasks_counts_two_owners() {
        let m = model(
            &[],
            quote! { let a = one()?; let b = two(a)?; let c = three(a)?; let d = four(&a)?; },
        )
        .unwrap();
        let a = &m.bindings[0];
        assert_eq!(a.handle_readers.len(), 3);
        assert!(a.shared());
        let m = model(
            &[],
            quote! { let a = one()?; let b = two(a)?; let c = three(a)?; },
        )
        .unwrap();
        assert_eq!(m.bindings[0].owned_readers(), 2);
        assert!(!m.bindings[0].shared());
    }

    #[test]
    fn tasks_do_not_start_ahead_of_an_early_return() {
        let m = model(
            &["x"],
            quote! { let a = one(x)?; if x > 3 { return 0; } let b = two()?; b },
        )
        .unwrap();
        assert_eq!(m.task(0).unwrap().start_after, None);
        assert_eq!(m.task(2).unwrap().start_after, Some(1));
    }

    #[test]
    fn mapped_calls_and_tail_calls() {
        let m = model(&["xs"], quote! { let ys = inc::map(xs)?; total(ys) }).unwrap();
        let t = m.task(0).unwrap();
        assert!(t.is_map);
        assert_eq!(t.companion.to_token_stream().to_string(), "inc");
        // The tail task call is bound and then returned.
        assert!(m.task(1).is_some());
        assert!(matches!(&m.nodes[2].stmt, NodeStmt::Glue(g) if g.is_tail));
    }

    #[test]
    fn format_string_captures_count_as_reads() {
        let m = model(
            &[],
            quote! { let a = one()?; println!("{a:?} {{not}} {}", 1); },
        )
        .unwrap();
        assert_eq!(m.bindings[0].glue_reads_at, Some(1));
        let mut ids = Vec::new();
        idents_in(quote!(format!("{x}{{y}}{z:>8}{0}")), &mut ids);
        let names: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        assert_eq!(names, ["x", "z"], "macro names are not reads");
    }

    #[test]
    fn reading_a_checked_output_in_glue_is_a_barrier() {
        let m = model(
            &[],
            quote! { let user = find()?; println!("{user}"); delete_all(); },
        )
        .unwrap();
        assert_eq!(
            m.task(2).unwrap().start_after,
            Some(1),
            "the body may stop at the read"
        );
        let m = model(&[], quote! { let r = find(); println!("{r:?}"); other(); }).unwrap();
        assert_eq!(
            m.task(2).unwrap().start_after,
            None,
            "a Result read cannot stop the body"
        );
    }

    #[test]
    fn member_names_are_not_reads() {
        let m = model(
            &["v"],
            quote! { let len = slow()?; let n = v.len(); let f = fast(n)?; },
        )
        .unwrap();
        assert_eq!(
            m.bindings[1].glue_reads_at, None,
            "`v.len()` does not read the output `len`"
        );
    }

    #[test]
    fn arguments_with_effects_run_where_they_stand() {
        let m = model(
            &[],
            quote! { STEP.store(5); let a = show(STEP.load())?; let b = show(7)?; },
        )
        .unwrap();
        assert_eq!(m.task(1).unwrap().start_after, Some(0));
        assert_eq!(m.task(2).unwrap().start_after, None);
        let m = model(
            &["x"],
            quote! { println!("go"); let a = show(make(x))?; let b = show(Some(x))?; },
        )
        .unwrap();
        assert_eq!(m.task(1).unwrap().start_after, Some(0), "a function call");
        assert_eq!(m.task(2).unwrap().start_after, None, "a constructor");
    }

    #[test]
    fn a_method_on_an_output_takes_it() {
        let m = model(
            &[],
            quote! { let w = words()?; let j = join(w.into_iter().collect())?; },
        )
        .unwrap();
        assert_eq!(m.task(1).unwrap().inputs[0].mode, Mode::Own);
        let m = model(
            &["name"],
            quote! { let a = one()?; let b = add(a + name.len())?; println!("{name}"); },
        )
        .unwrap();
        let name_input = m
            .task(1)
            .unwrap()
            .inputs
            .iter()
            .find(|i| !i.via_handle)
            .unwrap();
        assert_eq!(
            name_input.mode,
            Mode::Borrow,
            "lent to the node, still the body's"
        );
    }

    #[test]
    fn constructors_and_awaits_are_glue() {
        let m = model(&[], quote! { let v = Vec::new(); let s = Some(1); let r = fetch().await; let z = helper(1)?; let m = u32::max(1, 2); }).unwrap();
        assert!(m.task(4).is_none(), "primitive types' functions are glue");
        assert!(m.task(0).is_none() && m.task(1).is_none() && m.task(2).is_none());
        assert!(m.task(3).is_some());
    }

    #[test]
    fn wait_for_errors_name_the_problem() {
        let err = model(&[], quote! { #[wait_for(b)] let a = one(); let b = two(); }).unwrap_err();
        assert!(err.to_string().contains("bound later in the flow"), "{err}");
        let err = model(&[], quote! { #[wait_for(nope)] let a = one(); }).unwrap_err();
        assert!(
            err.to_string().contains("no task output named `nope`"),
            "{err}"
        );
        let err = model(&["p"], quote! { #[wait_for(p)] let a = one(); }).unwrap_err();
        assert!(err.to_string().contains("plain value"), "{err}");
        let err = model(&[], quote! { let a = one(); #[wait_for(a)] println!("x"); }).unwrap_err();
        assert!(
            err.to_string()
                .contains("goes on a statement that calls a task"),
            "{err}"
        );
        let errs: Vec<_> = model(
            &[],
            quote! { let (a, b) = one()?; #[wait_for(zz)] let c = two(); },
        )
        .unwrap_err()
        .into_iter()
        .collect();
        assert_eq!(errs.len(), 2, "every error is reported");
    }
}
