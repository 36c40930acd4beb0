-- The event store: an append-only log of events per stream, an outbox row per event
-- written in the same transaction, and idempotency keys for retried commands.
--
-- Invariants enforced here, not only in Rust:
--   * events are never updated, deleted or truncated (trigger below; the app role is
--     also granted only SELECT and INSERT);
--   * stream versions are 1-based and gap-free per stream, and a stream keeps its type;
--   * every event has exactly one outbox row, written by the same statement.

CREATE TABLE events (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        UUID        NOT NULL UNIQUE,
    stream_id       TEXT        NOT NULL CHECK (stream_id <> '' AND length(stream_id) <= 200),
    stream_type     TEXT        NOT NULL CHECK (stream_type <> ''),
    stream_version  BIGINT      NOT NULL CHECK (stream_version >= 1),
    event_type      TEXT        NOT NULL CHECK (event_type <> ''),
    schema_version  INTEGER     NOT NULL CHECK (schema_version >= 1),
    payload         JSONB       NOT NULL,
    metadata        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

COMMENT ON TABLE events IS 'Append-only event log; the source of truth of this service.';

-- Versions are gap-free: version N may be written only when version N-1 of the same
-- stream (and of the same stream type) is visible. Together with the unique key this
-- makes concurrent appends of the same version a conflict, never a gap.
CREATE FUNCTION events_check_stream_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous_type TEXT;
BEGIN
    IF NEW.stream_version = 1 THEN
        RETURN NEW;
    END IF;
    SELECT stream_type INTO previous_type
      FROM events
     WHERE stream_id = NEW.stream_id AND stream_version = NEW.stream_version - 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream % has no version %: versions must be gap-free',
            NEW.stream_id, NEW.stream_version - 1
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF previous_type <> NEW.stream_type THEN
        RAISE EXCEPTION 'stream % has type %, not %', NEW.stream_id, previous_type, NEW.stream_type
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_stream_version
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_check_stream_version();

CREATE FUNCTION events_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % is not allowed on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_immutable_rows
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();

CREATE TRIGGER events_immutable_table
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

-- One outbox row per event. `txid` is the writer's transaction id: a relay publishes
-- rows whose txid is below its snapshot's xmin, in (txid, global_position) order,
-- which is commit-safe without a global writer lock.
CREATE TABLE outbox (
    global_position BIGINT      PRIMARY KEY REFERENCES events (global_position),
    txid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    published_at    TIMESTAMPTZ
);

CREATE INDEX outbox_unpublished ON outbox (txid, global_position) WHERE published_at IS NULL;

COMMENT ON TABLE outbox IS 'Events awaiting publication to Kafka, in writer-transaction order.';

-- Written by the same INSERT statement as the events (statement-level, so a
-- 100-event append costs one outbox insert, not a hundred).
CREATE FUNCTION events_to_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (global_position)
    SELECT global_position FROM new_events;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_outbox
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION events_to_outbox();

-- A command retried with the same idempotency key returns the first result.
-- `request_fingerprint` catches a key reused for a different command.
CREATE TABLE idempotency_keys (
    idempotency_key     TEXT        PRIMARY KEY CHECK (idempotency_key <> '' AND length(idempotency_key) <= 200),
    request_fingerprint TEXT        NOT NULL,
    stream_id           TEXT        NOT NULL,
    result              JSONB       NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
