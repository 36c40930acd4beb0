-- The sink's own tables, created at start when missing. Typed tables (one per event
-- type) are created from the Avro schemas by the sink itself.

-- Every record of every `*.events` topic, decodable or not. An event the relay
-- delivered twice is stored once: the sink drops re-deliveries before it appends
-- (by stream version, see the loader), so no index has to grow with the table.
CREATE TABLE IF NOT EXISTS raw_events (
    event_id        UUID NOT NULL,
    event_type      VARCHAR,
    schema_version  INTEGER,
    stream_type     VARCHAR,
    stream_id       VARCHAR NOT NULL,
    stream_version  BIGINT,
    global_position BIGINT,
    recorded_at     TIMESTAMPTZ,
    correlation_id  UUID,
    causation_id    UUID,
    traceparent     VARCHAR,
    actor           VARCHAR,
    -- The payload in the event store's JSON shape; NULL when it did not decode.
    payload         JSON,
    -- The Avro single-object encoding, kept when the payload did not decode.
    payload_avro    BLOB,
    -- Why the record (or part of its envelope) could not be read.
    decode_error    VARCHAR,
    topic           VARCHAR NOT NULL,
    partition       INTEGER NOT NULL,
    kafka_offset    BIGINT NOT NULL,
    loaded_at       TIMESTAMPTZ NOT NULL,
    CHECK (payload IS NOT NULL OR payload_avro IS NOT NULL)
);

-- Where the sink resumes: the next offset to read per partition. Written in the
-- same transaction as the rows it covers.
CREATE TABLE IF NOT EXISTS sluice_positions (
    topic       VARCHAR NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset BIGINT  NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (topic, partition)
);

-- How fresh the warehouse is, per partition: the last loaded offset, the newest
-- event time loaded, and how far behind that event time the load was.
CREATE TABLE IF NOT EXISTS sluice_watermarks (
    topic             VARCHAR NOT NULL,
    partition         INTEGER NOT NULL,
    loaded_offset     BIGINT  NOT NULL,
    newest_event_time TIMESTAMPTZ,
    lag_seconds       DOUBLE,
    updated_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic, partition)
);
