-- A dead letter; the same record failing again counts the new attempts.
INSERT INTO dead_letters (topic, partition, kafka_offset, stream_id, event_id, event_type,
                          headers, payload_bytes, event, error, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (topic, partition, kafka_offset) DO UPDATE
SET error = EXCLUDED.error,
    attempts = dead_letters.attempts + EXCLUDED.attempts,
    last_failed_at = clock_timestamp()
