-- The runs that ended before this migration.
INSERT INTO run_counts (minute, kind, state, n)
SELECT substr(COALESCE(ended, started), 1, 16), 'flow', state, COUNT(*) FROM flow_runs
WHERE state NOT IN ('Scheduled', 'Pending', 'Running', 'Retrying')
GROUP BY substr(COALESCE(ended, started), 1, 16), state;
INSERT INTO run_counts (minute, kind, state, n)
SELECT substr(COALESCE(ended, started), 1, 16), 'task', state, COUNT(*) FROM task_runs
WHERE state NOT IN ('Scheduled', 'Pending', 'Running', 'Retrying')
  AND COALESCE(ended, started) IS NOT NULL
GROUP BY substr(COALESCE(ended, started), 1, 16), state;
INSERT INTO flow_counts (flow, state, n)
SELECT flow, state, COUNT(*) FROM flow_runs
WHERE state NOT IN ('Scheduled', 'Pending', 'Running', 'Retrying')
GROUP BY flow, state;
