-- The consumer runtime's state, in the consuming component's own database.

-- The next Kafka offset to read per topic and partition, committed in the same
-- transaction as the changes the events before it caused.
CREATE TABLE consumer_positions (
    topic       TEXT        NOT NULL,
    partition   INTEGER     NOT NULL CHECK (partition >= 0),
    next_offset BIGINT      NOT NULL CHECK (next_offset >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (topic, partition)
);

-- The last applied version of every stream: duplicates (at or below it) are dropped,
-- gaps (beyond the next) are held and retried.
CREATE TABLE stream_positions (
    topic     TEXT   NOT NULL,
    stream_id TEXT   NOT NULL,
    version   BIGINT NOT NULL CHECK (version >= 1),
    PRIMARY KEY (topic, stream_id)
);

-- Events a consumer could not apply, kept with their error until replayed.
CREATE TABLE dead_letters (
    id             BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic          TEXT        NOT NULL,
    partition      INTEGER     NOT NULL,
    kafka_offset   BIGINT      NOT NULL,
    stream_id      TEXT        NOT NULL,
    event_id       UUID,
    event_type     TEXT,
    headers        JSONB       NOT NULL,
    payload_bytes  BYTEA       NOT NULL,
    event          JSONB,
    error          TEXT        NOT NULL,
    attempts       INTEGER     NOT NULL CHECK (attempts >= 1),
    first_failed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    last_failed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    replayed_at    TIMESTAMPTZ,
    UNIQUE (topic, partition, kafka_offset)
);

-- A write service that runs a reactor keeps these tables in its own database, where
-- its app role may otherwise only read and insert: grant it what the runtime needs.
DO $$
DECLARE
    app_role TEXT := current_setting('sluice.app_role', true);
BEGIN
    IF app_role IS NULL OR app_role = '' THEN
        RAISE EXCEPTION 'sluice.app_role is not set for this database: run `sluice db setup` first';
    END IF;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON consumer_positions, stream_positions, dead_letters TO %I', app_role);
END
$$;
