-- Runs counted as they end, so that the dashboard and /flows never count the history itself
-- (a million task runs took 0.4 s to count). The writer adds to these counts in the same
-- transaction as the rows it writes: a run counts once each time it reaches a final state (a
-- resumed run that ends again counts again). Retention leaves them alone: they say how many
-- runs ended, not which runs are kept.
--
-- Flow runs (kind 'flow') and task runs (kind 'task', a mapped node's summary included) that
-- ended, per final state, per minute (span 'minute') and per hour (span 'hour') of their end;
-- `at` is the minute or hour as a stored timestamp's first 16 characters ('YYYY-MM-DDTHH:MM').
-- The dashboard's last hour reads at most 60 minutes' rows, its day and week 24 and 168 hours'.
CREATE TABLE run_counts (
    span  TEXT NOT NULL,
    at    TEXT NOT NULL,
    kind  TEXT NOT NULL,
    state TEXT NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (span, at, kind, state)
);
-- Flow runs per flow and final state, for every run ever ended.
CREATE TABLE flow_counts (
    flow  TEXT NOT NULL,
    state TEXT NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (flow, state)
);
-- The task runs whose row stands for log lines (see 0009_run_logs.sql): the ordinary ones, not
-- a mapped task's elements.
CREATE INDEX task_runs_with_lines ON task_runs (flow_run_id) WHERE lifecycle_in_row >= 2;
