-- Outbox writers announce themselves to the relay.
--
-- The relay publishes an outbox row only once every transaction that could still
-- commit a row before it has ended. Counting every transaction on the server (the
-- snapshot's xmin) made any long transaction anywhere, in another database too,
-- stall every relay. Instead, a transaction that writes events or outbox rows takes
-- a shared transaction-scoped advisory lock before its first such write, and so
-- before it has a transaction id; the relay's horizon is the oldest transaction id
-- among the holders of that lock (see `relay.rs`). Shared holders never wait for
-- one another, and nothing takes the lock exclusively.
--
-- The lock must be taken before the transaction id exists: a transaction that
-- already wrote something else (and so has an id) when it first appends could have
-- an id below a horizon the relay has already published past. That is refused
-- here, for every writer, hand-written SQL and restores included.
--
-- Lock key: (1936484707, 1), that is 'slic' as an int4 and the outbox's number.
CREATE FUNCTION outbox_writer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('sluice.outbox_writer', true) IS DISTINCT FROM 'on' THEN
        IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
            RAISE EXCEPTION 'events must be the first write of their transaction'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'This transaction already wrote before appending, so its id may be below the relay''s published horizon.',
                      HINT = 'Append first, then write the rest in the same transaction.';
        END IF;
        PERFORM pg_advisory_xact_lock_shared(1936484707, 1);
        PERFORM set_config('sluice.outbox_writer', 'on', true);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_outbox_writer BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_writer();
CREATE TRIGGER outbox_outbox_writer BEFORE INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_writer();
