-- Tidings schema v10 (PostgreSQL): inbox messages keyed by user alone (issue 15).
--
-- Until v9 each message went into two B-trees: the primary key (event_seq, user_id) and
-- the unique index (user_id, pos). A batch's 10,000 messages cost the backend ~37 ms of
-- CPU for the rows, of which ~12 ms was the key by event (rows come in user order, so
-- its entries landed all over the batch's range, each compared as text), though that
-- key is only read by the retention sweeps. Now:
--   * the primary key is (user_id, pos), what reads, acks and trims look up (and what
--     tidings_append inserts in order: its rows come grouped by user);
--   * events are found by generation: a B-tree on event_seq >> 10 (1,024 events a
--     generation). A batch's rows share one or two keys, so they go into the newest
--     few leaf pages (deduplicated) wherever their users are: ~3 ms a batch more than
--     no index by event, against ~6 for a B-tree on event_seq itself and ~12 for the
--     old key. The sweeps that read it (an event kept while a message names it, the
--     oldest messages aged out) ask for a range of generations and recheck event_seq.
--     (A BRIN index was cheaper still, but its summaries only ever widen: once vacuum
--     lets new messages into the pages of deleted ones, a sweep reads nearly the whole
--     table.)
--   * user ids of both inbox tables compare bytewise (COLLATE "C"): the order the caller
--     already sorts users in to lock their counters, and memcmp instead of strcoll on
--     every key comparison.
-- The indexes are rebuilt here, once, under the migration lock and an exclusive lock of
-- both tables (about a second for 1,000,000 messages here: ingest with recipients waits
-- meanwhile). Processes of the version before go on working after it, but their
-- retention sweeps, which looked messages up by (event_seq, user_id), now scan the
-- inbox: upgrade the workers soon after.
ALTER TABLE inbox DROP CONSTRAINT inbox_pkey;
DROP INDEX inbox_by_user;
ALTER TABLE inbox ALTER COLUMN user_id TYPE text COLLATE "C";
ALTER TABLE inbox_users ALTER COLUMN user_id TYPE text COLLATE "C";
ALTER TABLE inbox ADD PRIMARY KEY (user_id, pos);
CREATE INDEX inbox_by_event ON inbox ((event_seq >> 10));
-- Room on each counters page for the new version of its rows (an update is HOT, on its
-- own page, with no index entry): ~7% less backend CPU for a batch's 6,300 counter
-- upserts here. Pages written from now on; a VACUUM FULL applies it to the others.
ALTER TABLE inbox_users SET (fillfactor = 70);

-- tidings_append, a new signature (the one of v9 stays, for processes of the version
-- before during an upgrade). The inbox messages come per user: the users (sorted in byte
-- order, unique: the counters' lock order), each one's count, where its messages start
-- (0-based), and, per message in that order (user after user, each user's in event
-- order), its event (1-based position in the call) and its user (1-based, in u_users).
-- A user's k-th message takes the user's new top - n + k. The new tops are answered in
-- the users' order (no user ids come back), `users` only when duplicates changed them.
-- Until v9 the messages came as event, user id and how many later messages of the call
-- the same user gets, and were joined to the counters by user id: this sends 10,000
-- user ids fewer for a batch of 10,000 messages, and joins nothing.
CREATE FUNCTION tidings_append(
    dest_locks bigint[], lane_locks bigint[], routed_rev text, stamp bigint,
    ids text[], topics text[], keys text[], payloads bytea[], idem text[],
    causations text[], correlations text[], recips text[],
    d_ids text[], d_events int[], d_dests text[], d_keys text[], d_fifo smallint[],
    u_users text[], u_counts int[], u_starts int[], u_events int[], m_users int[],
    inbox_max bigint,
    OUT dup_n int[], OUT dup_id text[], OUT dup_received_at bigint[],
    OUT dup_deliveries bigint[], OUT users text[], OUT tops bigint[], OUT dropped bigint
)
-- Generic plans: a custom plan takes each array argument as a flat constant, and a
-- subscript into a flat text[] walks it from the start (u_users[e.ui] for 10,000
-- messages among 6,300 users: ~70 ms of the backend, measured), where a generic plan
-- reads the function's expanded arrays at O(1) a subscript; generic plans measured no
-- slower for the rest (bench/pg_append.py, batches and single events). No JIT: where
-- the planner misjudges a batch's rows (a generate_series per user it took for 1,000
-- rows each made 10,000 messages look like 200 million), it compiles (~280 ms, for a
-- statement that runs in ~30).
LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    seqs bigint[];
    written bigint[];
    cut_users text[];
    cuts bigint[];
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
    IF cardinality(u_users) > 0 AND written IS NOT NULL THEN
        IF cardinality(written) <> cardinality(ids) THEN
            -- Duplicates left out (rare): the messages of the events written, and the
            -- users, counts, starts, events and users' places again, without the
            -- others' (the users answered, as some may have no message left).
            WITH m AS MATERIALIZED (
                SELECT e.j, e.ev, e.ui
                FROM unnest(u_events, m_users) WITH ORDINALITY AS e (ev, ui, j)
                WHERE seqs[e.ev] IN (SELECT unnest(written))
            ), per AS (
                SELECT m.ui, count(*)::int AS n FROM m GROUP BY m.ui
            ), x AS MATERIALIZED (
                SELECT per.ui, per.n, row_number() OVER (ORDER BY per.ui)::int AS nu,
                       (sum(per.n) OVER (ORDER BY per.ui) - per.n)::int AS s
                FROM per
            )
            SELECT array_agg(u_users[x.ui] ORDER BY x.ui), array_agg(x.n ORDER BY x.ui),
                   array_agg(x.s ORDER BY x.ui),
                   (SELECT array_agg(m.ev ORDER BY m.j) FROM m),
                   (SELECT array_agg(y.nu ORDER BY m.j) FROM m JOIN x AS y ON y.ui = m.ui)
            INTO u_users, u_counts, u_starts, u_events, m_users
            FROM x;
            users := coalesce(u_users, '{}');
        END IF;
    END IF;
    IF cardinality(u_users) > 0 AND written IS NOT NULL THEN
        WITH b AS (
            INSERT INTO inbox_users AS t (user_id, top)
            SELECT u.user_id, u.n FROM unnest(u_users, u_counts) WITH ORDINALITY AS u (user_id, n, o)
            ORDER BY u.o  -- the lock order
            ON CONFLICT (user_id) DO UPDATE SET top = t.top + excluded.top
            RETURNING t.user_id, t.top,
                      inbox_max > 0 AND t.top - t.kept_from + 1 > inbox_max AS over_max
        )
        -- the tops in the users' order: u_users is sorted as "C" sorts, one row a user
        SELECT array_agg(b.top ORDER BY b.user_id COLLATE "C"),
               array_agg(b.user_id) FILTER (WHERE b.over_max),
               array_agg(b.top - inbox_max + 1) FILTER (WHERE b.over_max)
        INTO tops, cut_users, cuts
        FROM b;
        -- Grouped by user: the rows come in the order of the primary key (user_id, pos).
        -- Message j (of user i) is the user's (j - u_starts[i])-th. Subscripts, not a
        -- generate_series per user: half the backend's CPU for these rows' values.
        INSERT INTO inbox (event_seq, user_id, pos)
        SELECT seqs[e.ev], u_users[e.ui], tops[e.ui] - u_counts[e.ui] + e.j - u_starts[e.ui]
        FROM unnest(u_events, m_users) WITH ORDINALITY AS e (ev, ui, j);
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
