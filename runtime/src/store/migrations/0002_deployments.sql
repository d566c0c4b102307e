-- Deployments: flows a process serves on schedules, and the ad-hoc runs asked of them. One
-- script for SQLite and PostgreSQL, like 0001: TEXT and BIGINT only, timestamps as RFC 3339
-- UTC text with microseconds, uuids and JSON as text.

-- One row per deployment name, written by the process serving it. paused is 0 or 1, kept
-- across re-registrations (a restarted server keeps a pause); schedule is a Schedule spec
-- (`every 30s`, `cron 0 9 * * 1-5 in Europe/Berlin`), NULL for ad-hoc runs only.
CREATE TABLE IF NOT EXISTS deployments (
    name        TEXT PRIMARY KEY,
    flow        TEXT NOT NULL,
    schedule    TEXT,
    parameters  TEXT NOT NULL,
    paused      BIGINT NOT NULL,
    last_run    TEXT,
    last_run_at TEXT,
    next_run_at TEXT,
    updated     TEXT NOT NULL
);

-- Ad-hoc runs asked for (`weft deployment run`): state goes Requested -> Claimed (a serving
-- process took it) -> Started (run_id set) or Rejected (message says why). parameters is a
-- JSON object of overrides.
CREATE TABLE IF NOT EXISTS run_requests (
    id         TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    parameters TEXT NOT NULL,
    state      TEXT NOT NULL,
    message    TEXT,
    run_id     TEXT,
    created    TEXT NOT NULL,
    updated    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS run_requests_by_state ON run_requests (state, created);
