-- Tidings schema v10 (SQLite): the deliveries queued behind their lane's head, indexed by
-- generation of 8,192 event seqs first, as events_by_key (0009). Indexed by (destination,
-- lane, event_seq), a new delivery of a busy lane put its entry on a leaf page of its own
-- among the whole backlog's (13,006 pages with 1,000,000 pending: a commit of 800 new
-- deliveries dirtied nearly 800), which SQLite's WAL takes whole. By generation first they
-- land on the newest generation's few pages. The lane's earliest waiting delivery is then
-- found generation by generation upward from `lane_waits.low`, a lower bound of it, among
-- as many generations as separate it from the bound (SQLiteStore._promote).
DROP INDEX deliveries_waiting;
CREATE INDEX deliveries_waiting ON deliveries (destination_id, event_seq >> 13, lane_key, event_seq)
WHERE holds_lane = 0 AND state = 'pending';

-- One row per lane with deliveries waiting (holds_lane = 0 AND state = 'pending'): how
-- many (exact, kept by the triggers below on every change of a delivery, cascades of
-- retention's deletes included; the row goes when none is left) and `low`, never above
-- the earliest one's event_seq (lowered by the triggers; raised only by a promotion,
-- which takes the earliest).
CREATE TABLE lane_waits (
    destination_id TEXT NOT NULL,
    lane_key       TEXT NOT NULL,
    waiting        INTEGER NOT NULL,
    low            INTEGER NOT NULL,
    PRIMARY KEY (destination_id, lane_key)
) STRICT, WITHOUT ROWID;
INSERT INTO lane_waits (destination_id, lane_key, waiting, low)
SELECT destination_id, lane_key, count(*), min(event_seq) FROM deliveries
WHERE holds_lane = 0 AND state = 'pending' GROUP BY destination_id, lane_key;

CREATE TRIGGER lane_waits_insert AFTER INSERT ON deliveries
WHEN new.holds_lane = 0 AND new.state = 'pending'
BEGIN
  INSERT INTO lane_waits (destination_id, lane_key, waiting, low)
  VALUES (new.destination_id, new.lane_key, 1, new.event_seq)
  ON CONFLICT (destination_id, lane_key)
  DO UPDATE SET waiting = waiting + 1, low = min(low, excluded.low);
END;

CREATE TRIGGER lane_waits_leave AFTER UPDATE OF holds_lane, state, destination_id, lane_key,
    event_seq ON deliveries
WHEN old.holds_lane = 0 AND old.state = 'pending'
BEGIN
  UPDATE lane_waits SET waiting = waiting - 1
  WHERE destination_id = old.destination_id AND lane_key = old.lane_key;
  DELETE FROM lane_waits
  WHERE destination_id = old.destination_id AND lane_key = old.lane_key AND waiting <= 0;
END;

CREATE TRIGGER lane_waits_enter AFTER UPDATE OF holds_lane, state, destination_id, lane_key,
    event_seq ON deliveries
WHEN new.holds_lane = 0 AND new.state = 'pending'
BEGIN
  INSERT INTO lane_waits (destination_id, lane_key, waiting, low)
  VALUES (new.destination_id, new.lane_key, 1, new.event_seq)
  ON CONFLICT (destination_id, lane_key)
  DO UPDATE SET waiting = waiting + 1, low = min(low, excluded.low);
END;

CREATE TRIGGER lane_waits_delete AFTER DELETE ON deliveries
WHEN old.holds_lane = 0 AND old.state = 'pending'
BEGIN
  UPDATE lane_waits SET waiting = waiting - 1
  WHERE destination_id = old.destination_id AND lane_key = old.lane_key;
  DELETE FROM lane_waits
  WHERE destination_id = old.destination_id AND lane_key = old.lane_key AND waiting <= 0;
END;
