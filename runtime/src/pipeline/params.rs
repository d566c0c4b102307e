//! Parameters of a pipeline: their schema ([`ParamSpec`]), the values of one run
//! ([`ParamValues`], checked by [`resolve`]) and the two ways values reach commands, both free of
//! injection: [`render_argv`] fills `{name}` placeholders inside single arguments of an argv that
//! no shell ever reads, and [`param_env`] hands every value to a node as an environment variable
//! (the only way values reach a `script`, which reads them as `"$name"`).
//!
//! ```
//! use weft::pipeline::params::{parse_assignment, render_argv, resolve, ParamKind, ParamSpec, ParamValue};
//!
//! let specs = vec![ParamSpec {
//!     name: "ip".into(),
//!     kind: ParamKind::Ip,
//!     required: true,
//!     default: None,
//!     description: Some("host to ping".into()),
//!     allow_leading_dash: false,
//! }];
//! let given = vec![parse_assignment("ip=127.0.0.1").unwrap()];
//! let values = resolve(&specs, &given, None).unwrap();
//! assert_eq!(values.get("ip"), Some(&ParamValue::String("127.0.0.1".into())));
//! let argv = render_argv(&["ping".into(), "-c".into(), "1".into(), "{ip}".into()], &values).unwrap();
//! assert_eq!(argv, ["ping", "-c", "1", "127.0.0.1"]);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde_json::Value;

/// One declared parameter: a `[params.NAME]` table of a pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// The name: used as `{name}` in a `command`, as `$name` in a `script` (exactly this
    /// environment variable) and as `--param name=value` on the command line.
    pub name: String,
    /// What values are accepted.
    pub kind: ParamKind,
    /// A run without a value for it is refused (unless there is a default, which fills it).
    pub required: bool,
    /// The value used when none is given; it satisfies `kind` (checked when the file is read).
    pub default: Option<ParamValue>,
    /// Shown when the value is missing or prompted for.
    pub description: Option<String>,
    /// `allow_leading_dash = true`: the value may start with `-` where it begins an argument
    /// of a `command` (where a program would read it as an option). Off by default: see
    /// [`ParamSpec::may_start_with_dash`].
    pub allow_leading_dash: bool,
}

/// The type of a parameter and its constraints (`type = "..."` in the file).
#[derive(Debug, Clone, PartialEq)]
pub enum ParamKind {
    /// Any text without NUL bytes (`"string"`).
    String,
    /// A 64-bit integer, optionally bounded (inclusive) (`"int"`).
    Int {
        /// Smallest accepted value.
        min: Option<i64>,
        /// Largest accepted value.
        max: Option<i64>,
    },
    /// A finite floating-point number, optionally bounded (inclusive) (`"float"`).
    Float {
        /// Smallest accepted value.
        min: Option<f64>,
        /// Largest accepted value.
        max: Option<f64>,
    },
    /// `true` or `false` (`"bool"`).
    Bool,
    /// One of the listed strings (`"choice"`, with `choices = [...]`).
    Choice(Vec<String>),
    /// A string the whole of which matches the pattern (`"regex"`, with `pattern = "..."`): the
    /// pattern is compiled on its own, and the value is accepted only when the match `find`
    /// reports starts at its first byte and ends at its last. (Alternatives are tried in order:
    /// with `a|ab`, "ab" is refused; write `ab|a`, or `^(?:a|ab)$`.)
    Regex(String),
    /// An IPv4 or IPv6 address, as [`std::net::IpAddr`] parses it (`"ip"`).
    Ip,
    /// A non-empty path that does not start with `-` (so that no command can take it for an
    /// option; write `./-name`) (`"path"`).
    Path,
}

impl ParamKind {
    /// The names of the types, as written in `type = "..."`.
    pub const TYPE_NAMES: [&'static str; 8] = [
        "string", "int", "float", "bool", "choice", "regex", "ip", "path",
    ];

    /// The name written in `type = "..."`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamKind::String => "string",
            ParamKind::Int { .. } => "int",
            ParamKind::Float { .. } => "float",
            ParamKind::Bool => "bool",
            ParamKind::Choice(_) => "choice",
            ParamKind::Regex(_) => "regex",
            ParamKind::Ip => "ip",
            ParamKind::Path => "path",
        }
    }

    /// What a value must be, for messages: "an int", "one of \"a\", \"b\"", ...
    pub fn expected(&self) -> String {
        match self {
            ParamKind::String => "a string".into(),
            ParamKind::Int { .. } => "an int".into(),
            ParamKind::Float { .. } => "a float".into(),
            ParamKind::Bool => "a bool (true or false)".into(),
            ParamKind::Choice(choices) => format!("one of {}", quoted_list(choices)),
            ParamKind::Regex(pattern) => format!("a string matching the pattern {pattern}"),
            ParamKind::Ip => "an IP address".into(),
            ParamKind::Path => "a path".into(),
        }
    }
}

