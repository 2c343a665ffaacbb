-- Tidings schema v3 (PostgreSQL): the events of one key, newest first, for
-- GET /v1/events?key=. Built inside the migration's transaction (not CONCURRENTLY): on a
-- large events table, ingest waits while it builds; upgrade at a quiet time.
CREATE INDEX events_by_key ON events (key, seq);
