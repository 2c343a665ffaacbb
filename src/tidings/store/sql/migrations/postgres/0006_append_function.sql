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
--      seq follows commit order across processes;
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
    d_ids text[], d_events int[], d_dests text[], d_fifo smallint[]
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
        FROM (SELECT u.id, seqs[u.ev] AS seq, u.dest, keys[u.ev] AS key, u.fifo, u.o,
                     row_number() OVER (PARTITION BY u.dest, keys[u.ev] ORDER BY u.o) AS nth
              FROM unnest(d_ids, d_events, d_dests, d_fifo)
                   WITH ORDINALITY AS u (id, ev, dest, fifo, o)
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