/// The value of one parameter in a run. [`Display`](fmt::Display) gives the exact text placed in
/// commands and in the environment.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// Kinds `string`, `choice`, `regex`, `ip` and `path`.
    String(String),
    /// Kind `int`.
    Int(i64),
    /// Kind `float`.
    Float(f64),
    /// Kind `bool`: `true` or `false`.
    Bool(bool),
}

impl ParamValue {
    /// The value as JSON (a string, number or boolean).
    pub fn to_json(&self) -> Value {
        match self {
            ParamValue::String(s) => Value::String(s.clone()),
            ParamValue::Int(i) => Value::from(*i),
            ParamValue::Float(f) => Value::from(*f),
            ParamValue::Bool(b) => Value::Bool(*b),
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::String(s) => f.write_str(s),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl ParamSpec {
    /// Checks one value against this parameter and converts it: a JSON value of the right type,
    /// or a JSON string holding its text (as `--param count=3` gives). A wrong value is an error
    /// naming the parameter, the value and the expected type; it never falls back to the default.
    ///
    /// ```
    /// use weft::pipeline::params::{ParamKind, ParamSpec, ParamValue};
    /// let spec = ParamSpec { name: "count".into(), kind: ParamKind::Int { min: Some(1), max: None },
    ///                        required: false, default: None, description: None,
    ///                        allow_leading_dash: false };
    /// assert_eq!(spec.check_value(&"3".into()), Ok(ParamValue::Int(3)));
    /// assert_eq!(spec.check_value(&"x".into()).unwrap_err(),
    ///            "parameter `count` expects an int, got \"x\"");
    /// ```
    pub fn check_value(&self, value: &Value) -> Result<ParamValue, String> {
        let name = &self.name;
        let wrong = || {
            format!(
                "parameter `{name}` expects {}, got {}",
                self.kind.expected(),
                show(value)
            )
        };
        let text = value.as_str();
        if let Some(t) = text {
            if t.contains('\0') {
                return Err(format!(
                    "parameter `{name}`: {} contains a NUL byte, which no command can receive",
                    show(value)
                ));
            }
        }
        match &self.kind {
            ParamKind::Int { min, max } => {
                let i = match value {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.parse::<i64>().ok(),
                    _ => None,
                }
                .ok_or_else(wrong)?;
                if let Some(m) = min.filter(|m| i < *m) {
                    return Err(format!(
                        "parameter `{name}`: {i} is less than the minimum {m}"
                    ));
                }
                if let Some(m) = max.filter(|m| i > *m) {
                    return Err(format!(
                        "parameter `{name}`: {i} is more than the maximum {m}"
                    ));
                }
                Ok(ParamValue::Int(i))
            }
            ParamKind::Float { min, max } => {
                let x = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|x| x.is_finite())
                .ok_or_else(wrong)?;
                if let Some(m) = min.filter(|m| x < *m) {
                    return Err(format!(
                        "parameter `{name}`: {x} is less than the minimum {m}"
                    ));
                }
                if let Some(m) = max.filter(|m| x > *m) {
                    return Err(format!(
                        "parameter `{name}`: {x} is more than the maximum {m}"
                    ));
                }
                Ok(ParamValue::Float(x))
            }
            ParamKind::Bool => match value {
                Value::Bool(b) => Ok(ParamValue::Bool(*b)),
                Value::String(s) if s == "true" => Ok(ParamValue::Bool(true)),
                Value::String(s) if s == "false" => Ok(ParamValue::Bool(false)),
                _ => Err(wrong()),
            },
            ParamKind::String => text
                .map(|t| ParamValue::String(t.to_string()))
                .ok_or_else(wrong),
            ParamKind::Choice(choices) => {
                let t = text.ok_or_else(wrong)?;
                if choices.iter().any(|c| c == t) {
                    Ok(ParamValue::String(t.to_string()))
                } else {
                    Err(format!(
                        "parameter `{name}`: {} is not one of {}",
                        show(value),
                        quoted_list(choices)
                    ))
                }
            }
            ParamKind::Regex(pattern) => {
                let t = text.ok_or_else(wrong)?;
                let re = compile_pattern(pattern)
                    .map_err(|e| format!("parameter `{name}`: invalid pattern: {e}"))?;
                if whole_match(&re, t) {
                    Ok(ParamValue::String(t.to_string()))
                } else {
                    Err(format!(
                        "parameter `{name}`: {} does not match the pattern {pattern}",
                        show(value)
                    ))
                }
            }
            ParamKind::Ip => {
                let t = text.ok_or_else(wrong)?;
                match t.parse::<IpAddr>() {
                    Ok(_) => Ok(ParamValue::String(t.to_string())),
                    Err(_) => Err(format!(
                        "parameter `{name}`: {} is not an IP address",
                        show(value)
                    )),
                }
            }
            ParamKind::Path => {
                let t = text.ok_or_else(wrong)?;
                if t.is_empty() {
                    Err(format!("parameter `{name}`: a path cannot be empty"))
                } else if t.starts_with('-') {
                    Err(format!(
                        "parameter `{name}`: the path {} starts with `-` and would read as an option; write ./{t}",
                        show(value)
                    ))
                } else {
                    Ok(ParamValue::String(t.to_string()))
                }
            }
        }
    }
}

/// Compiles a `regex` parameter's pattern, on its own: it is never pasted into another pattern
/// (`^(?:` + `[a-z]+)|(.*` + `)$` would match anything).
pub(crate) fn compile_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(pattern)
}

/// Whether the match of `re` in `text` spans all of `text` (from byte 0 to its end).
pub(crate) fn whole_match(re: &regex::Regex, text: &str) -> bool {
    re.find(text)
        .is_some_and(|m| m.start() == 0 && m.end() == text.len())
}

impl ParamSpec {
    /// Whether a value may start with `-` where it begins an argument of a `command`: when the
    /// file says `allow_leading_dash = true`; for a `choice` (the file lists every value); for an
    /// `int` or `float` whose declared `min` is below 0 (negative numbers are then expected).
    /// Other values starting with `-` are refused before anything runs, unless the placeholder
    /// comes after a `--` argument of the program.
    pub fn may_start_with_dash(&self) -> bool {
        self.allow_leading_dash
            || match &self.kind {
                ParamKind::Choice(_) => true,
                ParamKind::Int { min, .. } => min.is_some_and(|m| m < 0),
                ParamKind::Float { min, .. } => min.is_some_and(|m| m < 0.0),
                _ => false,
            }
    }
}

/// The values of a run's parameters, by name. Built by [`resolve`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamValues(BTreeMap<String, ParamValue>);

impl ParamValues {
    /// No values.
    pub fn new() -> ParamValues {
        ParamValues::default()
    }

