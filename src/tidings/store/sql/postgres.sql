-- Every SQL statement of the PostgreSQL store. Parameters are positional ($1, $2, ...);
-- arrays bound with unnest() carry many rows in one round trip.

-- name: get_meta
SELECT value FROM meta WHERE key = $1;

-- name: insert_meta_if_absent
INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING;

-- name: delete_expired_meta
-- meta is small (a handful of facts and the sign-outs of the last hours): a scan is fine.
-- (CASE: the cast only ever sees a number that fits, whatever order the planner takes)
DELETE FROM meta
WHERE starts_with(key, $1)
  AND CASE WHEN value ~ '^[0-9]{1,18}$' THEN value::bigint <= $2 ELSE false END;

-- name: bump_destinations_rev
INSERT INTO meta (key, value) VALUES ('destinations_rev', '1')
ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text;

-- name: destinations_rev
SELECT value FROM meta WHERE key = 'destinations_rev';

-- name: schema_version
SELECT value FROM meta WHERE key = 'schema_version';

-- name: set_schema_version
INSERT INTO meta (key, value) VALUES ('schema_version', $1)
ON CONFLICT (key) DO UPDATE SET value = $1;

-- name: meta_exists
SELECT to_regclass('meta') IS NOT NULL;

-- name: notify
SELECT pg_notify($1, $2);

-- name: notify_unsynced
-- A wake-up on its own, after the commit it announces: its commit need not wait for the
-- disk (the lock a NOTIFY takes at commit is then held for microseconds).
SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '');

-- ---------------------------------------------------------------- ingest

-- name: append_group
-- One ingest group (migrations 0006-0010): locks, events, deliveries, inbox messages;
-- answers the duplicates, the users' new tops and the messages a full inbox dropped.
-- Called outside any transaction block: the statement is the transaction. Integer
-- arrays and the users come as array literals (`int_array` in postgres.py says why).
SELECT * FROM tidings_append($1::text::bigint[], $2::text::bigint[], $3::text, $4::bigint,
                             $5::text[], $6::text[], $7::text[], $8::bytea[], $9::text[],
                             $10::text[], $11::text[], $12::text[],
                             $13::text[], $14::text::int[], $15::text[], $16::text[],
                             $17::text::smallint[],
                             $18::text::text[], $19::text::int[], $20::text::int[], $21::text::int[],
                             $22::text::int[], $23::bigint);

-- name: lock_lanes
-- $1 is sorted by the caller, so concurrent transactions lock lanes in one order.
SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k;

-- ---------------------------------------------------------------- destinations

-- name: all_destinations
SELECT id, spec, secrets, state, created_at, updated_at, paused_reason FROM destinations
ORDER BY seq;

-- name: insert_destination
INSERT INTO destinations (id, name, spec, secrets, state, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6);

-- name: destination_by_id
SELECT id, spec, secrets, state, created_at, updated_at, paused_reason FROM destinations
WHERE id = $1;

-- name: destination_by_name
SELECT id, spec, secrets, state, created_at, updated_at, paused_reason FROM destinations
WHERE name = $1;

-- name: list_destinations
SELECT seq, id, spec, secrets, state, created_at, updated_at, paused_reason FROM destinations
WHERE ($1::bigint IS NULL OR seq < $1)
ORDER BY seq DESC LIMIT $2;

-- name: update_destination_spec
UPDATE destinations SET name = $2, spec = $3, updated_at = $4 WHERE id = $1;

-- name: update_destination_secrets
UPDATE destinations SET secrets = $2, updated_at = $3 WHERE id = $1;

-- name: delete_destination
DELETE FROM destinations WHERE id = $1;

-- name: delete_deliveries_of_destination
-- No foreign key cascades since migration 0007: the store deletes them (their attempts
-- still cascade).
DELETE FROM deliveries WHERE destination_id = $1;

-- ---------------------------------------------------------------- reads

-- name: get_event
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events WHERE id = $1;

