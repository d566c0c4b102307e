//! Deployments (`/deployments`): schedule, next run, paused or active, last run; Pause and
//! Resume buttons and a Run form (operator only). The Run form has one field per parameter
//! the deployment records a default for, each checked on the server against its default's
//! type before anything is queued: a bad value shows the form again with the reason next to
//! the field, and no run is requested.

use super::{format, layout, ok, respond, Nav, PageError, PageResult, Viewer};
use crate::AppState;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;
use weft_runtime::store::DeploymentRecord;

/// A run request to report on the list.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListParams {
    requested: Option<String>,
}

/// `GET /deployments`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> PageResult {
    let Query(p) = query?;
    let requested = match p.requested.as_deref().and_then(|r| Uuid::try_parse(r).ok()) {
        Some(id) => state.store.request(id).await.ok(),
        None => None,
    };
    let pools = state.store.deployment_pools().await?;
    let mut rows = Vec::new();
    for d in state.store.deployments().await? {
        let last = match d.last_run {
            Some(id) => state.store.run_record(id).await.ok(),
            None => None,
        };
        rows.push(row(&d, pools.get(&d.name), last.as_ref(), viewer));
    }
    let body = html! {
        h1 { "Deployments" }
        @if let Some(r) = requested {
            p.notice #requested {
                "A run of " strong { (r.deployment) } " was requested (request "
                code { (format::short_id(&r.id)) } ", " (r.state.as_str()) "); the process serving it (or a worker of its work pool) starts it."
            }
        }
        @if rows.is_empty() { p.muted { "No deployment is registered: a process serving one registers it." } }
        @else {
            table.deployments {
                thead { tr {
                    th { "Name" } th { "Flow" } th { "Schedule" } th { "Next run" } th { "Status" }
                    th { "Work pool" } th { "Last run" } @if viewer.operator() { th { "Actions" } }
                } }
                tbody { @for r in rows { (r) } }
            }
        }
    };
    ok(layout("Deployments", Some(viewer), Nav::Deployments, body))
}

fn row(
    d: &DeploymentRecord,
    pool: Option<&String>,
    last: Option<&weft_runtime::store::RunRecord>,
    viewer: Viewer,
) -> Markup {
    let base = format!("/deployments/{}", format::enc(&d.name));
    html! {
        tr data-deployment=(d.name) {
            td { (d.name) }
            td { a href={ "/runs" (format::query(&[("flow", Some(&d.flow))])) } { (d.flow) } }
            td { (d.schedule.as_deref().unwrap_or("on request only")) }
            td { (format::time_or_dash(d.next_run_at)) }
            td.status { @if d.paused { span.is-paused { "paused" } } @else { span.is-active { "active" } } }
            td { @if let Some(p) = pool { a href="/workers" { (p) } } @else { "–" } }
            td { @if let Some(r) = last {
                a href={ "/runs/" (r.id) } { (format::short_id(&r.id)) } " " (format::state_badge(r.state))
            } @else { "–" } }
            @if viewer.operator() {
                td.actions {
                    @if d.paused {
                        form.inline method="post" action={ (base) "/resume" } { button type="submit" { "Resume" } }
                    } @else {
                        form.inline method="post" action={ (base) "/pause" } { button type="submit" { "Pause" } }
                    }
                    " " a.button href={ (base) "/run" } { "Run…" }
                }
            }
        }
    }
}

pub(super) fn operator_only(viewer: Viewer) -> Result<(), PageError> {
    if viewer.operator() {
        Ok(())
    } else {
        Err(crate::error::ApiError::forbidden(
            "this needs the operator token; the read-only token may only read",
        )
        .into())
    }
}

async fn set_paused(state: &AppState, viewer: Viewer, name: &str, paused: bool) -> PageResult {
    operator_only(viewer)?;
    state.store.set_paused(name, paused).await?;
    Ok(Redirect::to("/deployments").into_response())
}

/// `POST /deployments/{name}/pause`.
pub(crate) async fn pause(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
) -> PageResult {
    let Path(name) = path?;
    set_paused(&state, viewer, &name, true).await
}

/// `POST /deployments/{name}/resume`.
pub(crate) async fn resume(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
) -> PageResult {
    let Path(name) = path?;
    set_paused(&state, viewer, &name, false).await
}

/// The parameters a deployment's form asks for: its defaults, by name.
fn defaults(d: &DeploymentRecord) -> Map<String, Value> {
    d.parameters.as_object().cloned().unwrap_or_default()
}

/// How a default is written in its field: a string as is, anything else as JSON.
fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a field must hold, from its default's type.
fn expected(default: &Value) -> &'static str {
    match default {
        Value::String(_) => "text",
        Value::Bool(_) => "true or false",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "a whole number",
        Value::Array(_) => "a JSON array",
        Value::Object(_) => "a JSON object",
        Value::Null => "any JSON value",
    }
}

