-- Work pools and the worker registry (issue 14). One script for SQLite and PostgreSQL, like
-- 0001: TEXT and BIGINT only, timestamps as RFC 3339 UTC text with microseconds.

-- A work pool groups the deployments a set of workers serve. concurrency_limit is the most runs
-- of the pool that may run at once across all its workers (NULL: no limit; never 0, pausing is
-- how a pool stops); paused is 0 or 1.
CREATE TABLE IF NOT EXISTS work_pools (
    name              TEXT PRIMARY KEY,
    concurrency_limit BIGINT,
    paused            BIGINT NOT NULL,
    description       TEXT,
    created           TEXT NOT NULL,
    updated           TEXT NOT NULL
);

-- A worker process serving a pool, registered when it starts and deleted when it stops; its
-- heartbeat is refreshed while it lives. flows is a JSON list of the "name@version" it can run.
CREATE TABLE IF NOT EXISTS workers (
    id        TEXT PRIMARY KEY,
    pool      TEXT NOT NULL,
    name      TEXT NOT NULL,
    host      TEXT NOT NULL,
    pid       BIGINT NOT NULL,
    version   TEXT NOT NULL,
    flows     TEXT NOT NULL,
    started   TEXT NOT NULL,
    heartbeat TEXT NOT NULL
);
-- `weft workers --pool NAME` and a pool's workers, in the order they started.
CREATE INDEX IF NOT EXISTS workers_by_pool ON workers (pool, started);
