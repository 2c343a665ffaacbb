-- Every SQL statement of the SQLite store. Parameters are named (:name).

-- name: get_meta
SELECT value FROM meta WHERE key = :key;

-- name: insert_meta_if_absent
INSERT INTO meta (key, value) VALUES (:key, :value) ON CONFLICT (key) DO NOTHING;

-- name: delete_expired_meta
-- meta is small (a handful of facts and the sign-outs of the last hours): a scan is fine.
DELETE FROM meta
WHERE substr(key, 1, length(:prefix)) = :prefix AND value NOT GLOB '*[^0-9]*'
  AND value != '' AND CAST(value AS INTEGER) <= :now;

-- name: events_by_idempotency_keys
-- :keys is a JSON array of idempotency keys: one statement (one GIL hand-over) for all the
-- keys of an append, each looked up in the UNIQUE index.
SELECT e.idempotency_key, e.id, e.received_at,
       (SELECT count(*) FROM deliveries d WHERE d.event_seq = e.seq)
FROM events e WHERE e.idempotency_key IN (SELECT value FROM json_each(:keys));

-- name: max_event_seq_and_rev
-- One statement (one GIL hand-over) for what every append needs first: the newest inbox
-- generation and how many messages it holds come with it.
SELECT (SELECT max(seq) FROM events),
       (SELECT value FROM meta WHERE key = 'destinations_rev'),
       (SELECT json_array(gen, messages) FROM inbox_gens ORDER BY gen DESC LIMIT 1);

-- name: insert_events_json
-- :rows is a JSON array of [seq, id, topic, key, payload offset (1-based) and length in
-- :payloads, recipients (JSON text or null), idempotency_key, causation_id,
-- correlation_id]: one statement, so one SQLite step (and one GIL hand-over) for the
-- whole group, however many events. The payloads travel apart, as one BLOB of all of
-- them end to end: inside the JSON they would be escaped, then parsed twice by SQLite.
INSERT INTO events (seq, id, topic, key, payload, recipients, idempotency_key,
                    causation_id, correlation_id, received_at)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3,
       substr(:payloads, value ->> 4, value ->> 5),
       value ->> 6, value ->> 7, value ->> 8, value ->> 9, :now
FROM json_each(:rows);

-- name: insert_deliveries_json
-- :rows is a JSON array of [id, event_seq, destination_id, lane_key, holds], where holds
-- is 1 (an unordered destination: goes at once), 0 (queued behind an earlier delivery of
-- its lane in the same rows) or 2 (the first of its fifo lane in the rows: the lane's head
-- unless the store holds one already).
INSERT INTO deliveries (id, event_seq, destination_id, lane_key, holds_lane, state,
                        next_attempt_at, created_at, updated_at)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3,
       CASE value ->> 4
         WHEN 2 THEN NOT EXISTS (SELECT 1 FROM deliveries h
                                 WHERE h.destination_id = value ->> 2
                                   AND h.lane_key = value ->> 3 AND h.holds_lane = 1)
         ELSE value ->> 4 END,
       'pending', :now, :now, :now
FROM json_each(:rows);

-- name: max_received_at
SELECT received_at FROM events ORDER BY seq DESC LIMIT 1;

-- name: all_destinations
SELECT id, spec, secrets, state, created_at, updated_at, paused_reason FROM destinations ORDER BY seq;

-- name: insert_destination
INSERT INTO destinations (id, name, spec, secrets, state, created_at, updated_at)
VALUES (:id, :name, :spec, :secrets, :state, :now, :now);

-- name: destination_by_id
SELECT id, spec, secrets, state, created_at, updated_at, paused_reason FROM destinations WHERE id = :ref;

-- name: destination_by_name
SELECT id, spec, secrets, state, created_at, updated_at, paused_reason FROM destinations WHERE name = :ref;

-- name: list_destinations
SELECT seq, id, spec, secrets, state, created_at, updated_at, paused_reason FROM destinations
WHERE (:cursor IS NULL OR seq < :cursor)
ORDER BY seq DESC LIMIT :limit;

-- name: update_destination_spec
UPDATE destinations SET name = :name, spec = :spec, updated_at = :now WHERE id = :id;

