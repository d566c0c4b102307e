//! Charts drawn on the server as SVG (no chart library, no script): runs over time by state,
//! and a run's task timeline. SVG elements are always written with a closing tag, as HTML's
//! parser nests an unclosed one inside the next.

use super::format;
use crate::api::stats::StatsReport;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use weft_runtime::store::browse::TaskNodeSummary;
use weft_runtime::viz::state_color;
use weft_runtime::StateKind;

/// The most bars a timeline draws.
pub(crate) const MAX_BARS: usize = 500;

fn n1(v: f64) -> String {
    format!("{v:.1}")
}

/// Counts of a bucket in state order, with their kinds.
fn ordered(counts: &std::collections::BTreeMap<String, u64>) -> Vec<(StateKind, u64)> {
    StateKind::ALL
        .iter()
        .filter_map(|k| counts.get(k.as_str()).map(|n| (*k, *n)))
        .collect()
}

/// A stacked bar per bucket of the window: flow runs that ended in it, colored by state.
pub(crate) fn runs_chart(report: &StatsReport) -> Markup {
    const W: f64 = 760.0;
    const H: f64 = 150.0;
    const LEFT: f64 = 34.0;
    let n = report.buckets.len().max(1);
    let max = report
        .buckets
        .iter()
        .map(|b| b.counts.values().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = (W - LEFT) / n as f64;
    let bar = (slot * 0.8).max(1.0);
    let label_every = n.div_ceil(8).max(1);
    let label = |t: DateTime<Utc>| match report.window.as_str() {
        "week" => t.format("%m-%d").to_string(),
        _ => t.format("%H:%M").to_string(),
    };
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" width=(W) height=(H + 22.0)
            viewBox={ "0 0 " (W) " " (H + 22.0) } role="img"
            aria-label="Flow runs started over time, by state" {
            text x=(n1(LEFT - 6.0)) y="12" text-anchor="end" font-size="11" { (max) }
            text x=(n1(LEFT - 6.0)) y=(n1(H)) text-anchor="end" font-size="11" { "0" }
            line x1=(LEFT) y1=(H) x2=(W) y2=(H) stroke="#bbb" {}
            @for (i, b) in report.buckets.iter().enumerate() {
                @let x = LEFT + i as f64 * slot;
                @let mut y = H;
                @for (kind, count) in ordered(&b.counts) {
                    @let h = count as f64 / max as f64 * (H - 16.0);
                    @let top = { y -= h; y };
                    rect x=(n1(x)) y=(n1(top)) width=(n1(bar)) height=(n1(h))
                        fill=(state_color(kind)) class="bar" {
                        title { (format::time(b.start)) " " (kind.as_str()) ": " (count) }
                    }
                }
                @if i % label_every == 0 {
                    text x=(n1(x + bar / 2.0)) y=(n1(H + 15.0)) text-anchor="middle"
                        font-size="11" { (label(b.start)) }
                }
            }
        }
    }
}

/// A timeline of a run's task nodes (a mapped node is one bar from its first element's start
/// to its last one's end), at most [`MAX_BARS`] bars.
pub(crate) fn gantt(tasks: &[TaskNodeSummary], run_start: DateTime<Utc>) -> Markup {
    const W: f64 = 760.0;
    const LABEL: f64 = 190.0;
    const ROW: f64 = 18.0;
    let shown: Vec<&TaskNodeSummary> = tasks
        .iter()
        .filter(|t| t.started.is_some())
        .take(MAX_BARS)
        .collect();
    if shown.is_empty() {
        return html! { p.muted { "No task has started yet." } };
    }
    let t0 = shown
        .iter()
        .filter_map(|t| t.started)
        .min()
        .unwrap_or(run_start);
    let t1 = shown
        .iter()
        .map(|t| t.ended.unwrap_or_else(Utc::now))
        .max()
        .unwrap_or(t0);
    let span = (t1 - t0).num_milliseconds().max(1) as f64;
    let plot = W - LABEL - 10.0;
    let x_of = |t: DateTime<Utc>| LABEL + (t - t0).num_milliseconds().max(0) as f64 / span * plot;
    let height = shown.len() as f64 * ROW + 24.0;
    html! {
        svg.gantt xmlns="http://www.w3.org/2000/svg" width=(W) height=(n1(height))
            viewBox={ "0 0 " (W) " " (n1(height)) } role="img" aria-label="Task runs over time" {
            @for (i, t) in shown.iter().enumerate() {
                @let y = i as f64 * ROW + 4.0;
                @let (a, b) = (x_of(t.started.unwrap_or(t0)), x_of(t.ended.unwrap_or(t1)));
                text x="4" y=(n1(y + 12.0)) font-size="11" { (truncate(&t.task, 28)) }
                rect x=(n1(a)) y=(n1(y + 2.0)) width=(n1((b - a).max(2.0))) height=(n1(ROW - 5.0))
                    rx="2" fill=(state_color(t.state)) data-node=(t.node) {
                    title {
                        (t.task) ": " (t.state.as_str()) ", "
                        (format::duration_ms(format::span_ms(t.started, t.ended)))
                    }
                }
            }
            @let axis = shown.len() as f64 * ROW + 18.0;
            text x=(LABEL) y=(n1(axis)) font-size="11" { "0" }
            text x=(n1(W - 10.0)) y=(n1(axis)) font-size="11" text-anchor="end" {
                (format::duration_ms(span as u64))
            }
        }
        @if tasks.len() > shown.len() {
            p.muted { "The first " (shown.len()) " of " (tasks.len()) " task nodes are drawn." }
        }
    }
}

/// `s` cut to `n` characters, with an ellipsis when cut.
pub(crate) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
