-- Events of parked streams. An event whose stream version is beyond the next one
-- (a gap: the version before it has not been applied) is held here, not applied and
-- not dead-lettered, and so is every later event of that stream, so that its order
-- holds. The consumer moves on with every other stream, and retries the held ones in
-- new transactions, with backoff, until the missing version has been applied (it may
-- arrive later, from another partition after a repartitioning, or re-published).
CREATE TABLE held_events (
    topic           TEXT        NOT NULL,
    stream_id       TEXT        NOT NULL,
    stream_version  BIGINT      NOT NULL CHECK (stream_version >= 1),
    partition       INTEGER     NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    headers         JSONB       NOT NULL,
    payload_bytes   BYTEA       NOT NULL,
    held_at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (topic, stream_id, stream_version)
);

DO $$
BEGIN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON held_events TO %I',
                   current_setting('sluice.app_role', true));
END
$$;