    /// Sets a value as is, without checking it against any schema (for tests and callers that
    /// checked it already).
    pub fn insert(&mut self, name: impl Into<String>, value: ParamValue) {
        self.0.insert(name.into(), value);
    }

    /// The value of one parameter.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }

    /// All values, by name in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many parameters have a value.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no parameter has a value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values as a JSON object (for run history).
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }
}

impl FromIterator<(String, ParamValue)> for ParamValues {
    fn from_iter<I: IntoIterator<Item = (String, ParamValue)>>(iter: I) -> Self {
        ParamValues(iter.into_iter().collect())
    }
}

/// Every problem found by [`resolve`], one message each.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamErrors(pub Vec<String>);

impl fmt::Display for ParamErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(m)?;
        }
        Ok(())
    }
}

impl std::error::Error for ParamErrors {}

impl ParamErrors {
    /// Each message with the parameter it is about: the name it quotes first (every message
    /// about a parameter names it first, as in "parameter `count` expects an int, got \"x\"" or
    /// "missing required parameter `ip`"); None for a message naming none.
    ///
    /// ```
    /// use weft::pipeline::params::ParamErrors;
    /// let e = ParamErrors(vec!["parameter `n`: 0 is less than the minimum 1".into()]);
    /// assert_eq!(e.by_parameter()[0].0.as_deref(), Some("n"));
    /// ```
    pub fn by_parameter(&self) -> Vec<(Option<String>, String)> {
        self.0
            .iter()
            .map(|m| {
                let name = m
                    .split_once('`')
                    .and_then(|(_, rest)| rest.split_once('`'))
                    .map(|(name, _)| name.to_owned());
                (name, m.clone())
            })
            .collect()
    }
}

