-- Tidings schema v7 (PostgreSQL): less work per ingested event, and commits that overlap
-- (issue 18). Measured on the batch path (backend CPU per event with 2 deliveries, the
-- figures in docs/benchmarks.md): each step below takes part of the ~55 us.
--
-- 1. No foreign keys on deliveries. Each delivery row checked two (its event, its
--    destination), and the destination check key-share-locked the same destination row
--    from every concurrent ingest transaction (a multixact per group). What they
--    guarded is kept by the store instead: a delivery is only ever written with its
--    event, in the same transaction; retention deletes an event's deliveries in the
--    statement that deletes the event; deleting a destination deletes its deliveries,
--    under the destination's exclusive lock, which every ingest takes shared (for every
--    destination it routes to) before it checks the destinations are current.
ALTER TABLE deliveries
    DROP CONSTRAINT deliveries_event_seq_fkey,
    DROP CONSTRAINT deliveries_destination_id_fkey;

-- 2. The idempotency key's unique index holds only the events that have one (most have
--    none, and a NULL was an index entry of its own).
CREATE UNIQUE INDEX events_by_idempotency_key ON events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
ALTER TABLE events DROP CONSTRAINT events_idempotency_key_key;

-- 3. No index on (state, seq): the listing by state across destinations reads a range of
--    deliveries_by_destination per destination instead (as on SQLite). It was one more
--    entry per delivery written, and again at each change of state.
DROP INDEX deliveries_by_state;

-- 4. tidings_append without its NOTIFY. A transaction that notifies takes a lock on the
--    whole database at commit and keeps it until its WAL flush is done, so two groups in
--    flight could not commit together: each waited for the flush of the one before. The
--    caller now sends the wake-up itself once the group has committed, in a statement
--    that does not wait for the disk (a wake-up lost in a crash is made up by the
--    engine's poll). `channel` stays in the signature, unused, so that processes of the
--    version before keep calling it during an upgrade (their workers then wake by poll).
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