-- name: update_destination_secrets
UPDATE destinations SET secrets = :secrets, updated_at = :now WHERE id = :id;

-- name: delete_destination
DELETE FROM destinations WHERE id = :id;

-- name: get_event
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events WHERE id = :id;

-- name: correlated_events
-- The events of a correlation: those naming it as their correlation_id, and the event
-- whose id it is (a root names no correlation: its followers use its id), oldest first.
-- No payloads: a chain shows the links, and a thousand 1 MiB payloads would be 1 GB.
SELECT seq, id, topic, key, causation_id, correlation_id, received_at
FROM events
WHERE seq IN (SELECT seq FROM events WHERE correlation_id = :correlation_id
              UNION SELECT seq FROM events WHERE id = :correlation_id)
ORDER BY seq LIMIT :limit;

-- name: event_link
SELECT seq, id, topic, key, causation_id, correlation_id, received_at
FROM events WHERE id = :id;

-- name: list_events
-- Filters: :topic exact, :prefix/:prefix_end a topic pattern's range, :key, :correlation_id
-- (its root, whose id it is, and its followers, which name it). Each variant below
-- leads with the index of its most selective filter (rows.events_query picks it);
-- the cursor is a bound on seq, not a filter, so a page starts where the last ended.
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events
WHERE seq < coalesce(:cursor, 9223372036854775807)
  AND (:topic IS NULL OR topic = :topic)
  AND (:prefix IS NULL OR (topic >= :prefix AND topic < :prefix_end))
  AND (:key IS NULL OR key = :key)
  AND (:correlation_id IS NULL OR correlation_id = :correlation_id OR id = :correlation_id)
ORDER BY seq DESC LIMIT :limit;

-- name: list_events_of_topic
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events
WHERE topic = :topic AND seq < coalesce(:cursor, 9223372036854775807)
  AND (:topic IS NULL OR topic = :topic)
  AND (:prefix IS NULL OR (topic >= :prefix AND topic < :prefix_end))
  AND (:key IS NULL OR key = :key)
  AND (:correlation_id IS NULL OR correlation_id = :correlation_id OR id = :correlation_id)
ORDER BY seq DESC LIMIT :limit;

-- name: list_events_of_key
-- events_by_key is by generation of 8,192 seqs (seq >> 13, migration 0009): g walks the
-- generations down from the cursor's, one index seek each, counting the key's events in
-- each (up to :limit) until :limit are found or none is left; the rows are then read from
-- those generations only. (The filters repeat in both: the count must be of rows the page
-- takes.)
WITH RECURSIVE g(gen, n) AS (
  SELECT (coalesce(:cursor, (SELECT max(seq) FROM events) + 1, 0) - 1) >> 13, 0
  UNION ALL
  SELECT g.gen - 1, g.n + (
    SELECT count(*) FROM (
      SELECT 1 FROM events INDEXED BY events_by_key
      WHERE seq >> 13 = g.gen AND key = :key
        AND seq < coalesce(:cursor, 9223372036854775807)
        AND (:topic IS NULL OR topic = :topic)
        AND (:prefix IS NULL OR (topic >= :prefix AND topic < :prefix_end))
        AND (:correlation_id IS NULL OR correlation_id = :correlation_id OR id = :correlation_id)
      LIMIT :limit))
  FROM g WHERE g.gen >= 0 AND g.n < :limit
)
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events INDEXED BY events_by_key
WHERE seq >> 13 IN (SELECT gen FROM g WHERE gen >= 0 AND n < :limit) AND key = :key
  AND seq < coalesce(:cursor, 9223372036854775807)
  AND (:topic IS NULL OR topic = :topic)
  AND (:prefix IS NULL OR (topic >= :prefix AND topic < :prefix_end))
  AND (:correlation_id IS NULL OR correlation_id = :correlation_id OR id = :correlation_id)
ORDER BY seq DESC LIMIT :limit;