-- name: correlated_events
-- The events of a correlation: those naming it as their correlation_id, and the event
-- whose id it is (a root names no correlation: its followers use its id), oldest first.
-- No payloads: a chain shows the links, and a thousand 1 MiB payloads would be 1 GB.
SELECT seq, id, topic, key, causation_id, correlation_id, received_at
FROM events
WHERE seq IN (SELECT seq FROM events WHERE correlation_id = $1
              UNION SELECT seq FROM events WHERE id = $1)
ORDER BY seq LIMIT $2;

-- name: event_link
SELECT seq, id, topic, key, causation_id, correlation_id, received_at
FROM events WHERE id = $1;

-- name: list_events
-- $1 exact topic, $2/$3 a topic pattern's range, $4 cursor, $5 limit, $6 key, $7 a
-- correlation (its root, whose id it is, and its followers, which name it). Each variant
-- below leads with the index of its most selective filter (rows.events_query picks
-- it); the cursor is a bound on seq, not a filter.
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events
WHERE seq < coalesce($4::bigint, 9223372036854775807)
  AND ($1::text IS NULL OR topic = $1)
  AND ($2::text IS NULL OR (topic >= $2 AND topic < $3))
  AND ($6::text IS NULL OR key = $6)
  AND ($7::text IS NULL OR correlation_id = $7 OR id = $7)
ORDER BY seq DESC LIMIT $5;

-- name: list_events_of_topic
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events
WHERE topic = $1 AND seq < coalesce($4::bigint, 9223372036854775807)
  AND ($1::text IS NULL OR topic = $1)
  AND ($2::text IS NULL OR (topic >= $2 AND topic < $3))
  AND ($6::text IS NULL OR key = $6)
  AND ($7::text IS NULL OR correlation_id = $7 OR id = $7)
ORDER BY seq DESC LIMIT $5;

-- name: list_events_of_key
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events
WHERE key = $6 AND seq < coalesce($4::bigint, 9223372036854775807)
  AND ($1::text IS NULL OR topic = $1)
  AND ($2::text IS NULL OR (topic >= $2 AND topic < $3))
  AND ($6::text IS NULL OR key = $6)
  AND ($7::text IS NULL OR correlation_id = $7 OR id = $7)
ORDER BY seq DESC LIMIT $5;

-- name: list_events_of_correlation
-- Two index ranges (the root by id, its followers by events_by_correlation), merged.
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events
WHERE (correlation_id = $7 OR id = $7)
  AND seq < coalesce($4::bigint, 9223372036854775807)
  AND ($1::text IS NULL OR topic = $1)
  AND ($2::text IS NULL OR (topic >= $2 AND topic < $3))
  AND ($6::text IS NULL OR key = $6)
ORDER BY seq DESC LIMIT $5;

-- name: get_delivery
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.id = $1;

-- name: list_deliveries
-- The listings choose among these four by their filters (rows.deliveries_query); each
-- takes the same parameters ($1 destination_id, $2 state, $3 event_id, $4 cursor,
-- $5 limit). Spelled out, so that a generic plan of a prepared statement can still use
-- the index its filters name; the cursor is a bound (`seq < coalesce(...)`).
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.seq < coalesce($4::bigint, 9223372036854775807)
  AND ($1::text IS NULL OR d.destination_id = $1)
  AND ($2::text IS NULL OR d.state = $2)
  AND ($3::text IS NULL OR e.id = $3)
ORDER BY d.seq DESC LIMIT $5;

-- name: list_deliveries_of_event
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM events e JOIN deliveries d ON d.event_seq = e.seq
WHERE e.id = $3
  AND d.seq < coalesce($4::bigint, 9223372036854775807)
  AND ($1::text IS NULL OR d.destination_id = $1)
  AND ($2::text IS NULL OR d.state = $2)
ORDER BY d.seq DESC LIMIT $5;

-- name: list_deliveries_by_destination_state
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.destination_id = $1 AND d.state = $2
  AND d.seq < coalesce($4::bigint, 9223372036854775807)
  AND ($3::text IS NULL OR e.id = $3)
ORDER BY d.seq DESC LIMIT $5;

