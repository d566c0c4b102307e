-- Run history. One script for SQLite and PostgreSQL: TEXT and BIGINT only; timestamps are
-- RFC 3339 UTC text with microseconds, which sorts in time order; uuids are text.

-- A flow as it was when it ran: its graph (nodes and edges, JSON) under a version.
CREATE TABLE IF NOT EXISTS flows (
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    graph      TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE IF NOT EXISTS flow_runs (
    id           TEXT PRIMARY KEY,
    flow         TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    parameters   TEXT NOT NULL,
    state        TEXT NOT NULL,
    message      TEXT,
    started      TEXT NOT NULL,
    ended        TEXT
);
CREATE INDEX IF NOT EXISTS flow_runs_by_flow ON flow_runs (flow, started);
CREATE INDEX IF NOT EXISTS flow_runs_by_state ON flow_runs (state);
CREATE INDEX IF NOT EXISTS flow_runs_by_start ON flow_runs (started);

-- One row per task run; map_index is -1 for a task that is not a mapped element (a mapped
-- node's summary row has -1 too).
CREATE TABLE IF NOT EXISTS task_runs (
    flow_run_id TEXT NOT NULL,
    node        BIGINT NOT NULL,
    map_index   BIGINT NOT NULL,
    task        TEXT NOT NULL,
    state       TEXT NOT NULL,
    message     TEXT,
    attempts    BIGINT NOT NULL,
    started     TEXT,
    ended       TEXT,
    cache_key   TEXT,
    result      TEXT,
    PRIMARY KEY (flow_run_id, node, map_index)
);
CREATE INDEX IF NOT EXISTS task_runs_by_state ON task_runs (state);

-- Every state a flow run (node NULL) or task run entered; seq orders events of one invocation
-- that share a timestamp.
CREATE TABLE IF NOT EXISTS state_changes (
    flow_run_id TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    node        BIGINT,
    map_index   BIGINT,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    message     TEXT,
    attempt     BIGINT NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS state_changes_by_run ON state_changes (flow_run_id, at);

CREATE TABLE IF NOT EXISTS logs (
    flow_run_id TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    at          TEXT NOT NULL,
    level       TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_run ON logs (flow_run_id, at);
