//! Pipeline files: a DAG of shell nodes written as TOML (a web check, a backup...), read into a
//! [`Pipeline`] by a check that reports every problem of the file at once, each at its
//! `line:column`.
//!
//! ```toml
//! name = "web_check"
//! description = "The web-check pipeline"
//! workers = 5            # default 5
//! fail_fast = true       # default true
//! timeout = "60s"        # default timeout of every node (default 10m)
//!
//! [params.ip]
//! type = "ip"            # string | int | float | bool | choice | regex | ip | path
//! required = true
//! default = "127.0.0.1"
//! description = "host to ping"
//! # choice: `choices = ["a", "b"]`; regex: `pattern = "^[a-z]+$"`; int/float: `min`, `max`
//! # allow_leading_dash = true   # the value may begin an argument with `-` (an option)
//!
//! [[nodes]]
//! id = "A"
//! command = ["ping", "-c", "4", "{ip}"]   # an argv: `{ip}` fills part of ONE argument
//! next = ["B"]
//! retries = 1
//! retry_delay = "1s"
//! timeout = "30s"
//! env = { LANG = "C" }
//! workdir = "."
//!
//! [[nodes]]
//! id = "B"
//! script = '''
//! ping -c 1 "$ip"
//! '''                    # run by `sh -c`; parameters arrive ONLY as environment variables
//! after = ["A"]          # the reverse spelling of `next`
//! ```
//!
//! Each node has exactly one of `command` (an argv, run without a shell, where `{name}`
//! placeholders are filled by [`render_argv`](super::params::render_argv)) and `script` (run by
//! `sh -c`, which reads parameters as `"$name"` from its environment, see
//! [`param_env`](super::params::param_env)).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::argv::{analyze, has_placeholder, Role};
use super::params::{
    compile_pattern, did_you_mean, is_name, parse_template, show_str, ParamKind, ParamSpec,
    ParamValue, Part,
};

/// Nodes run at the same time when a file does not say `workers`.
pub const DEFAULT_WORKERS: usize = 5;

/// The most nodes a pipeline may run at once (`workers` in the file, `--workers` on the command
/// line): far above the processes a machine runs at once, far below what the engine's semaphore
/// can count (`tokio::sync::Semaphore::MAX_PERMITS`, where a larger value panicked).
pub const MAX_WORKERS: usize = 100_000;

/// A node's timeout when neither it nor the file says `timeout`: every node has one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A checked pipeline file: nodes, their edges (acyclic) and the parameter schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `workers`: how many nodes run at once (at least 1; default [`DEFAULT_WORKERS`]).
    pub workers: usize,
    /// `fail_fast`: a failed node stops the run, no new node starts (default `true`).
    pub fail_fast: bool,
    /// `timeout`: the timeout of nodes that do not give theirs (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// `[params.NAME]` tables, in the order of the file.
    pub params: Vec<ParamSpec>,
    /// `[[nodes]]`, in the order of the file.
    pub nodes: Vec<NodeSpec>,
    /// The file it was read from ([`Pipeline::from_path`]); `None` from [`Pipeline::from_toml`].
    pub source: Option<PathBuf>,
    /// The version: BLAKE3 of the file's text, in hex.
    pub hash: String,
    /// The file's text (recorded in the run history with each version).
    pub text: String,
}

/// One `[[nodes]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// `id`: unique, letters, digits, `_`, `-` and `.`.
    pub id: String,
    /// `command` or `script`.
    pub run: NodeCommand,
    /// The nodes that must succeed before this one starts: indices into
    /// [`Pipeline::nodes`], from the others' `next` and this one's `after`, ascending, without
    /// duplicates.
    pub upstream: Vec<usize>,
    /// `retries` (default 0): how many more times a failed run is tried.
    pub retries: u32,
    /// `retry_delay` (default 0s).
    pub retry_delay: Duration,
    /// `timeout`, or the pipeline's.
    pub timeout: Duration,
    /// `env`: environment variables added to the parameters' (never a parameter's name).
    pub env: BTreeMap<String, String>,
    /// `workdir`, as written.
    pub workdir: Option<PathBuf>,
}

/// What a node runs.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeCommand {
    /// `command = [...]`: a program and its arguments, run without a shell; `{name}`
    /// placeholders are filled by [`render_argv`](super::params::render_argv).
    Argv(Vec<String>),
    /// `script = "..."`: run by `sh -c`; parameters reach it only as environment variables.
    Script(String),
}

/// Everything wrong with a pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckError {
    /// The file name the messages start with.
    pub origin: String,
    /// Every problem, ordered by position.
    pub problems: Vec<Problem>,
}

/// One problem of a pipeline file, at a 1-based line and column (in characters). Line 0 means
/// the problem has no position (the file could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, and how to fix it where that is known.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        }
    }
}

impl fmt::Display for CheckError {
    /// One line per problem, `file:line:col: message`, then `N problems`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            if p.line == 0 {
                writeln!(f, "{}: {p}", self.origin)?;
            } else {
                writeln!(f, "{}:{p}", self.origin)?;
            }
        }
        let n = self.problems.len();
        write!(f, "{n} problem{}", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for CheckError {}

impl Pipeline {
    /// Reads and checks a pipeline file; see [`Pipeline::from_toml`].
    ///
    /// ```
    /// let p = weft::pipeline::file::Pipeline::from_path(
    ///     concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/pipelines/web_check.toml"),
    /// ).unwrap();
    /// assert_eq!(p.name, "web_check");
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Pipeline, CheckError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CheckError {
            origin: origin.clone(),
            problems: vec![Problem {
                line: 0,
                column: 0,
                message: format!("cannot read the pipeline file: {e}"),
            }],
        })?;
        let mut p = Pipeline::from_toml(&text, &origin)?;
        p.source = Some(path.to_path_buf());
        Ok(p)
    }

    /// Parses and checks the text of a pipeline file; `origin` names it in messages.
    ///
    /// Reports every problem at once, each at the line and column of the offending token: TOML
    /// syntax, unknown keys (with the allowed ones and a "did you mean"), wrong value types,
    /// duplicate node ids, `next`/`after` naming an unknown node, cycles (with their path),
    /// bad durations, `workers` below 1 or above [`MAX_WORKERS`], both or neither of
    /// `command`/`script`, an empty argv, placeholders in a `script` or naming no parameter,
    /// unbalanced braces, a placeholder in an argument that a program runs as code (`sh -c`,
    /// `python -c`, an awk program, ssh's remote command...) or that chooses what runs (`env
    /// {prog}`; the list is in [`super::argv`]), and errors of the parameter
    /// schema (unknown type, missing `choices`, invalid pattern, a default that fails its own
    /// type, `min` > `max`). Linear in the size of the file.
    ///
    /// ```
    /// use weft::pipeline::file::{NodeCommand, Pipeline};
    /// let p = Pipeline::from_toml(r#"
    /// name = "two"
    /// [[nodes]]
    /// id = "a"
    /// command = ["echo", "{who}"]
    /// next = ["b"]
    /// [[nodes]]
    /// id = "b"
    /// script = 'echo "$who"'
    /// [params.who]
    /// type = "string"
    /// default = "world"
    /// "#, "two.toml").unwrap();
    /// assert_eq!(p.nodes[1].upstream, [0]);
    /// assert_eq!(p.nodes[1].run, NodeCommand::Script("echo \"$who\"".into()));
    ///
    /// let text = "name = \"x\"\nworkers = 0\n[params.who]\ntype = \"string\"\n\
    ///             [[nodes]]\nid = \"a\"\nscript = \"echo {who}\"\n";
    /// let err = Pipeline::from_toml(text, "x.toml").unwrap_err();
    /// assert_eq!(err.to_string(), "x.toml:2:11: `workers` must be at least 1, not 0\n\
    ///     x.toml:7:16: write \"$who\" in a script: parameters reach scripts only as \
    ///     environment variables (`{who}` is not replaced)\n\
    ///     2 problems");
    /// ```
    pub fn from_toml(text: &str, origin: &str) -> Result<Pipeline, CheckError> {
        let mut c = Checker {
            text,
            found: Vec::new(),
        };
        let pipeline = c.pipeline();
        if c.found.is_empty() {
            match pipeline {
                Some(mut p) => {
                    p.hash = blake3::hash(text.as_bytes()).to_hex().to_string();
                    p.text = text.to_owned();
                    return Ok(p);
                }
                // Every refusal reports a problem; this only guards against a silent one.
                None => c.at(0, "the pipeline file is invalid"),
            }
        }
        let lines = LineIndex::new(text);
        let mut problems: Vec<Problem> = c
            .found
            .iter()
            .map(|(offset, message)| {
                let (line, column) = lines.line_col(text, *offset);
                Problem {
                    line,
                    column,
                    message: message.clone(),
                }
            })
            .collect();
        problems.sort_by_key(|p| (p.line, p.column));
        problems.dedup();
        Err(CheckError {
            origin: origin.to_string(),
            problems,
        })
    }

    /// The index of the node with this id.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Every node, each after all of its upstream nodes; among the nodes ready at the same
    /// point, file order. (A checked pipeline has no cycle; were there one, its nodes would be
    /// left out.)
    pub fn topo_order(&self) -> Vec<usize> {
        let mut down = vec![Vec::new(); self.nodes.len()];
        for (j, n) in self.nodes.iter().enumerate() {
            for &u in &n.upstream {
                down[u].push(j);
            }
        }
        let mut waiting: Vec<usize> = self.nodes.iter().map(|n| n.upstream.len()).collect();
        let mut ready: BTreeSet<usize> =
            (0..self.nodes.len()).filter(|i| waiting[*i] == 0).collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &j in &down[i] {
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        order
    }

    /// The nodes that list node `i` as upstream, ascending.
    pub fn downstream(&self, i: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|j| self.nodes[*j].upstream.contains(&i))
            .collect()
    }

    /// The nodes without upstream nodes (they start first).
    pub fn start_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].upstream.is_empty())
            .collect()
    }

    /// The nodes without downstream nodes.
    pub fn end_nodes(&self) -> Vec<usize> {
        let mut has_down = vec![false; self.nodes.len()];
        for n in &self.nodes {
            for u in &n.upstream {
                has_down[*u] = true;
            }
        }
        (0..self.nodes.len()).filter(|i| !has_down[*i]).collect()
    }
}

