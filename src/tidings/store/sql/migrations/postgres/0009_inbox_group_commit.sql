-- Tidings schema v9 (PostgreSQL): events with recipients in the one-round-trip group
-- commit too (issue 15). Until v8 a batch that named recipients went statement by
-- statement (a dozen round trips, the inbox among them) and never shared a group.
--
-- tidings_append gains the events' recipients: per event its JSON (the events column),
-- and per inbox message (each distinct recipient of an event, in event order) the event's
-- position in the call and the user (its `channel`, unused since v7, is gone). After the
-- events and their deliveries, in the same call (so in the event's transaction):
--   7. the counters of the users with messages from the events written (duplicates left
--      out, as their deliveries are) are bumped by their count, in user order: the row
--      locks are taken in one order by every group (no deadlock) and held until commit,
--      so a user's offsets are 1, 2, 3... with no gap, never reused, and commit in offset
--      order. User u's n messages take top-n+1 .. top in the caller's order, which is
--      what policy.inbox.assign_offsets hands out from the tops answered. The caller
--      sends the users (sorted, in byte order) with their counts and, per message, how
--      many later ones of the call go to the same user; if some events turn out to be
--      duplicates here, those are counted again without them;
--   8. the messages, at those offsets;
--   9. a user whose inbox now holds more than inbox_max messages loses its oldest
--      (policy.inbox.trim_from; inbox_max 0: no bound).
-- The answer is one row: the duplicates (position in the call, 1-based, id, received_at,
-- delivery count), the users with new messages and their new tops, and the count of
-- messages the trim dropped.
--
-- A new signature next to the one of v7 (v8 left it as it was), which stays: processes
-- of the version before keep calling it during an upgrade (and keep writing recipients
-- statement by statement). Those lock
-- the counters in the database's collation order, these in byte order: where the two
-- differ (a collation other than C or C.UTF-8), a process of each version appending to
-- the same users at once may deadlock during the upgrade, and PostgreSQL fails one.
-- v7's signature is replaced in place by the same function, but for one line: it too
-- inserts its events in idempotency-key order, so that a v7 process and a v9 process
-- appending events with the same keys (a client retrying on another node during the
-- upgrade) take them in one order and never deadlock.
CREATE OR REPLACE FUNCTION tidings_append(
    dest_locks bigint[], lane_locks bigint[], routed_rev text, channel text,
    stamp bigint, ids text[], topics text[], keys text[], payloads bytea[], idem text[],
    causations text[], correlations text[],
    d_ids text[], d_events int[], d_dests text[], d_keys text[], d_fifo smallint[]
) RETURNS TABLE (dup_n int, dup_id text, dup_received_at bigint, dup_deliveries bigint)
LANGUAGE plpgsql AS $$
DECLARE
    seqs bigint[];
    written bigint[];
BEGIN
    PERFORM count(pg_advisory_xact_lock_shared(k)) FROM unnest(dest_locks) AS k;
    PERFORM count(pg_advisory_xact_lock(k)) FROM unnest(lane_locks) AS k;
    IF routed_rev IS DISTINCT FROM (SELECT value FROM meta WHERE key = 'destinations_rev') THEN
        RAISE EXCEPTION 'destinations changed' USING ERRCODE = 'TDRTE';
    END IF;
    seqs := ARRAY(SELECT nextval(pg_get_serial_sequence('events', 'seq'))
                  FROM generate_series(1, cardinality(ids)));
    -- the caller may send its next group now (notices reach it at once, mid-statement)
    RAISE NOTICE 'tidings: sequence drawn';
    WITH ins AS (
        INSERT INTO events AS e (seq, id, topic, key, payload, recipients, idempotency_key,
                                 causation_id, correlation_id, received_at)
        SELECT seqs[i.n], i.id, i.topic, i.key, i.payload, NULL, i.idem, i.causation,
               i.correlation, stamp
        FROM unnest(ids, topics, keys, payloads, idem, causations, correlations)
             WITH ORDINALITY AS i (id, topic, key, payload, idem, causation, correlation, n)
        ORDER BY i.idem COLLATE "C"  -- as the new signature's, below
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING e.seq
    )
    SELECT array_agg(ins.seq) INTO written FROM ins;
    IF cardinality(d_ids) > 0 AND written IS NOT NULL THEN
        INSERT INTO deliveries (id, event_seq, destination_id, lane_key, holds_lane, state,
                                next_attempt_at, created_at, updated_at)
        SELECT d.id, d.seq, d.dest, d.key,
               CASE WHEN d.fifo = 0 THEN 1
                    WHEN d.nth = 1
                         -- one index probe per lane (a scalar subquery is never a join)
                         AND (SELECT 1 FROM deliveries h
                              WHERE h.destination_id = d.dest AND h.lane_key = d.key
                                AND h.holds_lane = 1 LIMIT 1) IS NULL THEN 1
                    ELSE 0 END,
               'pending', stamp, stamp, stamp
        -- (each delivery carries its lane key: a subscript into a text[] walks the array)
        FROM (SELECT u.id, seqs[u.ev] AS seq, u.dest, u.key, u.fifo, u.o,
                     row_number() OVER (PARTITION BY u.dest, u.key ORDER BY u.o) AS nth
              FROM unnest(d_ids, d_events, d_dests, d_keys, d_fifo)
                   WITH ORDINALITY AS u (id, ev, dest, key, fifo, o)
              JOIN unnest(written) AS w (seq) ON w.seq = seqs[u.ev]) AS d
        ORDER BY d.o;  -- in the caller's order: their own seq follows their events
    END IF;
    IF cardinality(written) IS DISTINCT FROM cardinality(ids) THEN
        RETURN QUERY
        SELECT k.n::int, e.id, e.received_at,
               (SELECT count(*) FROM deliveries x WHERE x.event_seq = e.seq)
        FROM unnest(idem) WITH ORDINALITY AS k (idem, n)
        JOIN events e ON e.idempotency_key = k.idem
        WHERE e.seq <> seqs[k.n];
    END IF;
END;
$$;

CREATE FUNCTION tidings_append(
    dest_locks bigint[], lane_locks bigint[], routed_rev text, stamp bigint,
    ids text[], topics text[], keys text[], payloads bytea[], idem text[],
    causations text[], correlations text[], recips text[],
    d_ids text[], d_events int[], d_dests text[], d_keys text[], d_fifo smallint[],
    m_events int[], m_users text[], m_backs int[], u_users text[], u_counts bigint[],
    inbox_max bigint,
    OUT dup_n int[], OUT dup_id text[], OUT dup_received_at bigint[],
    OUT dup_deliveries bigint[], OUT users text[], OUT tops bigint[], OUT dropped bigint
)
LANGUAGE plpgsql AS $$
DECLARE
    seqs bigint[];
    written bigint[];
    cut_users text[];
    cuts bigint[];
    all_written boolean;
BEGIN
    PERFORM count(pg_advisory_xact_lock_shared(k)) FROM unnest(dest_locks) AS k;
    PERFORM count(pg_advisory_xact_lock(k)) FROM unnest(lane_locks) AS k;
    IF routed_rev IS DISTINCT FROM (SELECT value FROM meta WHERE key = 'destinations_rev') THEN
        RAISE EXCEPTION 'destinations changed' USING ERRCODE = 'TDRTE';
    END IF;
    seqs := ARRAY(SELECT nextval(pg_get_serial_sequence('events', 'seq'))
                  FROM generate_series(1, cardinality(ids)));
    -- the caller may send its next group now (notices reach it at once, mid-statement)
    RAISE NOTICE 'tidings: sequence drawn';
    WITH ins AS (
        INSERT INTO events AS e (seq, id, topic, key, payload, recipients, idempotency_key,
                                 causation_id, correlation_id, received_at)
        SELECT seqs[i.n], i.id, i.topic, i.key, i.payload, i.recips, i.idem, i.causation,
               i.correlation, stamp
        FROM unnest(ids, topics, keys, payloads, idem, causations, correlations, recips)
             WITH ORDINALITY AS i (id, topic, key, payload, idem, causation, correlation,
                                   recips, n)
        -- Keys in one order in every group: two groups sharing idempotency keys (a client
        -- retrying on another node) wait for each other on the first shared key only,
        -- never each on one the other holds (a deadlock PostgreSQL would fail one for).
        ORDER BY i.idem COLLATE "C"
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING e.seq
    )
    SELECT array_agg(ins.seq) INTO written FROM ins;
    IF cardinality(d_ids) > 0 AND written IS NOT NULL THEN
        INSERT INTO deliveries (id, event_seq, destination_id, lane_key, holds_lane, state,
                                next_attempt_at, created_at, updated_at)
        SELECT d.id, d.seq, d.dest, d.key,
               CASE WHEN d.fifo = 0 THEN 1
                    WHEN d.nth = 1
                         -- one index probe per lane (a scalar subquery is never a join)
                         AND (SELECT 1 FROM deliveries h
                              WHERE h.destination_id = d.dest AND h.lane_key = d.key
                                AND h.holds_lane = 1 LIMIT 1) IS NULL THEN 1
                    ELSE 0 END,
               'pending', stamp, stamp, stamp
        -- (each delivery carries its lane key: a subscript into a text[] walks the array)
        FROM (SELECT u.id, seqs[u.ev] AS seq, u.dest, u.key, u.fifo, u.o,
                     row_number() OVER (PARTITION BY u.dest, u.key ORDER BY u.o) AS nth
              FROM unnest(d_ids, d_events, d_dests, d_keys, d_fifo)
                   WITH ORDINALITY AS u (id, ev, dest, key, fifo, o)
              JOIN unnest(written) AS w (seq) ON w.seq = seqs[u.ev]) AS d
        ORDER BY d.o;  -- in the caller's order: their own seq follows their events
    END IF;
    dropped := 0;
    IF cardinality(m_users) > 0 AND written IS NOT NULL THEN
        all_written := cardinality(written) = cardinality(ids);
        WITH m AS MATERIALIZED (
            -- the messages of the events written: event seq, user, and how many later
            -- messages of this call the user gets (its offset is the new top minus that)
            SELECT seqs[u.ev] AS seq, u.user_id, u.back
            FROM unnest(m_events, m_users, m_backs) AS u (ev, user_id, back)
            WHERE all_written
            UNION ALL  -- duplicates left out: count again (rare, so not done by the caller)
            SELECT w.seq, w.user_id,
                   count(*) OVER (PARTITION BY w.user_id)
                   - row_number() OVER (PARTITION BY w.user_id ORDER BY w.o)
            FROM (SELECT seqs[u.ev] AS seq, u.user_id, u.o
                  FROM unnest(m_events, m_users) WITH ORDINALITY AS u (ev, user_id, o)
                  WHERE seqs[u.ev] IN (SELECT unnest(written))) AS w
            WHERE NOT all_written
        ), c AS (
            -- per user its count, in byte order ("C": the caller's sort order)
            SELECT u.user_id, u.n, u.o
            FROM unnest(u_users, u_counts) WITH ORDINALITY AS u (user_id, n, o)
            WHERE all_written
            UNION ALL
            SELECT g.user_id, g.n, row_number() OVER (ORDER BY g.user_id COLLATE "C")
            FROM (SELECT m.user_id, count(*) AS n FROM m GROUP BY m.user_id) AS g
            WHERE NOT all_written
        ), b AS (
            INSERT INTO inbox_users AS t (user_id, top)
            SELECT c.user_id, c.n FROM c ORDER BY c.o  -- the lock order
            ON CONFLICT (user_id) DO UPDATE SET top = t.top + excluded.top
            RETURNING t.user_id, t.top,
                      inbox_max > 0 AND t.top - t.kept_from + 1 > inbox_max AS over_max
        ), put AS (
            INSERT INTO inbox (event_seq, user_id, pos)
            SELECT m.seq, m.user_id, b.top - m.back
            FROM m JOIN b ON b.user_id = m.user_id
        )
        SELECT array_agg(b.user_id), array_agg(b.top),
               array_agg(b.user_id) FILTER (WHERE b.over_max),
               array_agg(b.top - inbox_max + 1) FILTER (WHERE b.over_max)
        INTO users, tops, cut_users, cuts
        FROM b;
        IF cut_users IS NOT NULL THEN  -- full inboxes drop their oldest messages
            DELETE FROM inbox i USING unnest(cut_users, cuts) AS x (user_id, cut)
            WHERE i.user_id = x.user_id AND i.pos < x.cut;
            GET DIAGNOSTICS dropped = ROW_COUNT;
            UPDATE inbox_users t SET kept_from = x.cut
            FROM unnest(cut_users, cuts) AS x (user_id, cut)
            WHERE t.user_id = x.user_id;
        END IF;
    END IF;
    IF cardinality(written) IS DISTINCT FROM cardinality(ids) THEN
        SELECT array_agg(k.n::int), array_agg(e.id), array_agg(e.received_at),
               array_agg((SELECT count(*) FROM deliveries x WHERE x.event_seq = e.seq))
        INTO dup_n, dup_id, dup_received_at, dup_deliveries
        FROM unnest(idem) WITH ORDINALITY AS k (idem, n)
        JOIN events e ON e.idempotency_key = k.idem
        WHERE e.seq <> seqs[k.n];
    END IF;
END;
$$;
