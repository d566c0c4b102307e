//! Text output of the `weft` command: aligned tables, durations, times. Pure functions: they
//! take the records and a time zone (the local one in the binary, UTC in tests) and return text.

use chrono::{DateTime, TimeZone, Utc};
use std::fmt::{self, Write as _};
use std::time::Duration;
use weft_runtime::schedule::Schedule;
use weft_runtime::store::{
    short_ids, DeploymentRecord, FlowSummary, LogRecord, RunDetail, RunRecord, TaskRunRecord,
};
use weft_runtime::StateKind;

/// A mapped node with more elements than this shows only [`MAPPED_SHOWN`] of them.
pub const MAPPED_LIMIT: usize = 50;
/// How many elements of a large mapped node `run show` lists.
pub const MAPPED_SHOWN: usize = 20;
/// The longest error message shown in the task runs table.
pub const ERROR_WIDTH: usize = 70;

/// A duration for people: `312ms`, `4.2s`, `3m 12s`, `2h 05m`, `3d 04h`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        // Tenths rounded down, so 59.99s never shows as 60.0s.
        return format!("{}.{}s", ms / 1_000, (ms % 1_000) / 100);
    }
    let s = d.as_secs();
    if s < 3_600 {
        format!("{}m {}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h {:02}m", s / 3_600, (s % 3_600) / 60)
    } else {
        format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3_600)
    }
}

/// A flow run's duration, or `running` while it has not ended.
pub fn run_duration(run: &RunRecord) -> String {
    match run.ended {
        Some(_) => duration(run.duration()),
        None if !has_started(run) => "-".to_owned(),
        None => "running".to_owned(),
    }
}

/// False for a run waiting in a work pool's queue (Scheduled, Late, or claimed and Pending).
fn has_started(run: &RunRecord) -> bool {
    let queued = matches!(run.state, StateKind::Scheduled | StateKind::Late);
    let claimed = run.state == StateKind::Pending && run.placement.is_some();
    !(queued || claimed)
}