/// Checks given values (from `--param k=v` text, see [`parse_assignment`], or a JSON object's
/// values) against the schema and fills defaults. When a name is given twice, the later value
/// wins (so a file of values can be overridden on the command line).
///
/// Reports every problem at once: unknown names (with the known ones), wrong types (naming the
/// parameter, the value and the expected type; a wrong value never falls back to the default),
/// values out of range, not among the choices, not matching the pattern or not an IP address,
/// and every missing required parameter with its description. When `prompt` is given, it is
/// asked for each missing required parameter (as Python's `input()` would), and what it returns is
/// checked like any other value; `None` leaves the parameter missing.
///
/// An optional parameter without a default and without a value is simply absent.
///
/// ```
/// use weft::pipeline::params::{resolve, ParamKind, ParamSpec};
/// let specs = vec![ParamSpec { name: "ip".into(), kind: ParamKind::Ip, required: true,
///                              default: None, description: Some("host to ping".into()),
///                              allow_leading_dash: false }];
/// let err = resolve(&specs, &[], None).unwrap_err();
/// assert_eq!(err.to_string(), "missing required parameter `ip` (host to ping)");
/// let mut ask = |_: &ParamSpec| Some("::1".to_string());
/// let values = resolve(&specs, &[], Some(&mut ask)).unwrap();
/// assert_eq!(values.get("ip").unwrap().to_string(), "::1");
/// ```
#[allow(clippy::type_complexity)] // the signature callers code against
pub fn resolve(
    specs: &[ParamSpec],
    given: &[(String, Value)],
    mut prompt: Option<&mut dyn FnMut(&ParamSpec) -> Option<String>>,
) -> Result<ParamValues, ParamErrors> {
    let mut errors = Vec::new();
    let mut values = BTreeMap::new();
    let mut latest: BTreeMap<&str, &Value> = BTreeMap::new();
    for (name, value) in given {
        if specs.iter().any(|s| &s.name == name) {
            latest.insert(name.as_str(), value);
        } else {
            errors.push(unknown_param(name, specs));
        }
    }
    for spec in specs {
        if let Some(value) = latest.get(spec.name.as_str()) {
            match spec.check_value(value) {
                Ok(v) => {
                    values.insert(spec.name.clone(), v);
                }
                Err(e) => errors.push(e),
            }
        } else if let Some(default) = &spec.default {
            values.insert(spec.name.clone(), default.clone());
        } else if spec.required {
            let answer = prompt.as_mut().and_then(|ask| ask(spec));
            match answer {
                Some(text) => match spec.check_value(&Value::String(text)) {
                    Ok(v) => {
                        values.insert(spec.name.clone(), v);
                    }
                    Err(e) => errors.push(e),
                },
                None => errors.push(match &spec.description {
                    Some(d) => format!("missing required parameter `{}` ({d})", spec.name),
                    None => format!("missing required parameter `{}`", spec.name),
                }),
            }
        }
    }
    if errors.is_empty() {
        Ok(ParamValues(values))
    } else {
        Err(ParamErrors(errors))
    }
}

fn unknown_param(name: &str, specs: &[ParamSpec]) -> String {
    let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let mut msg = format!("unknown parameter `{name}`");
    if let Some(s) = did_you_mean(name, known.iter().copied()) {
        msg.push_str(&format!(" (did you mean `{s}`?)"));
    }
    if known.is_empty() {
        msg.push_str("; this pipeline has no parameters");
    } else {
        msg.push_str(&format!("; known: {}", known.join(", ")));
    }
    msg
}

/// Splits `key=value` from the command line at the first `=`. The value text is kept as a JSON
/// string; [`resolve`] converts it by the parameter's type (so `--param count=3` works for an
/// int).
///
/// ```
/// use weft::pipeline::params::parse_assignment;
/// assert_eq!(parse_assignment("msg=a=b").unwrap(), ("msg".to_string(), "a=b".into()));
/// assert!(parse_assignment("novalue").is_err());
/// ```
pub fn parse_assignment(text: &str) -> Result<(String, Value), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("expected NAME=VALUE, got {}", show_str(text)));
    };
    let key = key.trim();
    if !is_name(key) {
        return Err(format!(
            "invalid parameter name {} in {}: names are letters, digits and _, not starting with a digit",
            show_str(key),
            show_str(text)
        ));
    }
    Ok((key.to_string(), Value::String(value.to_string())))
}

/// Renders an argv: each `{name}` fills part of ONE argument with the value's text; nothing is
/// split, quoted or interpreted (there is no shell), so a value such as `x; rm -rf /` stays one
/// byte-identical argument. `{{` and `}}` are literal braces.
///
/// Errors: an unbalanced brace, a malformed placeholder, a name with no value.
///
/// ```
/// use weft::pipeline::params::{render_argv, ParamValue, ParamValues};
/// let mut values = ParamValues::new();
/// values.insert("ip", ParamValue::String("1.2.3.4; touch /tmp/x".into()));
/// let argv = render_argv(&["ping".into(), "--host={ip}".into(), "{{}}".into()], &values).unwrap();
/// assert_eq!(argv, ["ping", "--host=1.2.3.4; touch /tmp/x", "{}"]);
/// ```
pub fn render_argv(argv: &[String], values: &ParamValues) -> Result<Vec<String>, String> {
    argv.iter()
        .map(|arg| {
            let parts = parse_template(arg).map_err(|(_, e)| e)?;
            let mut out = String::new();
            for part in parts {
                match part {
                    Part::Text(t) => out.push_str(&t),
                    Part::Param { name, .. } => match values.get(&name) {
                        Some(v) => out.push_str(&v.to_string()),
                        None => {
                            return Err(format!(
                                "parameter `{name}` used in {} has no value",
                                show_str(arg)
                            ))
                        }
                    },
                }
            }
            Ok(out)
        })
        .collect()
}