/// Where each line of a text starts, to turn byte offsets into lines and columns without
/// scanning the text from its start for each one.
struct LineIndex {
    /// Byte offset of the first byte of each line.
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line and column (in characters) of a byte offset of `text`.
    fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        (line, text[start..offset].chars().count() + 1)
    }
}

/// 1-based line and column (in characters) of a byte offset (one lookup; see [`LineIndex`]).
#[cfg(test)]
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

type Val<'i> = Spanned<DeValue<'i>>;

const TOP_KEYS: [&str; 7] = [
    "name",
    "description",
    "workers",
    "fail_fast",
    "timeout",
    "params",
    "nodes",
];
const PARAM_KEYS: [&str; 9] = [
    "type",
    "required",
    "default",
    "description",
    "choices",
    "pattern",
    "min",
    "max",
    "allow_leading_dash",
];
const NODE_KEYS: [&str; 10] = [
    "id",
    "command",
    "script",
    "next",
    "after",
    "retries",
    "retry_delay",
    "timeout",
    "env",
    "workdir",
];

/// Environment variables a parameter may not replace in every node's environment.
const RESERVED_ENV: [&str; 17] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "IFS", "ENV", "BASH_ENV", "CDPATH", "PS1", "PS2",
    "PS4", "PWD", "OLDPWD", "TMPDIR", "LANG", "TERM",
];

/// A node while it is being read: edges still by name.
struct RawNode {
    /// The id and its offset.
    id: (String, usize),
    /// `None` when some other key of the node is wrong (reported already).
    spec: Option<NodeSpec>,
    /// (other node, offset of its name): this node runs before it.
    next: Vec<(String, usize)>,
    /// (other node, offset of its name): this node runs after it.
    after: Vec<(String, usize)>,
}

struct Checker<'t> {
    text: &'t str,
    found: Vec<(usize, String)>,
}

impl<'t> Checker<'t> {
    fn at(&mut self, offset: usize, message: impl Into<String>) {
        self.found.push((offset, message.into()));
    }

    fn pipeline(&mut self) -> Option<Pipeline> {
        let (doc, errors) = DeTable::parse_recoverable(self.text);
        if !errors.is_empty() {
            for e in errors {
                let offset = e.span().map_or(0, |s| s.start);
                let msg = e.message().trim().replace('\n', "; ");
                self.at(offset, format!("TOML syntax: {msg}"));
            }
            return None;
        }
        let doc = doc.get_ref();
        self.unknown_keys(doc, &TOP_KEYS, "the pipeline");

        let name = match doc.get("name") {
            Some(v) => self.string(v, "name"),
            None => {
                self.at(0, "missing `name = \"...\"`, the pipeline's name");
                None
            }
        };
        if let Some(n) = &name {
            if n.trim().is_empty() {
                self.at(
                    doc.get("name").map_or(0, |v| v.span().start),
                    "`name` is empty",
                );
            }
        }
        let description = doc
            .get("description")
            .and_then(|v| self.string(v, "description"));
        let workers = match doc.get("workers") {
            None => Some(DEFAULT_WORKERS),
            Some(v) => match self.int(v, "workers") {
                Some(n) if n > MAX_WORKERS as i64 => {
                    self.at(
                        v.span().start,
                        format!("`workers` must be at most {MAX_WORKERS}, not {n}"),
                    );
                    None
                }
                Some(n) if n >= 1 => usize::try_from(n).ok(),
                Some(n) => {
                    self.at(
                        v.span().start,
                        format!("`workers` must be at least 1, not {n}"),
                    );
                    None
                }
                None => None,
            },
        };
        let fail_fast = doc
            .get("fail_fast")
            .map_or(Some(true), |v| self.bool(v, "fail_fast"));
        let timeout = doc.get("timeout").map_or(Some(DEFAULT_TIMEOUT), |v| {
            self.duration(v, "timeout", false)
        });

        let params = self.params(doc.get("params"));
        // Every declared name, also of parameters whose schema is wrong (reported already).
        let mut param_names: Vec<(String, usize)> = match doc.get("params").map(|v| v.get_ref()) {
            Some(DeValue::Table(t)) => t
                .iter()
                .map(|(k, _)| (k.get_ref().to_string(), k.span().start))
                .collect(),
            _ => Vec::new(),
        };
        param_names.sort_by_key(|p| p.1);
        let param_names: Vec<String> = param_names.into_iter().map(|p| p.0).collect();

        let mut raw = Vec::new();
        match doc.get("nodes") {
            None => self.at(
                self.text.len(),
                "the pipeline has no nodes: add `[[nodes]]` tables",
            ),
            Some(v) => match v.get_ref() {
                DeValue::Array(items) => {
                    if items.is_empty() {
                        self.at(
                            v.span().start,
                            "the pipeline has no nodes: add `[[nodes]]` tables",
                        );
                    }
                    for item in items.iter() {
                        if let Some(n) =
                            self.node(item, timeout.unwrap_or(DEFAULT_TIMEOUT), &param_names)
                        {
                            raw.push(n);
                        }
                    }
                }
                other => self.at(
                    v.span().start,
                    format!(
                        "`nodes` must be an array of tables (`[[nodes]]`), not {}",
                        a_type(other)
                    ),
                ),
            },
        }
        let nodes = self.edges(raw);
        Some(Pipeline {
            name: name?,
            description,
            workers: workers?,
            fail_fast: fail_fast?,
            timeout: timeout?,
            params,
            nodes: nodes?,
            source: None,
            hash: String::new(),
            text: String::new(),
        })
    }

