//! A flow run (`/runs/{id}`): state, parameters, duration; the graph colored by state; task
//! runs with mapped tasks collapsed to counts (their elements on a page of their own); a
//! timeline; the first page of logs, filterable; a pipeline's node commands and output. While
//! the run is not final, the page's script follows `/api/runs/{id}/events`.

use super::{charts, format, layout, ok, Nav, PageError, PageResult, Viewer};
use crate::api::params;
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::Extension;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;
use uuid::Uuid;
use weft_runtime::store::browse::{LogCursor, LogPage, LogQuery, RunOverview, LEVELS};
use weft_runtime::StateKind;

/// Log lines on the run page, and per page of `/runs/{id}/logs`.
const LOG_PAGE: u32 = 200;
/// Elements per page of `/runs/{id}/tasks/{node}`.
const ELEMENT_PAGE: u32 = 200;

/// The log filters (and, on the logs page, the cursor); on the run page, `cancel` tells what
/// the Cancel button just did.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LogParams {
    level: Option<String>,
    task: Option<String>,
    cursor: Option<String>,
    cancel: Option<String>,
}

/// A log query from the page's parameters, each mistake a 400.
pub(crate) fn log_query(p: &LogParams) -> Result<LogQuery, PageError> {
    let min_level = match p.level.as_deref().filter(|l| !l.is_empty()) {
        Some(l) if LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l)) => Some(l.to_uppercase()),
        Some(l) => {
            return Err(PageError::bad_request(format!(
                "invalid level {l:?}: give one of trace, debug, info, warn, error"
            )))
        }
        None => None,
    };
    Ok(LogQuery {
        min_level,
        task: p.task.clone().filter(|t| !t.is_empty()),
        limit: LOG_PAGE,
        after: params::cursor::<LogCursor>(p.cursor.as_deref())?,
    })
}

/// `GET /runs/{id}`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LogParams>, QueryRejection>,
) -> PageResult {
    let (Path(raw), Query(mut p)) = (path?, query?);
    p.cursor = None;
    let id = params::run_id(&state.store, &raw).await?;
    let q = log_query(&p)?;
    let o = state.store.run_overview(id).await?;
    let logs = state.store.logs_page(id, &q).await?;
    let live = !o.run.state.is_final();
    // Live log lines are appended only when the page shows the last ones.
    let log_after = match (&logs.next, logs.last) {
        (None, Some(c)) => c.to_string(),
        (None, None) => "start".to_owned(),
        _ => String::new(),
    };
    let body = html! {
        div #run data-run=(o.run.id) data-live=(live) data-log-after=(log_after)
            data-level=[q.min_level.as_deref()] data-task=[q.task.as_deref()] {
            (cancel_notice(p.cancel.as_deref()))
            (header(&o))
            @if live && viewer.operator() {
                form #cancel-form .inline method="post" action={ "/runs/" (o.run.id) "/cancel" } {
                    button #cancel-run type="submit" { "Cancel" }
                }
            }
            h2 { "Graph" }
            // weft's own drawing: every label in it is escaped by the SVG writer (see the
            // hostile-name tests), so it is inlined as is.
            div #graph .graph { (PreEscaped(o.to_svg())) }
            h2 { "Task runs" }
            (tasks_table(&o))
            h2 { "Timeline" }
            (charts::gantt(&o.tasks, o.run.started))
            @if !o.node_outputs.is_empty() { (outputs(&o)) }
            h2 { "Logs" }
            (log_filter(&o, &p))
            (logs_table(o.run.id, &logs, &p))
        }
    };
    // The whole id: runs made in the same minute share their first characters.
    let title = format!("{} {}", o.run.flow, o.run.id);
    ok(layout(&title, Some(viewer), Nav::Runs, body))
}

/// What the Cancel button did, after its redirect back to the page.
fn cancel_notice(outcome: Option<&str>) -> Markup {
    let text = match outcome {
        Some("requested") => "Cancellation requested: the process running this run cancels it.",
        Some("not_owned") => {
            "No live process owned this run (it was killed, or its heartbeat stopped): it was \
             marked Cancelled."
        }
        Some("ended") => "The run had already ended: nothing to cancel.",
        _ => return html! {},
    };
    html! { p.notice #cancel-notice { (text) } }
}

/// `POST /runs/{id}/cancel`: the Cancel button (operator); back to the run's page, which turns
/// Cancelled live.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
) -> PageResult {
    let Path(raw) = path?;
    if !viewer.operator() {
        return Err(crate::error::ApiError::forbidden(
            "this needs the operator token; the read-only token may only read",
        )
        .into());
    }
    let id = params::run_id(&state.store, &raw).await?;
    let outcome =
        match crate::api::cancel::request(&state.store, id, "cancelled from the dashboard").await {
            Ok((_, result)) => result.outcome,
            Err(e) if e.status == axum::http::StatusCode::CONFLICT => "ended".to_owned(),
            Err(e) => return Err(e.into()),
        };
    let to = format!("/runs/{id}?cancel={outcome}");
    Ok(axum::response::Redirect::to(&to).into_response())
}