/// The environment entries a node gets for the parameters: every parameter as `NAME=value`
/// (exactly the parameter's name, the value's text unchanged). The node's own `env`
/// ([`NodeSpec::env`](super::file::NodeSpec::env)) is added by the runner; a pipeline file
/// cannot give a node an `env` key that is also a parameter name, so the two never collide.
///
/// ```
/// use weft::pipeline::params::{param_env, ParamValue, ParamValues};
/// let mut values = ParamValues::new();
/// values.insert("ip", ParamValue::String("$(reboot)".into()));
/// assert_eq!(param_env(&values), [("ip".to_string(), "$(reboot)".to_string())]);
/// ```
pub fn param_env(values: &ParamValues) -> Vec<(String, String)> {
    values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A piece of an argv template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Text(String),
    /// `{name}`, at this byte offset in the template.
    Param {
        name: String,
        offset: usize,
    },
}

/// Splits a template into text and `{name}` placeholders. Errors carry the byte offset.
pub(crate) fn parse_template(s: &str) -> Result<Vec<Part>, (usize, String)> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|x| x.1) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|x| x.1) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let rest = &s[i + 1..];
                let Some(end) = rest
                    .find(['}', '{'])
                    .filter(|e| rest.as_bytes()[*e] == b'}')
                else {
                    return Err((
                        i,
                        format!(
                            "unbalanced `{{` in {}: write `{{{{` for a literal brace",
                            show_str(s)
                        ),
                    ));
                };
                let name = &rest[..end];
                if !is_name(name) {
                    return Err((
                        i,
                        format!(
                            "invalid placeholder `{{{name}}}` in {}: a parameter name is letters, digits and _ (write `{{{{` for a literal brace)",
                            show_str(s)
                        ),
                    ));
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Param {
                    name: name.to_string(),
                    offset: i,
                });
                for _ in 0..=name.chars().count() {
                    chars.next();
                }
            }
            '}' => {
                return Err((
                    i,
                    format!(
                        "unbalanced `}}` in {}: write `}}}}` for a literal brace",
                        show_str(s)
                    ),
                ))
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

/// Whether `s` is a parameter (and environment variable) name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The closest candidate to `word`, if close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let len = word.chars().count();
    let limit = match len {
        0..=2 => 0,
        3 => 1,
        _ => (len / 3).clamp(2, 3),
    };
    candidates
        .into_iter()
        .map(|c| {
            let (w, l) = (word.to_lowercase(), c.to_lowercase());
            let prefix = len >= 3 && (l.starts_with(&w) || w.starts_with(&l));
            (edit_distance(&w, &l), prefix, c)
        })
        .filter(|(d, prefix, _)| *d <= limit || *prefix)
        .map(|(d, _, c)| (d, c))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting an insertion, deletion, substitution or swap of neighbours as 1.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// `"a", "b"`.
pub(crate) fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| show_str(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as JSON text, quoted and escaped (hostile values print harmlessly).
fn show(v: &Value) -> String {
    v.to_string()
}

/// A string quoted and escaped as JSON.
pub(crate) fn show_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, kind: ParamKind) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            kind,
            required: false,
            default: None,
            description: None,
            allow_leading_dash: false,
        }
    }

    fn one(kind: ParamKind, value: Value) -> Result<ParamValue, String> {
        spec("p", kind).check_value(&value)
    }

    #[test]
    fn string_kind() {
        assert_eq!(
            one(ParamKind::String, json!("a b")),
            Ok(ParamValue::String("a b".into()))
        );
        assert_eq!(
            one(ParamKind::String, json!(3)),
            Err("parameter `p` expects a string, got 3".into())
        );
        assert_eq!(
            one(ParamKind::String, json!("a\0b")),
            Err(
                "parameter `p`: \"a\\u0000b\" contains a NUL byte, which no command can receive"
                    .into()
            )
        );
    }

    #[test]
    fn int_kind() {
        let k = ParamKind::Int {
            min: Some(1),
            max: Some(10),
        };
        assert_eq!(one(k.clone(), json!("3")), Ok(ParamValue::Int(3)));
        assert_eq!(one(k.clone(), json!(10)), Ok(ParamValue::Int(10)));
        assert_eq!(
            one(k.clone(), json!("3.5")),
            Err("parameter `p` expects an int, got \"3.5\"".into())
        );
        assert_eq!(
            one(k.clone(), json!(2.5)),
            Err("parameter `p` expects an int, got 2.5".into())
        );
        assert_eq!(
            one(k.clone(), json!(true)),
            Err("parameter `p` expects an int, got true".into())
        );
        assert_eq!(
            one(k.clone(), json!("0")),
            Err("parameter `p`: 0 is less than the minimum 1".into())
        );
        assert_eq!(
            one(k, json!(11)),
            Err("parameter `p`: 11 is more than the maximum 10".into())
        );
    }

    #[test]
    fn float_kind() {
        let k = ParamKind::Float {
            min: Some(0.0),
            max: Some(1.0),
        };
        assert_eq!(one(k.clone(), json!("0.5")), Ok(ParamValue::Float(0.5)));
        assert_eq!(one(k.clone(), json!(1)), Ok(ParamValue::Float(1.0)));
        assert_eq!(
            one(k.clone(), json!("NaN")),
            Err("parameter `p` expects a float, got \"NaN\"".into())
        );
        assert_eq!(
            one(k.clone(), json!("")),
            Err("parameter `p` expects a float, got \"\"".into())
        );
        assert_eq!(
            one(k.clone(), json!(-0.5)),
            Err("parameter `p`: -0.5 is less than the minimum 0".into())
        );
        assert_eq!(
            one(k, json!("1.5")),
            Err("parameter `p`: 1.5 is more than the maximum 1".into())
        );
    }

    #[test]
    fn bool_kind() {
        assert_eq!(
            one(ParamKind::Bool, json!("true")),
            Ok(ParamValue::Bool(true))
        );
        assert_eq!(
            one(ParamKind::Bool, json!(false)),
            Ok(ParamValue::Bool(false))
        );
        assert_eq!(
            one(ParamKind::Bool, json!("yes")),
            Err("parameter `p` expects a bool (true or false), got \"yes\"".into())
        );
    }

    #[test]
    fn choice_kind() {
        let k = ParamKind::Choice(vec!["gzip".into(), "none".into()]);
        assert_eq!(
            one(k.clone(), json!("gzip")),
            Ok(ParamValue::String("gzip".into()))
        );
        assert_eq!(
            one(k.clone(), json!("zstd")),
            Err("parameter `p`: \"zstd\" is not one of \"gzip\", \"none\"".into())
        );
        assert_eq!(
            one(k, json!(1)),
            Err("parameter `p` expects one of \"gzip\", \"none\", got 1".into())
        );
    }

    #[test]
    fn regex_kind_matches_whole_value() {
        let k = ParamKind::Regex("[a-z]+".into());
        assert_eq!(
            one(k.clone(), json!("abc")),
            Ok(ParamValue::String("abc".into()))
        );
        assert_eq!(
            one(k.clone(), json!("abc; rm -rf /")),
            Err("parameter `p`: \"abc; rm -rf /\" does not match the pattern [a-z]+".into())
        );
        assert_eq!(
            one(ParamKind::Regex("^a|b$".into()), json!("ax")),
            Err("parameter `p`: \"ax\" does not match the pattern ^a|b$".into())
        );
    }

    #[test]
    fn regex_kind_cannot_be_escaped_by_its_pattern() {
        // Pasted into `^(?:...)$`, this pattern closed the group and matched anything.
        for value in [
            "; touch FILE",
            "$(touch FILE)",
            "-o/tmp/FILE",
            "abc\ntouch FILE",
        ] {
            assert!(
                one(ParamKind::Regex("[a-z]+)|(.*".into()), json!(value)).is_err(),
                "{value:?}"
            );
        }
        // Whole-value matching: a match that stops short, or starts late, is refused.
        let k = ParamKind::Regex("[a-z]+".into());
        assert!(one(k.clone(), json!("abc\n")).is_err());
        assert!(one(k.clone(), json!("1abc")).is_err());
        assert!(one(
            ParamKind::Regex("(?m)^[a-z]+$".into()),
            json!("abc\nx; touch FILE")
        )
        .is_err());
        assert_eq!(
            one(ParamKind::Regex("^(?:a|ab)$".into()), json!("ab")),
            Ok(ParamValue::String("ab".into()))
        );
    }

    #[test]
    fn ip_kind() {
        for good in ["127.0.0.1", "::1", "fe80::1"] {
            assert_eq!(
                one(ParamKind::Ip, json!(good)),
                Ok(ParamValue::String(good.into()))
            );
        }
        assert_eq!(
            one(ParamKind::Ip, json!("127.0.0.1; touch x")),
            Err("parameter `p`: \"127.0.0.1; touch x\" is not an IP address".into())
        );
        assert_eq!(
            one(ParamKind::Ip, json!("1.2.3")),
            Err("parameter `p`: \"1.2.3\" is not an IP address".into())
        );
    }

    #[test]
    fn path_kind() {
        assert_eq!(
            one(ParamKind::Path, json!("/var/x y")),
            Ok(ParamValue::String("/var/x y".into()))
        );
        assert_eq!(
            one(ParamKind::Path, json!("")),
            Err("parameter `p`: a path cannot be empty".into())
        );
        assert_eq!(
            one(ParamKind::Path, json!("-rf")),
            Err("parameter `p`: the path \"-rf\" starts with `-` and would read as an option; write ./-rf".into())
        );
    }

    fn schema() -> Vec<ParamSpec> {
        vec![
            ParamSpec {
                required: true,
                default: Some(ParamValue::String("127.0.0.1".into())),
                ..spec("ip", ParamKind::Ip)
            },
            ParamSpec {
                required: true,
                description: Some("where the dump goes".into()),
                ..spec("dest", ParamKind::Path)
            },
            ParamSpec {
                required: true,
                description: Some("how many pings".into()),
                ..spec(
                    "count",
                    ParamKind::Int {
                        min: Some(1),
                        max: None,
                    },
                )
            },
            ParamSpec {
                required: true,
                ..spec("verbose", ParamKind::Bool)
            },
            spec("note", ParamKind::String),
        ]
    }

    #[test]
    fn defaults_filled_optional_absent() {
        let given = vec![
            parse_assignment("dest=/tmp/out").unwrap(),
            parse_assignment("count=3").unwrap(),
            ("verbose".to_string(), json!(true)),
        ];
        let values = resolve(&schema(), &given, None).unwrap();
        assert_eq!(
            values.to_json(),
            json!({"ip": "127.0.0.1", "dest": "/tmp/out", "count": 3, "verbose": true})
        );
        assert_eq!(values.get("note"), None);
        assert_eq!(values.len(), 4);
    }

    #[test]
    fn every_problem_at_once_and_no_fallback_to_default() {
        let given = vec![
            parse_assignment("ip=localhost").unwrap(),
            parse_assignment("cuont=3").unwrap(),
            parse_assignment("colour=red").unwrap(),
        ];
        let err = resolve(&schema(), &given, None).unwrap_err();
        assert_eq!(
            err.0,
            [
                "unknown parameter `cuont` (did you mean `count`?); known: ip, dest, count, verbose, note",
                "unknown parameter `colour`; known: ip, dest, count, verbose, note",
                "parameter `ip`: \"localhost\" is not an IP address",
                "missing required parameter `dest` (where the dump goes)",
                "missing required parameter `count` (how many pings)",
                "missing required parameter `verbose`",
            ]
        );
        assert_eq!(err.to_string().lines().count(), 6);
    }

    #[test]
    fn later_value_wins() {
        let given = vec![
            parse_assignment("count=x").unwrap(),
            parse_assignment("count=2").unwrap(),
            parse_assignment("dest=d").unwrap(),
            parse_assignment("verbose=false").unwrap(),
        ];
        let values = resolve(&schema(), &given, None).unwrap();
        assert_eq!(values.get("count"), Some(&ParamValue::Int(2)));
    }

    #[test]
    fn prompt_asked_for_missing_required_only_and_checked() {
        let mut asked = Vec::new();
        let mut ask = |s: &ParamSpec| {
            asked.push(s.name.clone());
            match s.name.as_str() {
                "dest" => Some("/backup".to_string()),
                "count" => Some("many".to_string()),
                _ => None,
            }
        };
        let err = resolve(&schema(), &[], Some(&mut ask)).unwrap_err();
        assert_eq!(asked, ["dest", "count", "verbose"]);
        assert_eq!(
            err.0,
            [
                "parameter `count` expects an int, got \"many\"",
                "missing required parameter `verbose`",
            ]
        );
        let mut ask = |s: &ParamSpec| Some(if s.name == "count" { "4" } else { "true" }.into());
        let given = vec![parse_assignment("dest=/d").unwrap()];
        let values = resolve(&schema(), &given, Some(&mut ask)).unwrap();
        assert_eq!(values.get("count"), Some(&ParamValue::Int(4)));
        assert_eq!(values.get("verbose"), Some(&ParamValue::Bool(true)));
    }

    #[test]
    fn no_parameters_at_all() {
        let err = resolve(&[], &[parse_assignment("x=1").unwrap()], None).unwrap_err();
        assert_eq!(
            err.0,
            ["unknown parameter `x`; this pipeline has no parameters"]
        );
    }

    #[test]
    fn assignments() {
        assert_eq!(
            parse_assignment("ip=").unwrap(),
            ("ip".to_string(), json!(""))
        );
        assert_eq!(
            parse_assignment("x= a b ").unwrap(),
            ("x".to_string(), json!(" a b "))
        );
        assert_eq!(
            parse_assignment("ip").unwrap_err(),
            "expected NAME=VALUE, got \"ip\""
        );
        assert!(parse_assignment("1x=2").is_err());
        assert!(parse_assignment("a-b=2").is_err());
    }

    const HOSTILE: [&str; 8] = [
        "127.0.0.1; touch FILE",
        "$(touch FILE)",
        "`touch FILE`",
        "a\ntouch FILE",
        "'\"; touch FILE; echo '\"",
        "-rf",
        "--output=/etc/passwd",
        "{ip} }} {{ \\ * ? ~ && || | > <",
    ];

    #[test]
    fn hostile_values_stay_inside_one_argument_byte_identical() {
        for v in HOSTILE {
            let mut values = ParamValues::new();
            values.insert("ip", ParamValue::String(v.to_string()));
            let argv: Vec<String> = ["ping", "-c", "4", "{ip}", "--to={ip}!", "{{{ip}}}"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let out = render_argv(&argv, &values).unwrap();
            assert_eq!(out.len(), 6, "{v:?}");
            assert_eq!(out[..3], ["ping", "-c", "4"]);
            assert_eq!(out[3].as_bytes(), v.as_bytes());
            assert_eq!(out[4], format!("--to={v}!"));
            assert_eq!(out[5], format!("{{{v}}}"));
            assert_eq!(
                param_env(&values),
                [("ip".to_string(), v.to_string())],
                "{v:?}"
            );
        }
    }

    #[test]
    fn render_numbers_and_bools() {
        let values: ParamValues = [
            ("n".to_string(), ParamValue::Int(-3)),
            ("x".to_string(), ParamValue::Float(0.25)),
            ("b".to_string(), ParamValue::Bool(true)),
        ]
        .into_iter()
        .collect();
        let argv = vec!["{n}/{x}/{b}".to_string()];
        assert_eq!(render_argv(&argv, &values).unwrap(), ["-3/0.25/true"]);
        assert_eq!(
            param_env(&values),
            [
                ("b".to_string(), "true".to_string()),
                ("n".to_string(), "-3".to_string()),
                ("x".to_string(), "0.25".to_string())
            ]
        );
    }

    #[test]
    fn render_errors() {
        let values = ParamValues::new();
        let r = |s: &str| render_argv(&[s.to_string()], &values).unwrap_err();
        assert_eq!(r("{ip}"), "parameter `ip` used in \"{ip}\" has no value");
        assert_eq!(
            r("a{b"),
            "unbalanced `{` in \"a{b\": write `{{` for a literal brace"
        );
        assert_eq!(
            r("a}b"),
            "unbalanced `}` in \"a}b\": write `}}` for a literal brace"
        );
        assert_eq!(
            r("{a{b}"),
            "unbalanced `{` in \"{a{b}\": write `{{` for a literal brace"
        );
        assert_eq!(
            r("{ ip }"),
            "invalid placeholder `{ ip }` in \"{ ip }\": a parameter name is letters, digits and _ (write `{{` for a literal brace)"
        );
        assert_eq!(
            render_argv(&["{{x}}".to_string(), "é{{".to_string()], &values).unwrap(),
            ["{x}", "é{"]
        );
    }

    #[test]
    fn template_offsets() {
        assert_eq!(
            parse_template("é{a}b{{").unwrap(),
            [
                Part::Text("é".into()),
                Part::Param {
                    name: "a".into(),
                    offset: 2
                },
                Part::Text("b{".into())
            ]
        );
        assert_eq!(parse_template("ab}").unwrap_err().0, 2);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("comand", ["command", "script"]),
            Some("command")
        );
        assert_eq!(did_you_mean("xyz", ["command", "script"]), None);
        assert_eq!(did_you_mean("ip", ["id", "ip2"]), None);
        assert_eq!(did_you_mean("IP", ["id", "ip"]), Some("ip"));
        assert_eq!(did_you_mean("ipp", ["id", "ip"]), Some("ip"));
    }
}