-- name: list_events_of_correlation
-- Two index ranges (the root by id, its followers by events_by_correlation), merged.
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events
WHERE (correlation_id = :correlation_id OR id = :correlation_id)
  AND seq < coalesce(:cursor, 9223372036854775807)
  AND (:topic IS NULL OR topic = :topic)
  AND (:prefix IS NULL OR (topic >= :prefix AND topic < :prefix_end))
  AND (:key IS NULL OR key = :key)
ORDER BY seq DESC LIMIT :limit;

-- name: get_delivery
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.id = :id;

-- name: list_deliveries
-- The listings choose among these four by their filters (rows.deliveries_query); each
-- takes the same parameters. The cursor is a bound, not a filter: `seq < coalesce(...)`
-- lets a page start where the last one ended instead of reading past it again.
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.seq < coalesce(:cursor, 9223372036854775807)
  AND (:destination_id IS NULL OR d.destination_id = :destination_id)
  AND (:state IS NULL OR d.state = :state)
  AND (:event_id IS NULL OR e.id = :event_id)
ORDER BY d.seq DESC LIMIT :limit;

-- name: list_deliveries_of_event
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM events e JOIN deliveries d ON d.event_seq = e.seq
WHERE e.id = :event_id
  AND d.seq < coalesce(:cursor, 9223372036854775807)
  AND (:destination_id IS NULL OR d.destination_id = :destination_id)
  AND (:state IS NULL OR d.state = :state)
ORDER BY d.seq DESC LIMIT :limit;

-- name: list_deliveries_by_destination_state
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.destination_id = :destination_id AND d.state = :state
  AND d.seq < coalesce(:cursor, 9223372036854775807)
  AND (:event_id IS NULL OR e.id = :event_id)
ORDER BY d.seq DESC LIMIT :limit;

-- name: list_deliveries_by_state
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.destination_id IN (SELECT id FROM destinations) AND d.state = :state
  AND d.seq < coalesce(:cursor, 9223372036854775807)
  AND (:destination_id IS NULL OR d.destination_id = :destination_id)
  AND (:event_id IS NULL OR e.id = :event_id)
ORDER BY d.seq DESC LIMIT :limit;

-- ---------------------------------------------------------------- lanes and leases

-- name: lane_has_head
SELECT 1 FROM deliveries
WHERE destination_id = :destination_id AND lane_key = :lane_key AND holds_lane = 1 LIMIT 1;

-- name: expired_leases
SELECT d.seq, d.id, d.destination_id, d.lane_key, d.attempts, d.lease_owner, e.id
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.state = 'in_flight' AND d.lease_expires_at <= :now
  AND (:ids IS NULL OR d.destination_id IN (SELECT value FROM json_each(:ids)))
ORDER BY d.lease_expires_at LIMIT :limit;

-- name: attempts_of
SELECT a.at, a.outcome, a.status_code, a.latency_ms, a.error, a.response_body
FROM attempts a JOIN deliveries d ON d.seq = a.delivery_seq
WHERE d.id = :id ORDER BY a.seq;

-- name: failure_streak
SELECT failure_streak, state FROM destinations WHERE id = :id;

-- name: reset_failure_streaks
UPDATE destinations SET failure_streak = 0
WHERE id IN (SELECT value FROM json_each(:ids)) AND failure_streak != 0;

-- name: set_failure_streak
UPDATE destinations SET failure_streak = :streak WHERE id = :id;

-- name: set_destination_state
UPDATE destinations
SET state = :state, paused_reason = :reason, failure_streak = :streak, updated_at = :now
WHERE id = :id;

-- ---------------------------------------------------------------- requeue, replay, purge

-- name: delivery_for_requeue
SELECT d.seq, d.destination_id, d.lane_key, d.state, d.holds_lane, d.event_seq
FROM deliveries d WHERE d.id = :id;

-- name: yield_lane_head
-- A lane's head that has not started (pending, never attempted) and is younger than the
-- delivery coming back gives the lane up: the older one goes first.
UPDATE deliveries SET holds_lane = 0
WHERE destination_id = :destination_id AND lane_key = :lane_key AND holds_lane = 1
  AND state = 'pending' AND attempts = 0 AND event_seq > :event_seq;

-- name: requeue
UPDATE deliveries
SET state = 'pending', attempts = 0, next_attempt_at = :now, holds_lane = :holds_lane,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE seq = :seq;

