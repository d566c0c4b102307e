-- A task run's row carries its lifecycle: `scheduled` (Pending), `started` (first Running),
-- `ended` (final state). Where `lifecycle_in_row` is 1 those three state changes are not stored
-- in state_changes: they are read back from the row, and state_changes keeps only the changes a
-- row cannot tell (retries, later attempts, states carrying a message, replaced final states).
-- Rows written before this migration keep 0: all their state changes stay in state_changes.
ALTER TABLE task_runs ADD COLUMN scheduled TEXT;
ALTER TABLE task_runs ADD COLUMN lifecycle_in_row BIGINT NOT NULL DEFAULT 0;
-- Nothing reads task runs by state alone; the index cost a write per task run.
DROP INDEX IF EXISTS task_runs_by_state;
