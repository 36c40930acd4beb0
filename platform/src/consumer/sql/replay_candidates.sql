-- Dead letters to replay: every unreplayed one, or those of $1. The first six
-- columns are a stored record (decode::stored_record), then the id.
SELECT topic, partition, kafka_offset, stream_id, headers, payload_bytes, id
  FROM dead_letters
 WHERE replayed_at IS NULL AND ($1::bigint[] IS NULL OR id = ANY($1))
 ORDER BY id
