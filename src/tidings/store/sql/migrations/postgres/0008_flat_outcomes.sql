-- Tidings schema v8 (PostgreSQL): outcomes cost the same whatever the number of lanes
-- (issue 18 item 2).
--
-- 1. tidings_complete looks for a freed lane's other head with one index probe per lane.
--    Its NOT EXISTS was planned as an anti join whose inner side scanned every head of
--    deliveries_heads (no index condition: the planner took the partial index for a
--    row or two on a young table), for each freed lane: O(lanes freed x lanes) per flush,
--    ~0.35 ms per delivery written with 1,000 keys and 4 destinations at 500 events/s.
--    A scalar subquery is a subplan run per lane with both columns as its index
--    condition, whatever the statistics say (as tidings_append's own head probe).
-- 2. The engine's claim is a function too, tidings_claim (the statement claim_many was):
--    a prepared statement sent by asyncpg took a custom plan, planned again at every
--    execution, and so did the statements of tidings_complete: the planner was a fifth
--    of the backends' CPU at 500 events/s (perf). The two functions keep one generic
--    plan per statement per connection; every statement in them is written so that its
--    plan does not depend on the values (arrays bound with unnest, probes by index, LIMIT
--    per destination). tidings_append is left as it was: its batches of up to 1,000
--    events join their arrays to each other, which a hash join does best (forced
--    nested-loop generic plans cost batch ingest +22% of database CPU per event in
--    bench/pg_append.py).
-- 3. A generic plan outlives the statistics it was made with (until the next ANALYZE of
--    its tables), and one made on a young table (a fresh install, or autovacuum off)
--    joined deliveries and events by hash over sequential scans: fine for 10 rows, a
--    scan of the whole table per call once it has millions. So the two functions plan
--    without sequential scans, hash or merge joins: each of their statements is a few
--    rows from unnest probing indexes, the one shape that is right at every size.
CREATE OR REPLACE FUNCTION tidings_complete(
    lane_locks bigint[], channel text, stamp bigint,
    ids text[], owners text[], states text[], next_ats bigint[], holds smallint[],
    errors text[], unsent boolean[],
    a_at bigint[], a_outcome text[], a_status int[], a_latency float8[], a_error text[],
    a_body text[]
) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    applied text[];
    touched text[];
    promoted int;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM count(pg_advisory_xact_lock(k)) FROM unnest(lane_locks) AS k;
    PERFORM 1 FROM deliveries WHERE id = ANY(ids) ORDER BY seq FOR UPDATE;
    INSERT INTO attempts (delivery_seq, at, outcome, status_code, latency_ms, error,
                          response_body)
    SELECT d.seq, u.at, u.outcome, u.status, u.latency, u.error, u.body
    FROM unnest(ids, unsent, a_at, a_outcome, a_status, a_latency, a_error, a_body)
         WITH ORDINALITY AS u (id, unsent, at, outcome, status, latency, error, body, o)
    JOIN deliveries d ON d.id = u.id
    WHERE NOT u.unsent
    ORDER BY u.o;
    WITH moved AS (
        UPDATE deliveries d
        SET state = u.state, next_attempt_at = u.next_at, holds_lane = u.holds,
            lease_owner = NULL, lease_expires_at = NULL, last_error = u.error,
            updated_at = stamp,
            -- a claim given back unsent: the attempt its claim counted did not happen
            attempts = CASE WHEN u.unsent THEN greatest(d.attempts - 1, 0) ELSE d.attempts END
        FROM unnest(ids, owners, states, next_ats, holds, errors, unsent)
             AS u (id, owner, state, next_at, holds, error, unsent)
        WHERE d.id = u.id AND d.state = 'in_flight' AND d.lease_owner = u.owner
        RETURNING d.id, d.destination_id, d.lane_key, u.holds AS keeps
    ), freed AS (
        SELECT DISTINCT destination_id, lane_key FROM moved WHERE keeps = 0
    ), promote AS (
        -- each freed lane's earliest waiting delivery becomes its head, unless it has one
        -- (the rows `moved` just freed still hold it in this statement's snapshot: they
        -- are left out by name)
        UPDATE deliveries SET holds_lane = 1, next_attempt_at = stamp, updated_at = stamp
        WHERE seq IN (
            SELECT (SELECT w.seq FROM deliveries w
                    WHERE w.destination_id = l.destination_id AND w.lane_key = l.lane_key
                      AND w.holds_lane = 0 AND w.state = 'pending'
                    ORDER BY w.event_seq LIMIT 1)
            FROM freed l
            -- one index probe per lane (a scalar subquery is never a join)
            WHERE (SELECT 1 FROM deliveries h
                   WHERE h.destination_id = l.destination_id
                     AND h.lane_key = l.lane_key AND h.holds_lane = 1
                     AND h.id NOT IN (SELECT id FROM moved) LIMIT 1) IS NULL)
        RETURNING 1
    )
    SELECT (SELECT array_agg(id) FROM moved),
           (SELECT array_agg(DISTINCT destination_id) FROM moved),
           (SELECT count(*) FROM promote)
    INTO applied, touched, promoted;
    IF touched IS NOT NULL THEN
        PERFORM 1 FROM destinations
        WHERE id = ANY(touched) AND failure_streak <> 0 ORDER BY id FOR UPDATE;
        UPDATE destinations SET failure_streak = 0
        WHERE id = ANY(touched) AND failure_streak <> 0;
    END IF;
    IF promoted > 0 THEN
        PERFORM pg_notify(channel, '');
    END IF;
    RETURN QUERY SELECT unnest(applied);
END;
$$;

ALTER FUNCTION tidings_complete(
    bigint[], text, bigint, text[], text[], text[], bigint[], smallint[], text[], boolean[],
    bigint[], text[], int[], float8[], text[], text[]
)
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off
SET enable_mergejoin = off;

-- Due lane heads of every asked destination (ids, limits, lease expiries), leased to
-- `owner`, committed without waiting for the WAL flush (engine bookkeeping, see
-- PostgresStore._tx); SKIP LOCKED: a head another worker is claiming right now is left
-- to it. The last row (id NULL) carries the earliest due time of what is left
-- (`next_due`): the heads leased here are left out by name, as this statement's snapshot
-- still sees them due. The caller runs it in a transaction block: a claim whose answer
-- is lost with its connection is rolled back, not left leased.
CREATE FUNCTION tidings_claim(
    dest_ids text[], limits int[], expiries bigint[], stamp bigint, owner text
) RETURNS TABLE (id text, destination_id text, attempts int, lane_key text, event_id text,
                 topic text, payload bytea, received_at bigint, next_due bigint, at bigint,
                 seq bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH asks AS (
        SELECT * FROM unnest(dest_ids, limits, expiries) AS a (destination_id, lim, expires)
    ), due AS (
        SELECT h.seq, a.expires
        FROM asks a
        CROSS JOIN LATERAL (
            SELECT seq FROM deliveries
            WHERE destination_id = a.destination_id AND holds_lane = 1
              AND state IN ('pending', 'scheduled') AND next_attempt_at <= stamp
            ORDER BY next_attempt_at LIMIT a.lim
            FOR UPDATE SKIP LOCKED) AS h
    ), leased AS (
        UPDATE deliveries d
        SET state = 'in_flight', attempts = d.attempts + 1, lease_owner = owner,
            lease_expires_at = due.expires, updated_at = stamp
        FROM due WHERE d.seq = due.seq
        RETURNING d.seq, d.id, d.destination_id, d.attempts, d.lane_key, d.event_seq,
                  d.next_attempt_at
    ), later AS (
        SELECT min(n.due) AS due
        FROM asks a CROSS JOIN LATERAL (
            SELECT x.next_attempt_at AS due FROM deliveries x
            WHERE x.destination_id = a.destination_id AND x.holds_lane = 1
              AND x.state IN ('pending', 'scheduled') AND x.seq NOT IN (SELECT seq FROM due)
            ORDER BY x.next_attempt_at LIMIT 1) AS n
    )
    SELECT * FROM (
        SELECT l.id, l.destination_id, l.attempts, l.lane_key, e.id AS event_id, e.topic,
               e.payload, e.received_at, NULL::bigint AS next_due, l.next_attempt_at AS at,
               l.seq
        FROM leased l JOIN events e ON e.seq = l.event_seq
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, later.due, NULL, NULL
        FROM later
    ) AS answer
    ORDER BY at NULLS LAST, seq;
END;
$$;
