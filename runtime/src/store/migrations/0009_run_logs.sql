-- The view of migration 6, each branch also saying `lifecycle_in_row >= 2` (bit 2 or 4 is set;
-- implied by its own test): PostgreSQL then finds a run's few rows that stand for log lines
-- through a partial index (see its migration 9) instead of reading each of a mapped run's
-- elements (the 100,000-element run's page spent half its time there).
DROP VIEW run_logs;
CREATE VIEW run_logs AS
SELECT flow_run_id, at, seq, level, message FROM logs
UNION ALL
SELECT flow_run_id, started AS at, -1 - (node * 4294967296 + map_index + 1) AS seq,
    'INFO' AS level, 'Task ''' || task || ''': Starting task run...' AS message
FROM task_runs WHERE lifecycle_in_row >= 2 AND (lifecycle_in_row & 2) <> 0 AND started IS NOT NULL
UNION ALL
SELECT flow_run_id, ended AS at, 4611686018427387904 + node * 4294967296 + map_index + 1 AS seq,
    CASE WHEN state IN ('Failed', 'Crashed', 'TimedOut') THEN 'ERROR' ELSE 'INFO' END AS level,
    'Task ''' || task || ''': Finished task run for task with final state: ''' || state || ''''
    || CASE WHEN message IS NOT NULL AND state NOT IN ('Completed', 'Cached')
        THEN ' (' || message || ')' ELSE '' END AS message
FROM task_runs WHERE lifecycle_in_row >= 2 AND (lifecycle_in_row & 4) <> 0 AND ended IS NOT NULL;
