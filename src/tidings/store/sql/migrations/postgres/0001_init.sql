-- Tidings schema v1 (PostgreSQL). Times are bigint microseconds since the Unix epoch.
-- The same tables as the SQLite store (see migrations/sqlite), in one step.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE events (
    seq             BIGSERIAL PRIMARY KEY,     -- FIFO tie-breaker within a lane
    id              TEXT NOT NULL UNIQUE,
    topic           TEXT NOT NULL,
    key             TEXT NOT NULL,
    payload         BYTEA NOT NULL,            -- the JSON bytes as received
    recipients      TEXT,                      -- JSON array, NULL when empty
    idempotency_key TEXT UNIQUE,
    causation_id    TEXT,
    correlation_id  TEXT,
    received_at     BIGINT NOT NULL
);
CREATE INDEX events_topic ON events (topic, seq);

CREATE TABLE destinations (
    seq            BIGSERIAL PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    name           TEXT UNIQUE,
    spec           BYTEA NOT NULL,             -- JSON of model.DestinationSpec
    secrets        BYTEA NOT NULL,             -- JSON list of model.Secret, current first
    state          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    failure_streak INTEGER NOT NULL DEFAULT 0,
    paused_reason  TEXT
);

CREATE TABLE deliveries (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    event_seq        BIGINT NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    destination_id   TEXT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    lane_key         TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_error       TEXT,
    holds_lane       SMALLINT NOT NULL DEFAULT 1,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX deliveries_by_destination ON deliveries (destination_id, state, seq);
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
CREATE INDEX deliveries_by_state ON deliveries (state, seq);
CREATE INDEX deliveries_due ON deliveries (destination_id, next_attempt_at)
    WHERE holds_lane = 1 AND state IN ('pending', 'scheduled');
CREATE INDEX deliveries_heads ON deliveries (destination_id, lane_key) WHERE holds_lane = 1;
CREATE INDEX deliveries_waiting ON deliveries (destination_id, lane_key, event_seq)
    WHERE holds_lane = 0 AND state = 'pending';
CREATE INDEX deliveries_leases ON deliveries (lease_expires_at) WHERE state = 'in_flight';

CREATE TABLE attempts (
    seq           BIGSERIAL PRIMARY KEY,
    delivery_seq  BIGINT NOT NULL REFERENCES deliveries (seq) ON DELETE CASCADE,
    at            BIGINT NOT NULL,
    outcome       TEXT NOT NULL,
    status_code   INTEGER,
    latency_ms    DOUBLE PRECISION NOT NULL,
    error         TEXT,
    response_body TEXT
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_seq, seq);