    fn unknown_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], what: &str) {
        for (k, _) in table.iter() {
            let key = k.get_ref().as_ref();
            if allowed.contains(&key) {
                continue;
            }
            let mut msg = format!("unknown key `{key}` in {what}");
            if let Some(s) = did_you_mean(key, allowed.iter().copied()) {
                msg.push_str(&format!(" (did you mean `{s}`?)"));
            }
            msg.push_str(&format!("; allowed: {}", allowed.join(", ")));
            self.at(k.span().start, msg);
        }
    }

    fn wrong_type(&mut self, v: &Val<'_>, what: &str, expected: &str) {
        self.at(
            v.span().start,
            format!("`{what}` must be {expected}, not {}", a_type(v.get_ref())),
        );
    }

    fn string(&mut self, v: &Val<'_>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(v, what, "a string");
                None
            }
        }
    }

    fn int(&mut self, v: &Val<'_>, what: &str) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.at(v.span().start, format!("`{what}` is too large"));
                    None
                }
            },
            _ => {
                self.wrong_type(v, what, "an integer");
                None
            }
        }
    }

    fn float(&mut self, v: &Val<'_>, what: &str) -> Option<f64> {
        match v.get_ref() {
            DeValue::Float(x) => match x.as_str().parse::<f64>() {
                Ok(f) if f.is_finite() => Some(f),
                _ => {
                    self.at(v.span().start, format!("`{what}` must be a finite number"));
                    None
                }
            },
            DeValue::Integer(_) => self.int(v, what).map(|i| i as f64),
            _ => {
                self.wrong_type(v, what, "a number");
                None
            }
        }
    }

    fn bool(&mut self, v: &Val<'_>, what: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, what, "true or false");
                None
            }
        }
    }

    fn duration(&mut self, v: &Val<'_>, what: &str, zero_ok: bool) -> Option<Duration> {
        let text = self.string(v, what)?;
        match humantime::parse_duration(&text) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.at(v.span().start, format!("`{what}` must be more than 0s"));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.at(
                    v.span().start,
                    format!(
                        "`{what}`: invalid duration {} ({e}); write e.g. \"30s\", \"1m 30s\", \"2h\"",
                        show_str(&text)
                    ),
                );
                None
            }
        }
    }

    /// An array of strings, each with its offset.
    fn strings(&mut self, v: &Val<'_>, what: &str) -> Option<Vec<(String, usize)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(v, what, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), item.span().start)),
                other => {
                    ok = false;
                    self.at(
                        item.span().start,
                        format!("`{what}` must hold only strings, not {}", a_type(other)),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    fn params(&mut self, v: Option<&Val<'_>>) -> Vec<ParamSpec> {
        let Some(v) = v else {
            return Vec::new();
        };
        let DeValue::Table(table) = v.get_ref() else {
            self.wrong_type(v, "params", "a table of `[params.NAME]` tables");
            return Vec::new();
        };
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let mut specs = Vec::new();
        for (k, v) in entries {
            let name = k.get_ref().as_ref();
            let at = k.span().start;
            if !is_name(name) {
                self.at(
                    at,
                    format!(
                        "invalid parameter name {}: letters, digits and _, not starting with a digit (it becomes an environment variable)",
                        show_str(name)
                    ),
                );
            } else if RESERVED_ENV.contains(&name)
                || ["LD_", "DYLD_", "LC_"].iter().any(|p| name.starts_with(p))
            {
                self.at(
                    at,
                    format!(
                        "parameter name `{name}` would replace the environment variable {name} of every node; choose another name"
                    ),
                );
            }
            let DeValue::Table(t) = v.get_ref() else {
                self.wrong_type(v, &format!("params.{name}"), "a table");
                continue;
            };
            if let Some(spec) = self.param(name, v.span().start, t) {
                specs.push(spec);
            }
        }
        specs
    }

    /// `min` and `max` of a number parameter, read by `read`; None when either is malformed
    /// (already reported). `min` above `max` is reported at `max`.
    fn bounds<T: PartialOrd + fmt::Display + Copy>(
        &mut self,
        t: &DeTable<'_>,
        name: &str,
        read: fn(&mut Self, &Val<'_>, &str) -> Option<T>,
    ) -> Option<(Option<T>, Option<T>)> {
        let min = t.get("min").map(|v| (read(self, v, "min"), v.span().start));
        let max = t.get("max").map(|v| (read(self, v, "max"), v.span().start));
        if matches!(min, Some((None, _))) || matches!(max, Some((None, _))) {
            return None;
        }
        let (min, max) = (min.and_then(|m| m.0), max.and_then(|m| Some((m.0?, m.1))));
        if let (Some(lo), Some((hi, at))) = (min, max) {
            if lo > hi {
                self.at(
                    at,
                    format!("`min` {lo} is more than `max` {hi} for parameter `{name}`"),
                );
            }
        }
        Some((min, max.map(|m| m.0)))
    }

    fn param(&mut self, name: &str, table_at: usize, t: &DeTable<'_>) -> Option<ParamSpec> {
        self.unknown_keys(t, &PARAM_KEYS, &format!("parameter `{name}`"));
        let kind_name = match t.get("type") {
            None => {
                self.at(
                    table_at,
                    format!(
                        "parameter `{name}` needs `type = \"...\"`, one of {}",
                        ParamKind::TYPE_NAMES.join(", ")
                    ),
                );
                None
            }
            Some(v) => self.string(v, "type").map(|s| (s, v.span().start)),
        };
        let ty = kind_name.as_ref().map(|(s, _)| s.as_str());
        let type_at = kind_name.as_ref().map_or(table_at, |(_, at)| *at);
        if let Some(ty) = ty {
            if !ParamKind::TYPE_NAMES.contains(&ty) {
                let alias = match ty {
                    "str" | "text" => Some("string"),
                    "integer" => Some("int"),
                    "number" | "double" => Some("float"),
                    "boolean" => Some("bool"),
                    "enum" => Some("choice"),
                    "file" | "dir" => Some("path"),
                    _ => did_you_mean(ty, ParamKind::TYPE_NAMES),
                };
                let mut msg = format!("unknown type {} for parameter `{name}`", show_str(ty));
                if let Some(a) = alias {
                    msg.push_str(&format!(" (did you mean \"{a}\"?)"));
                }
                msg.push_str(&format!("; types: {}", ParamKind::TYPE_NAMES.join(", ")));
                self.at(type_at, msg);
            }
        }
        // Keys that belong to other types.
        for (key, owner) in [
            ("choices", &["choice"][..]),
            ("pattern", &["regex"][..]),
            ("min", &["int", "float"][..]),
            ("max", &["int", "float"][..]),
        ] {
            if let (Some(v), Some(ty)) = (t.get(key), ty) {
                if ParamKind::TYPE_NAMES.contains(&ty) && !owner.contains(&ty) {
                    self.at(
                        v.span().start,
                        format!(
                            "`{key}` applies to type {}, not to \"{ty}\" (parameter `{name}`)",
                            owner
                                .iter()
                                .map(|o| format!("\"{o}\""))
                                .collect::<Vec<_>>()
                                .join(" or ")
                        ),
                    );
                }
            }
        }
        let kind = match ty? {
            "string" => Some(ParamKind::String),
            "bool" => Some(ParamKind::Bool),
            "ip" => Some(ParamKind::Ip),
            "path" => Some(ParamKind::Path),
            "int" => self
                .bounds(t, name, Self::int)
                .map(|(min, max)| ParamKind::Int { min, max }),
            "float" => self
                .bounds(t, name, Self::float)
                .map(|(min, max)| ParamKind::Float { min, max }),
            "choice" => match t.get("choices") {
                None => {
                    self.at(
                        type_at,
                        format!(
                            "parameter `{name}` of type \"choice\" needs `choices = [\"...\", ...]`"
                        ),
                    );
                    None
                }
                Some(v) => {
                    let items = self.strings(v, "choices")?;
                    let mut seen = BTreeSet::new();
                    if items.is_empty() {
                        self.at(
                            v.span().start,
                            format!("`choices` of parameter `{name}` is empty"),
                        );
                    }
                    for (s, at) in &items {
                        if !seen.insert(s.clone()) {
                            self.at(*at, format!("{} is listed twice in `choices`", show_str(s)));
                        }
                    }
                    Some(ParamKind::Choice(items.into_iter().map(|i| i.0).collect()))
                }
            },
            "regex" => match t.get("pattern") {
                None => {
                    self.at(
                        type_at,
                        format!("parameter `{name}` of type \"regex\" needs `pattern = \"...\"`"),
                    );
                    None
                }
                Some(v) => {
                    let pattern = self.string(v, "pattern")?;
                    match compile_pattern(&pattern) {
                        Ok(_) => Some(ParamKind::Regex(pattern)),
                        Err(e) => {
                            self.at(
                                v.span().start,
                                format!(
                                    "invalid pattern for parameter `{name}`: {}",
                                    regex_error(&e)
                                ),
                            );
                            None
                        }
                    }
                }
            },
            _ => None,
        };
        let required = t
            .get("required")
            .map_or(Some(false), |v| self.bool(v, "required"));
        let description = t
            .get("description")
            .and_then(|v| self.string(v, "description"));
        let allow_leading_dash = t
            .get("allow_leading_dash")
            .map_or(Some(false), |v| self.bool(v, "allow_leading_dash"));
        let kind = kind?;
        let spec = ParamSpec {
            name: name.to_string(),
            kind,
            required: required?,
            default: None,
            description,
            allow_leading_dash: allow_leading_dash?,
        };
        let default = match t.get("default") {
            None => None,
            Some(v) => Some(self.default(&spec, v)?),
        };
        Some(ParamSpec { default, ..spec })
    }

    fn default(&mut self, spec: &ParamSpec, v: &Val<'_>) -> Option<ParamValue> {
        let json = match v.get_ref() {
            DeValue::String(s) => Value::String(s.to_string()),
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Integer(_) => Value::from(self.int(v, "default")?),
            DeValue::Float(_) => Value::from(self.float(v, "default")?),
            other => {
                self.at(
                    v.span().start,
                    format!(
                        "invalid default: parameter `{}` expects {}, not {}",
                        spec.name,
                        spec.kind.expected(),
                        a_type(other)
                    ),
                );
                return None;
            }
        };
        let typed = matches!(
            spec.kind,
            ParamKind::Int { .. } | ParamKind::Float { .. } | ParamKind::Bool
        );
        let checked = if typed && json.is_string() {
            Err(format!(
                "parameter `{}` expects {}, got {json} (a string: write it without quotes)",
                spec.name,
                spec.kind.expected()
            ))
        } else {
            spec.check_value(&json)
        };
        match checked {
            Ok(value) => Some(value),
            Err(e) => {
                self.at(v.span().start, format!("invalid default: {e}"));
                None
            }
        }
    }

    fn node(&mut self, item: &Val<'_>, timeout: Duration, params: &[String]) -> Option<RawNode> {
        let span_start = item.span().start;
        let DeValue::Table(t) = item.get_ref() else {
            self.wrong_type(item, "nodes", "an array of tables (`[[nodes]]`)");
            return None;
        };
        let id = match t.get("id") {
            None => {
                self.at(span_start, "this node needs `id = \"...\"`");
                None
            }
            Some(v) => {
                let id = self.string(v, "id");
                if let Some(id) = &id {
                    let ok = !id.is_empty()
                        && id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
                    if !ok {
                        self.at(
                            v.span().start,
                            format!(
                                "invalid node id {}: use letters, digits, `_`, `-` and `.`",
                                show_str(id)
                            ),
                        );
                    }
                }
                id.map(|i| (i, v.span().start))
            }
        };
        let label = id
            .as_ref()
            .map_or_else(|| "this node".to_string(), |(i, _)| format!("node `{i}`"));
        self.unknown_keys(t, &NODE_KEYS, &label);

        let run = match (t.get("command"), t.get("script")) {
            (None, None) => {
                self.at(
                    span_start,
                    format!("{label} needs `command` (an argv) or `script` (run by sh -c)"),
                );
                None
            }
            (Some(_), Some(_)) => {
                let second = t
                    .iter()
                    .filter(|(k, _)| ["command", "script"].contains(&k.get_ref().as_ref()))
                    .map(|(k, _)| k.span().start)
                    .max()
                    .unwrap_or(span_start);
                self.at(
                    second,
                    format!("{label} has both `command` and `script`: keep one"),
                );
                None
            }
            (Some(v), None) => self.command(v, params),
            (None, Some(v)) => self.script(v, params),
        };
        let next = t
            .get("next")
            .map_or(Some(Vec::new()), |v| self.strings(v, "next"));
        let after = t
            .get("after")
            .map_or(Some(Vec::new()), |v| self.strings(v, "after"));
        let retries = match t.get("retries") {
            None => Some(0),
            Some(v) => match self.int(v, "retries") {
                Some(n) => match u32::try_from(n) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.at(
                            v.span().start,
                            format!("`retries` must be between 0 and {}, not {n}", u32::MAX),
                        );
                        None
                    }
                },
                None => None,
            },
        };
        let retry_delay = t.get("retry_delay").map_or(Some(Duration::ZERO), |v| {
            self.duration(v, "retry_delay", true)
        });
        let timeout = t
            .get("timeout")
            .map_or(Some(timeout), |v| self.duration(v, "timeout", false));
        let mut env = BTreeMap::new();
        let mut env_ok = true;
        if let Some(v) = t.get("env") {
            match v.get_ref() {
                DeValue::Table(e) => {
                    for (k, val) in e.iter() {
                        let key = k.get_ref().as_ref();
                        if !is_name(key) {
                            env_ok = false;
                            self.at(
                                k.span().start,
                                format!(
                                    "invalid environment variable name {}: letters, digits and _, not starting with a digit",
                                    show_str(key)
                                ),
                            );
                        } else if params.iter().any(|p| p == key) {
                            env_ok = false;
                            self.at(
                                k.span().start,
                                format!(
                                    "`env` key `{key}` is also a parameter: parameters reach nodes as environment variables of the same name"
                                ),
                            );
                        }
                        match self.string(val, &format!("env.{key}")) {
                            Some(s) if s.contains('\0') => {
                                env_ok = false;
                                self.at(
                                    val.span().start,
                                    "an environment value cannot hold a NUL byte",
                                );
                            }
                            Some(s) => {
                                env.insert(key.to_string(), s);
                            }
                            None => env_ok = false,
                        }
                    }
                }
                _ => {
                    env_ok = false;
                    self.wrong_type(v, "env", "a table of strings");
                }
            }
        }
        let workdir = match t.get("workdir") {
            None => Some(None),
            Some(v) => match self.string(v, "workdir") {
                Some(w) if w.is_empty() => {
                    self.at(v.span().start, "`workdir` is empty");
                    None
                }
                Some(w) => Some(Some(PathBuf::from(w))),
                None => None,
            },
        };
        let (id, id_at) = id?;
        let spec = (|| {
            Some(NodeSpec {
                id: id.clone(),
                run: run?,
                upstream: Vec::new(),
                retries: retries?,
                retry_delay: retry_delay?,
                timeout: timeout?,
                env: env_ok.then_some(env)?,
                workdir: workdir?,
            })
        })();
        Some(RawNode {
            spec: spec.filter(|_| next.is_some() && after.is_some()),
            id: (id, id_at),
            next: next.unwrap_or_default(),
            after: after.unwrap_or_default(),
        })
    }

    fn command(&mut self, v: &Val<'_>, params: &[String]) -> Option<NodeCommand> {
        if let DeValue::String(_) = v.get_ref() {
            self.at(
                v.span().start,
                "`command` must be an array of strings (an argv, run without a shell), not a string; for a shell line use `script`",
            );
            return None;
        }
        let argv = self.strings(v, "command")?;
        if argv.is_empty() {
            self.at(
                v.span().start,
                "`command` is empty: give the program and its arguments",
            );
            return None;
        }
        let mut ok = true;
        for (i, (arg, at)) in argv.iter().enumerate() {
            match parse_template(arg) {
                Err((_, e)) => {
                    ok = false;
                    self.at(*at, e);
                }
                Ok(parts) => {
                    if i == 0 && arg.is_empty() {
                        ok = false;
                        self.at(*at, "the program (first element of `command`) is empty");
                    }
                    for part in parts {
                        let Part::Param { name, .. } = part else {
                            continue;
                        };
                        if i == 0 {
                            ok = false;
                            self.at(
                                *at,
                                format!("the program (first element of `command`) cannot hold a placeholder (`{{{name}}}`): a parameter must not choose what runs"),
                            );
                        } else if !params.contains(&name) {
                            ok = false;
                            let mut msg = format!("placeholder `{{{name}}}` names no parameter");
                            if let Some(s) = did_you_mean(&name, params.iter().map(|p| p.as_str()))
                            {
                                msg.push_str(&format!(" (did you mean `{{{s}}}`?)"));
                            }
                            if params.is_empty() {
                                msg.push_str(
                                    "; the pipeline declares no parameters (`[params.NAME]`)",
                                );
                            } else {
                                msg.push_str(&format!("; known: {}", params.join(", ")));
                            }
                            msg.push_str("; write `{{` and `}}` for literal braces");
                            self.at(*at, msg);
                        }
                    }
                }
            }
        }
        if ok {
            // Arguments a program runs as code, or uses to choose what runs.
            let templates: Vec<String> = argv.iter().map(|a| a.0.clone()).collect();
            for (i, role) in analyze(&templates).roles {
                let (arg, at) = &argv[i];
                if i == 0 || !has_placeholder(arg) {
                    continue;
                }
                let name = parse_template(arg)
                    .ok()
                    .and_then(|parts| {
                        parts.into_iter().find_map(|p| match p {
                            Part::Param { name, .. } => Some(name),
                            Part::Text(_) => None,
                        })
                    })
                    .unwrap_or_default();
                ok = false;
                let script = format!(
                    "Use `script = '...'` and write \"${name}\" there (parameters arrive as environment variables in a script)"
                );
                let msg = match role {
                    Role::Code { what, positional } => format!(
                        "`{{{name}}}` is in the code `{what}` runs: a value must never become code. {script}{}",
                        if positional {
                            ", or pass it as a separate argument after the code"
                        } else {
                            ""
                        }
                    ),
                    Role::Program { by } => format!(
                        "`{{{name}}}` would choose what {by} runs: a parameter must not choose the program or script that runs. {script}"
                    ),
                };
                self.at(*at, msg);
            }
        }
        ok.then(|| NodeCommand::Argv(argv.into_iter().map(|a| a.0).collect()))
    }

    fn script(&mut self, v: &Val<'_>, params: &[String]) -> Option<NodeCommand> {
        let script = self.string(v, "script")?;
        if script.trim().is_empty() {
            self.at(v.span().start, "`script` is empty");
            return None;
        }
        let raw = &self.text[v.span()];
        let mut ok = true;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let bytes = script.as_bytes();
        let mut i = 0;
        while let Some(rel) = script[i..].find('{') {
            let start = i + rel;
            i = start + 1;
            let Some(len) = script[start + 1..].find('}') else {
                break;
            };
            let name = &script[start + 1..start + 1 + len];
            if !params.iter().any(|p| p == name) {
                continue;
            }
            let needle = format!("{{{name}}}");
            let nth = *seen
                .entry(name.to_string())
                .and_modify(|n| *n += 1)
                .or_insert(0);
            if start > 0 && bytes[start - 1] == b'$' {
                continue;
            }
            ok = false;
            let at = raw
                .match_indices(&needle)
                .nth(nth)
                .map_or(v.span().start, |(o, _)| v.span().start + o);
            self.at(
                at,
                format!(
                    "write \"${name}\" in a script: parameters reach scripts only as environment variables (`{{{name}}}` is not replaced)"
                ),
            );
        }
        ok.then_some(NodeCommand::Script(script))
    }

    /// Resolves `next`/`after` to upstream indices; reports duplicate ids, unknown names and
    /// cycles.
    fn edges(&mut self, raw: Vec<RawNode>) -> Option<Vec<NodeSpec>> {
        let mut index: HashMap<String, (usize, usize)> = HashMap::with_capacity(raw.len());
        let mut lines = None;
        for (i, n) in raw.iter().enumerate() {
            let (id, at) = n.id.clone();
            if let Some((_, first_at)) = index.get(&id) {
                let lines = lines.get_or_insert_with(|| LineIndex::new(self.text));
                let (line, _) = lines.line_col(self.text, *first_at);
                self.at(
                    at,
                    format!("duplicate node id `{id}` (first defined at line {line})"),
                );
            } else {
                index.insert(id, (i, at));
            }
        }
        let mut ids: Vec<&str> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::with_capacity(raw.len());
        for n in &raw {
            if seen.insert(n.id.0.as_str()) {
                ids.push(&n.id.0);
            }
        }
        // Messages name at most this many nodes, and suggest a name for at most this many
        // unknown ones: a file of thousands of wrong names is still checked in linear time.
        const LISTED: usize = 20;
        let listed = if ids.len() > LISTED {
            format!(
                "{}, ... ({} more)",
                ids[..LISTED].join(", "),
                ids.len() - LISTED
            )
        } else {
            ids.join(", ")
        };
        let mut suggestions = 0;
        let mut unknown = Vec::new();
        let mut upstream: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); raw.len()];
        for (i, n) in raw.iter().enumerate() {
            let me = &n.id.0;
            for (key, list) in [("next", &n.next), ("after", &n.after)] {
                for (other, at) in list {
                    match index.get(other) {
                        Some((j, _)) if key == "next" => {
                            upstream[*j].insert(i);
                        }
                        Some((j, _)) => {
                            upstream[i].insert(*j);
                        }
                        None => {
                            let mut msg = format!(
                                "`{key}` of node `{me}` names unknown node {}",
                                show_str(other)
                            );
                            suggestions += 1;
                            if suggestions <= 100 {
                                if let Some(s) = did_you_mean(other, ids.iter().copied()) {
                                    msg.push_str(&format!(" (did you mean `{s}`?)"));
                                }
                            }
                            msg.push_str(&format!("; nodes: {listed}"));
                            unknown.push((*at, msg));
                        }
                    }
                }
            }
        }
        for (at, msg) in unknown {
            self.at(at, msg);
        }
        let upstream: Vec<Vec<usize>> = upstream
            .into_iter()
            .map(|u| u.into_iter().collect())
            .collect();
        for cycle in cycles(&upstream) {
            let path: Vec<&str> = cycle.iter().map(|i| raw[*i].id.0.as_str()).collect();
            self.at(raw[cycle[0]].id.1, format!("cycle: {}", path.join(" -> ")));
        }
        raw.into_iter()
            .zip(upstream)
            .map(|(n, up)| {
                n.spec.map(|spec| NodeSpec {
                    upstream: up,
                    ..spec
                })
            })
            .collect()
    }
}

