-- Pipelines defined as data: each version's file (a version with runs is sealed: a changed
-- file is a new version, old runs keep theirs), and what each node of a run did. Output is
-- kept as bytes (BYTEA: PostgreSQL's byte string; SQLite keeps blobs as they are).

CREATE TABLE IF NOT EXISTS pipelines (
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    source     TEXT NOT NULL,
    path       TEXT,
    registered TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE IF NOT EXISTS node_outputs (
    flow_run_id  TEXT NOT NULL,
    node         BIGINT NOT NULL,
    command      TEXT NOT NULL,
    exit_code    BIGINT,
    signal       BIGINT,
    stdout       BYTEA NOT NULL,
    stderr       BYTEA NOT NULL,
    stdout_total BIGINT NOT NULL,
    stderr_total BIGINT NOT NULL,
    -- Where the whole stream is in the result store when it outgrew what is kept here.
    stdout_key   TEXT,
    stderr_key   TEXT,
    started      TEXT NOT NULL,
    ended        TEXT NOT NULL,
    PRIMARY KEY (flow_run_id, node)
);