-- name: list_deliveries_by_state
-- The newest `limit` of each destination's range of deliveries_by_destination, merged
-- (there is no index on state alone since migration 0007: one less entry per delivery
-- written, for a listing of a few dozen ranges).
SELECT d.seq, d.id, d.event_id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM destinations t
CROSS JOIN LATERAL (
  SELECT x.seq, x.id, e.id AS event_id, x.destination_id, x.lane_key, x.state, x.attempts,
         x.next_attempt_at, x.last_error, x.created_at, x.updated_at
  FROM deliveries x JOIN events e ON e.seq = x.event_seq
  WHERE x.destination_id = t.id AND x.state = $2
    AND x.seq < coalesce($4::bigint, 9223372036854775807)
    AND ($3::text IS NULL OR e.id = $3)
  ORDER BY x.seq DESC LIMIT $5) AS d
WHERE ($1::text IS NULL OR t.id = $1)
ORDER BY d.seq DESC LIMIT $5;

-- name: attempts_of
SELECT a.at, a.outcome, a.status_code, a.latency_ms, a.error, a.response_body
FROM attempts a JOIN deliveries d ON d.seq = a.delivery_seq
WHERE d.id = $1 ORDER BY a.seq;

-- ---------------------------------------------------------------- claims and outcomes

-- name: claim_heads
-- Due lane heads of one destination, leased to $4 until $5. SKIP LOCKED: a head another
-- worker is claiming right now is left to it.
WITH due AS (
    SELECT seq FROM deliveries
    WHERE destination_id = $1 AND holds_lane = 1
      AND state IN ('pending', 'scheduled') AND next_attempt_at <= $2
    ORDER BY next_attempt_at LIMIT $3
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE deliveries d
    SET state = 'in_flight', attempts = d.attempts + 1, lease_owner = $4,
        lease_expires_at = $5, updated_at = $2
    FROM due WHERE d.seq = due.seq
    RETURNING d.id, d.attempts, d.lane_key, d.event_seq, d.next_attempt_at
)
SELECT l.id, l.attempts, l.lane_key, e.id, e.topic, e.payload, e.received_at
FROM leased l JOIN events e ON e.seq = l.event_seq
ORDER BY l.next_attempt_at;

-- name: claim_many
-- Due lane heads of every asked destination ($1 ids, $2 limits, $3 lease expiries), leased
-- to $5 (migration 0008: see tidings_claim); the last row (id NULL) carries next_due.
SELECT * FROM tidings_claim($1::text[], $2::int[], $3::bigint[], $4::bigint, $5::text);

-- name: complete_group
-- A flush without failures in one round trip (migration 0006); answers the ids applied.
SELECT tidings_complete($1::bigint[], $2::text, $3::bigint, $4::text[], $5::text[],
                        $6::text[], $7::bigint[], $8::smallint[], $9::text[], $10::boolean[],
                        $11::bigint[], $12::text[], $13::int[], $14::float8[], $15::text[],
                        $16::text[]);

-- name: next_due
SELECT min(next_attempt_at) FROM deliveries
WHERE destination_id = $1 AND holds_lane = 1 AND state IN ('pending', 'scheduled');

-- name: expired_leases
SELECT d.seq, d.id, d.destination_id, d.lane_key, d.attempts, d.lease_owner, e.id
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.state = 'in_flight' AND d.lease_expires_at <= $1
  AND ($3::text[] IS NULL OR d.destination_id = ANY($3::text[]))
ORDER BY d.lease_expires_at LIMIT $2;

-- name: deliveries_for_completion
SELECT seq, id, state, lease_owner FROM deliveries WHERE id = ANY($1::text[])
ORDER BY seq FOR UPDATE;

-- name: insert_attempts
INSERT INTO attempts (delivery_seq, at, outcome, status_code, latency_ms, error, response_body)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::float8[],
                     $6::text[], $7::text[]);

-- name: complete_deliveries
UPDATE deliveries d
SET state = u.state, next_attempt_at = u.next_attempt_at, holds_lane = u.holds_lane,
    lease_owner = NULL, lease_expires_at = NULL, last_error = u.last_error, updated_at = $6
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::smallint[], $5::text[])
     AS u (seq, state, next_attempt_at, holds_lane, last_error)
