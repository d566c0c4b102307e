//! Runs counted as they end (migration 9): the dashboard's counts over a window and `/flows`'
//! counts per flow read a few rows of `run_counts` and `flow_counts` instead of counting the
//! history (a million task runs took half a second to count).
//!
//! The writer adds a batch's ends in the same transaction as the batch's rows, so the counts
//! never disagree with what was committed. A run counts once each time it reaches a final
//! state: the engine reports that once per run (a resumed run that ends again counts again).

use super::{db, ts, Backend};
use crate::state::StateKind;
use chrono::{DateTime, DurationRound, Utc};
use std::collections::HashMap;
use uuid::Uuid;

/// The runs of a batch that reached a final state: flow and task runs per minute of their end
/// and state, and the flow runs themselves (their flow's name is read from their row).
#[derive(Default)]
pub(super) struct Ends {
    per_minute: HashMap<(i64, Kind, StateKind), i64>,
    flow_runs: Vec<(Uuid, StateKind)>,
}

/// How long a row of `run_counts` counts for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Span {
    Minute,
    Hour,
}

impl Span {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Span::Minute => "minute",
            Span::Hour => "hour",
        }
    }

    fn minutes(self) -> i64 {
        match self {
            Span::Minute => 1,
            Span::Hour => 60,
        }
    }

    /// The key of the span holding `at`: its start's first 16 characters.
    pub(super) fn key(self, at: DateTime<Utc>) -> String {
        let start = at
            .duration_trunc(chrono::TimeDelta::minutes(self.minutes()))
            .unwrap_or(at);
        let mut s = ts(start);
        s.truncate(16);
        s
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Flow,
    Task,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Flow => "flow",
            Kind::Task => "task",
        }
    }
}

/// Flow runs counted per flow: one row per (flow, state) of the batch's ends, the flow's name
/// read from the run's row (written before in the same transaction); in order, as the minutes.
const FLOW_COUNTS_TAIL: &str = " INSERT INTO flow_counts (flow, state, n) \
     SELECT f.flow, e.state, COUNT(*) FROM ends e JOIN flow_runs f ON f.id = e.id \
     WHERE true GROUP BY f.flow, e.state ORDER BY f.flow, e.state \
     ON CONFLICT (flow, state) DO UPDATE SET n = flow_counts.n + excluded.n";
const MINUTES_HEAD: &str = "INSERT INTO run_counts (span, at, kind, state, n) VALUES ";
const MINUTES_TAIL: &str =
    " ON CONFLICT (span, at, kind, state) DO UPDATE SET n = run_counts.n + excluded.n";
/// Bound parameters per statement stay far below SQLite's limit (32,766).
const CHUNK: usize = 2000;

impl Ends {
    /// A flow run reached `state` at `at` (microseconds since the epoch); nothing if it is not
    /// final.
    pub(super) fn flow_run(&mut self, run: Uuid, state: StateKind, at: i64) {
        if state.is_final() {
            *self
                .per_minute
                .entry((minute_of(at), Kind::Flow, state))
                .or_default() += 1;
            self.flow_runs.push((run, state));
        }
    }

    /// `n` task runs reached `state` at `at`; nothing if it is not final.
    pub(super) fn task_runs(&mut self, state: StateKind, at: i64, n: i64) {
        if state.is_final() {
            *self
                .per_minute
                .entry((minute_of(at), Kind::Task, state))
                .or_default() += n;
        }
    }

    /// The rows to add, per minute and per hour, bound in order: span, start, kind, state,
    /// count. Sorted: every process's writer then locks the rows it adds to in the same order,
    /// so two of them adding to the same rows on PostgreSQL wait for each other instead of
    /// deadlocking (workers ending runs at the same minute did, in the order of a HashMap).
    fn minute_rows(&self) -> Vec<CountRow> {
        let mut rows: HashMap<(Span, String, Kind, StateKind), i64> = HashMap::new();
        for ((m, kind, state), n) in &self.per_minute {
            let at = DateTime::<Utc>::from_timestamp(m * 60, 0).unwrap_or_default();
            for span in [Span::Minute, Span::Hour] {
                *rows.entry((span, span.key(at), *kind, *state)).or_default() += n;
            }
        }
        let mut rows: Vec<CountRow> = rows
            .into_iter()
            .map(|((span, at, kind, state), n)| {
                (span.as_str(), at, kind.as_str(), state.as_str(), n)
            })
            .collect();
        rows.sort_unstable();
        rows
    }

    /// Adds these ends to the counts through rusqlite (a SQLite file's writer).
    pub(super) fn write_sqlite(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        use rusqlite::types::ToSql;
        let rows = self.minute_rows();
        for chunk in rows.chunks(CHUNK / 5) {
            let sql = statement(Backend::Sqlite, chunk.len(), Table::RunCounts);
            let mut st = tx.prepare_cached(&sql)?;
            let params: Vec<&dyn ToSql> = chunk
                .iter()
                .flat_map(|(sp, m, k, s, n)| [sp as &dyn ToSql, m, k, s, n])
                .collect();
            st.execute(params.as_slice())?;
        }
        let ids: Vec<(String, &str)> = self.flow_run_rows();
        for chunk in ids.chunks(CHUNK / 2) {
            let sql = statement(Backend::Sqlite, chunk.len(), Table::FlowCounts);
            let mut st = tx.prepare_cached(&sql)?;
            let params: Vec<&dyn ToSql> = chunk
                .iter()
                .flat_map(|(id, s)| [id as &dyn ToSql, s])
                .collect();
            st.execute(params.as_slice())?;
        }
        Ok(())
    }

