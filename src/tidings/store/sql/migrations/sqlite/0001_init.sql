-- Tidings schema v1 (SQLite). Times are integer microseconds since the Unix epoch.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,      -- per-store sequence: FIFO tie-breaker
    id              TEXT NOT NULL UNIQUE,
    topic           TEXT NOT NULL,
    key             TEXT NOT NULL,
    payload         BLOB NOT NULL,            -- the JSON bytes as received
    recipients      TEXT,                     -- JSON array, NULL when empty
    idempotency_key TEXT UNIQUE,
    causation_id    TEXT,
    correlation_id  TEXT,
    received_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX events_topic ON events (topic, seq);

CREATE TABLE destinations (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT UNIQUE,
    spec       BLOB NOT NULL,                 -- JSON of model.DestinationSpec
    secrets    BLOB NOT NULL,                 -- JSON list of model.Secret, current first
    state      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE deliveries (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    event_seq        INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    destination_id   TEXT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    lane_key         TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX deliveries_by_destination ON deliveries (destination_id, state, seq);
CREATE INDEX deliveries_by_lane ON deliveries (destination_id, lane_key, event_seq);
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
CREATE INDEX deliveries_by_state ON deliveries (state, seq);