fn header(o: &RunOverview) -> Markup {
    let r = &o.run;
    let params = serde_json::to_string_pretty(&r.parameters).unwrap_or_default();
    html! {
        h1 { (r.flow) " " span.muted { (format::short_id(&r.id)) } }
        dl.facts {
            dt { "State" } dd #run-state { (format::run_state_badge(r)) }
            dt { "Run id" } dd { code { (r.id) } }
            dt { "Version" } dd { code { (r.flow_version) } }
            dt { "Started" } dd { (format::time(r.started)) }
            dt { "Ended" } dd #run-ended { (format::time_or_dash(r.ended)) }
            dt { "Duration" } dd #run-duration { (format::duration_ms(r.duration().as_millis() as u64)) }
            @if let Some((parent, node)) = r.parent {
                dt { "Parent run" } dd { a href={ "/runs/" (parent) } { (format::short_id(&parent)) } " (node " (node) ")" }
            }
            @if let Some(p) = &r.placement {
                dt { "Deployment" } dd { (p.deployment) " (work pool " a href="/workers" { (p.pool) } ")" }
                dt { "Due" } dd { (format::time(p.scheduled)) }
                dt { "Worker" } dd #run-worker { (format::worker(r)) }
                @if p.tries > 0 { dt { "Re-runs" } dd { (p.tries) " after crashes" } }
            }
            @if let Some(m) = &r.message { dt { "Message" } dd.message { (m) } }
        }
        h2 { "Parameters" }
        pre.params { (params) }
        @if !o.children.is_empty() {
            h2 { "Subflow runs" }
            ul { @for c in &o.children {
                li { a href={ "/runs/" (c.id) } { (c.flow) " " (format::short_id(&c.id)) } " " (format::state_badge(c.state)) }
            } }
        }
    }
}

fn tasks_table(o: &RunOverview) -> Markup {
    html! {
        table.tasks {
            thead { tr { th { "Task" } th { "State" } th { "Attempts" } th { "Duration" } th { "Details" } } }
            tbody #tasks {
                @for t in &o.tasks {
                    tr data-node=(t.node) {
                        td.task {
                            (t.task)
                            @if !t.elements.is_empty() {
                                " " a.elements href={ "/runs/" (o.run.id) "/tasks/" (t.node) } { "elements" }
                            }
                        }
                        td.st { (format::state_badge(t.state)) }
                        td.num.attempts { (t.attempts) }
                        td.num.duration { (format::duration_ms(format::span_ms(t.started, t.ended))) }
                        td.detail {
                            @if t.elements.is_empty() { (t.message.as_deref().unwrap_or("")) }
                            @else { (format::counts_line(&t.elements)) }
                        }
                    }
                }
            }
        }
    }
}

fn outputs(o: &RunOverview) -> Markup {
    let name = |node: u32| {
        o.tasks
            .iter()
            .find(|t| t.node == node)
            .map_or_else(|| format!("node {node}"), |t| t.task.clone())
    };
    html! {
        h2 { "Pipeline nodes" }
        @for out in &o.node_outputs {
            section.output {
                h3 { (name(out.node)) }
                p { "Command: " code { (out.command) } }
                p { "Exit code: " (out.exit_code.map_or_else(|| "–".to_owned(), |c| c.to_string()))
                    @if let Some(s) = out.signal { " (signal " (s) ")" } }
                @if !out.stdout.is_empty() { h4 { "stdout" } pre.output { (out.stdout_lossy()) } }
                @if out.stdout_total > out.stdout.len() as u64 { p.muted { "(" (out.stdout_total) " bytes written; the first ones kept)" } }
                @if !out.stderr.is_empty() { h4 { "stderr" } pre.output { (out.stderr_lossy()) } }
            }
        }
    }
}

