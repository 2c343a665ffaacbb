-- Every SQL statement of the SQLite store. Parameters are named (:name).

-- name: get_meta
SELECT value FROM meta WHERE key = :key;

-- name: insert_meta_if_absent
INSERT INTO meta (key, value) VALUES (:key, :value) ON CONFLICT (key) DO NOTHING;

-- name: event_by_idempotency_key
SELECT e.id, e.received_at, (SELECT count(*) FROM deliveries d WHERE d.event_seq = e.seq)
FROM events e WHERE e.idempotency_key = :idempotency_key;

-- name: insert_event
INSERT INTO events (id, topic, key, payload, recipients, idempotency_key,
                    causation_id, correlation_id, received_at)
VALUES (:id, :topic, :key, :payload, :recipients, :idempotency_key,
        :causation_id, :correlation_id, :received_at);

-- name: insert_delivery
INSERT INTO deliveries (id, event_seq, destination_id, lane_key, state, next_attempt_at,
                        created_at, updated_at)
VALUES (:id, :event_seq, :destination_id, :lane_key, 'pending', :now, :now, :now);

-- name: max_received_at
SELECT received_at FROM events ORDER BY seq DESC LIMIT 1;

-- name: all_destinations
SELECT id, spec, secrets, state, created_at, updated_at FROM destinations ORDER BY seq;

-- name: insert_destination
INSERT INTO destinations (id, name, spec, secrets, state, created_at, updated_at)
VALUES (:id, :name, :spec, :secrets, :state, :now, :now);

-- name: destination_by_id
SELECT id, spec, secrets, state, created_at, updated_at FROM destinations WHERE id = :ref;

-- name: destination_by_name
SELECT id, spec, secrets, state, created_at, updated_at FROM destinations WHERE name = :ref;

-- name: list_destinations
SELECT seq, id, spec, secrets, state, created_at, updated_at FROM destinations
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

-- name: list_events
SELECT seq, id, topic, key, payload, recipients, idempotency_key, causation_id,
       correlation_id, received_at
FROM events
WHERE (:topic IS NULL OR topic = :topic)
  AND (:prefix IS NULL OR (topic >= :prefix AND topic < :prefix_end))
  AND (:cursor IS NULL OR seq < :cursor)
ORDER BY seq DESC LIMIT :limit;

-- name: get_delivery
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.id = :id;

-- name: list_deliveries
SELECT d.seq, d.id, e.id, d.destination_id, d.lane_key, d.state, d.attempts,
       d.next_attempt_at, d.last_error, d.created_at, d.updated_at
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE (:destination_id IS NULL OR d.destination_id = :destination_id)
  AND (:state IS NULL OR d.state = :state)
  AND (:event_id IS NULL OR e.id = :event_id)
  AND (:cursor IS NULL OR d.seq < :cursor)
ORDER BY d.seq DESC LIMIT :limit;
