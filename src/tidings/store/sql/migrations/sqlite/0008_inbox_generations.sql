-- Tidings schema v8 (SQLite): inbox messages are kept in generations, so that a batch's
-- messages land in a small part of one tree. Indexed by (user_id, pos) alone, each batch
-- of 10,000 messages to 6,000 users put one entry on nearly every leaf page of an index
-- that grows with the table: a batch's cost grew with the inbox (200 ms for 10,000
-- messages into 1,000,000, against 30 ms with no index by user).
--
-- A generation holds the next GENERATION_MESSAGES messages (store/sqlite.py) in the
-- events' order; within one, messages are in (user_id, pos) order. New messages only go
-- into the newest generation, whose part of the tree stays small. A user's offsets grow
-- with time, so reading the generations in order, each by (user_id, pos), reads a user's
-- messages in offset order: a read is one seek per generation. One tree, keyed by
-- generation: the second one by event (v7's primary key) is gone; `first_seq` stands in
-- for it where the event sweep asks whether a message may still name an event.
CREATE TABLE inbox_gens (
    gen       INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,            -- no message of it names an earlier event
    messages  INTEGER NOT NULL             -- messages written into it (sweeps don't lower it)
) STRICT;

CREATE TABLE inbox_v8 (
    gen       INTEGER NOT NULL,
    user_id   TEXT NOT NULL,
    pos       INTEGER NOT NULL,             -- the message's offset in the user's inbox
    event_seq INTEGER NOT NULL,
    acked_at  INTEGER,                      -- set when the user acks past it
    PRIMARY KEY (gen, user_id, pos)
) STRICT, WITHOUT ROWID;

-- The messages written by v7 are generation 0.
INSERT INTO inbox_v8 (gen, user_id, pos, event_seq, acked_at)
SELECT 0, user_id, pos, event_seq, acked_at FROM inbox ORDER BY user_id, pos;
INSERT INTO inbox_gens (gen, first_seq, messages)
VALUES (0, coalesce((SELECT min(event_seq) FROM inbox), 0), (SELECT count(*) FROM inbox));
DROP TABLE inbox;
ALTER TABLE inbox_v8 RENAME TO inbox;
-- Acked messages by generation, so that a sweep deletes one generation's at a time.
CREATE INDEX inbox_acked ON inbox (gen, acked_at) WHERE acked_at IS NOT NULL;
