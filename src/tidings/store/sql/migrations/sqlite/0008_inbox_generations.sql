-- Tidings schema v8 (SQLite): the by-user index of inbox messages is cut into generations,
-- so that a batch's messages land in a small part of it. Keyed (user_id, pos) alone, each
-- batch of 10,000 messages to 6,000 users put one entry on nearly every leaf page of a tree
-- that grows with the table: the batch's cost grew with the inbox (200 ms for 10,000
-- messages into 1,000,000, against 30 ms with no index by user). A generation holds the
-- next GENERATION_MESSAGES messages (store/sqlite.py), written in the events' order;
-- within one, entries are in (user_id, pos) order. New messages only ever go into the
-- newest generation, whose part of the tree stays small. A user's offsets grow with time,
-- so reading the generations in order and each by (user_id, pos) reads a user's messages
-- in offset order: a read is one index seek per generation.
CREATE TABLE inbox_gens (
    gen      INTEGER PRIMARY KEY,
    messages INTEGER NOT NULL              -- messages written into it (not lowered by sweeps)
) STRICT;

-- The messages written by v7 are generation 0.
ALTER TABLE inbox ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
INSERT INTO inbox_gens (gen, messages) VALUES (0, (SELECT count(*) FROM inbox));
DROP INDEX inbox_by_user;
CREATE UNIQUE INDEX inbox_by_user ON inbox (gen, user_id, pos);
