-- Tidings schema v4 (PostgreSQL): uploads and their progress, for GET /v1/uploads/{id}. The
-- report is a JSON document the store keeps whole (rows read, events, bad rows, state).
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    report TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
