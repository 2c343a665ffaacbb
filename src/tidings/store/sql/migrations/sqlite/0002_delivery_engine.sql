-- Tidings schema v2 (SQLite): lanes, leases, attempts, destination health.
--
-- `holds_lane` = 1 marks a delivery that may be claimed when due: the head of its lane
-- (destination, lane_key) in a fifo destination, every delivery in an unordered one, and
-- a dead head that blocks its lane (on_dead = block). Deliveries queued behind a head have
-- holds_lane = 0 and state 'pending'; when the head is delivered (or dies and the lane
-- skips it) the earliest waiting one is promoted in the same transaction.
ALTER TABLE deliveries ADD COLUMN holds_lane INTEGER NOT NULL DEFAULT 1;

-- Deliveries written by v1 were all pending with no lanes: keep only each fifo lane's
-- earliest active delivery as its head.
UPDATE deliveries SET holds_lane = 0
WHERE state NOT IN ('pending', 'in_flight', 'scheduled')
   OR (
     (SELECT json_extract(CAST(spec AS TEXT), '$.ordering') FROM destinations t
      WHERE t.id = deliveries.destination_id) IS NOT 'none'
     AND EXISTS (SELECT 1 FROM deliveries p
                 WHERE p.destination_id = deliveries.destination_id
                   AND p.lane_key = deliveries.lane_key
                   AND p.event_seq < deliveries.event_seq
                   AND p.state IN ('pending', 'in_flight', 'scheduled')));

DROP INDEX deliveries_by_lane;
-- Claimable heads, by due time (the claim query).
CREATE INDEX deliveries_due ON deliveries (destination_id, next_attempt_at)
WHERE holds_lane = 1 AND state IN ('pending', 'scheduled');
-- The head of each lane (is this lane busy?).
CREATE INDEX deliveries_heads ON deliveries (destination_id, lane_key) WHERE holds_lane = 1;
-- Deliveries queued behind a head, in FIFO order (who is next?).
CREATE INDEX deliveries_waiting ON deliveries (destination_id, lane_key, event_seq)
WHERE holds_lane = 0 AND state = 'pending';
-- Leases, by expiry (whose worker vanished?).
CREATE INDEX deliveries_leases ON deliveries (lease_expires_at) WHERE state = 'in_flight';

CREATE TABLE attempts (
    seq           INTEGER PRIMARY KEY,
    delivery_seq  INTEGER NOT NULL REFERENCES deliveries (seq) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    outcome       TEXT NOT NULL,
    status_code   INTEGER,
    latency_ms    REAL NOT NULL,
    error         TEXT,
    response_body TEXT
) STRICT;
CREATE INDEX attempts_by_delivery ON attempts (delivery_seq, seq);

ALTER TABLE destinations ADD COLUMN failure_streak INTEGER NOT NULL DEFAULT 0;
ALTER TABLE destinations ADD COLUMN paused_reason TEXT;
