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