WHERE d.seq = u.seq;

-- name: refund_attempts
-- Claims given back unsent: the attempt their claim counted did not happen.
UPDATE deliveries SET attempts = greatest(attempts - 1, 0) WHERE seq = ANY($1::bigint[]);

-- name: promote_lanes
-- Each listed lane's earliest waiting delivery becomes its head, unless it has one.
UPDATE deliveries SET holds_lane = 1, next_attempt_at = $3, updated_at = $3
WHERE seq IN (
    SELECT (SELECT w.seq FROM deliveries w
            WHERE w.destination_id = l.destination_id AND w.lane_key = l.lane_key
              AND w.holds_lane = 0 AND w.state = 'pending'
            ORDER BY w.event_seq LIMIT 1)
    FROM unnest($1::text[], $2::text[]) AS l (destination_id, lane_key)
    -- one index probe per lane (a scalar subquery is never a join: migration 0008)
    WHERE (SELECT 1 FROM deliveries h
           WHERE h.destination_id = l.destination_id
             AND h.lane_key = l.lane_key AND h.holds_lane = 1 LIMIT 1) IS NULL);

-- name: streaks_for_update
SELECT id, failure_streak, state FROM destinations WHERE id = ANY($1::text[])
ORDER BY id FOR UPDATE;

-- name: set_failure_streak
UPDATE destinations SET failure_streak = $2 WHERE id = $1;

-- name: set_destination_state
UPDATE destinations SET state = $2, paused_reason = $3, failure_streak = $4, updated_at = $5
WHERE id = $1;

-- ---------------------------------------------------------------- requeue, replay, purge

-- name: delivery_lane
SELECT destination_id, lane_key FROM deliveries WHERE id = $1;

-- name: delivery_for_requeue
SELECT seq, destination_id, lane_key, state, holds_lane, event_seq FROM deliveries
WHERE id = $1 FOR UPDATE;

-- name: deliveries_lanes
SELECT id, destination_id, lane_key FROM deliveries WHERE id = ANY($1::text[]);

-- name: yield_lane_head
-- A lane's head that has not started (pending, never attempted) and is younger than the
-- delivery coming back gives the lane up: the older one goes first.
UPDATE deliveries SET holds_lane = 0
WHERE destination_id = $1 AND lane_key = $2 AND holds_lane = 1
  AND state = 'pending' AND attempts = 0 AND event_seq > $3;

-- name: lane_has_head
SELECT 1 FROM deliveries
WHERE destination_id = $1 AND lane_key = $2 AND holds_lane = 1 LIMIT 1;

-- name: requeue
UPDATE deliveries
SET state = 'pending', attempts = 0, next_attempt_at = $3, holds_lane = $2,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
WHERE seq = $1;

-- name: replay_candidates
SELECT id, lane_key FROM deliveries
WHERE destination_id = $1 AND state = $2
  AND ($3::bigint IS NULL OR created_at >= $3)
  AND ($4::bigint IS NULL OR created_at < $4)
ORDER BY event_seq LIMIT $5;

-- name: delete_delivery
DELETE FROM deliveries WHERE seq = $1;

-- name: lanes_of_destination_heads
SELECT DISTINCT lane_key FROM deliveries WHERE destination_id = $1 AND holds_lane = 1;

-- name: release_dead_heads
UPDATE deliveries SET holds_lane = 0
WHERE destination_id = $1 AND holds_lane = 1 AND state = 'dead'
RETURNING lane_key;

-- name: unqueue_all
UPDATE deliveries SET holds_lane = 1, next_attempt_at = $2
WHERE destination_id = $1 AND holds_lane = 0 AND state = 'pending';

-- name: lane_holders
SELECT seq, lane_key, state FROM deliveries
WHERE destination_id = $1 AND holds_lane = 1
ORDER BY lane_key, state = 'pending', event_seq;

-- name: queue_behind
UPDATE deliveries SET holds_lane = 0 WHERE seq = ANY($1::bigint[]);

