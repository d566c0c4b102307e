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
-- Every log line of a run, in order: the stored ones, and the two lines of each task run whose
-- row stands for them (lifecycle_in_row bits 2 and 4), worded as the engine words them
-- (`logging::Starting`, `logging::Finished`; a test checks they agree). seq places a start line
-- before the stored lines of its instant and an end line after them, one seq per task run.
CREATE VIEW run_logs AS
SELECT flow_run_id, at, seq, level, message FROM logs
UNION ALL
SELECT flow_run_id, started AS at, -1 - (node * 4294967296 + map_index + 1) AS seq,
    'INFO' AS level, 'Task ''' || task || ''': Starting task run...' AS message
FROM task_runs WHERE (lifecycle_in_row & 2) <> 0 AND started IS NOT NULL
UNION ALL
SELECT flow_run_id, ended AS at, 4611686018427387904 + node * 4294967296 + map_index + 1 AS seq,
    CASE WHEN state IN ('Failed', 'Crashed', 'TimedOut') THEN 'ERROR' ELSE 'INFO' END AS level,
    'Task ''' || task || ''': Finished task run for task with final state: ''' || state || ''''
    || CASE WHEN message IS NOT NULL AND state NOT IN ('Completed', 'Cached')
        THEN ' (' || message || ')' ELSE '' END AS message
FROM task_runs WHERE (lifecycle_in_row & 4) <> 0 AND ended IS NOT NULL;
