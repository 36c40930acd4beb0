-- Appends a batch of events to one stream in a single statement.
--
-- The statement's snapshot reads the stream's current version before the INSERT
-- gives the transaction its id, so the version appended after was committed before
-- this writer took its transaction id (the per-stream order invariant of the relay).
-- Versions are the current version + 1, + 2, ...: gap-free by construction, and a
-- concurrent append of the same versions fails on the unique key. Every event gets
-- its outbox row in the same statement. When the expected version does not match,
-- nothing is inserted and the current version is returned for the conflict report;
-- likewise when the stream exists with another stream type (a stream keeps its type).
--
-- $1 event ids, $2 stream id, $3 stream type, $4 event types, $5 schema versions,
-- $6 payloads, $7 metadata, $8 expected version (NULL: any, 0: no stream, N: exact).
WITH head AS (
    SELECT stream_version, stream_type
      FROM events
     WHERE stream_id = $2
     ORDER BY stream_version DESC
     LIMIT 1
), stream AS (
    SELECT coalesce((SELECT stream_version FROM head), 0) AS version,
           (SELECT stream_type FROM head) AS stream_type
), inserted AS (
    INSERT INTO events (event_id, stream_id, stream_type, stream_version, event_type,
                        schema_version, payload, metadata)
    SELECT e.event_id, $2, $3, stream.version + e.ord, e.event_type, e.schema_version,
           e.payload, $7
      FROM stream,
           UNNEST($1::uuid[], $4::text[], $6::jsonb[], $5::int[])
               WITH ORDINALITY AS e(event_id, event_type, payload, schema_version, ord)
     WHERE ($8::bigint IS NULL OR stream.version = $8::bigint)
       AND (stream.stream_type IS NULL OR stream.stream_type = $3)
     ORDER BY e.ord
    RETURNING stream_version, global_position
), outbox_rows AS (
    -- The writer's transaction id comes from the column default.
    INSERT INTO outbox (global_position)
    SELECT global_position FROM inserted
)
SELECT stream.version AS current_version,
       stream.stream_type AS current_type,
       (SELECT max(stream_version) FROM inserted) AS new_version,
       (SELECT max(global_position) FROM inserted) AS last_position
  FROM stream
