-- Tidings schema v7 (SQLite): users' inboxes (issue 15). An event with recipients puts one
-- message in each recipient's inbox at that user's next offset, in the event's own
-- transaction. inbox_users holds each user's counter: `top` is the last offset handed
-- out (never reused, so the row stays when the messages go), `acked` how far the user
-- acknowledged, `kept_from` the lowest offset the TIDINGS_INBOX_MAX bound still keeps.
CREATE TABLE inbox_users (
    user_id   TEXT PRIMARY KEY,
    top       INTEGER NOT NULL,
    acked     INTEGER NOT NULL DEFAULT 0,
    kept_from INTEGER NOT NULL DEFAULT 1
) STRICT, WITHOUT ROWID;

-- A message names its event, which the event sweep keeps while a message names it (ten
-- recipients must not mean ten copies of a payload). Keyed by event first, so new rows
-- go at the end of the tree and the oldest messages come first; the index by user
-- (which carries event_seq) serves reads.
CREATE TABLE inbox (
    event_seq INTEGER NOT NULL,
    user_id   TEXT NOT NULL,
    pos       INTEGER NOT NULL,             -- the message's offset in the user's inbox
    acked_at  INTEGER,                      -- set when the user acks past it
    PRIMARY KEY (event_seq, user_id)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX inbox_by_user ON inbox (user_id, pos);
CREATE INDEX inbox_acked ON inbox (acked_at) WHERE acked_at IS NOT NULL;
