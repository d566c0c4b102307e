-- The runs that ended before this migration, per minute and per hour.
INSERT INTO run_counts (span, at, kind, state, n)
SELECT 'minute', substr(COALESCE(ended, started), 1, 16), 'flow', state, COUNT(*) FROM flow_runs
WHERE state NOT IN ('Scheduled', 'Pending', 'Running', 'Retrying')
GROUP BY substr(COALESCE(ended, started), 1, 16), state;
INSERT INTO run_counts (span, at, kind, state, n)
SELECT 'minute', substr(COALESCE(ended, started), 1, 16), 'task', state, COUNT(*) FROM task_runs
WHERE state NOT IN ('Scheduled', 'Pending', 'Running', 'Retrying')
  AND COALESCE(ended, started) IS NOT NULL
GROUP BY substr(COALESCE(ended, started), 1, 16), state;
INSERT INTO run_counts (span, at, kind, state, n)
SELECT 'hour', substr(at, 1, 13) || ':00', kind, state, SUM(n) FROM run_counts
WHERE span = 'minute'
GROUP BY 2, 3, 4;
INSERT INTO flow_counts (flow, state, n)
SELECT flow, state, COUNT(*) FROM flow_runs
WHERE state NOT IN ('Scheduled', 'Pending', 'Running', 'Retrying')
GROUP BY flow, state;
