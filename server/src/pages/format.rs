//! How values are written on pages: times, durations, states, URL parts.

use chrono::{DateTime, Utc};
use maud::{html, Markup};
use weft_runtime::StateKind;

/// Percent-encodes `s` for a URL path segment or query value: only unreserved characters stay,
/// so user text (`javascript:...`, `../`, `?`, `#`) can never change a link's meaning.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string of the non-empty pairs, each value encoded (`?a=1&b=2`, or empty).
pub(crate) fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", enc(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// `2026-11-23 23:53:24` (UTC).
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An optional time, or a dash.
pub(crate) fn time_or_dash(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "–".to_owned(), time)
}

/// `153ms`, `2.4s`, `3m 04s`, `2h 05m`.
pub(crate) fn duration_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// Milliseconds from `start` to `end` (or to now while it runs); 0 before it starts.
pub(crate) fn span_ms(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> u64 {
    match start {
        Some(s) => (end.unwrap_or_else(Utc::now) - s).num_milliseconds().max(0) as u64,
        None => 0,
    }
}

/// A state's CSS class: `s-completed`, `s-failed`, ...
pub(crate) fn state_class(kind: StateKind) -> String {
    format!("state s-{}", kind.as_str().to_ascii_lowercase())
}

/// A state as a colored badge.
pub(crate) fn state_badge(kind: StateKind) -> Markup {
    html! { span class=(state_class(kind)) { (kind.as_str()) } }
}

/// A flow run's state as a badge: Cancelling (colored as Cancelled) while a cancellation was
/// asked and the run has not ended.
pub(crate) fn run_state_badge(run: &weft_runtime::store::RunRecord) -> Markup {
    let class = match run.is_cancelling() {
        true => state_class(StateKind::Cancelled),
        false => state_class(run.state),
    };
    html! { span class=(class) { (run.shown_state()) } }
}

/// Counts by state, as `Completed 998 · Failed 2`.
pub(crate) fn counts_line(counts: &[(StateKind, u64)]) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The first 8 characters of a run id.
pub(crate) fn short_id(id: &uuid::Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// The worker that ran a run of a pooled deployment (`-` for other runs and unclaimed ones).
pub(crate) fn worker(r: &weft_runtime::store::RunRecord) -> &str {
    r.placement
        .as_ref()
        .and_then(|p| p.worker.as_deref())
        .unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_in_urls_is_encoded() {
        assert_eq!(enc("javascript:alert(1)"), "javascript%3Aalert%281%29");
        assert_eq!(enc("a b/../\"<>"), "a%20b%2F..%2F%22%3C%3E");
        assert_eq!(
            query(&[("flow", Some("x&y")), ("state", None)]),
            "?flow=x%26y"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_ms(153), "153ms");
        assert_eq!(duration_ms(2_400), "2.4s");
        assert_eq!(duration_ms(184_000), "3m 04s");
    }
}
