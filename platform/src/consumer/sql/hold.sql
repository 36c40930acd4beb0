-- An event parked behind a gap in its stream, until the versions before it are applied.
INSERT INTO held_events (topic, stream_id, stream_version, partition, kafka_offset,
                         headers, payload_bytes)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (topic, stream_id, stream_version) DO NOTHING
