-- Zombie reaping and fencing (issue 14). A run's lease: a token its process sets when it claims
-- the run (after about a second) and that the reaper replaces when it marks the run Crashed
-- (or a cancel request for a run no live process owns marks it Cancelled). The writer of a
-- process refuses to write a run's rows once the lease is no longer its own. NULL: not claimed
-- (a run that ended within its first second never gets one; a resumed run starts again
-- unclaimed).
ALTER TABLE flow_runs ADD COLUMN lease BIGINT;
-- The runs that may still end: the reaper reads them (by start: the ones never claimed are
-- reaped once older than the stale time). Runs that end within one writer batch are inserted
-- final and never enter this index.
CREATE INDEX flow_runs_unfinished ON flow_runs (started)
    WHERE state IN ('Pending', 'Running', 'Retrying');
