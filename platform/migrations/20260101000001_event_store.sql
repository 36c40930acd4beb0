-- The event store: an append-only log of events per stream, an outbox row per event
-- written in the same transaction, and idempotency keys for retried commands.
--
-- Invariants enforced here:
--   * events are never updated, deleted or truncated (triggers below, whoever runs
--     the statement; the app role is also granted only SELECT and INSERT);
--   * a stream version exists once per stream (the unique key), so concurrent
--     appends of one version are a conflict, never an overwrite.
-- Enforced by the single write path, `platform/src/store/append.sql` (see ADR 0003):
--   * versions are 1-based and gap-free per stream;
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

-- One outbox row per event. `txid` is the writer's transaction id. A relay publishes
-- rows whose txid is below its snapshot's xmin, in (txid, global_position) order:
-- every transaction below that horizon has ended, so no row can later appear behind
-- what was read. That order is final, so the relay keeps a checkpoint (the last
-- (txid, global_position) delivered) instead of updating rows; published rows are
-- pruned after a retention period. Rows are written by the append statement that
-- writes their events (no foreign key: its per-row check would cost appends
-- throughput, and the statement already guarantees the pairing).
CREATE TABLE outbox (
    txid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    global_position BIGINT      NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (txid, global_position)
);

COMMENT ON TABLE outbox IS 'Events awaiting publication to Kafka, in writer-transaction order.';

-- A command retried with the same idempotency key returns the first result.
-- `request_fingerprint` catches a key reused for a different command.
CREATE TABLE idempotency_keys (
    idempotency_key     TEXT        PRIMARY KEY CHECK (idempotency_key <> '' AND length(idempotency_key) <= 200),
    request_fingerprint TEXT        NOT NULL,
    stream_id           TEXT        NOT NULL,
    result              JSONB       NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