/// Checks a field's text against the type of its default: the value, or why not.
pub(crate) fn check_field(default: &Value, raw: &str) -> Result<Value, String> {
    if let Value::String(_) = default {
        return if raw.contains('\0') {
            Err("text may not contain NUL characters".to_owned())
        } else {
            Ok(Value::String(raw.to_owned()))
        };
    }
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(format!("a value is needed: {}", expected(default)));
    }
    let parsed: Result<Value, _> = serde_json::from_str(raw);
    let fits = match (default, &parsed) {
        (Value::Null, Ok(_)) => true,
        (Value::Bool(_), Ok(Value::Bool(_))) => true,
        (Value::Number(d), Ok(Value::Number(v))) => d.is_f64() || !v.is_f64(),
        (Value::Array(_), Ok(Value::Array(_))) => true,
        (Value::Object(_), Ok(Value::Object(_))) => true,
        _ => false,
    };
    match parsed {
        Ok(v) if fits => Ok(v),
        _ => Err(format!("{raw:?} is not {}", expected(default))),
    }
}

/// `GET /deployments/{name}/run`: the form, filled with the defaults.
pub(crate) async fn run_form(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
) -> PageResult {
    let Path(name) = path?;
    operator_only(viewer)?;
    let d = state.store.deployment(&name).await?;
    let values = defaults(&d)
        .iter()
        .map(|(k, v)| (k.clone(), field_text(v)))
        .collect();
    ok(form_page(&d, viewer, &values, &BTreeMap::new()))
}

/// `POST /deployments/{name}/run`: checks every field, then queues one run request.
pub(crate) async fn run_submit(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let (Path(name), Form(fields)) = (path?, form?);
    operator_only(viewer)?;
    let d = state.store.deployment(&name).await?;
    let defaults = defaults(&d);
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    for (key, raw) in fields {
        let Some(param) = key.strip_prefix("p.") else {
            continue;
        };
        match defaults.get(param) {
            Some(_) => {
                values.insert(param.to_owned(), raw);
            }
            None => {
                errors.insert(
                    param.to_owned(),
                    "this deployment has no such parameter".into(),
                );
            }
        }
    }
    let mut parameters = Map::new();
    for (param, default) in &defaults {
        let raw = values.get(param).map_or("", String::as_str);
        match check_field(default, raw) {
            Ok(v) => {
                parameters.insert(param.clone(), v);
            }
            Err(why) => {
                errors.insert(param.clone(), why);
            }
        }
    }
    if !errors.is_empty() {
        let page = form_page(&d, viewer, &values, &errors);
        return Ok(respond(StatusCode::UNPROCESSABLE_ENTITY, page));
    }
    let id = state.store.request_run(&name, parameters).await?;
    Ok(Redirect::to(&format!("/deployments?requested={id}")).into_response())
}

fn form_page(
    d: &DeploymentRecord,
    viewer: Viewer,
    values: &BTreeMap<String, String>,
    errors: &BTreeMap<String, String>,
) -> Markup {
    let defaults = defaults(d);
    let body = html! {
        h1 { "Run " (d.name) }
        p { "Flow " strong { (d.flow) } ". Values are checked here against the type of each default, and by the serving process against the flow's parameter types." }
        @if !errors.is_empty() { p.error #form-error { "Nothing was queued: fix the fields below." } }
        form.run method="post" action={ "/deployments/" (format::enc(&d.name)) "/run" } {
            @for (param, default) in &defaults {
                @let field = format!("p.{param}");
                div.field.invalid[errors.contains_key(param)] {
                    label for=(field) { (param) " " span.muted { "(" (expected(default)) ")" } }
                    input type="text" id=(field) name=(field)
                        value=(values.get(param).cloned().unwrap_or_else(|| field_text(default)));
                    @if let Some(why) = errors.get(param) { span.reason { (why) } }
                }
            }
            @for (param, why) in errors.iter().filter(|(p, _)| !defaults.contains_key(*p)) {
                p.error { code { (param) } ": " (why) }
            }
            button type="submit" { "Run" }
            " " a href="/deployments" { "Cancel" }
        }
    };
    layout(
        &format!("Run {}", d.name),
        Some(viewer),
        Nav::Deployments,
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_checked_against_their_default() {
        assert_eq!(check_field(&json!(3), "5"), Ok(json!(5)));
        assert!(check_field(&json!(3), "five")
            .unwrap_err()
            .contains("whole number"));
        assert!(check_field(&json!(3), "1.5").is_err());
        assert_eq!(check_field(&json!(1.5), "2"), Ok(json!(2)));
        assert_eq!(check_field(&json!("a"), "<b>"), Ok(json!("<b>")));
        assert!(check_field(&json!(true), "yes").is_err());
        assert!(check_field(&json!([1]), "{}").is_err());
        assert!(check_field(&json!(1), "").is_err());
    }
}
