//! The Run form of a pipeline (`/pipelines/{name}/run`, operator only): one field per
//! parameter of its schema (a number field with its bounds, a checkbox for a bool, a list for
//! choices, a text field with its pattern shown for a regex), defaults filled in, descriptions
//! shown, required ones marked. The values are checked on the server exactly as
//! `weft pipeline run` checks them; a refused value shows the form again with the reason next to
//! its field and nothing queued; else the run is queued in the server's pool and the browser
//! sent to its page.

use super::deployments::operator_only;
use super::{format, layout, ok, respond, Nav, PageResult, Viewer};
use crate::api::pipelines::{self, RunRefused};
use crate::AppState;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use weft_runtime::pipeline::{ParamKind, ParamSpec, Pipeline};

/// `?version=`: the version to run (the newest when absent).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct VersionParam {
    version: Option<String>,
}

/// What the form shows: the pipeline, its version, the fields' text and the reasons.
struct FormView<'a> {
    p: &'a Pipeline,
    version: &'a str,
    values: &'a BTreeMap<String, String>,
    errors: &'a BTreeMap<String, String>,
    workers: usize,
}

/// `GET /pipelines/{name}/run`: the form, filled with the defaults.
pub(crate) async fn form(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<VersionParam>, QueryRejection>,
) -> PageResult {
    let (Path(name), Query(q)) = (path?, query?);
    operator_only(viewer)?;
    let (p, version) = pipelines::load(&state, &name, q.version.as_deref()).await?;
    let values = p
        .params
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.default.as_ref()?.to_string())))
        .collect();
    let view = FormView {
        p: &p,
        version: &version,
        values: &values,
        errors: &BTreeMap::new(),
        workers: state.pool.workers(),
    };
    ok(page(&view, viewer))
}

/// `POST /pipelines/{name}/run`: checks every value, then queues the run and redirects to its
/// page.
pub(crate) async fn submit(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let (Path(name), Form(fields)) = (path?, form?);
    operator_only(viewer)?;
    let version = fields
        .iter()
        .find(|(k, _)| k == "version")
        .map(|(_, v)| v.clone());
    let (p, version) = pipelines::load(&state, &name, version.as_deref()).await?;
    let values: BTreeMap<String, String> = fields
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("p.")?.to_owned(), v)))
        .collect();
    let given = given(&p, &values);
    match pipelines::start(&state, &name, Some(&version), &given, "dashboard").await {
        Ok((id, _)) => Ok(Redirect::to(&format!("/runs/{id}")).into_response()),
        Err(RunRefused::Invalid(errors)) => {
            let view = FormView {
                p: &p,
                version: &version,
                values: &values,
                errors: &errors,
                workers: state.pool.workers(),
            };
            Ok(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                page(&view, viewer),
            ))
        }
        Err(RunRefused::Api(e)) => Err(e.into()),
    }
}

/// The values the form gives, as `--param`s would: a checkbox is `true` or `false`, an empty
/// field is no value (its default, if any, applies), a field of no parameter is passed on to
/// be refused by name.
fn given(p: &Pipeline, fields: &BTreeMap<String, String>) -> Vec<(String, Value)> {
    let mut given = Vec::new();
    for spec in &p.params {
        let raw = fields.get(&spec.name).map(String::as_str);
        let text = match (&spec.kind, raw) {
            (ParamKind::Bool, Some("true")) => "true",
            (ParamKind::Bool, _) => "false",
            (_, None | Some("")) => continue,
            (_, Some(t)) => t,
        };
        given.push((spec.name.clone(), Value::String(text.to_owned())));
    }
    for (name, raw) in fields {
        if !p.params.iter().any(|s| &s.name == name) {
            given.push((name.clone(), Value::String(raw.clone())));
        }
    }
    given
}

fn page(v: &FormView<'_>, viewer: Viewer) -> Markup {
    let name = &v.p.name;
    let general: Vec<&String> = v
        .errors
        .iter()
        .filter(|(k, _)| !v.p.params.iter().any(|s| &s.name == *k))
        .map(|(_, why)| why)
        .collect();
    let body = html! {
        h1 { "Run pipeline " (name) }
        p { "Version " code { (v.version) } ". " (v.p.nodes.len()) " node(s)."
            @if let Some(d) = &v.p.description { " " (d) } }
        p.muted #where-commands-run {
            "Its commands run on this server, in the server's working directory"
            @if let Some(dir) = pipelines::working_dir() { " (" code { (dir) } ")" }
            ". Values are checked here as " code { "weft pipeline run" } " checks them."
        }
        @if v.workers == 0 {
            p.error #pool-off { "This server runs no pipelines: it was started with "
                code { "--pipeline-workers 0" } "." }
        }
        @if !v.errors.is_empty() { p.error #form-error { "Nothing was queued: fix the fields below." } }
        @for why in general { p.error { (why) } }
        form.run method="post" novalidate action={ "/pipelines/" (format::enc(name)) "/run" } {
            input type="hidden" name="version" value=(v.version);
            @if v.p.params.is_empty() { p.muted { "This pipeline has no parameters." } }
            @for spec in &v.p.params {
                (field(spec, v.values.get(&spec.name).map(String::as_str), v.errors.get(&spec.name)))
            }
            @if v.workers > 0 { button type="submit" { "Run" } }
            " " a href="/pipelines" { "Cancel" }
        }
    };
    layout(&format!("Run {name}"), Some(viewer), Nav::Pipelines, body)
}

/// One parameter's label, input, hint and reason.
fn field(spec: &ParamSpec, value: Option<&str>, error: Option<&String>) -> Markup {
    let id = format!("p.{}", spec.name);
    html! {
        div.field.invalid[error.is_some()] data-param=(spec.name) {
            label for=(id) {
                (spec.name)
                @if spec.required { " " span.required title="required" { "*" } }
                " " span.muted { "(" (spec.kind.expected()) ")" }
            }
            (input(spec, &id, value))
            @if let Some(d) = &spec.description { span.hint { (d) } }
            @if let ParamKind::Regex(pattern) = &spec.kind {
                span.hint { "The whole value must match " code { (pattern) } }
            }
            @if let Some(why) = error { span.reason { (why) } }
        }
    }
}

/// The input for a parameter's kind.
fn input(spec: &ParamSpec, id: &str, value: Option<&str>) -> Markup {
    let text = value.unwrap_or("");
    html! {
        @match &spec.kind {
            ParamKind::Int { min, max } => input type="number" step="1" id=(id) name=(id)
                min=[min] max=[max] value=(text) required[spec.required];
            ParamKind::Float { min, max } => input type="number" step="any" id=(id) name=(id)
                min=[min] max=[max] value=(text) required[spec.required];
            ParamKind::Bool => input type="checkbox" id=(id) name=(id) value="true"
                checked[text == "true"];
            ParamKind::Choice(choices) => select id=(id) name=(id) required[spec.required] {
                @if !spec.required || spec.default.is_none() { option value="" { "—" } }
                @for c in choices { option value=(c) selected[text == c] { (c) } }
            },
            ParamKind::Regex(pattern) => input type="text" id=(id) name=(id) value=(text)
                title={ "must match " (pattern) } required[spec.required];
            _ => input type="text" id=(id) name=(id) value=(text) required[spec.required];
        }
    }
}