-- name: lock_destination_exclusive
SELECT pg_advisory_xact_lock($1);

-- ---------------------------------------------------------------- retention and stats

-- name: event_seq_bounds
-- Each end from the primary key: one row read each (the form SQLite needs, which scans an
-- index for min() and max() together; kept alike here).
SELECT (SELECT seq FROM events ORDER BY seq LIMIT 1),
       (SELECT seq FROM events ORDER BY seq DESC LIMIT 1);

-- name: event_received_at_from
SELECT seq, received_at FROM events WHERE seq >= $1 ORDER BY seq LIMIT 1;

-- name: sweep_window
-- The next $3 events of a retention pass after seq $1 up to $2, and of them those that
-- nothing holds any more deleted with, in the same statement, their deliveries (no foreign
-- key cascade since migration 0007; the deliveries' attempts still cascade); the others are
-- stepped over (the pass goes on after the window, not from the first kept event again).
-- One statement, one snapshot: an event that commits meanwhile is neither counted nor
-- deleted (a later pass takes it). An event that the snapshot shows free (every delivery
-- delivered, no inbox message) goes only if each of its deliveries is locked here still
-- delivered: a replay or retry that re-queued one after the snapshot is seen (FOR UPDATE
-- reads the newest version), one still running is skipped (SKIP LOCKED, so a sweep never
-- waits on, or deadlocks with, a writer) and keeps the event; a re-queue that comes after
-- the lock waits for this commit and finds the delivery gone. Answers the window's size,
-- its last seq, the deleted.
WITH w AS MATERIALIZED (
  SELECT seq, recipients IS NOT NULL AS inboxed FROM events
  WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3
), named AS MATERIALIZED (
  -- an inbox message names its event (issue 15): the event stays while one does. One
  -- range scan of the index by generation (migration 0010) for the whole window, and
  -- only when the window holds events with recipients.
  SELECT DISTINCT i.event_seq FROM inbox i
  WHERE (SELECT bool_or(inboxed) FROM w)
    AND (i.event_seq >> 10) >= (SELECT min(seq) >> 10 FROM w)
    AND (i.event_seq >> 10) <= (SELECT max(seq) >> 10 FROM w)
    AND i.event_seq >= (SELECT min(seq) FROM w) AND i.event_seq <= (SELECT max(seq) FROM w)
), free AS MATERIALIZED (
  SELECT w.seq FROM w
  WHERE NOT EXISTS (SELECT 1 FROM deliveries d
                    WHERE d.event_seq = w.seq AND d.state != 'delivered')
    AND NOT (w.inboxed AND w.seq IN (SELECT event_seq FROM named))
), d AS MATERIALIZED (
  SELECT seq, event_seq FROM deliveries WHERE event_seq IN (SELECT seq FROM free)
), done AS MATERIALIZED (
  SELECT seq FROM deliveries
  WHERE event_seq IN (SELECT seq FROM free) AND state = 'delivered'
  FOR UPDATE SKIP LOCKED
), gone AS (
  DELETE FROM events AS e
  WHERE e.seq IN (SELECT seq FROM free)
    AND NOT EXISTS (SELECT 1 FROM d
                    WHERE d.event_seq = e.seq AND d.seq NOT IN (SELECT seq FROM done))
  RETURNING seq
), swept AS (
  DELETE FROM deliveries
  WHERE seq IN (SELECT seq FROM done)
    AND event_seq IN (SELECT seq FROM gone)
)
SELECT (SELECT count(*) FROM w), (SELECT max(seq) FROM w), (SELECT count(*) FROM gone);

-- name: backlog
-- Per destination and state, a walk of at most $1 entries of deliveries_by_destination:
-- how many (exact below $1), and the first and last seq of the state's deliveries (the
-- first one's created_at is the oldest: created_at grows with seq). A count that reaches
-- $1 is estimated by slices of [first, last] (backlog_slices, policy/counting.py), so a
-- scrape reads a bounded number of index entries however long a backlog grows. Every
-- ORDER BY names the index's whole key: ordered by seq alone, the planner walks the
-- primary key filtering rows (through the whole table for a state that has none).
WITH b AS MATERIALIZED (
  SELECT t.id, s.state, w.n,
    (SELECT d.seq FROM deliveries d WHERE d.destination_id = t.id AND d.state = s.state
     ORDER BY d.destination_id, d.state, d.seq LIMIT 1) AS first_seq,
    (SELECT d.seq FROM deliveries d WHERE d.destination_id = t.id AND d.state = s.state
     ORDER BY d.destination_id DESC, d.state DESC, d.seq DESC LIMIT 1) AS last_seq
  FROM destinations t
  CROSS JOIN (VALUES ('pending'), ('scheduled'), ('in_flight')) AS s (state)
  CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM (
      SELECT 1 FROM deliveries d
      WHERE d.destination_id = t.id AND d.state = s.state LIMIT $1) AS x) AS w
)
SELECT b.id, b.state, b.n, (SELECT o.created_at FROM deliveries o WHERE o.seq = b.first_seq),
       b.first_seq, b.last_seq
