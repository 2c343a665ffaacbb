-- Tidings schema v9 (SQLite): the events of one key by generations of 8,192 sequence
-- numbers (seq >> 13), as the inbox's index by user (0008). Indexed by (key, seq), each
-- new event of a batch of random keys put its entry on a leaf page of its own among the
-- whole table's, and SQLite's WAL takes every page a commit dirties whole: with 500,000
-- events, batches of 100 wrote 6.0 KiB of WAL per event, 2.1 with this index (the rest
-- unchanged), whose new entries land on the few pages of the newest generation. A
-- listing by key walks the generations down from its cursor, one seek each (see
-- list_events_of_key). Building the new index reads every event once (2 s for 500,000).
DROP INDEX events_by_key;
CREATE INDEX events_by_key ON events (seq >> 13, key, seq);
