-- PostgreSQL: a heap with its key's index is what PostgreSQL has (the SQLite script makes its
-- tables WITHOUT ROWID). Runs are listed by start (and by flow); a state filter
-- scans that order. An index on a column of a few values cost a page write per run.
DROP INDEX IF EXISTS flow_runs_by_state;
-- Most runs have no parent: index only the subflow runs.
DROP INDEX IF EXISTS flow_runs_by_parent;
CREATE INDEX flow_runs_by_parent ON flow_runs (parent_run) WHERE parent_run IS NOT NULL;
-- task_runs.lifecycle_in_row becomes a set of bits: 1 = its Pending, first Running and final
-- state are read back from the row (migration 5); 2 = so is its "Starting task run..." log line
-- (at `started`); 4 = so is its "Finished task run ..." line (at `ended`). Rows with 2 or 4 have
-- no such line in `logs`: two log rows fewer per task run. Readers read `run_logs`.
