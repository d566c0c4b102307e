-- SQLite: every history table is one b-tree keyed by what readers look rows up by (WITHOUT
-- ROWID) instead of a table plus an index of that key: a run's commit writes half the pages, and
-- the run id is stored once per row instead of twice. Run ids are UUIDv7 (time first) from this
-- version on, so a run's rows land at the end of each b-tree.
CREATE TABLE flow_runs_keyed (
    id           TEXT NOT NULL PRIMARY KEY,
    flow         TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    parameters   TEXT NOT NULL,
    state        TEXT NOT NULL,
    message      TEXT,
    started      TEXT NOT NULL,
    ended        TEXT,
    parent_run   TEXT,
    parent_node  BIGINT
) WITHOUT ROWID;
INSERT INTO flow_runs_keyed SELECT id, flow, flow_version, parameters, state, message, started,
    ended, parent_run, parent_node FROM flow_runs;
DROP TABLE flow_runs;
ALTER TABLE flow_runs_keyed RENAME TO flow_runs;
CREATE INDEX flow_runs_by_flow ON flow_runs (flow, started);
CREATE INDEX flow_runs_by_start ON flow_runs (started);
-- Most runs have no parent: index only the subflow runs.
CREATE INDEX flow_runs_by_parent ON flow_runs (parent_run) WHERE parent_run IS NOT NULL;
-- (No index on state: runs are listed by start, or by flow then start, and a state filter scans
-- that order; an index on a column of a few values cost a page write per run.)

CREATE TABLE task_runs_keyed (
    flow_run_id      TEXT NOT NULL,
    node             BIGINT NOT NULL,
    map_index        BIGINT NOT NULL,
    task             TEXT NOT NULL,
    state            TEXT NOT NULL,
    message          TEXT,
    attempts         BIGINT NOT NULL,
    started          TEXT,
    ended            TEXT,
    cache_key        TEXT,
    result           TEXT,
    scheduled        TEXT,
    lifecycle_in_row BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (flow_run_id, node, map_index)
) WITHOUT ROWID;
INSERT INTO task_runs_keyed (flow_run_id, node, map_index, task, state, message, attempts,
    started, ended, cache_key, result, scheduled, lifecycle_in_row)
SELECT flow_run_id, node, map_index, task, state, message, attempts, started, ended, cache_key,
    result, scheduled, lifecycle_in_row FROM task_runs;
DROP TABLE task_runs;
ALTER TABLE task_runs_keyed RENAME TO task_runs;

-- State changes and log lines are read by run, in time order; seq (a counter of the process
-- that wrote them) tells rows of one instant apart.
CREATE TABLE state_changes_keyed (
    flow_run_id TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    node        BIGINT,
    map_index   BIGINT,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    message     TEXT,
    attempt     BIGINT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (flow_run_id, at, seq)
) WITHOUT ROWID;
INSERT OR IGNORE INTO state_changes_keyed SELECT flow_run_id, seq, node, map_index, name, state,
    message, attempt, at FROM state_changes;
DROP TABLE state_changes;
ALTER TABLE state_changes_keyed RENAME TO state_changes;

CREATE TABLE logs_keyed (
    flow_run_id TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    at          TEXT NOT NULL,
    level       TEXT NOT NULL,
    message     TEXT NOT NULL,
    PRIMARY KEY (flow_run_id, at, seq)
) WITHOUT ROWID;
INSERT OR IGNORE INTO logs_keyed SELECT flow_run_id, seq, at, level, message FROM logs;
DROP TABLE logs;
ALTER TABLE logs_keyed RENAME TO logs;

-- task_runs.lifecycle_in_row becomes a set of bits: 1 = its Pending, first Running and final
-- state are read back from the row (migration 5); 2 = so is its "Starting task run..." log line
-- (at `started`); 4 = so is its "Finished task run ..." line (at `ended`). Rows with 2 or 4 have
-- no such line in `logs`: two log rows fewer per task run. Readers read `run_logs`.
