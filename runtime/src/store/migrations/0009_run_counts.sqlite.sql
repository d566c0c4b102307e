-- Runs counted as they end, so that the dashboard and /flows never count the history itself
-- (a million task runs took 0.5 s to count, ten million 4-7 s). The writer adds to these
-- counts in the same transaction as the rows it writes: a run counts once each time it reaches
-- a final state (a resumed run that ends again counts again). Retention leaves them alone: they
-- say how many runs ended, not which runs are kept.
--
-- Flow runs (kind 'flow') and task runs (kind 'task', a mapped node's summary included) per
-- minute of their end ('YYYY-MM-DDTHH:MM', the first 16 characters of a stored timestamp) and
-- final state: a week's dashboard reads at most 10,080 minutes' rows.
CREATE TABLE run_counts (
    minute TEXT NOT NULL,
    kind   TEXT NOT NULL,
    state  TEXT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (minute, kind, state)
) WITHOUT ROWID;
-- Flow runs per flow and final state, for every run ever ended.
CREATE TABLE flow_counts (
    flow  TEXT NOT NULL,
    state TEXT NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (flow, state)
) WITHOUT ROWID;