-- name: replay_candidates
SELECT d.seq, d.destination_id, d.lane_key, d.state, d.holds_lane, d.event_seq
FROM deliveries d
WHERE d.destination_id = :destination_id AND d.state = :state
  AND (:since IS NULL OR d.created_at >= :since)
  AND (:until IS NULL OR d.created_at < :until)
ORDER BY d.event_seq LIMIT :limit;

-- name: delete_delivery
DELETE FROM deliveries WHERE seq = :seq;

-- name: unblock_dead_heads
SELECT DISTINCT lane_key FROM deliveries
WHERE destination_id = :destination_id AND holds_lane = 1 AND state = 'dead';

-- name: release_dead_heads
UPDATE deliveries SET holds_lane = 0 WHERE destination_id = :destination_id
  AND holds_lane = 1 AND state = 'dead';

-- name: lane_holders
-- Every head of a destination's lanes: moving or blocking ones (in flight, scheduled,
-- dead) first, then pending ones in event order.
SELECT seq, lane_key, state FROM deliveries
WHERE destination_id = :destination_id AND holds_lane = 1
ORDER BY lane_key, state = 'pending', event_seq;

-- name: queue_behind
UPDATE deliveries SET holds_lane = 0 WHERE seq = :seq;

-- name: unqueue_all
UPDATE deliveries SET holds_lane = 1, next_attempt_at = :now
WHERE destination_id = :destination_id AND holds_lane = 0 AND state = 'pending';

-- ---------------------------------------------------------------- retention and stats

-- name: backlog
-- Per destination and state, ranges of deliveries_by_destination: the count, exact up to
-- :cap entries walked; the oldest as the range's first entry (created_at grows with seq);
-- the range's first and last seq. A count that reaches :cap is estimated by slices of
-- that span (backlog_slices, policy/counting.py), so a scrape reads a bounded number of
-- index entries however long a backlog grows.
SELECT id, state, n, oldest, first_seq, last_seq FROM (
  SELECT t.id, s.state,
    (SELECT count(*) FROM (SELECT 1 FROM deliveries d
     WHERE d.destination_id = t.id AND d.state = s.state LIMIT :cap) AS w) AS n,
    (SELECT d.created_at FROM deliveries d
     WHERE d.destination_id = t.id AND d.state = s.state
     ORDER BY d.seq LIMIT 1) AS oldest,
    (SELECT d.seq FROM deliveries d
     WHERE d.destination_id = t.id AND d.state = s.state
     ORDER BY d.seq LIMIT 1) AS first_seq,
    (SELECT d.seq FROM deliveries d
     WHERE d.destination_id = t.id AND d.state = s.state
     ORDER BY d.seq DESC LIMIT 1) AS last_seq
  FROM destinations t
  CROSS JOIN (SELECT 'pending' AS state UNION ALL SELECT 'scheduled' UNION ALL SELECT 'in_flight') s
) AS b WHERE n > 0;

-- name: backlog_slices
-- In each of :slices near-equal [lo, hi) parts of seq from :first to :last, at most :limit
-- entries of a destination's deliveries in a state: how many, the first and last seq.
-- One statement: a step per slice from Python would cost more than the walks.
WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < :slices - 1),
r AS (SELECT :first + (:last - :first + 1) * i / :slices AS lo,
             :first + (:last - :first + 1) * (i + 1) / :slices AS hi FROM k)
SELECT lo, hi,
  (SELECT count(*) FROM (SELECT 1 FROM deliveries d
   WHERE d.destination_id = :destination_id AND d.state = :state
     AND d.seq >= r.lo AND d.seq < r.hi LIMIT :limit)),
  (SELECT d.seq FROM deliveries d
   WHERE d.destination_id = :destination_id AND d.state = :state
     AND d.seq >= r.lo AND d.seq < r.hi ORDER BY d.destination_id, d.state, d.seq LIMIT 1),
  (SELECT max(seq) FROM (SELECT d.seq FROM deliveries d
   WHERE d.destination_id = :destination_id AND d.state = :state
     AND d.seq >= r.lo AND d.seq < r.hi ORDER BY d.destination_id, d.state, d.seq LIMIT :limit))
