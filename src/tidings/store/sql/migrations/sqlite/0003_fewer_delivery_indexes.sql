-- Tidings schema v3 (SQLite): one index less to keep up at every change of a delivery's
-- state. `deliveries_by_state` served only the backlog (a /metrics scrape), which now
-- walks the destinations and searches `deliveries_by_destination` for each; every ingest
-- and every claim and outcome paid for it (about a sixth of the engine's store work).
DROP INDEX deliveries_by_state;
