//! Flow runs (`/runs`): a table filtered by flow, state, deployment and time range, newest
//! first, 50 a page, with a "Next" link carrying the cursor.

use super::{format, layout, respond, Nav, PageError, PageResult, Viewer};
use crate::api::params;
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Extension;
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use weft_runtime::store::browse::{RunCursor, RunPage, RunQuery};
use weft_runtime::store::short_ids;
use weft_runtime::StateKind;

/// The form's fields (all optional).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunsForm {
    flow: Option<String>,
    state: Option<String>,
    deployment: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

/// `GET /runs`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    query: Result<Query<RunsForm>, QueryRejection>,
) -> PageResult {
    let Query(f) = query?;
    // The filter's flow names only: flow_versions reads the small table of flow versions,
    // where flows() would count every run.
    let mut flow_names: Vec<String> = state
        .store
        .flow_versions()
        .await?
        .into_iter()
        .map(|v| v.flow)
        .collect();
    flow_names.dedup();
    let deployments = state.store.deployments().await?;
    let (status, table) = match run_query(&f) {
        Ok(q) => {
            let known = q
                .deployment
                .as_ref()
                .is_none_or(|d| deployments.iter().any(|x| &x.name == d));
            if known {
                (StatusCode::OK, table(&f, &state.store.runs_page(&q).await?))
            } else {
                let e = "unknown deployment: pick one of the list".to_owned();
                (StatusCode::NOT_FOUND, html! { p.error { (e) } })
            }
        }
        Err(e) => (StatusCode::BAD_REQUEST, html! { p.error { (e.message) } }),
    };
    let flow_names: Vec<&str> = flow_names.iter().map(String::as_str).collect();
    let dep_names: Vec<&str> = deployments.iter().map(|x| x.name.as_str()).collect();
    let body = html! {
        h1 { "Flow runs" }
        (filter_form(&f, &flow_names, &dep_names))
        (table)
    };
    Ok(respond(
        status,
        layout("Flow runs", Some(viewer), Nav::Runs, body),
    ))
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// A time from the form: RFC 3339, or a `datetime-local` value taken as UTC.
fn form_time(name: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, PageError> {
    let Some(s) = raw.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    for pattern in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, pattern) {
            return Ok(Some(t.and_utc()));
        }
    }
    Ok(params::time(name, Some(s))?)
}

fn run_query(f: &RunsForm) -> Result<RunQuery, PageError> {
    Ok(RunQuery {
        flow: non_empty(&f.flow).map(str::to_owned),
        state: params::state(non_empty(&f.state))?,
        deployment: non_empty(&f.deployment).map(str::to_owned),
        since: form_time("since", non_empty(&f.since))?,
        until: form_time("until", non_empty(&f.until))?,
        after: params::cursor::<RunCursor>(non_empty(&f.cursor))?,
        ..RunQuery::new()
    })
}

fn select(name: &str, label: &str, options: &[&str], chosen: Option<&str>) -> Markup {
    html! {
        label {
            (label) " "
            select name=(name) {
                option value="" { "any" }
                @for o in options {
                    option value=(o) selected[chosen == Some(*o)] { (o) }
                }
            }
        }
    }
}

fn filter_form(f: &RunsForm, flows: &[&str], deployments: &[&str]) -> Markup {
    let states: Vec<&str> = StateKind::ALL.iter().map(|k| k.as_str()).collect();
    html! {
        form.filters method="get" action="/runs" {
            (select("flow", "Flow", flows, non_empty(&f.flow)))
            (select("state", "State", &states, non_empty(&f.state)))
            (select("deployment", "Deployment", deployments, non_empty(&f.deployment)))
            label { "Since (UTC) " input type="datetime-local" name="since" value=[non_empty(&f.since)]; }
            label { "Until (UTC) " input type="datetime-local" name="until" value=[non_empty(&f.until)]; }
            button type="submit" { "Filter" }
            " " a href="/runs" { "Clear" }
        }
    }
}

fn table(f: &RunsForm, page: &RunPage) -> Markup {
    let ids: Vec<uuid::Uuid> = page.runs.iter().map(|r| r.id).collect();
    html! {
        @if page.runs.is_empty() {
            p.muted { "No flow run matches." }
        } @else {
            table.runs {
                thead { tr {
                    th { "Run" } th { "Flow" } th { "State" } th { "Started" } th { "Duration" }
                    th { "Worker" } th { "Message" }
                } }
                tbody {
                    @for (r, short) in page.runs.iter().zip(short_ids(&ids)) {
                        tr {
                            td { a href={ "/runs/" (r.id) } { (short) } }
                            td { a href={ "/runs" (format::query(&[("flow", Some(&r.flow))])) } { (r.flow) } }
                            td { (format::run_state_badge(r)) }
                            td { (format::time(r.started)) }
                            td.num { (format::duration_ms(r.duration().as_millis() as u64)) }
                            td { (format::worker(r)) }
                            td.message { (r.message.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = page.next {
            @let cursor = next.to_string();
            p { a.next href={ "/runs" (format::query(&[
                ("flow", non_empty(&f.flow)), ("state", non_empty(&f.state)),
                ("deployment", non_empty(&f.deployment)), ("since", non_empty(&f.since)),
                ("until", non_empty(&f.until)), ("cursor", Some(&cursor)),
            ])) } { "Next →" } }
        }
    }
}
