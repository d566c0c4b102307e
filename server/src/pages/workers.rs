//! Workers (`/workers`): the work pools (limit, paused or active, workers online) with Pause and
//! Resume buttons (operator only), and every registered worker, online or offline by its
//! heartbeat.

use super::deployments::operator_only;
use super::{format, layout, ok, Nav, PageResult, Viewer};
use crate::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::Extension;
use maud::{html, Markup};
use weft_runtime::store::{WorkPool, WorkerRecord};

/// `GET /workers`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    let pools = state.store.work_pools().await?;
    let workers = state.store.workers(None).await?;
    let body = html! {
        h1 { "Workers" }
        h2 { "Work pools" }
        @if pools.is_empty() {
            p.muted { "No work pool yet: create one with " code { "weft work-pool create NAME" } "." }
        } @else {
            table.pools {
                thead { tr {
                    th { "Name" } th { "Status" } th { "Limit" } th { "Workers online" }
                    th { "Description" } @if viewer.operator() { th { "Actions" } }
                } }
                tbody { @for p in &pools { (pool_row(p, &workers, viewer)) } }
            }
        }
        h2 { "Registered workers" }
        @if workers.is_empty() {
            p.muted { "No worker is registered: a worker registers itself when it starts." }
        } @else {
            (workers_table(&workers))
        }
    };
    ok(layout("Workers", Some(viewer), Nav::Workers, body))
}

fn pool_row(p: &WorkPool, workers: &[WorkerRecord], viewer: Viewer) -> Markup {
    let of_pool = workers.iter().filter(|w| w.pool == p.name);
    let (online, all) = of_pool.fold((0, 0), |(on, n), w| (on + usize::from(w.online), n + 1));
    let base = format!("/workers/pools/{}", format::enc(&p.name));
    html! {
        tr data-pool=(p.name) {
            td { (p.name) }
            td.status { @if p.paused { span.is-paused { "paused" } } @else { span.is-active { "active" } } }
            td.num { @if let Some(n) = p.concurrency_limit { (n) } @else { "no limit" } }
            td.num { (online) " of " (all) }
            td { (p.description.as_deref().unwrap_or("")) }
            @if viewer.operator() {
                td.actions {
                    @if p.paused {
                        form.inline method="post" action={ (base) "/resume" } { button type="submit" { "Resume" } }
                    } @else {
                        form.inline method="post" action={ (base) "/pause" } { button type="submit" { "Pause" } }
                    }
                }
            }
        }
    }
}

fn workers_table(workers: &[WorkerRecord]) -> Markup {
    let ids: Vec<_> = workers.iter().map(|w| w.id.0).collect();
    let short = weft_runtime::store::short_ids(&ids);
    html! {
        table.workers {
            thead { tr {
                th { "Worker" } th { "Pool" } th { "Name" } th { "Host" } th { "Pid" } th { "Version" }
                th { "Flows" } th { "Started" } th { "Last heartbeat" } th { "Status" }
            } }
            tbody { @for (w, id) in workers.iter().zip(short) {
                tr data-worker=(w.id) {
                    td { code title=(w.id) { (id) } }
                    td { (w.pool) } td { (w.name) } td { (w.host) } td.num { (w.pid) }
                    td { (w.version) } td { (w.flows.join(", ")) }
                    td { (format::time(w.started)) } td { (format::time(w.heartbeat)) }
                    td.status { @if w.online { span.is-active { "online" } } @else { span.is-paused { "offline" } } }
                }
            } }
        }
    }
}

async fn set_paused(state: &AppState, viewer: Viewer, name: &str, paused: bool) -> PageResult {
    operator_only(viewer)?;
    state.store.set_work_pool_paused(name, paused).await?;
    Ok(Redirect::to("/workers").into_response())
}

/// `POST /workers/pools/{name}/pause`.
pub(crate) async fn pause(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
) -> PageResult {
    let Path(name) = path?;
    set_paused(&state, viewer, &name, true).await
}

/// `POST /workers/pools/{name}/resume`.
pub(crate) async fn resume(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    path: Result<Path<String>, PathRejection>,
) -> PageResult {
    let Path(name) = path?;
    set_paused(&state, viewer, &name, false).await
}
