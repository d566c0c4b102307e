//! Pipelines (`/pipelines`): every recorded version of every pipeline file, with its graph and
//! its parameter schema, read from the file's text as its runs recorded it; a Run button per
//! pipeline (its newest version) for operators, when the server runs pipelines.

use super::{format, layout, ok, Nav, PageResult, Viewer};
use crate::AppState;
use axum::extract::State;
use axum::Extension;
use maud::{html, Markup, PreEscaped};
use weft_runtime::pipeline::Pipeline;

/// `GET /pipelines`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> PageResult {
    let versions = state.store.pipelines().await?;
    let can_run = viewer.operator() && state.pool.workers() > 0;
    let mut parts = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let newest = versions.get(i + 1).is_none_or(|n| n.name != v.name);
        let source = state.store.pipeline_source(&v.name, &v.version).await?;
        let origin = v.path.clone().unwrap_or_else(|| v.name.clone());
        let parsed = source.map(|text| Pipeline::from_toml(&text, &origin));
        let first = i == 0 || versions[i - 1].name != v.name;
        parts.push(html! {
            @if first { h2 data-pipeline=(v.name) {
                (v.name)
                @if can_run {
                    " " a.button.run href={ "/pipelines/" (format::enc(&v.name)) "/run" } { "Run" }
                }
            } }
            details.version open[newest] {
                summary {
                    "Version " code { (v.version) } " · " (format::time(v.registered))
                    @if let Some(p) = &v.path { " · " code { (p) } }
                    @if newest { " (newest)" }
                }
                @match parsed {
                    Some(Ok(p)) => (version_body(&p)),
                    Some(Err(e)) => p.error { "This version no longer reads: " (e.to_string()) },
                    None => p.muted { "Its text was not recorded." },
                }
            }
        });
    }
    let body = html! {
        h1 { "Pipelines" }
        p.muted {
            "Pipelines run with " code { "weft pipeline run FILE" }
            @if can_run { ", or on this server with " em { "Run" } " (its newest version, in the server's working directory)" }
            "; each version that ran is listed."
        }
        @if versions.is_empty() { p.muted { "No pipeline has run yet." } }
        @for p in parts { (p) }
    };
    ok(layout("Pipelines", Some(viewer), Nav::Pipelines, body))
}

fn version_body(p: &Pipeline) -> Markup {
    html! {
        @if let Some(d) = &p.description { p { (d) } }
        h3 { "Parameters" }
        @if p.params.is_empty() { p.muted { "None." } } @else {
            table.params {
                thead { tr { th { "Name" } th { "Type" } th { "Required" } th { "Default" } th { "Description" } } }
                tbody { @for s in &p.params { tr {
                    td { code { (s.name) } }
                    td { (s.kind.expected()) }
                    td { @if s.required { "yes" } @else { "no" } }
                    td { @if let Some(d) = &s.default { code { (d.to_string()) } } }
                    td { (s.description.as_deref().unwrap_or("")) }
                } } }
            }
        }
        h3 { "Graph" }
        // weft's own SVG writer escapes every label.
        div.graph { (PreEscaped(p.graph().to_svg())) }
    }
}