FROM r WHERE hi > lo ORDER BY lo;

-- name: bump_destinations_rev
-- Every change to destinations bumps this, so writers in other processes reload routes.
INSERT INTO meta (key, value) VALUES ('destinations_rev', '1')
ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT);

-- name: destinations_rev
SELECT value FROM meta WHERE key = 'destinations_rev';

-- name: event_received_at_from
SELECT seq, received_at FROM events WHERE seq >= :seq ORDER BY seq LIMIT 1;

-- name: event_seq_bounds
-- Each end from the primary key: one row read each (SQLite scans an index for a query
-- with both min() and max(): 0.6 s at 5.8 million events).
SELECT (SELECT seq FROM events ORDER BY seq LIMIT 1),
       (SELECT seq FROM events ORDER BY seq DESC LIMIT 1);

-- name: sweep_window
-- The next :limit events of a retention pass: how many, and the last one's seq.
SELECT count(*), max(seq) FROM (
  SELECT seq FROM events WHERE seq > :after AND seq <= :max_seq ORDER BY seq LIMIT :limit);

-- name: sweep_events_between
-- The window's events that nothing holds any more; the others are stepped over (the pass
-- goes on after the window, not from the first kept event again).
DELETE FROM events AS e
WHERE e.seq > :after AND e.seq <= :upto
  AND NOT EXISTS (SELECT 1 FROM deliveries d
                  WHERE d.event_seq = e.seq AND d.state != 'delivered')
  -- an inbox message names its event (issue 15): an event with recipients stays while
  -- a generation that may hold one of its messages has any message (migration 0008)
  AND (e.recipients IS NULL
       OR e.seq < coalesce((SELECT min(g.first_seq) FROM inbox_gens g
                            WHERE EXISTS (SELECT 1 FROM inbox i WHERE i.gen = g.gen)),
                           :upto + 1));

-- ---------------------------------------------------------------- set-based engine writes
-- The writer thread hands the GIL over at every SQLite step, and under load each handover
-- waits for the event loop's thread. So the engine's hot statements touch many rows in
-- one step: rows travel in and out as one JSON array instead of one row per step.

-- name: due_heads_json
SELECT json_group_array(json_array(seq, id, attempts, lane_key, event_id, topic,
                                   hex(payload), received_at))
FROM (SELECT d.seq, d.id, d.attempts, d.lane_key, e.id AS event_id, e.topic, e.payload,
             e.received_at
      FROM deliveries d JOIN events e ON e.seq = d.event_seq
      WHERE d.destination_id = :destination_id AND d.holds_lane = 1
        AND d.state IN ('pending', 'scheduled') AND d.next_attempt_at <= :now
      ORDER BY d.next_attempt_at LIMIT :limit);

-- name: lease_many
UPDATE deliveries
SET state = 'in_flight', attempts = attempts + 1, lease_owner = :owner,
    lease_expires_at = :expires, updated_at = :now
WHERE seq IN (SELECT value FROM json_each(:seqs));

-- name: next_due_of_many
-- The earliest due time among the heads of the destinations in the JSON array :ids (one
-- index probe each).
SELECT min(due) FROM (
  SELECT (SELECT min(next_attempt_at) FROM deliveries
          WHERE destination_id = j.value AND holds_lane = 1
            AND state IN ('pending', 'scheduled')) AS due
  FROM json_each(:ids) AS j);

-- name: insert_attempts_json
-- :rows is a JSON array of [delivery id, at, outcome, status_code, latency_ms, error,
-- response_body].
INSERT INTO attempts (delivery_seq, at, outcome, status_code, latency_ms, error, response_body)
SELECT d.seq, json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'),
       json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'),
       json_extract(j.value, '$[5]'), json_extract(j.value, '$[6]')
FROM json_each(:rows) AS j
JOIN deliveries d ON d.id = json_extract(j.value, '$[0]');