/// One cycle per strongly connected part of the graph that has one, each as a path of node
/// indices starting and ending at its lowest index (the shortest cycle through that node),
/// ordered by that index. Linear in nodes and edges: Tarjan's algorithm (without recursion, so a
/// chain of 100,000 nodes does not overflow the stack), then one breadth-first search inside
/// each part that has a cycle.
fn cycles(upstream: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = upstream.len();
    let mut down = vec![Vec::new(); n];
    for (i, up) in upstream.iter().enumerate() {
        for u in up {
            down[*u].push(i);
        }
    }
    // Tarjan: index and lowlink of each node; `part` numbers each strongly connected part.
    const NONE: usize = usize::MAX;
    let mut index = vec![NONE; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut part = vec![NONE; n];
    let mut parts: Vec<Vec<usize>> = Vec::new();
    let mut next = 0;
    // (node, position in its `down` list)
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        calls.push((root, 0));
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
            if let Some(&w) = down[v].get(*pos) {
                *pos += 1;
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut members = Vec::new();
                loop {
                    let w = stack.pop().expect("v is on the stack");
                    on_stack[w] = false;
                    part[w] = parts.len();
                    members.push(w);
                    if w == v {
                        break;
                    }
                }
                parts.push(members);
            }
        }
    }
    let mut found = Vec::new();
    let mut parent = vec![NONE; n];
    for (p, members) in parts.iter().enumerate() {
        let s = *members.iter().min().expect("a part has a member");
        if members.len() == 1 && !down[s].contains(&s) {
            continue;
        }
        // Shortest path from s back to s, inside the part.
        let mut queue = VecDeque::from([s]);
        let mut reached = false;
        'search: while let Some(x) = queue.pop_front() {
            for &y in &down[x] {
                if part[y] != p || parent[y] != NONE {
                    continue;
                }
                parent[y] = x;
                if y == s {
                    reached = true;
                    break 'search;
                }
                queue.push_back(y);
            }
        }
        debug_assert!(reached);
        let mut chain = Vec::new();
        let mut x = parent[s];
        while x != s {
            chain.push(x);
            x = parent[x];
        }
        chain.reverse();
        let mut path = vec![s];
        path.extend(chain);
        path.push(s);
        found.push(path);
        for &m in members {
            parent[m] = NONE;
        }
    }
    found.sort_by_key(|c| c[0]);
    found
}

