-- The server's pages on big histories (the big_history example of weft-server measures them):
-- state joins the two indexes of flow_runs by time, replacing them, so no index more is written
-- per flow run than before.
-- - Runs counted by state over a window (the dashboard, /api/stats) read one range of this
--   index alone (an index-only scan), per bucket of the chart; a list of runs in one state,
--   newest first, checks the state in the index.
DROP INDEX IF EXISTS flow_runs_by_start;
CREATE INDEX flow_runs_by_start ON flow_runs (started, state);
-- - Runs counted by flow and state (/flows, /api/flows) read this index; a list filtered by
--   flow and state checks the state in the index.
DROP INDEX IF EXISTS flow_runs_by_flow;
CREATE INDEX flow_runs_by_flow ON flow_runs (flow, started, state);