FROM b WHERE b.n > 0;

-- name: backlog_slices
-- The first $3 entries (in seq order) of a destination's deliveries in a state in each
-- [lo, hi) of seq: how many, and their lowest and highest seq.
SELECT r.lo, w.n, w.low, w.high
FROM unnest($4::bigint[], $5::bigint[]) AS r (lo, hi)
CROSS JOIN LATERAL (
  SELECT count(*) AS n, min(x.seq) AS low, max(x.seq) AS high FROM (
    SELECT d.seq FROM deliveries d
    WHERE d.destination_id = $1 AND d.state = $2 AND d.seq >= r.lo AND d.seq < r.hi
    ORDER BY d.destination_id, d.state, d.seq
    LIMIT $3) AS x) AS w
ORDER BY r.lo;

-- ---------------------------------------------------------------- uploads

-- name: save_upload
INSERT INTO uploads (id, report, created_at, updated_at) VALUES ($1, $2, $3, $3)
ON CONFLICT (id) DO UPDATE SET report = excluded.report, updated_at = excluded.updated_at;

-- name: get_upload
SELECT report FROM uploads WHERE id = $1;

-- ---------------------------------------------------------------- inboxes (issue 15)
-- name: inbox_after
SELECT i.pos, e.id, e.topic, e.payload, e.received_at
FROM inbox i JOIN events e ON e.seq = i.event_seq
WHERE i.user_id = $1 AND i.pos > $2 ORDER BY i.pos LIMIT $3;

-- name: inbox_user
SELECT top, acked FROM inbox_users WHERE user_id = $1;

-- name: inbox_user_for_update
SELECT top, acked FROM inbox_users WHERE user_id = $1 FOR UPDATE;

-- name: set_inbox_acked
UPDATE inbox_users SET acked = $2 WHERE user_id = $1;

-- name: mark_inbox_acked
UPDATE inbox SET acked_at = $4
WHERE user_id = $1 AND pos > $2 AND pos <= $3 AND acked_at IS NULL;

-- name: sweep_inbox_acked
-- SKIP LOCKED (both sweeps): a message an ingest group is trimming (a full inbox) is left
-- to it, so a sweep, deleting across users, never waits on a group or deadlocks with one.
-- The rows locked are deleted by their ctid (a TID scan: no join back to the table).
DELETE FROM inbox WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM inbox WHERE acked_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED));

-- name: sweep_inbox_aged
-- At most $3 messages of events received before $1, whose seqs are at most $2 (the last
-- one received before $1: received_at grows with seq), read through the index by
-- generation (the key by event is gone since migration 0010); each message's own event
-- is checked too (clocks of two nodes), looked up among the events up to $2 only.
DELETE FROM inbox WHERE ctid = ANY(ARRAY(
    SELECT i.ctid
    FROM inbox i JOIN events e ON e.seq = i.event_seq
    WHERE (i.event_seq >> 10) <= ($2::bigint >> 10) AND i.event_seq <= $2
      AND e.seq <= $2 AND e.received_at < $1
    LIMIT $3
    FOR UPDATE OF i SKIP LOCKED));