-- name: lease_owners_json
-- [[id, lease owner], ...] of those deliveries (ids in :ids) still in flight.
SELECT json_group_array(json_array(id, lease_owner)) FROM deliveries
WHERE id IN (SELECT value FROM json_each(:ids)) AND +state = 'in_flight';

-- name: complete_many
UPDATE deliveries
SET state = :state, next_attempt_at = :next_attempt_at, holds_lane = :holds_lane,
    lease_owner = NULL, lease_expires_at = NULL, last_error = :last_error, updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: refund_attempts
-- Claims given back unsent: the attempt their claim counted did not happen.
UPDATE deliveries SET attempts = max(attempts - 1, 0)
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: promote_many
-- For each [destination_id, lane_key] in :lanes with deliveries waiting and no head, the
-- earliest waiting delivery becomes the lane's head; answers what it promoted.
-- deliveries_waiting is by generation of 8,192 event seqs (migration 0010): l seeks, lane
-- by lane, generation by generation upward from the lane's lower bound (lane_waits.low)
-- to the newest event's at most, and stops at the first it finds, which is the earliest
-- (no earlier generation holds one).
WITH RECURSIVE
x(d, k) AS (SELECT DISTINCT value ->> 0, value ->> 1 FROM json_each(:lanes)),
l(destination_id, lane_key, gen, hit) AS (
  SELECT w.destination_id, w.lane_key, w.low >> 13, NULL
  FROM x JOIN lane_waits w ON w.destination_id = x.d AND w.lane_key = x.k
  WHERE NOT EXISTS (SELECT 1 FROM deliveries h
                    WHERE h.destination_id = x.d AND h.lane_key = x.k AND h.holds_lane = 1)
  UNION ALL
  SELECT l.destination_id, l.lane_key, l.gen + 1,
         (SELECT w.seq FROM deliveries w INDEXED BY deliveries_waiting
          WHERE w.destination_id = l.destination_id AND w.event_seq >> 13 = l.gen
            AND w.lane_key = l.lane_key AND w.holds_lane = 0 AND w.state = 'pending'
          ORDER BY w.event_seq LIMIT 1)
  FROM l WHERE l.hit IS NULL AND l.gen <= (SELECT max(seq) FROM events) >> 13
)
UPDATE deliveries SET holds_lane = 1, next_attempt_at = :now, updated_at = :now
WHERE seq IN (SELECT hit FROM l WHERE hit IS NOT NULL)
RETURNING destination_id, lane_key, event_seq;

-- name: lanes_left_waiting
-- Those of :lanes with deliveries waiting and still no head: after promote_many, none,
-- unless lane_waits was changed by hand.
SELECT x.d, x.k FROM (SELECT DISTINCT value ->> 0 AS d, value ->> 1 AS k
                      FROM json_each(:lanes)) AS x
JOIN lane_waits w ON w.destination_id = x.d AND w.lane_key = x.k
WHERE NOT EXISTS (SELECT 1 FROM deliveries h
                  WHERE h.destination_id = x.d AND h.lane_key = x.k AND h.holds_lane = 1);

-- name: earliest_waiting_scan
-- The same without the bound, walking the destination's whole deliveries_waiting: only
-- if the bound failed (it cannot, unless lane_waits was changed by hand).
SELECT seq, event_seq FROM deliveries INDEXED BY deliveries_waiting
WHERE destination_id = :destination_id AND lane_key = :lane_key
  AND holds_lane = 0 AND state = 'pending'
ORDER BY event_seq LIMIT 1;

-- name: reset_lane_low
UPDATE lane_waits SET low = :low WHERE destination_id = :destination_id AND lane_key = :lane_key;

-- name: promote
UPDATE deliveries SET holds_lane = 1, next_attempt_at = :now, updated_at = :now
WHERE seq = :seq;

-- name: raise_lane_low
-- After a promotion, which took the lane's earliest waiting delivery (the trigger has
-- counted it out already): the rest are at least as late.
UPDATE lane_waits SET low = :low
WHERE destination_id = :destination_id AND lane_key = :lane_key AND low < :low;

-- ---------------------------------------------------------------- uploads

-- name: save_upload
INSERT INTO uploads (id, report, created_at, updated_at) VALUES (:id, :report, :now, :now)
ON CONFLICT (id) DO UPDATE SET report = excluded.report, updated_at = excluded.updated_at;