    /// Adds these ends to the counts through the pool (PostgreSQL, in-memory SQLite).
    pub(super) async fn write_pooled(
        &self,
        tx: &mut db::Transaction,
        backend: Backend,
    ) -> Result<(), db::Error> {
        let rows = self.minute_rows();
        for chunk in rows.chunks(CHUNK / 5) {
            let sql = statement(backend, chunk.len(), Table::RunCounts);
            let q = chunk.iter().fold(db::query(&sql), |q, (sp, m, k, s, n)| {
                q.bind(*sp).bind(m.as_str()).bind(*k).bind(*s).bind(*n)
            });
            q.execute(&mut **tx).await?;
        }
        let ids = self.flow_run_rows();
        for chunk in ids.chunks(CHUNK / 2) {
            let sql = statement(backend, chunk.len(), Table::FlowCounts);
            let q = chunk
                .iter()
                .fold(db::query(&sql), |q, (id, s)| q.bind(id.as_str()).bind(*s));
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    fn flow_run_rows(&self) -> Vec<(String, &'static str)> {
        self.flow_runs
            .iter()
            .map(|(id, s)| (id.to_string(), s.as_str()))
            .collect()
    }
}

/// A row of `run_counts` to add: span, start, kind, state, count.
type CountRow = (&'static str, String, &'static str, &'static str, i64);

fn minute_of(micros: i64) -> i64 {
    micros.div_euclid(60_000_000)
}

/// `$n` placeholders, numbered across rows; SQLite reads them as `?n`.
fn placeholders(backend: Backend, rows: usize, cols: usize, cast: bool) -> String {
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        let cells: Vec<String> = (1..=cols)
            .map(|c| {
                let mark = match backend {
                    Backend::Sqlite => format!("?{}", r * cols + c),
                    Backend::Postgres => format!("${}", r * cols + c),
                };
                if cast {
                    format!("CAST({mark} AS TEXT)")
                } else {
                    mark
                }
            })
            .collect();
        out.push(format!("({})", cells.join(", ")));
    }
    out.join(", ")
}

/// The counts table a statement adds to.
#[derive(Clone, Copy)]
enum Table {
    RunCounts,
    FlowCounts,
}

/// Statements of up to this many rows are built once and kept (a batch's ends make a few rows;
/// building the text each time was a quarter of the counts' cost per batch).
const KEPT_ROWS: usize = 16;

/// The statement adding `rows` rows to `table`.
fn statement(backend: Backend, rows: usize, table: Table) -> std::borrow::Cow<'static, str> {
    use std::sync::OnceLock;
    static KEPT: [[OnceLock<String>; KEPT_ROWS]; 4] =
        [const { [const { OnceLock::new() }; KEPT_ROWS] }; 4];
    let build = || match table {
        Table::RunCounts => minutes_sql(backend, rows),
        Table::FlowCounts => flow_counts_sql(backend, rows),
    };
    let which = (backend == Backend::Postgres) as usize * 2 + table as usize;
    match rows.checked_sub(1).and_then(|i| KEPT[which].get(i)) {
        Some(kept) => std::borrow::Cow::Borrowed(kept.get_or_init(build).as_str()),
        None => std::borrow::Cow::Owned(build()),
    }
}

fn minutes_sql(backend: Backend, rows: usize) -> String {
    format!(
        "{MINUTES_HEAD}{}{MINUTES_TAIL}",
        placeholders(backend, rows, 5, false)
    )
}

fn flow_counts_sql(backend: Backend, rows: usize) -> String {
    format!(
        "WITH ends (id, state) AS (VALUES {}){FLOW_COUNTS_TAIL}",
        placeholders(backend, rows, 2, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_states_count_and_minutes_are_stored_keys() {
        let mut ends = Ends::default();
        let at = DateTime::parse_from_rfc3339("2026-11-30T13:59:59.999999Z")
            .unwrap()
            .with_timezone(&Utc)
            .timestamp_micros();
        ends.flow_run(Uuid::nil(), StateKind::Running, at);
        ends.flow_run(Uuid::nil(), StateKind::Failed, at);
        ends.task_runs(StateKind::Completed, at, 3);
        ends.task_runs(StateKind::Completed, at + 1, 2);
        ends.task_runs(StateKind::Retrying, at, 1);
        let rows = ends.minute_rows();
        let at = |m: &str| format!("2026-11-30T{m}");
        assert_eq!(
            rows,
            [
                ("hour", at("13:00"), "flow", "Failed", 1),
                ("hour", at("13:00"), "task", "Completed", 3),
                ("hour", at("14:00"), "task", "Completed", 2),
                ("minute", at("13:59"), "flow", "Failed", 1),
                ("minute", at("13:59"), "task", "Completed", 3),
                ("minute", at("14:00"), "task", "Completed", 2),
            ]
        );
        assert_eq!(ends.flow_runs.len(), 1);
    }

    #[test]
    fn statements_number_their_placeholders_per_backend() {
        assert_eq!(
            minutes_sql(Backend::Postgres, 2),
            format!("{MINUTES_HEAD}($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10){MINUTES_TAIL}")
        );
        assert_eq!(
            statement(Backend::Postgres, 2, Table::RunCounts),
            minutes_sql(Backend::Postgres, 2)
        );
        assert_eq!(
            statement(Backend::Sqlite, 40, Table::FlowCounts),
            flow_counts_sql(Backend::Sqlite, 40)
        );
        assert!(flow_counts_sql(Backend::Sqlite, 1)
            .starts_with("WITH ends (id, state) AS (VALUES (CAST(?1 AS TEXT), CAST(?2 AS TEXT)))"));
    }
}
