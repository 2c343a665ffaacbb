-- Tidings schema v5 (PostgreSQL): users' inboxes (issue 15); see migrations/sqlite/0007.
-- The counter row of inbox_users is what serializes concurrent appends to one user:
-- each transaction bumps `top` by its count (a row lock held until commit), so offsets
-- are unique, gap-free and commit in offset order.
CREATE TABLE inbox_users (
    user_id   TEXT PRIMARY KEY,
    top       BIGINT NOT NULL,
    acked     BIGINT NOT NULL DEFAULT 0,
    kept_from BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE inbox (
    event_seq BIGINT NOT NULL,
    user_id   TEXT NOT NULL,
    pos       BIGINT NOT NULL,
    acked_at  BIGINT,
    PRIMARY KEY (event_seq, user_id)
);
CREATE UNIQUE INDEX inbox_by_user ON inbox (user_id, pos);
CREATE INDEX inbox_acked ON inbox (acked_at) WHERE acked_at IS NOT NULL;
