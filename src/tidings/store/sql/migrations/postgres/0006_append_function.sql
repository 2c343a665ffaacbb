-- Tidings schema v6 (PostgreSQL): one ingest group in one round trip (issue 18).
-- The API gathers the ingest requests that arrive while its last group commits into one
-- call of this function, run as a statement of its own (autocommit): the call is the
-- transaction, so a request is answered once it returns, after the commit.
--
-- Each statement of a plpgsql function takes a fresh snapshot (READ COMMITTED), which is
-- what makes the order below safe: the lane locks are waited for first, and only then are
-- the lanes' heads looked at, so a transaction that held a lane and committed while we
-- waited is seen.
--   1. destination locks (shared) and lane locks (exclusive), each array sorted by the
--      caller, so that two groups never wait on each other in a cycle;
--   2. the destinations the caller routed with are still current (`routed_rev`), else
--      SQLSTATE TDRTE: the caller reloads them and calls again;
--   3. a sequence number per event, drawn after the lane locks, so that along a lane
--      seq follows commit order across processes; then a NOTICE, on which the caller
--      sends its next group (whose numbers must come after these);
--   4. the events; one whose idempotency key is stored (or was committed meanwhile by
--      another process: ON CONFLICT waits for it) is left out, with its deliveries;
--   5. the deliveries of the events written: a fifo delivery holds its lane when it is
--      the first of its lane in the call and the lane has no head; NOTIFY `channel`;
--   6. the answer: a row for each event left out as a duplicate (its position in the
--      call, 1-based, and the stored event's id, received_at and delivery count).
CREATE FUNCTION tidings_append(
    dest_locks bigint[], lane_locks bigint[], routed_rev text, channel text,
    stamp bigint, ids text[], topics text[], keys text[], payloads bytea[], idem text[],
    causations text[], correlations text[],
    d_ids text[], d_events int[], d_dests text[], d_keys text[], d_fifo smallint[]
) RETURNS TABLE (dup_n int, dup_id text, dup_received_at bigint, dup_deliveries bigint)
LANGUAGE plpgsql AS $$
DECLARE
    seqs bigint[];
    written bigint[];
    queued int;
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
        ON CONFLICT (idempotency_key) DO NOTHING
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
        GET DIAGNOSTICS queued = ROW_COUNT;
        IF queued > 0 THEN
            PERFORM pg_notify(channel, '');
        END IF;
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

-- The outcomes of one flush of the engine in one round trip (issue 18), for a flush with
-- no failed attempt (a failure may pause its destination: the caller writes those
-- statement by statement). Engine bookkeeping: committed without waiting for the WAL
-- flush (see PostgresStore._tx). Rows are locked in seq order, lanes in the caller's
-- (sorted) order, as everywhere else; an outcome applies only while its delivery is still
-- in flight under its owner (the lease fence), its attempt is recorded either way (unless
-- unsent: a claim given back). A destination with an outcome applied had a success, so
-- its run of failures ends (the streak goes back to 0). Answers the ids applied.
CREATE FUNCTION tidings_complete(
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
            WHERE NOT EXISTS (SELECT 1 FROM deliveries h
                              WHERE h.destination_id = l.destination_id
                                AND h.lane_key = l.lane_key AND h.holds_lane = 1
                                AND h.id NOT IN (SELECT id FROM moved)))
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