fn log_filter(o: &RunOverview, p: &LogParams) -> Markup {
    let mut names: Vec<&str> = o.tasks.iter().map(|t| t.task.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let level = p.level.as_deref().unwrap_or("");
    let task = p.task.as_deref().unwrap_or("");
    html! {
        form.filters method="get" action={ "/runs/" (o.run.id) } {
            label { "Level " select name="level" {
                option value="" { "any" }
                @for l in ["debug", "info", "warn", "error"] {
                    option value=(l) selected[level.eq_ignore_ascii_case(l)] { (l) }
                }
            } }
            label { "Task " select name="task" {
                option value="" { "any" }
                @for n in names { option value=(n) selected[task == n] { (n) } }
            } }
            button type="submit" { "Filter" }
        }
    }
}

/// A table of log lines and a link to the next page.
fn logs_table(id: Uuid, page: &LogPage, p: &LogParams) -> Markup {
    html! {
        table.logs {
            thead { tr { th { "Time" } th { "Level" } th { "Line" } } }
            tbody #logs {
                @for l in &page.lines {
                    tr class={ "lvl-" (l.level.to_ascii_lowercase()) } {
                        td.time { (l.at.format("%H:%M:%S%.3f")) }
                        td.level { (l.level) }
                        td.line { (l.message) }
                    }
                }
            }
        }
        @if page.lines.is_empty() { p.muted #no-logs { "No log line." } }
        @if let Some(next) = page.next {
            @let cursor = next.to_string();
            p { a.next href={ "/runs/" (id) "/logs" (format::query(&[
                ("level", p.level.as_deref()), ("task", p.task.as_deref()), ("cursor", Some(&cursor)),
            ])) } { "More lines →" } }
        }
    }
}

/// `GET /runs/{id}/logs`: a page of the run's log lines.
pub(crate) async fn logs_page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LogParams>, QueryRejection>,
) -> PageResult {
    let (Path(raw), Query(p)) = (path?, query?);
    let id = params::run_id(&state.store, &raw).await?;
    let q = log_query(&p)?;
    let run = state.store.run_record(id).await?;
    let page = state.store.logs_page(id, &q).await?;
    let body = html! {
        h1 { "Logs of " a href={ "/runs/" (id) } { (run.flow) " " (format::short_id(&id)) } }
        (logs_table(id, &page, &p))
    };
    ok(layout("Logs", Some(viewer), Nav::Runs, body))
}

/// A page of a mapped task's elements.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ElementParams {
    state: Option<String>,
    cursor: Option<String>,
}

/// `GET /runs/{id}/tasks/{node}`: a mapped task's elements, 200 a page.
pub(crate) async fn elements_page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<(String, u32)>, PathRejection>,
    query: Result<Query<ElementParams>, QueryRejection>,
) -> PageResult {
    let (Path((raw, node)), Query(p)) = (path?, query?);
    let id = params::run_id(&state.store, &raw).await?;
    let kind = params::state(p.state.as_deref())?;
    let after = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(c.parse::<u32>().map_err(|_| {
            PageError::bad_request(format!("invalid cursor {c:?}: follow the Next link"))
        })?),
        None => None,
    };
    let o = state.store.run_overview(id).await?;
    let Some(task) = o.tasks.iter().find(|t| t.node == node) else {
        return Err(PageError::bad_request(format!(
            "run {id} has no task node {node}"
        )));
    };
    let page = state
        .store
        .task_elements(id, node, kind, after, ELEMENT_PAGE)
        .await?;
    let state_name = kind.map(StateKind::as_str);
    let body = html! {
        h1 { (task.task) " of " a href={ "/runs/" (id) } { (o.run.flow) " " (format::short_id(&id)) } }
        p { (format::counts_line(&task.elements)) }
        p.windows {
            a href={ "/runs/" (id) "/tasks/" (node) } { "all" } " "
            @for (k, _) in &task.elements {
                a href={ "/runs/" (id) "/tasks/" (node) "?state=" (k.as_str()) }
                    class=[(Some(k.as_str()) == state_name).then_some("active")] { (k.as_str()) } " "
            }
        }
        table.elements {
            thead { tr { th { "Index" } th { "State" } th { "Attempts" } th { "Duration" } th { "Message" } } }
            tbody { @for e in &page.elements { tr {
                td.num { (e.map_index.unwrap_or(0)) }
                td { (format::state_badge(e.state)) }
                td.num { (e.attempts) }
                td.num { (format::duration_ms(format::span_ms(e.started, e.ended))) }
                td.message { (e.message.as_deref().unwrap_or("")) }
            } } }
        }
        @if let Some(next) = page.next {
            @let cursor = next.to_string();
            p { a.next href={ "/runs/" (id) "/tasks/" (node) (format::query(&[("state", state_name), ("cursor", Some(&cursor))])) } { "Next →" } }
        }
    };
    ok(layout("Elements", Some(viewer), Nav::Runs, body))
}
