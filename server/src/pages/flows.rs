//! Flows (`/flows`): each flow with its runs counted by state, its versions, and the graph of
//! its newest version as the macro built it at compile time.

use super::{format, layout, ok, Nav, PageResult, Viewer};
use crate::AppState;
use axum::extract::State;
use axum::Extension;
use maud::{html, PreEscaped};

/// `GET /flows`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    let flows = state.store.flows().await?;
    let versions = state.store.flow_versions().await?;
    let mut sections = Vec::new();
    for f in &flows {
        let mine: Vec<_> = versions.iter().filter(|v| v.flow == f.name).collect();
        let graph = match mine.last() {
            Some(v) => state.store.flow_graph(&f.name, &v.version).await?,
            None => None,
        };
        sections.push(html! {
            section.flow {
                h2 { (f.name) }
                p {
                    a href={ "/runs" (format::query(&[("flow", Some(&f.name))])) } { (f.runs) " runs" }
                    @for (kind, n) in &f.by_state { " " (format::state_badge(*kind)) " " (n) }
                    @if let Some(t) = f.last_run { " · last run " (format::time(t)) }
                }
                p.versions {
                    "Versions: "
                    @for v in &mine { code { (v.version) } " (" (format::time(v.first_seen)) ") " }
                }
                @if let Some(g) = graph {
                    // weft's own SVG writer escapes every label.
                    div.graph { (PreEscaped(g.to_svg())) }
                }
            }
        });
    }
    let body = html! {
        h1 { "Flows" }
        @if flows.is_empty() { p.muted { "No flow has run yet." } }
        @for s in sections { (s) }
    };
    ok(layout("Flows", Some(viewer), Nav::Flows, body))
}