-- ---------------------------------------------------------------- pull groups (issue 16)
-- A group's deliveries walk the same lanes and states as any other; a consumer's lease
-- sets lease_owner to the lease call's token, and every later step is fenced by it.

-- name: lease_group_heads
-- Due lane heads of group $1, leased under token $4 until $5, with the events a consumer
-- handles. SKIP LOCKED: a head another consumer is leasing right now is left to it.
WITH due AS (
    SELECT seq FROM deliveries
    WHERE destination_id = $1 AND holds_lane = 1
      AND state IN ('pending', 'scheduled') AND next_attempt_at <= $2
    ORDER BY next_attempt_at LIMIT $3
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE deliveries d
    SET state = 'in_flight', attempts = d.attempts + 1, lease_owner = $4,
        lease_expires_at = $5, updated_at = $2
    FROM due WHERE d.seq = due.seq
    RETURNING d.id, d.attempts, d.event_seq, d.next_attempt_at
)
SELECT l.id, l.attempts, e.seq, e.id, e.topic, e.key, e.payload, e.received_at,
       e.causation_id, e.correlation_id
FROM leased l JOIN events e ON e.seq = l.event_seq
ORDER BY l.next_attempt_at;

-- name: lanes_of_deliveries
SELECT DISTINCT lane_key FROM deliveries WHERE id = ANY($1::text[]) AND destination_id = $2;

-- name: held_leases
-- The deliveries of group $2 among $1 in flight under a lease that has not expired.
SELECT id, lane_key, attempts, lease_owner, seq FROM deliveries
WHERE id = ANY($1::text[]) AND destination_id = $2
  AND state = 'in_flight' AND lease_expires_at > $3
ORDER BY seq FOR UPDATE;

-- name: expired_group_lanes
SELECT DISTINCT lane_key FROM (
    SELECT lane_key FROM deliveries
    WHERE state = 'in_flight' AND lease_expires_at <= $2 AND destination_id = $1
    ORDER BY lease_expires_at LIMIT $3) AS x;

-- name: expired_group_leases
SELECT id, lane_key, attempts, lease_owner, seq FROM deliveries
WHERE state = 'in_flight' AND lease_expires_at <= $2 AND destination_id = $1
ORDER BY lease_expires_at LIMIT $3
FOR UPDATE SKIP LOCKED;

-- name: extend_leases
UPDATE deliveries SET lease_expires_at = $2, updated_at = $3 WHERE seq = ANY($1::bigint[]);

-- name: deliveries_of_events
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM events e JOIN deliveries d ON d.event_seq = e.seq
WHERE e.id = ANY($1::text[])
ORDER BY e.seq, d.seq;

-- ---------------------------------------------------------------- dashboard (issue 17)

-- name: activity_tops
-- Both are the primary keys' last entries: no scan.
SELECT (SELECT max(seq) FROM events), (SELECT max(seq) FROM attempts);

-- name: events_after
SELECT count(*) FROM events WHERE seq > $1;

-- name: outcomes_after
SELECT outcome, count(*) FROM attempts WHERE seq > $1 GROUP BY outcome;

-- name: recent_attempts
-- The newest attempts by primary key, each joined to its delivery by primary key.
SELECT d.destination_id, a.outcome, a.latency_ms
FROM attempts a JOIN deliveries d ON d.seq = a.delivery_seq
ORDER BY a.seq DESC LIMIT $1;

-- name: count_deliveries
-- A range of deliveries_by_destination, stopped at the cap.
SELECT count(*) FROM (
  SELECT 1 FROM deliveries
  WHERE destination_id = $1 AND state = $2
    AND ($3::bigint IS NULL OR created_at >= $3)
    AND ($4::bigint IS NULL OR created_at < $4)
  LIMIT $5) AS capped;

-- name: list_uploads
-- Newest first: upload ids sort by creation time (the primary key's order).
SELECT report FROM uploads WHERE ($1::text IS NULL OR id < $1) ORDER BY id DESC LIMIT $2;
