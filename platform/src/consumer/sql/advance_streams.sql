-- Moves stream positions by compare-and-set: $1 topics, $2 stream ids, $3 the
-- versions they were read at (0: no position yet), $4 the versions they move to.
-- Returns how many moved; a stream moved on by another transaction since it was
-- read does not move (its UPDATE re-checks the version after waiting for the row,
-- its INSERT finds the key taken).
WITH b AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[])
        AS b(topic, stream_id, from_version, to_version)
),
updated AS (
    UPDATE stream_positions p SET version = b.to_version
      FROM b
     WHERE b.from_version > 0
       AND p.topic = b.topic AND p.stream_id = b.stream_id AND p.version = b.from_version
    RETURNING 1
),
inserted AS (
    INSERT INTO stream_positions (topic, stream_id, version)
    SELECT topic, stream_id, to_version FROM b WHERE from_version = 0
    ON CONFLICT (topic, stream_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted)
