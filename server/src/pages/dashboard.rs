//! The dashboard (`/`): flow runs and task runs counted by final state over a window, a chart
//! of runs over time, the latest failures, and deployments that are late or whose last run
//! failed.

use super::{charts, format, layout, ok, Nav, PageError, PageResult, Viewer};
use crate::api::stats;
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Extension;
use chrono::{Duration, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::BTreeMap;
use weft_runtime::store::browse::RunQuery;
use weft_runtime::store::{short_ids, DeploymentRecord, Store};
use weft_runtime::StateKind;

/// The dashboard's window.
#[derive(Debug, Deserialize)]
pub(crate) struct DashParams {
    window: Option<String>,
}

/// How long past its next run a deployment is late.
const LATE_AFTER: i64 = 60;

/// `GET /`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    query: Result<Query<DashParams>, QueryRejection>,
) -> PageResult {
    let Query(p) = query?;
    let window = p.window.unwrap_or_else(|| "day".to_owned());
    let report = stats::report(&state.store, &window).await?;
    let failures = state
        .store
        .runs_page(&RunQuery {
            state: Some(StateKind::Failed),
            ..RunQuery::new().limit(10)
        })
        .await?;
    let attention = deployments_needing_attention(&state.store).await?;
    let failure_ids: Vec<uuid::Uuid> = failures.runs.iter().map(|r| r.id).collect();
    let body = html! {
        h1 { "Dashboard" }
        p.windows {
            "Runs ended in the last "
            @for w in ["hour", "day", "week"] {
                a href={ "/?window=" (w) } class=[(w == window).then_some("active")] { (w) } " "
            }
        }
        div.cards id="counts" data-window=(window) {
            (counts_card("Flow runs", "flow", &report.flow_runs))
            (counts_card("Task runs", "task", &report.task_runs))
        }
        h2 { "Flow runs over time" }
        (charts::runs_chart(&report))
        (legend())
        h2 { "Latest failures" }
        @if failures.runs.is_empty() {
            p.muted { "No failed flow run." }
        } @else {
            table {
                thead { tr { th { "Run" } th { "Flow" } th { "Started" } th { "Message" } } }
                tbody {
                    @for (r, short) in failures.runs.iter().zip(short_ids(&failure_ids)) {
                        tr {
                            td { a href={ "/runs/" (r.id) } { (short) } }
                            td { (r.flow) }
                            td { (format::time(r.started)) }
                            td.message { (r.message.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        h2 { "Deployments needing attention" }
        @if attention.is_empty() {
            p.muted { "No deployment is late or failing." }
        } @else {
            ul.attention {
                @for (d, why) in &attention {
                    li { a href="/deployments" { (d.name) } " — " (why) }
                }
            }
        }
    };
    ok(layout("Dashboard", Some(viewer), Nav::Dashboard, body))
}

/// One card of counts by state; the script refreshes the `data-count` cells.
fn counts_card(title: &str, key: &str, counts: &BTreeMap<String, u64>) -> Markup {
    let total: u64 = counts.values().sum();
    html! {
        section.card {
            h2 { (title) }
            p.total { span data-count={ (key) ":total" } { (total) } " ended" }
            table.counts {
                @for kind in StateKind::ALL.iter().filter(|k| k.is_final()) {
                    tr {
                        td { (format::state_badge(*kind)) }
                        td.num data-count={ (key) ":" (kind.as_str()) } {
                            (counts.get(kind.as_str()).copied().unwrap_or(0))
                        }
                    }
                }
            }
        }
    }
}

fn legend() -> Markup {
    html! {
        p.legend {
            // The chart counts runs that ended: final states only.
            @for kind in StateKind::ALL.into_iter().filter(|k| k.is_final()) {
                (format::state_badge(kind)) " "
            }
        }
    }
}

/// Deployments whose next run is over a minute late (and not paused) or whose last run failed,
/// each with the reason.
async fn deployments_needing_attention(
    store: &Store,
) -> Result<Vec<(DeploymentRecord, String)>, PageError> {
    let now = Utc::now();
    let mut out = Vec::new();
    for d in store.deployments().await? {
        if let Some(next) = d
            .next_run_at
            .filter(|n| !d.paused && *n + Duration::seconds(LATE_AFTER) < now)
        {
            let why = format!("late: its run was due at {}", format::time(next));
            out.push((d, why));
            continue;
        }
        if let Some(last) = d.last_run {
            match store.run_record(last).await {
                Ok(r) if r.state.is_failed() => {
                    let why = format!(
                        "its last run ({}) ended {}",
                        format::short_id(&r.id),
                        r.state
                    );
                    out.push((d, why));
                }
                _ => {}
            }
        }
    }
    Ok(out)
}