/// A task run's duration: `-` when it never started, `running` while it runs.
pub fn task_duration(t: &TaskRunRecord) -> String {
    match (t.started, t.ended) {
        (None, _) => "-".to_owned(),
        (Some(_), Some(_)) => duration(t.duration()),
        (Some(_), None) if t.state.is_final() => "-".to_owned(),
        (Some(_), None) => "running".to_owned(),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in `tz`.
pub fn date_time<Tz: TimeZone>(t: DateTime<Utc>, tz: &Tz) -> String
where
    Tz::Offset: fmt::Display,
{
    t.with_timezone(tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `HH:MM:SS.mmm` in `tz`, as weft's console writes log lines.
pub fn clock_time<Tz: TimeZone>(t: DateTime<Utc>, tz: &Tz) -> String
where
    Tz::Offset: fmt::Display,
{
    t.with_timezone(tz).format("%H:%M:%S%.3f").to_string()
}

/// The first line of `s`, at most `max` characters (an ellipsis marks a cut).
pub fn truncate(s: &str, max: usize) -> String {
    let mut lines = s.trim().lines();
    let first = lines.next().unwrap_or("").trim_end();
    let more_lines = lines.next().is_some();
    if first.chars().count() <= max && !more_lines {
        return first.to_owned();
    }
    let keep = max.saturating_sub(1);
    let mut out: String = first.chars().take(keep).collect();
    out.push('…');
    out
}

/// The URL with its password replaced by `***` (for messages written before the store opened).
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((creds, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = creds.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_owned()
}

/// Counts by state, in the order a run goes through them: `9990 Completed, 10 Failed`.
pub fn state_counts(states: impl IntoIterator<Item = StateKind>) -> String {
    let mut counts = [0u64; StateKind::ALL.len()];
    for s in states {
        if let Some(i) = StateKind::ALL.iter().position(|k| *k == s) {
            counts[i] += 1;
        }
    }
    StateKind::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

enum Row {
    Cells(Vec<String>),
    /// A line of its own, outside the columns (a note between rows).
    Note(String),
}

/// A table whose columns are as wide as their widest cell, two spaces apart.
pub struct Table {
    headers: Vec<(&'static str, Align)>,
    rows: Vec<Row>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[(&'static str, Align)]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }
    /// Adds a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Row::Cells(cells));
    }
    /// Adds a line that is not part of the columns.
    pub fn note(&mut self, line: String) {
        self.rows.push(Row::Note(line));
    }
    /// The table, one line per row, without trailing spaces.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|(h, _)| width(h)).collect();
        for row in &self.rows {
            if let Row::Cells(cells) = row {
                for (w, c) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(width(c));
                }
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
            let mut text = String::new();
            for (i, cell) in cells.enumerate().take(widths.len()) {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = widths[i].saturating_sub(width(cell));
                match self.headers[i].1 {
                    Align::Left => {
                        text.push_str(cell);
                        text.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        text.extend(std::iter::repeat_n(' ', pad));
                        text.push_str(cell);
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        let mut out = String::new();
        line(&mut self.headers.iter().map(|(h, _)| *h), &mut out);
        for row in &self.rows {
            match row {
                Row::Cells(cells) => line(&mut cells.iter().map(String::as_str), &mut out),
                Row::Note(text) => {
                    out.push_str(text.trim_end());
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// The `weft runs` table.
pub fn runs_table<Tz: TimeZone>(runs: &[RunRecord], tz: &Tz) -> String
where
    Tz::Offset: fmt::Display,
{
    let ids: Vec<weft_runtime::Uuid> = runs.iter().map(|r| r.id).collect();
    // Runs of pooled deployments say which worker ran them.
    let pooled = runs.iter().any(|r| r.placement.is_some());
    let mut columns = vec![
        ("ID", Align::Left),
        ("FLOW", Align::Left),
        ("STATE", Align::Left),
        ("STARTED", Align::Left),
        ("DURATION", Align::Right),
    ];
    if pooled {
        columns.push(("WORKER", Align::Left));
    }
    let mut table = Table::new(&columns);
    for (run, id) in runs.iter().zip(short_ids(&ids)) {
        let started = match has_started(run) {
            true => date_time(run.started, tz),
            false => format!("due {}", date_time(run.started, tz)),
        };
        let mut row = vec![
            id,
            run.flow.clone(),
            run.shown_state().to_owned(),
            started,
            run_duration(run),
        ];
        if pooled {
            let worker = run.placement.as_ref().and_then(|p| p.worker.clone());
            row.push(worker.unwrap_or_else(|| "-".to_owned()));
        }
        table.row(row);
    }
    table.render()
}

/// The `weft flows` table: runs counted by final state.
pub fn flows_table<Tz: TimeZone>(flows: &[FlowSummary], tz: &Tz) -> String
where
    Tz::Offset: fmt::Display,
{
    let mut table = Table::new(&[
        ("FLOW", Align::Left),
        ("RUNS", Align::Right),
        ("COMPLETED", Align::Right),
        ("FAILED", Align::Right),
        ("CANCELLED", Align::Right),
        ("OTHER", Align::Right),
        ("LAST RUN", Align::Left),
    ]);
    for f in flows {
        let c = FlowCounts::of(f);
        table.row(vec![
            f.name.clone(),
            f.runs.to_string(),
            c.completed.to_string(),
            c.failed.to_string(),
            c.cancelled.to_string(),
            c.other.to_string(),
            f.last_run
                .map_or_else(|| "-".to_owned(), |t| date_time(t, tz)),
        ]);
    }
    table.render()
}

/// A stored schedule spec as people read it (`every 30s`, `cron '0 9 * * 1-5' (Europe/Berlin)`);
/// the spec itself when this weft cannot read it; `-` for a deployment without a schedule.
pub fn schedule(spec: Option<&str>) -> String {
    match spec {
        None => "-".to_owned(),
        Some(spec) => spec
            .parse::<Schedule>()
            .map_or_else(|_| spec.to_owned(), |s| s.to_string()),
    }
}

/// The `weft deployments` table: schedules, status, last and next runs.
pub fn deployments_table<Tz: TimeZone>(
    deployments: &[DeploymentRecord],
    pools: &std::collections::HashMap<String, String>,
    tz: &Tz,
) -> String
where
    Tz::Offset: fmt::Display,
{
    let mut columns = vec![
        ("NAME", Align::Left),
        ("FLOW", Align::Left),
        ("SCHEDULE", Align::Left),
        ("STATUS", Align::Left),
        ("LAST RUN", Align::Left),
        ("NEXT RUN", Align::Left),
    ];
    // Deployments served by work pools' workers say which pool.
    if !pools.is_empty() {
        columns.push(("WORK POOL", Align::Left));
    }
    let mut table = Table::new(&columns);
    for d in deployments {
        // The whole id: run ids begin with their start time, so a prefix may name several.
        let last = match (d.last_run_at, d.last_run) {
            (Some(at), Some(id)) => format!("{} ({id})", date_time(at, tz)),
            (Some(at), None) => date_time(at, tz),
            (None, Some(id)) => id.to_string(),
            (None, None) => "-".to_owned(),
        };
        let next = match (d.paused, d.next_run_at) {
            (true, _) => "paused".to_owned(),
            (false, Some(at)) => date_time(at, tz),
            (false, None) => "-".to_owned(),
        };
        let mut row = vec![
            d.name.clone(),
            d.flow.clone(),
            schedule(d.schedule.as_deref()),
            if d.paused { "paused" } else { "active" }.to_owned(),
            last,
            next,
        ];
        if !pools.is_empty() {
            row.push(
                pools
                    .get(&d.name)
                    .cloned()
                    .unwrap_or_else(|| "-".to_owned()),
            );
        }
        table.row(row);
    }
    table.render()
}

/// A flow's runs by final state, as `weft flows` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowCounts {
    /// Completed (or Cached).
    pub completed: u64,
    /// Failed, Crashed or TimedOut.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Everything else: running, skipped, ...
    pub other: u64,
}

impl FlowCounts {
    /// The counts of `flow`.
    pub fn of(flow: &FlowSummary) -> FlowCounts {
        let mut c = FlowCounts::default();
        for (kind, n) in &flow.by_state {
            if kind.is_successful() {
                c.completed += n;
            } else if kind.is_failed() {
                c.failed += n;
            } else if *kind == StateKind::Cancelled {
                c.cancelled += n;
            } else {
                c.other += n;
            }
        }
        c
    }
}

/// What `weft run show` prints: the run, its task runs, its logs. With `all`, every element of a
/// large mapped task is listed.
pub fn run_detail<Tz: TimeZone>(detail: &RunDetail, all: bool, tz: &Tz) -> String
where
    Tz::Offset: fmt::Display,
{
    let run = &detail.run;
    let mut out = String::new();
    let mut state = match run.message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => format!("{}: {m}", run.state),
        _ => run.state.to_string(),
    };
    if let (true, Some(c)) = (run.is_cancelling(), &run.cancel_requested) {
        let why = c
            .reason
            .as_deref()
            .map_or(String::new(), |r| format!(": {r}"));
        let _ = write!(state, " (cancel requested {}{why})", date_time(c.at, tz));
    }
    let ended = run
        .ended
        .map_or_else(|| "-".to_owned(), |t| date_time(t, tz));
    let _ = writeln!(out, "Flow run    {}", run.id);
    let _ = writeln!(
        out,
        "flow        {} (version {})",
        run.flow, run.flow_version
    );
    let _ = writeln!(out, "state       {state}");
    let _ = writeln!(out, "started     {}", date_time(run.started, tz));
    let _ = writeln!(out, "ended       {ended}");
    let _ = writeln!(out, "duration    {}", run_duration(run));
    let _ = writeln!(out, "parameters  {}", run.parameters);
    if let Some((parent, node)) = run.parent {
        let _ = writeln!(out, "parent      {parent} (node {node})");
    }
    if let Some(p) = &run.placement {
        let _ = writeln!(out, "deployment  {} (work pool {})", p.deployment, p.pool);
        let _ = writeln!(out, "due         {}", date_time(p.scheduled, tz));
        let worker = p.worker.as_deref().unwrap_or("- (not claimed yet)");
        let _ = writeln!(out, "worker      {worker}");
        if p.tries > 0 {
            let _ = writeln!(out, "re-runs     {} after crashes", p.tries);
        }
    }
    out.push('\n');
    if detail.task_runs.is_empty() {
        out.push_str("No task runs recorded.\n");
    } else {
        out.push_str(&task_table(&detail.task_runs, all));
    }
    if !detail.children.is_empty() {
        out.push('\n');
        out.push_str(&subflow_table(&detail.children));
    }
    if !detail.node_outputs.is_empty() {
        out.push('\n');
        out.push_str(&node_outputs(detail, all));
    }
    out.push('\n');
    out.push_str(&logs(&detail.logs, tz));
    out
}

/// `Subflow runs:` the child runs a run started, with the node that started each.
fn subflow_table(children: &[RunRecord]) -> String {
    let mut table = Table::new(&[
        ("NODE", Align::Right),
        ("ID", Align::Left),
        ("FLOW", Align::Left),
        ("STATE", Align::Left),
        ("DURATION", Align::Right),
    ]);
    for c in children {
        table.row(vec![
            c.parent.map_or_else(String::new, |(_, n)| n.to_string()),
            c.id.to_string(),
            c.flow.clone(),
            c.state.to_string(),
            run_duration(c),
        ]);
    }
    format!("Subflow runs:\n{}", table.render())
}

/// Lines of one stream shown per node unless `--all`.
const OUTPUT_LINES: usize = 40;

/// `Output:` of a pipeline run: each node's command, how it exited, then its stdout and stderr
/// (shown lossily: bytes that are not UTF-8 become `�`), the last lines unless `all`.
pub fn node_outputs(detail: &RunDetail, all: bool) -> String {
    let mut out = String::from("Output:\n");
    for o in &detail.node_outputs {
        let name = detail
            .task_runs
            .iter()
            .find(|t| t.node == o.node && t.map_index.is_none())
            .map_or_else(|| format!("node {}", o.node), |t| t.task.clone());
        let status = match (o.exit_code, o.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            (None, None) => "no exit status".to_owned(),
        };
        let _ = writeln!(
            out,
            "--- {name} ({status}): {}",
            o.command.trim_end().replace('\n', "; ")
        );
        for (label, text, kept, total, key) in [
            (
                "stdout",
                o.stdout_lossy(),
                o.stdout.len() as u64,
                o.stdout_total,
                &o.stdout_key,
            ),
            (
                "stderr",
                o.stderr_lossy(),
                o.stderr.len() as u64,
                o.stderr_total,
                &o.stderr_key,
            ),
        ] {
            if text.is_empty() {
                continue;
            }
            let lines: Vec<&str> = text.lines().collect();
            let skip = if all {
                0
            } else {
                lines.len().saturating_sub(OUTPUT_LINES)
            };
            if skip > 0 {
                let _ = writeln!(out, "    [{label}: {skip} earlier lines; --all shows them]");
            }
            for line in &lines[skip..] {
                let _ = writeln!(out, "    {label} | {line}");
            }
            match (total > kept, key) {
                (true, Some(key)) => {
                    let _ = writeln!(
                        out,
                        "    [{label}: {} more bytes; the whole stream is in the result store at {key}]",
                        total - kept
                    );
                }
                (true, None) => {
                    let _ = writeln!(
                        out,
                        "    [{label}: {} more bytes were not kept]",
                        total - kept
                    );
                }
                _ => {}
            }
        }
    }
    out
}

/// The task runs table of `weft run show`; a mapped node's elements follow its summary row,
/// indented, and more than [`MAPPED_LIMIT`] of them are cut to [`MAPPED_SHOWN`] unless `all`.
pub fn task_table(task_runs: &[TaskRunRecord], all: bool) -> String {
    let mut table = Table::new(&[
        ("TASK", Align::Left),
        ("STATE", Align::Left),
        ("ATTEMPTS", Align::Right),
        ("DURATION", Align::Right),
        ("ERROR", Align::Left),
    ]);
    // `summary`: a mapped node's own row, whose attempts are its elements'.
    let row = |table: &mut Table, t: &TaskRunRecord, summary: bool| {
        let name = match t.map_index {
            Some(i) => format!("  {}[{i}]", t.task),
            None => t.task.clone(),
        };
        let attempts = if summary {
            "-".to_owned()
        } else {
            t.attempts.to_string()
        };
        let error = match (&t.message, t.state.is_successful()) {
            (Some(m), false) => truncate(m, ERROR_WIDTH),
            _ => String::new(),
        };
        table.row(vec![
            name,
            t.state.to_string(),
            attempts,
            task_duration(t),
            error,
        ]);
    };
    let mut i = 0;
    while i < task_runs.len() {
        let t = &task_runs[i];
        if t.map_index.is_none() {
            let summary = task_runs
                .get(i + 1)
                .is_some_and(|next| next.node == t.node && next.map_index.is_some());
            row(&mut table, t, summary);
            i += 1;
            continue;
        }
        // A run of elements of one node.
        let end = task_runs[i..]
            .iter()
            .position(|e| e.node != t.node || e.map_index.is_none())
            .map_or(task_runs.len(), |n| i + n);
        let elements = &task_runs[i..end];
        if all || elements.len() <= MAPPED_LIMIT {
            elements.iter().for_each(|e| row(&mut table, e, false));
        } else {
            elements[..MAPPED_SHOWN]
                .iter()
                .for_each(|e| row(&mut table, e, false));
            let rest = &elements[MAPPED_SHOWN..];
            table.note(format!(
                "  ... {} more elements of '{}' (states: {}; --all lists them)",
                rest.len(),
                t.task,
                state_counts(rest.iter().map(|e| e.state)),
            ));
        }
        i = end;
    }
    table.render()
}

/// `Logs:` and one line per log record, as weft's console writes them.
pub fn logs<Tz: TimeZone>(logs: &[LogRecord], tz: &Tz) -> String
where
    Tz::Offset: fmt::Display,
{
    if logs.is_empty() {
        return "Logs: none recorded\n".to_owned();
    }
    let mut out = String::from("Logs:\n");
    for l in logs {
        let _ = writeln!(
            out,
            "{} | {:<7} | {}",
            clock_time(l.at, tz),
            l.level,
            l.message.trim_end()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    fn at(h: u32, m: u32, s: u32, ms: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, h, m, s).unwrap()
            + chrono::Duration::milliseconds(ms.into())
    }

    fn task(node: u32, map_index: Option<u32>, name: &str, state: StateKind) -> TaskRunRecord {
        TaskRunRecord {
            node,
            map_index,
            task: name.to_owned(),
            state,
            message: None,
            attempts: 1,
            started: Some(at(10, 0, 0, 0)),
            ended: Some(at(10, 0, 0, 5)),
            cache_key: None,
            result: None,
        }
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(duration(ms(0)), "0ms");
        assert_eq!(duration(ms(312)), "312ms");
        assert_eq!(duration(ms(999)), "999ms");
        assert_eq!(duration(ms(1_000)), "1.0s");
        assert_eq!(duration(ms(4_249)), "4.2s");
        assert_eq!(duration(ms(59_999)), "59.9s");
        assert_eq!(duration(ms(60_000)), "1m 0s");
        assert_eq!(duration(ms(192_500)), "3m 12s");
        assert_eq!(duration(ms(3_600_000 + 5 * 60_000)), "1h 05m");
        assert_eq!(duration(ms(3 * 86_400_000 + 4 * 3_600_000)), "3d 04h");
    }

    #[test]
    fn task_durations() {
        let mut t = task(0, None, "t", StateKind::Completed);
        assert_eq!(task_duration(&t), "5ms");
        t.ended = None;
        assert_eq!(task_duration(&t), "-");
        t.state = StateKind::Running;
        assert_eq!(task_duration(&t), "running");
        t.started = None;
        assert_eq!(task_duration(&t), "-");
    }

    #[test]
    fn times() {
        let t = at(21, 7, 53, 123);
        assert_eq!(date_time(t, &Utc), "2025-03-04 21:07:53");
        assert_eq!(clock_time(t, &Utc), "21:07:53.123");
        let plus2 = FixedOffset::east_opt(2 * 3600).unwrap();
        assert_eq!(date_time(t, &plus2), "2025-03-04 23:07:53");
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        assert_eq!(truncate("a bit too long", 10), "a bit too…");
        assert_eq!(truncate("first\nsecond", 20), "first…");
        assert_eq!(truncate("ééééééé", 4), "ééé…");
        assert_eq!(truncate("", 4), "");
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("postgres://me:pw@h/db"), "postgres://me:***@h/db");
        assert_eq!(redact("postgres://me@h/db"), "postgres://me@h/db");
        assert_eq!(redact("sqlite://a/b.db"), "sqlite://a/b.db");
    }

    #[test]
    fn counts_in_run_order() {
        let states = [
            StateKind::Failed,
            StateKind::Completed,
            StateKind::Completed,
        ];
        assert_eq!(state_counts(states), "2 Completed, 1 Failed");
        assert_eq!(state_counts([]), "");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("N", Align::Right),
            ("NOTE", Align::Left),
        ]);
        t.row(vec!["a".into(), "1".into(), String::new()]);
        t.row(vec!["longer".into(), "100".into(), "x".into()]);
        t.note("  ... free text".into());
        assert_eq!(
            t.render(),
            "NAME      N  NOTE\na         1\nlonger  100  x\n  ... free text\n"
        );
    }

    #[test]
    fn task_table_cuts_large_maps() {
        let mut runs = vec![task(0, None, "extract", StateKind::Completed)];
        runs.push(task(1, None, "square", StateKind::Failed));
        for i in 0..60 {
            let state = if i % 25 == 24 {
                StateKind::Failed
            } else {
                StateKind::Completed
            };
            runs.push(task(1, Some(i), "square", state));
        }
        let mut failed = task(2, None, "load", StateKind::Failed);
        failed.attempts = 2;
        failed.message = Some("database is locked\nat line 3".into());
        runs.push(failed);

        let text = task_table(&runs, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TASK"), "{text}");
        assert!(text.contains("  square[19]"), "{text}");
        assert!(!text.contains("square[20]"), "{text}");
        assert!(
            text.contains("... 40 more elements of 'square' (states: 38 Completed, 2 Failed"),
            "{text}"
        );
        let square = lines.iter().find(|l| l.starts_with("square ")).unwrap();
        assert!(
            square.contains("Failed") && square.contains(" - "),
            "{square}"
        );
        let load = lines.iter().find(|l| l.starts_with("load")).unwrap();
        assert!(load.contains("Failed") && load.contains(" 2 "), "{load}");
        assert!(load.ends_with("database is locked…"), "{load}");
        // 1 header + extract + square + 20 elements + note + load.
        assert_eq!(lines.len(), 25, "{text}");

        let all = task_table(&runs, true);
        assert!(
            all.contains("square[59]") && !all.contains("more elements"),
            "{all}"
        );
        // 50 elements are listed in full.
        let text = task_table(&runs[..52], false);
        assert!(
            text.contains("square[49]") && !text.contains("more"),
            "{text}"
        );
    }

    #[test]
    fn log_lines_look_like_the_console() {
        let logs_ = vec![LogRecord {
            at: at(21, 26, 11, 387),
            level: "INFO".into(),
            message: "Beginning Flow run for 'etl'".into(),
        }];
        assert_eq!(
            logs(&logs_, &Utc),
            "Logs:\n21:26:11.387 | INFO    | Beginning Flow run for 'etl'\n"
        );
        assert_eq!(logs(&[], &Utc), "Logs: none recorded\n");
    }

    #[test]
    fn runs_and_flows_tables() {
        let run = |id: &str, flow: &str, state, ended| RunRecord {
            id: id.parse().unwrap(),
            flow: flow.into(),
            flow_version: "v1".into(),
            parameters: serde_json::json!({"n": 3}),
            state,
            message: None,
            started: at(9, 0, 0, 0),
            ended,
            parent: None,
            cancel_requested: None,
            placement: None,
        };
        let mut cancelling = run(
            "9a1f0c33-3333-4333-8333-333333333333",
            "etl",
            StateKind::Running,
            None,
        );
        cancelling.cancel_requested = Some(weft_runtime::store::CancelRequest {
            at: at(9, 0, 1, 0),
            reason: Some("wrong input".into()),
        });
        let runs = vec![
            run(
                "0b3c6f1e-1111-4111-8111-111111111111",
                "etl",
                StateKind::Failed,
                Some(at(9, 0, 4, 200)),
            ),
            run(
                "7d2e9a40-2222-4222-8222-222222222222",
                "my first flow!",
                StateKind::Running,
                None,
            ),
            cancelling.clone(),
        ];
        assert_eq!(
            runs_table(&runs, &Utc),
            "ID        FLOW            STATE       STARTED              DURATION\n\
             0b3c6f1e  etl             Failed      2025-03-04 09:00:00      4.2s\n\
             7d2e9a40  my first flow!  Running     2025-03-04 09:00:00   running\n\
             9a1f0c33  etl             Cancelling  2025-03-04 09:00:00   running\n"
        );
        let detail = RunDetail {
            run: cancelling,
            graph: None,
            task_runs: vec![],
            state_changes: vec![],
            logs: vec![],
            children: vec![],
            node_outputs: vec![],
        };
        assert!(
            run_detail(&detail, false, &Utc).contains(
                "state       Running (cancel requested 2025-03-04 09:00:01: wrong input)"
            ),
            "{}",
            run_detail(&detail, false, &Utc)
        );
        let flow = FlowSummary {
            name: "etl".into(),
            versions: 1,
            runs: 6,
            by_state: vec![
                (StateKind::Running, 1),
                (StateKind::Completed, 2),
                (StateKind::Failed, 1),
                (StateKind::TimedOut, 1),
                (StateKind::Cancelled, 1),
            ],
            last_run: Some(at(9, 0, 0, 0)),
        };
        assert_eq!(
            FlowCounts::of(&flow),
            FlowCounts {
                completed: 2,
                failed: 2,
                cancelled: 1,
                other: 1
            }
        );
        assert_eq!(
            flows_table(&[flow], &Utc),
            "FLOW  RUNS  COMPLETED  FAILED  CANCELLED  OTHER  LAST RUN\n\
             etl      6          2       2          1      1  2025-03-04 09:00:00\n"
        );
    }

    #[test]
    fn deployments_table_shows_schedules_status_and_runs() {
        let dep = |name: &str, schedule: Option<&str>, paused| DeploymentRecord {
            name: name.into(),
            flow: "etl".into(),
            schedule: schedule.map(str::to_owned),
            parameters: serde_json::json!({}),
            paused,
            last_run: None,
            last_run_at: None,
            next_run_at: Some(at(10, 0, 0, 0)),
            updated: at(9, 0, 0, 0),
        };
        let mut nightly = dep("nightly", Some("cron 0 9 * * 1-5 in Europe/Berlin"), false);
        nightly.last_run = Some("0b3c6f1e-1111-4111-8111-111111111111".parse().unwrap());
        nightly.last_run_at = Some(at(9, 0, 0, 0));
        let mut adhoc = dep("adhoc", None, false);
        adhoc.next_run_at = None;
        let rows = [
            adhoc,
            nightly,
            dep("often", Some("every 30s"), true),
            dep("odd", Some("someday maybe"), false),
        ];
        assert_eq!(
            deployments_table(&rows, &Default::default(), &Utc),
            "NAME     FLOW  SCHEDULE                            STATUS  LAST RUN                                                    NEXT RUN\n\
             adhoc    etl   -                                   active  -                                                           -\n\
             nightly  etl   cron '0 9 * * 1-5' (Europe/Berlin)  active  2025-03-04 09:00:00 (0b3c6f1e-1111-4111-8111-111111111111)  2025-03-04 10:00:00\n\
             often    etl   every 30s                           paused  -                                                           paused\n\
             odd      etl   someday maybe                       active  -                                                           2025-03-04 10:00:00\n"
        );
    }
}