-- name: get_upload
SELECT report FROM uploads WHERE id = :id;

-- ---------------------------------------------------------------- inboxes (issue 15)
-- name: bump_inbox_tops_json
-- :counts is a JSON object {user_id: messages to add}; answers each user's new top.
-- (`WHERE true` keeps SQLite from reading ON CONFLICT as part of the SELECT's join.)
INSERT INTO inbox_users (user_id, top)
SELECT key, value FROM json_each(:counts) WHERE true
ON CONFLICT (user_id) DO UPDATE SET top = top + excluded.top
RETURNING user_id, top, kept_from;

-- name: insert_inbox_json
-- :rows is a JSON object {user_id: {pos: event_seq}}, all of generation :gen. (Not an
-- array of [event_seq, user_id, pos]: `value ->> n` renders and parses each message's
-- array again for every column, a third of the insert's time.)
INSERT INTO inbox (gen, user_id, pos, event_seq)
SELECT :gen, u.key, CAST(m.key AS INTEGER), m.value FROM json_each(:rows) u, json_each(u.value) m;

-- name: count_inbox_gen
INSERT INTO inbox_gens (gen, first_seq, messages) VALUES (:gen, :first_seq, :messages)
ON CONFLICT (gen) DO UPDATE SET messages = messages + excluded.messages;

-- name: trim_inbox
-- A user's messages: one seek per generation (migration 0008).
DELETE FROM inbox
WHERE gen IN (SELECT gen FROM inbox_gens) AND user_id = :user_id AND pos < :kept_from;

-- name: set_inbox_kept_from
UPDATE inbox_users SET kept_from = :kept_from WHERE user_id = :user_id;

-- name: inbox_after
-- The generations in order, each searched by (user_id, pos): offset order with no sort,
-- so LIMIT stops the walk (a user's offsets grow from one generation to the next).
SELECT i.pos, e.id, e.topic, e.payload, e.received_at
FROM inbox_gens g
CROSS JOIN inbox i ON i.gen = g.gen AND i.user_id = :user_id AND i.pos > :after
JOIN events e ON e.seq = i.event_seq
ORDER BY g.gen, i.pos LIMIT :limit;

-- name: inbox_user
SELECT top, acked FROM inbox_users WHERE user_id = :user_id;

-- name: set_inbox_acked
UPDATE inbox_users SET acked = :acked WHERE user_id = :user_id;

-- name: mark_inbox_acked
UPDATE inbox SET acked_at = :now
WHERE gen IN (SELECT gen FROM inbox_gens) AND user_id = :user_id
  AND pos > :from_pos AND pos <= :to_pos AND acked_at IS NULL;

-- name: inbox_acked_gens
-- The generations holding messages acked before :cutoff, oldest first (one seek each).
SELECT g.gen FROM inbox_gens g
WHERE EXISTS (SELECT 1 FROM inbox i WHERE i.gen = g.gen AND i.acked_at < :cutoff)
ORDER BY g.gen;

-- name: sweep_inbox_acked
-- One generation at a time: with the whole key as a row value, (gen, user_id, pos) IN
-- (...) makes SQLite search by gen alone, a scan of the generation per message.
DELETE FROM inbox WHERE gen = :gen AND (user_id, pos) IN (
    SELECT user_id, pos FROM inbox WHERE gen = :gen AND acked_at < :cutoff LIMIT :limit);

-- name: sweep_inbox_gens
-- Generations emptied by the sweeps, but never the newest (it takes the next messages).
DELETE FROM inbox_gens
WHERE gen < (SELECT max(gen) FROM inbox_gens)
  AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.gen = inbox_gens.gen);

-- name: sweep_inbox_aged
-- One generation (:gen, oldest first) at a time, and only its first `limit` messages, so
-- a sweep with nothing to do reads a few rows, not the table. Within a generation they
-- come in user order, not by age: one younger than the cutoff can hold older ones of its
-- generation back for at most the time that generation took to fill.
DELETE FROM inbox WHERE gen = :gen AND (user_id, pos) IN (
    SELECT o.user_id, o.pos
    FROM (SELECT user_id, pos, event_seq FROM inbox
          WHERE gen = :gen ORDER BY user_id, pos LIMIT :limit) o
    JOIN events e ON e.seq = o.event_seq
    WHERE e.received_at < :cutoff);

-- name: inbox_gens
SELECT gen FROM inbox_gens ORDER BY gen;

-- name: inbox_gen_has_messages
SELECT EXISTS (SELECT 1 FROM inbox WHERE gen = :gen);

-- ---------------------------------------------------------------- pull groups (issue 16)
-- A group's deliveries walk the same lanes and states as any other; a consumer's lease
-- sets lease_owner to the lease call's token, and every later step is fenced by it.

-- name: group_heads_json
-- Due lane heads of a group, earliest due first, with the events a consumer handles.
SELECT json_group_array(json_array(seq, id, attempts, event_seq, event_id, topic, key,
                                   hex(payload), received_at, causation_id, correlation_id))
FROM (SELECT d.seq, d.id, d.attempts, d.event_seq, e.id AS event_id, e.topic, e.key,
             e.payload, e.received_at, e.causation_id, e.correlation_id
      FROM deliveries d JOIN events e ON e.seq = d.event_seq
      WHERE d.destination_id = :destination_id AND d.holds_lane = 1
        AND d.state IN ('pending', 'scheduled') AND d.next_attempt_at <= :now
      ORDER BY d.next_attempt_at LIMIT :limit);

-- name: group_next_due
SELECT min(next_attempt_at) FROM deliveries
WHERE destination_id = :destination_id AND holds_lane = 1
  AND state IN ('pending', 'scheduled');

-- name: held_leases_json
-- [[id, lane_key, attempts, lease_owner], ...] of those deliveries (ids in :ids) of the
-- group in flight under a lease that has not expired.
SELECT json_group_array(json_array(id, lane_key, attempts, lease_owner)) FROM deliveries
WHERE id IN (SELECT value FROM json_each(:ids)) AND destination_id = :destination_id
  AND +state = 'in_flight' AND lease_expires_at > :now;

-- name: expired_group_leases_json
SELECT json_group_array(json_array(id, lane_key, attempts, lease_owner))
FROM (SELECT id, lane_key, attempts, lease_owner FROM deliveries
      WHERE state = 'in_flight' AND lease_expires_at <= :now
        AND destination_id = :destination_id
      ORDER BY lease_expires_at LIMIT :limit);

-- name: extend_many
UPDATE deliveries SET lease_expires_at = :expires, updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: deliveries_of_events_json
-- :ids is a JSON array of event ids.
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM events e JOIN deliveries d ON d.event_seq = e.seq
WHERE e.id IN (SELECT value FROM json_each(:ids))
ORDER BY e.seq, d.seq;

-- ---------------------------------------------------------------- dashboard (issue 17)

-- name: activity_tops
-- Both are the primary keys' last entries: no scan.
SELECT (SELECT max(seq) FROM events), (SELECT max(seq) FROM attempts);

-- name: events_after
SELECT count(*) FROM events WHERE seq > :after;

-- name: outcomes_after
SELECT outcome, count(*) FROM attempts WHERE seq > :after GROUP BY outcome;

-- name: recent_attempts
-- The newest attempts by primary key, each joined to its delivery by primary key.
SELECT d.destination_id, a.outcome, a.latency_ms
FROM attempts a JOIN deliveries d ON d.seq = a.delivery_seq
ORDER BY a.seq DESC LIMIT :limit;

-- name: count_deliveries
-- A range of deliveries_by_destination, stopped at :cap.
SELECT count(*) FROM (
  SELECT 1 FROM deliveries
  WHERE destination_id = :destination_id AND state = :state
    AND (:since IS NULL OR created_at >= :since)
    AND (:until IS NULL OR created_at < :until)
  LIMIT :cap);

-- name: list_uploads
-- Newest first: upload ids sort by creation time (the primary key's order).
SELECT report FROM uploads WHERE (:before IS NULL OR id < :before) ORDER BY id DESC LIMIT :limit;