/// "a string", "an integer", ... for a TOML value.
fn a_type(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The one-line gist of a regex error.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.trim())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match Pipeline::from_toml(text, "t.toml") {
            Ok(_) => panic!("expected problems"),
            Err(e) => e
                .problems
                .iter()
                .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
                .collect(),
        }
    }

    const WEB_CHECK_FILE: &str = r#"name = "web_check"
description = "The web-check pipeline"
workers = 3
fail_fast = false
timeout = "60s"

[params.ip]
type = "ip"
required = true
default = "127.0.0.1"
description = "host to ping"

[params.mode]
type = "choice"
choices = ["fast", "slow"]

[params.ratio]
type = "float"
min = 0
max = 1.5
default = 1

[[nodes]]
id = "A"
command = ["ping", "-c", "4", "{ip}"]
next = ["B", "B"]
retries = 1
retry_delay = "1s"
timeout = "30s"
env = { LANG = "C" }
workdir = "."

[[nodes]]
id = "B"
script = '''
echo "test1.A"
ping -c 1 "$ip"
'''
after = ["A", "C"]

[[nodes]]
id = "C"
command = ["echo", "{{literal}} {mode}"]
timeout = "1m 30s"
"#;

    #[test]
    fn full_file_round_trips() {
        let p = Pipeline::from_toml(WEB_CHECK_FILE, "web_check.toml").unwrap();
        assert_eq!(p.name, "web_check");
        assert_eq!(p.description.as_deref(), Some("The web-check pipeline"));
        assert_eq!((p.workers, p.fail_fast), (3, false));
        assert_eq!(p.timeout, Duration::from_secs(60));
        assert_eq!(p.source, None);
        assert_eq!(
            p.hash,
            blake3::hash(WEB_CHECK_FILE.as_bytes()).to_hex().to_string()
        );
        assert_eq!(
            p.params,
            [
                ParamSpec {
                    name: "ip".into(),
                    kind: ParamKind::Ip,
                    required: true,
                    default: Some(ParamValue::String("127.0.0.1".into())),
                    description: Some("host to ping".into()),
                    allow_leading_dash: false,
                },
                ParamSpec {
                    name: "mode".into(),
                    kind: ParamKind::Choice(vec!["fast".into(), "slow".into()]),
                    required: false,
                    default: None,
                    description: None,
                    allow_leading_dash: false,
                },
                ParamSpec {
                    name: "ratio".into(),
                    kind: ParamKind::Float {
                        min: Some(0.0),
                        max: Some(1.5)
                    },
                    required: false,
                    default: Some(ParamValue::Float(1.0)),
                    description: None,
                    allow_leading_dash: false,
                },
            ]
        );
        assert_eq!(
            p.nodes,
            [
                NodeSpec {
                    id: "A".into(),
                    run: NodeCommand::Argv(vec![
                        "ping".into(),
                        "-c".into(),
                        "4".into(),
                        "{ip}".into()
                    ]),
                    upstream: vec![],
                    retries: 1,
                    retry_delay: Duration::from_secs(1),
                    timeout: Duration::from_secs(30),
                    env: BTreeMap::from([("LANG".to_string(), "C".to_string())]),
                    workdir: Some(PathBuf::from(".")),
                },
                NodeSpec {
                    id: "B".into(),
                    run: NodeCommand::Script("echo \"test1.A\"\nping -c 1 \"$ip\"\n".into()),
                    upstream: vec![0, 2],
                    retries: 0,
                    retry_delay: Duration::ZERO,
                    timeout: Duration::from_secs(60),
                    env: BTreeMap::new(),
                    workdir: None,
                },
                NodeSpec {
                    id: "C".into(),
                    run: NodeCommand::Argv(vec!["echo".into(), "{{literal}} {mode}".into()]),
                    upstream: vec![],
                    retries: 0,
                    retry_delay: Duration::ZERO,
                    timeout: Duration::from_secs(90),
                    env: BTreeMap::new(),
                    workdir: None,
                },
            ]
        );
        assert_eq!(p.topo_order(), [0, 2, 1]);
        assert_eq!(p.downstream(0), [1]);
        assert_eq!(p.downstream(1), Vec::<usize>::new());
        assert_eq!(p.start_nodes(), [0, 2]);
        assert_eq!(p.end_nodes(), [1]);
        assert_eq!(p.node_index("C"), Some(2));
        assert_eq!(p.node_index("Z"), None);
    }

    #[test]
    fn defaults_of_a_minimal_file() {
        let p = Pipeline::from_toml(
            "name = \"m\"\n[[nodes]]\nid = \"only\"\ncommand = [\"true\"]\n",
            "m",
        )
        .unwrap();
        assert_eq!(p.workers, DEFAULT_WORKERS);
        assert!(p.fail_fast);
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        assert!(p.params.is_empty());
        assert_eq!(p.nodes[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(p.nodes[0].retries, 0);
        assert_eq!(
            (p.start_nodes(), p.end_nodes(), p.topo_order()),
            (vec![0], vec![0], vec![0])
        );
    }

    const BROKEN: &str = r#"name = "broken"
workers = 0
timeout = "soon"
colour = "red"

[params.ip]
type = "str"
default = "127.0.0.1"

[params.mode]
type = "choice"

[params.count]
type = "int"
min = 10
max = 1
default = "3"

[params.tag]
type = "regex"
pattern = "([a-z]"

[[nodes]]
id = "A"
command = ["ping", "{host}", "{ip"]
next = ["B", "Z"]

[[nodes]]
id = "B"
script = '''
echo start
ping -c 1 {ip}
'''
comand = ["x"]

[[nodes]]
id = "A"
script = "true"
command = ["true"]
retry_delay = "1 parsec"

[[nodes]]
id = "C"
"#;

    #[test]
    fn broken_file_reports_every_problem_with_its_position() {
        assert_eq!(
            problems(BROKEN),
            [
                "2:11: `workers` must be at least 1, not 0",
                "3:11: `timeout`: invalid duration \"soon\" (expected number at 0); write e.g. \"30s\", \"1m 30s\", \"2h\"",
                "4:1: unknown key `colour` in the pipeline; allowed: name, description, workers, fail_fast, timeout, params, nodes",
                "7:8: unknown type \"str\" for parameter `ip` (did you mean \"string\"?); types: string, int, float, bool, choice, regex, ip, path",
                "11:8: parameter `mode` of type \"choice\" needs `choices = [\"...\", ...]`",
                "16:7: `min` 10 is more than `max` 1 for parameter `count`",
                "17:11: invalid default: parameter `count` expects an int, got \"3\" (a string: write it without quotes)",
                "21:11: invalid pattern for parameter `tag`: unclosed group",
                "25:20: placeholder `{host}` names no parameter; known: ip, mode, count, tag; write `{{` and `}}` for literal braces",
                "25:30: unbalanced `{` in \"{ip\": write `{{` for a literal brace",
                "26:14: `next` of node `A` names unknown node \"Z\"; nodes: A, B, C",
                "32:11: write \"$ip\" in a script: parameters reach scripts only as environment variables (`{ip}` is not replaced)",
                "34:1: unknown key `comand` in node `B` (did you mean `command`?); allowed: id, command, script, next, after, retries, retry_delay, timeout, env, workdir",
                "37:6: duplicate node id `A` (first defined at line 24)",
                "39:1: node `A` has both `command` and `script`: keep one",
                "40:15: `retry_delay`: invalid duration \"1 parsec\" (unknown time unit \"parsec\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)); write e.g. \"30s\", \"1m 30s\", \"2h\"",
                "42:1: node `C` needs `command` (an argv) or `script` (run by sh -c)",
            ]
        );
        let err = Pipeline::from_toml(BROKEN, "broken.toml").unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with(
            "broken.toml:2:11: `workers` must be at least 1, not 0\nbroken.toml:3:11: "
        ));
        assert!(shown.ends_with("\n17 problems"));
    }

    fn nodes(edges: &str) -> String {
        // "A>B B>C" : one node per letter, `next` edges.
        let mut ids: Vec<char> = edges.chars().filter(|c| c.is_ascii_uppercase()).collect();
        ids.dedup();
        let mut seen = Vec::new();
        let mut text = String::from("name = \"g\"\n");
        for id in ids {
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            let next: Vec<String> = edges
                .split_whitespace()
                .filter(|e| e.starts_with(id))
                .map(|e| format!("\"{}\"", &e[2..]))
                .collect();
            text.push_str(&format!(
                "[[nodes]]\nid = \"{id}\"\ncommand = [\"true\"]\nnext = [{}]\n",
                next.join(", ")
            ));
        }
        text
    }

    #[test]
    fn cycles_are_reported_with_their_path_at_their_first_node() {
        // Nodes in order A B C D; A's `id` is on line 3, each node takes 4 lines.
        assert_eq!(
            problems(&nodes("A>B B>C C>A C>D")),
            ["3:6: cycle: A -> B -> C -> A"]
        );
        assert_eq!(
            problems(&nodes("A>B B>B C>D D>C")),
            ["7:6: cycle: B -> B", "11:6: cycle: C -> D -> C"]
        );
        // `after` closes a cycle too, and the shortest one through the first node is shown.
        let text = "name = \"g\"\n[[nodes]]\nid = \"x\"\ncommand = [\"true\"]\nafter = [\"z\"]\nnext = [\"y\", \"z\"]\n[[nodes]]\nid = \"y\"\ncommand = [\"true\"]\nnext = [\"z\"]\n[[nodes]]\nid = \"z\"\ncommand = [\"true\"]\n";
        assert_eq!(problems(text), ["3:6: cycle: x -> z -> x"]);
        // A DAG with a diamond is fine.
        assert!(Pipeline::from_toml(&nodes("A>B A>C B>D C>D"), "g").is_ok());
    }

    #[test]
    fn toml_syntax_error_position() {
        let text = "name = \"x\"\n[[nodes]]\nid = \"a\"\ncommand = [\"a\" \"b\"]\n";
        let p = problems(text);
        assert_eq!(
            p[0],
            "4:16: TOML syntax: missing comma between array elements, expected `,`"
        );
        assert!(p.iter().all(|m| m.contains("TOML syntax")), "{p:?}");
        assert_eq!(
            problems("name = \"x\nworkers = 2\n")[0],
            "1:10: TOML syntax: invalid basic string, expected `\"`"
        );
    }

    #[test]
    fn unknown_keys_with_suggestions() {
        let text = "name = \"x\"\nworker = 2\n[params.p]\ntype = \"int\"\nmax = 3\ndefualt = 1\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\nretires = 2\nzzz = 1\n";
        assert_eq!(
            problems(text),
            [
                "2:1: unknown key `worker` in the pipeline (did you mean `workers`?); allowed: name, description, workers, fail_fast, timeout, params, nodes",
                "6:1: unknown key `defualt` in parameter `p` (did you mean `default`?); allowed: type, required, default, description, choices, pattern, min, max, allow_leading_dash",
                "10:1: unknown key `retires` in node `a` (did you mean `retries`?); allowed: id, command, script, next, after, retries, retry_delay, timeout, env, workdir",
                "11:1: unknown key `zzz` in node `a`; allowed: id, command, script, next, after, retries, retry_delay, timeout, env, workdir",
            ]
        );
    }

    #[test]
    fn wrong_value_types() {
        let text = "name = 3\nfail_fast = \"yes\"\nworkers = \"5\"\nnodes = 1\n";
        assert_eq!(
            problems(text),
            [
                "1:8: `name` must be a string, not an integer",
                "2:13: `fail_fast` must be true or false, not a string",
                "3:11: `workers` must be an integer, not a string",
                "4:9: `nodes` must be an array of tables (`[[nodes]]`), not an integer",
            ]
        );
        let text = "name = \"x\"\n[[nodes]]\nid = \"a\"\ncommand = \"ls -l\"\nretries = -1\nenv = { A = 1, ip = \"x\" }\nnext = [1]\n[params.ip]\ntype = \"ip\"\n";
        assert_eq!(
            problems(text),
            [
                "4:11: `command` must be an array of strings (an argv, run without a shell), not a string; for a shell line use `script`",
                "5:11: `retries` must be between 0 and 4294967295, not -1",
                "6:13: `env.A` must be a string, not an integer",
                "6:16: `env` key `ip` is also a parameter: parameters reach nodes as environment variables of the same name",
                "7:9: `next` must hold only strings, not an integer",
            ]
        );
    }

    #[test]
    fn parameter_schema_errors() {
        let text = r#"name = "x"
[params.a]
type = "choice"
choices = []
[params.b]
type = "int"
default = 11
max = 10
[params.c]
type = "string"
min = 1
[params.PATH]
type = "path"
default = "-x"
[params.d]
required = true
[params.e]
type = "regex"
pattern = "[a-z]+"
default = "ABC"
[params.f]
type = "choice"
choices = ["x", "x"]
default = "y"
[params.g]
type = "ip"
default = 127
[params.h]
type = "float"
min = "0"
[params.i]
type = "float"
max = inf
[[nodes]]
id = "n"
command = ["true"]
"#;
        assert_eq!(
            problems(text),
            [
                "4:11: `choices` of parameter `a` is empty",
                "7:11: invalid default: parameter `b`: 11 is more than the maximum 10",
                "11:7: `min` applies to type \"int\" or \"float\", not to \"string\" (parameter `c`)",
                "12:9: parameter name `PATH` would replace the environment variable PATH of every node; choose another name",
                "14:11: invalid default: parameter `PATH`: the path \"-x\" starts with `-` and would read as an option; write ./-x",
                "15:1: parameter `d` needs `type = \"...\"`, one of string, int, float, bool, choice, regex, ip, path",
                "20:11: invalid default: parameter `e`: \"ABC\" does not match the pattern [a-z]+",
                "23:17: \"x\" is listed twice in `choices`",
                "24:11: invalid default: parameter `f`: \"y\" is not one of \"x\", \"x\"",
                "27:11: invalid default: parameter `g` expects an IP address, got 127",
                "30:7: `min` must be a number, not a string",
                "33:7: `max` must be a finite number",
            ]
        );
    }

    #[test]
    fn command_and_script_placeholders() {
        let text = r#"name = "x"
[params.ip]
type = "ip"
default = "::1"
[[nodes]]
id = "a"
command = ["{ip}", "x"]
[[nodes]]
id = "b"
command = ["echo", "{pi}", "a}b", "{ 1 }"]
[[nodes]]
id = "c"
script = """
echo "${ip}" {ip} '{ip}'
awk '{print $1}' {ip2} {{ip}}
"""
[[nodes]]
id = "d"
command = []
"#;
        assert_eq!(
            problems(text),
            [
                "7:12: the program (first element of `command`) cannot hold a placeholder (`{ip}`): a parameter must not choose what runs",
                "10:20: placeholder `{pi}` names no parameter; known: ip; write `{{` and `}}` for literal braces",
                "10:28: unbalanced `}` in \"a}b\": write `}}` for a literal brace",
                "10:35: invalid placeholder `{ 1 }` in \"{ 1 }\": a parameter name is letters, digits and _ (write `{{` for a literal brace)",
                "14:14: write \"$ip\" in a script: parameters reach scripts only as environment variables (`{ip}` is not replaced)",
                "14:20: write \"$ip\" in a script: parameters reach scripts only as environment variables (`{ip}` is not replaced)",
                "15:25: write \"$ip\" in a script: parameters reach scripts only as environment variables (`{ip}` is not replaced)",
                "19:11: `command` is empty: give the program and its arguments",
            ]
        );
    }

    #[test]
    fn display_and_unreadable_file() {
        let err = Pipeline::from_path("/nonexistent/p.toml").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].line, 0);
        assert!(
            err.to_string()
                .starts_with("/nonexistent/p.toml: cannot read the pipeline file: "),
            "{err}"
        );
        assert!(err.to_string().ends_with("\n1 problem"));
        assert_eq!(
            problems("")[..],
            [
                "1:1: missing `name = \"...\"`, the pipeline's name",
                "1:1: the pipeline has no nodes: add `[[nodes]]` tables"
            ]
        );
        assert_eq!(line_col("ab\nçd", 5), (2, 2));
    }

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/pipelines")
            .join(name)
    }

    #[test]
    fn web_check_example_passes() {
        let path = example("web_check.toml");
        let p = Pipeline::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.source.as_deref(), Some(path.as_path()));
        let ids = |v: Vec<usize>| {
            v.into_iter()
                .map(|i| p.nodes[i].id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(p.start_nodes()), ["A", "C", "E"]);
        assert_eq!(ids(p.end_nodes()), ["D", "E"]);
        assert_eq!(ids(p.topo_order()), ["A", "C", "B", "D", "E"]);
        let a = &p.nodes[0];
        let NodeCommand::Script(script) = &a.run else {
            panic!("A is a script")
        };
        assert!(script.contains("echo \"test1.A\"") && script.contains("\"$ip\""));
        assert_eq!(ids(p.downstream(0)), ["B"]);
        let e = p.node_index("E").unwrap();
        assert!(p.nodes[e].upstream.is_empty() && p.downstream(e).is_empty());
        assert_eq!(
            p.params[0].default,
            Some(ParamValue::String("127.0.0.1".into()))
        );
    }

    #[test]
    fn backup_example_passes() {
        let p = Pipeline::from_path(example("backup.toml")).unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<&str> = p.params.iter().map(|s| s.kind.type_name()).collect();
        assert_eq!(kinds, ["path", "path", "regex", "choice", "int"]);
        let ids: Vec<&str> = p
            .topo_order()
            .iter()
            .map(|i| p.nodes[*i].id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["prepare", "dump", "compress", "checksum", "verify", "prune"]
        );
    }

    /// Runs backup.toml's nodes one after another, the way a runner would (argv rendered, no
    /// shell; scripts by `sh -c` with the parameters in the environment), on a temporary tree.
    #[cfg(unix)]
    #[test]
    fn backup_example_runs_with_sh_and_coreutils() {
        use crate::pipeline::params::{param_env, render_argv, resolve};
        use std::process::Command;

        let p = Pipeline::from_path(example("backup.toml")).unwrap();
        let tmp = std::env::temp_dir().join(format!("weft-backup-{}", std::process::id()));
        let source = tmp.join("src dir; $(touch pwned)");
        std::fs::create_dir_all(source.join("sub")).unwrap();
        std::fs::write(source.join("sub/a.txt"), "hello").unwrap();
        let dest = tmp.join("out 'q'");
        let run = |keep: &str| {
            let given = vec![
                (
                    "source".to_string(),
                    Value::String(source.display().to_string()),
                ),
                (
                    "dest".to_string(),
                    Value::String(dest.display().to_string()),
                ),
                ("keep".to_string(), Value::String(keep.into())),
            ];
            let values = resolve(&p.params, &given, None).unwrap();
            for i in p.topo_order() {
                let node = &p.nodes[i];
                let mut cmd = match &node.run {
                    NodeCommand::Argv(argv) => {
                        let argv = render_argv(argv, &values).unwrap();
                        let mut c = Command::new(&argv[0]);
                        c.args(&argv[1..]);
                        c
                    }
                    NodeCommand::Script(s) => {
                        let mut c = Command::new("sh");
                        c.arg("-c").arg(s);
                        c
                    }
                };
                cmd.current_dir(&tmp)
                    .envs(param_env(&values))
                    .envs(&node.env);
                let out = cmd.output().unwrap();
                assert!(
                    out.status.success(),
                    "{}: {}{}",
                    node.id,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        };
        run("7");
        run("1");
        let names: Vec<String> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let archives = names.iter().filter(|n| n.ends_with(".tar.gz")).count();
        let sums = names
            .iter()
            .filter(|n| n.ends_with(".tar.gz.sha256"))
            .count();
        assert_eq!((archives, sums), (1, 1), "{names:?}");
        assert!(!tmp.join("pwned").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    /// A pipeline with one string parameter `v` and one node running `argv` (TOML array text).
    fn one_node(argv: &str) -> String {
        format!("name = \"x\"\n[params.v]\ntype = \"string\"\n[[nodes]]\nid = \"n\"\ncommand = {argv}\n")
    }

    #[test]
    fn placeholders_in_code_an_interpreter_runs_are_refused() {
        for argv in [
            r#"["sh", "-c", "echo ping -c 1 {v}"]"#,
            r#"["bash", "-ec", "echo {v}"]"#,
            r#"["/bin/sh", "-xc", "{v}"]"#,
            r#"["dash", "-e", "-c", "echo {v}"]"#,
            r#"["zsh", "-c", "echo {v}"]"#,
            r#"["ksh", "-c", "echo {v}"]"#,
            r#"["ash", "-c", "echo {v}"]"#,
            r#"["fish", "--command", "echo {v}"]"#,
            r#"["busybox", "sh", "-c", "echo {v}"]"#,
            r#"["env", "sh", "-c", "echo {v}"]"#,
            r#"["/usr/bin/env", "bash", "-c", "echo {v}"]"#,
            r#"["env", "-i", "VAR=1", "sh", "-c", "echo {v}"]"#,
            r#"["sudo", "-u", "me", "sh", "-c", "echo {v}"]"#,
            r#"["nice", "-n", "5", "sh", "-c", "echo {v}"]"#,
            r#"["timeout", "-k", "1s", "10s", "bash", "-c", "echo {v}"]"#,
            r#"["nohup", "sh", "-c", "echo {v}"]"#,
            r#"["xargs", "-0", "sh", "-c", "echo {v}"]"#,
            r#"["find", ".", "-exec", "sh", "-c", "echo {v}", ";"]"#,
            r#"["python3", "-c", "print('{v}')"]"#,
            r#"["python", "-Sc", "print('{v}')"]"#,
            r#"["perl", "-e", "print '{v}'"]"#,
            r#"["perl", "-lne", "print '{v}'"]"#,
            r#"["node", "-e", "console.log('{v}')"]"#,
            r#"["node", "--eval", "console.log('{v}')"]"#,
            r#"["node", "-p", "'{v}'"]"#,
            r#"["ruby", "-e", "puts '{v}'"]"#,
            r#"["php", "-r", "echo '{v}';"]"#,
            r#"["awk", "BEGIN {{ print \"{v}\" }}"]"#,
            r#"["gawk", "-F", ":", "{{ print \"{v}\" }}", "/etc/passwd"]"#,
            r#"["osascript", "-e", "say \"{v}\""]"#,
            r#"["pwsh", "-Command", "echo {v}"]"#,
            r#"["pwsh", "-c", "echo {v}"]"#,
            r#"["sed", "-e", "s/x/{v}/"]"#,
            r#"["ssh", "host", "echo", "{v}"]"#,
            r#"["ssh", "-o", "ProxyCommand={v}", "host"]"#,
            r#"["su", "-c", "echo {v}", "me"]"#,
            r#"["watch", "echo", "{v}"]"#,
            r#"["env", "-S", "sh -c {v}"]"#,
            r#"["sh", "{v}"]"#,
            r#"["env", "{v}"]"#,
            r#"["sudo", "{v}"]"#,
        ] {
            let found = problems(&one_node(argv));
            assert_eq!(found.len(), 1, "{argv}: {found:?}");
            assert!(found[0].starts_with("6:"), "{argv}: {found:?}");
            assert!(
                found[0].contains("script") && found[0].contains("\"$v\""),
                "{argv}: {found:?}"
            );
        }
        // Data positions stay allowed: a positional parameter after a shell's code, a plain
        // program's argument, an option's value, a wrapper's own operands.
        for argv in [
            r#"["sh", "-c", "echo \"$1\"", "sh", "{v}"]"#,
            r#"["bash", "-c", "printf '%s' \"$0\"", "{v}"]"#,
            r#"["ping", "-c", "1", "{v}"]"#,
            r#"["timeout", "{v}", "sleep", "1"]"#,
            r#"["env", "V={v}", "printenv", "V"]"#,
            r#"["awk", "-v", "x={v}", "BEGIN {{ print x }}"]"#,
            r#"["python3", "script.py", "{v}"]"#,
            r#"["ssh", "-o", "BatchMode=yes", "{v}", "uptime"]"#,
            r#"["sh", "-c", "sleep 1; echo done"]"#,
        ] {
            assert!(
                Pipeline::from_toml(&one_node(argv), "x").is_ok(),
                "{argv}: {:?}",
                Pipeline::from_toml(&one_node(argv), "x")
                    .unwrap_err()
                    .problems
            );
        }
    }

    #[test]
    fn the_code_refusal_points_at_the_argument() {
        assert_eq!(
            problems(&one_node(r#"["sh", "-c", "echo ping -c 1 {v}"]"#)),
            ["6:24: `{v}` is in the code `sh -c` runs: a value must never become code. Use `script = '...'` and write \"$v\" there (parameters arrive as environment variables in a script), or pass it as a separate argument after the code"]
        );
    }

    #[test]
    fn workers_out_of_range_are_refused() {
        for (n, want) in [
            (
                "9223372036854775807",
                "2:11: `workers` must be at most 100000, not 9223372036854775807",
            ),
            (
                "100001",
                "2:11: `workers` must be at most 100000, not 100001",
            ),
            ("-3", "2:11: `workers` must be at least 1, not -3"),
        ] {
            let text = format!(
                "name = \"w\"\nworkers = {n}\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\n"
            );
            assert_eq!(problems(&text), [want]);
        }
        let text = "name = \"w\"\nworkers = 100000\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\n";
        assert_eq!(Pipeline::from_toml(text, "w").unwrap().workers, 100_000);
    }

    #[test]
    fn allow_leading_dash_is_a_schema_key() {
        let text = "name = \"x\"\n[params.v]\ntype = \"string\"\nallow_leading_dash = true\n[params.w]\ntype = \"string\"\nallow_leading_dahs = true\n[params.b]\ntype = \"bool\"\nallow_leading_dash = 1\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\n";
        let found = problems(text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("7:1: unknown key `allow_leading_dahs` in parameter `w` (did you mean `allow_leading_dash`?)"), "{found:?}");
        assert_eq!(
            found[1],
            "10:22: `allow_leading_dash` must be true or false, not an integer"
        );
        let text = "name = \"x\"\n[params.v]\ntype = \"string\"\nallow_leading_dash = true\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\n";
        assert!(Pipeline::from_toml(text, "x").is_ok());
    }

    #[test]
    fn a_pattern_cannot_escape_its_anchoring() {
        let text = "name = \"x\"\n[params.t]\ntype = \"regex\"\npattern = \"[a-z]+)|(.*\"\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\n";
        let found = problems(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("4:11: invalid pattern for parameter `t`: "),
            "{found:?}"
        );
    }

    /// A file of `n` nodes, each after the one before.
    fn chain(n: usize) -> String {
        let mut t = String::from("name = \"chain\"\n");
        for i in 0..n {
            t.push_str(&format!("[[nodes]]\nid = \"n{i}\"\ncommand = [\"true\"]\n"));
            if i > 0 {
                t.push_str(&format!("after = [\"n{}\"]\n", i - 1));
            }
        }
        t
    }

    #[test]
    fn checking_grows_linearly_with_the_file() {
        // Quadratic parts took minutes here (58 s for 40,000 nodes in release); linear ones take
        // well under a second each, even unoptimized.
        let text = chain(20_000);
        let t = std::time::Instant::now();
        let p = Pipeline::from_toml(&text, "chain").unwrap();
        assert_eq!(p.topo_order().len(), 20_000);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let mut text =
            String::from("name = \"keys\"\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\n");
        for i in 0..20_000 {
            text.push_str(&format!("unknown{i} = 1\n"));
        }
        let t = std::time::Instant::now();
        let err = Pipeline::from_toml(&text, "keys").unwrap_err();
        assert_eq!(err.problems.len(), 20_000);
        assert_eq!(err.problems[19_999].line, 20_004);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        // A cycle at the end of a long chain is still found, with its path.
        let mut text = chain(20_000);
        text.push_str("next = [\"n19998\"]\n");
        let found = problems(&text);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].ends_with("cycle: n19998 -> n19999 -> n19998"),
            "{found:?}"
        );
    }
}
