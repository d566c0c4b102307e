-- Subflows: a flow run started by a node of another flow run records its parent.
ALTER TABLE flow_runs ADD COLUMN parent_run TEXT;
ALTER TABLE flow_runs ADD COLUMN parent_node BIGINT;
CREATE INDEX IF NOT EXISTS flow_runs_by_parent ON flow_runs (parent_run);
