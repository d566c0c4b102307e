-- Cancellation from any process (issue 13). A request to cancel a run is a timestamp and a
-- reason on its row; the process running it (its owner) polls for requests on the runs it owns.
ALTER TABLE flow_runs ADD COLUMN cancel_requested TEXT;
ALTER TABLE flow_runs ADD COLUMN cancel_reason TEXT;
-- A process that owns runs: one heartbeat per process (not per run), refreshed every few
-- seconds while it has runs that live longer than about a second.
CREATE TABLE IF NOT EXISTS processes (
    id        TEXT PRIMARY KEY,
    host      TEXT NOT NULL,
    pid       BIGINT NOT NULL,
    started   TEXT NOT NULL,
    heartbeat TEXT NOT NULL
);
-- The process running a flow run, written once the run has lived about a second (shorter runs
-- never get a row) and deleted when it ends.
CREATE TABLE IF NOT EXISTS run_owners (
    flow_run_id TEXT PRIMARY KEY,
    process     TEXT NOT NULL,
    since       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS run_owners_by_process ON run_owners (process);
