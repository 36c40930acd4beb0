-- The last applied version of each stream of a batch: $1 topics, $2 stream ids.
SELECT p.topic, p.stream_id, p.version
  FROM stream_positions p
  JOIN UNNEST($1::text[], $2::text[]) AS b(topic, stream_id) USING (topic, stream_id)
