-- Scheduled runs, workers and concurrency limits (issue 14). One script for SQLite and PostgreSQL, like 0001.

-- A deployment served by workers belongs to a work pool (NULL: served by the process that
-- registered it, with `serve`). retries: how many times a run that crashed (its worker died) is
-- scheduled again, retry_delay_ms after the crash; catch_up 1: the scheduler creates the runs
-- missed while nothing was scheduling (at most 100), 0: it starts from now.
ALTER TABLE deployments ADD COLUMN pool TEXT;
ALTER TABLE deployments ADD COLUMN retries BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN retry_delay_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN catch_up BIGINT NOT NULL DEFAULT 0;
-- The most runs of the deployment running at once across the pool's workers (NULL: no limit).
ALTER TABLE deployments ADD COLUMN max_active BIGINT;
-- A deployment of a pipeline file: the version (in `pipelines`) its runs run; any worker of the
-- pool runs them (`weft worker`). NULL for a deployment of a compiled #[flow].
ALTER TABLE deployments ADD COLUMN pipeline_version TEXT;

-- A run of a pooled deployment exists before it starts, as Scheduled (Late once overdue) with
-- the time it is due (`scheduled`; `started` holds it too until the run starts). A worker claims
-- it (Pending, `worker` set, lease taken) and runs it under its id. slot is the schedule's time
-- for runs the scheduler created (NULL for runs asked for): one run per deployment and slot,
-- however many schedulers raced. tries counts the re-runs after crashes. overrides: the JSON
-- object of parameters the run was asked with, over the deployment's defaults.
ALTER TABLE flow_runs ADD COLUMN deployment TEXT;
ALTER TABLE flow_runs ADD COLUMN overrides TEXT;
ALTER TABLE flow_runs ADD COLUMN pool TEXT;
ALTER TABLE flow_runs ADD COLUMN scheduled TEXT;
ALTER TABLE flow_runs ADD COLUMN slot TEXT;
ALTER TABLE flow_runs ADD COLUMN worker TEXT;
ALTER TABLE flow_runs ADD COLUMN tries BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX flow_runs_slot ON flow_runs (deployment, slot) WHERE slot IS NOT NULL;
-- The queue: what a pool's workers claim, due first.
CREATE INDEX flow_runs_queue ON flow_runs (pool, scheduled) WHERE state IN ('Scheduled', 'Late');
-- A deployment's runs that count against its max_active.
CREATE INDEX flow_runs_deployment_active ON flow_runs (deployment)
    WHERE deployment IS NOT NULL AND state IN ('Pending', 'Running', 'Retrying');
-- A pool's runs that hold a slot of its concurrency limit.
CREATE INDEX flow_runs_pool_active ON flow_runs (pool)
    WHERE pool IS NOT NULL AND state IN ('Pending', 'Running', 'Retrying');

-- Leadership held by one process at a time, as a lease that expires (`until`): the scheduler.
CREATE TABLE IF NOT EXISTS leaders (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  TEXT NOT NULL
);

-- Global concurrency limits by tag: at most `slots` task runs with the tag at once among all
-- the processes recording here. A task run holds one slot row per limited tag while it runs;
-- a slot whose holder (a `processes` row) is dead is free again.
CREATE TABLE IF NOT EXISTS concurrency_limits (
    tag     TEXT PRIMARY KEY,
    slots   BIGINT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS concurrency_slots (
    tag      TEXT NOT NULL,
    holder   TEXT NOT NULL,
    task_run TEXT NOT NULL,
    since    TEXT NOT NULL,
    PRIMARY KEY (tag, holder, task_run)
);
