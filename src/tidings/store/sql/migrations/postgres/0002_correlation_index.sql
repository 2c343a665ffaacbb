-- Tidings schema v2 (PostgreSQL): the events of a correlation, for GET /v1/events/{id}/chain.
-- Partial: an event without a correlation_id (most of them) costs ingest nothing here.
-- Built inside the migration's transaction (not CONCURRENTLY): on a large events table,
-- ingest waits while it builds; upgrade at a quiet time.
CREATE INDEX events_by_correlation ON events (correlation_id, seq)
WHERE correlation_id IS NOT NULL;
