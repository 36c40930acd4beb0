-- Held events due for another try, each stream in version order. The first six
-- columns are a stored record (decode::stored_record), then the version.
SELECT topic, partition, kafka_offset, stream_id, headers, payload_bytes, stream_version
  FROM held_events
 WHERE next_attempt_at <= clock_timestamp()
 ORDER BY topic, stream_id, stream_version
