-- How many events of a batch's streams wait in held_events: $1 topics, $2 stream ids.
SELECT count(*)
  FROM held_events h
  JOIN UNNEST($1::text[], $2::text[]) AS b(topic, stream_id) USING (topic, stream_id)
