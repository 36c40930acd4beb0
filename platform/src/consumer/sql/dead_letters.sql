-- Dead letters in the order they failed; only those not yet replayed unless $1.
SELECT id, topic, partition, kafka_offset, stream_id, event_type, error, attempts,
       first_failed_at, last_failed_at, replayed_at
  FROM dead_letters
 WHERE $1 OR replayed_at IS NULL
 ORDER BY id
