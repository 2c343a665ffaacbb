-- Tidings schema v5 (SQLite): the events of one key, newest first, for GET /v1/events?key=.
CREATE INDEX events_by_key ON events (key, seq);
