-- The relay's checkpoint: the last outbox position, (txid, global_position), whose
-- event the broker acknowledged. Appended, never updated (the app role may insert
-- but not update); the relay reads the newest row and prunes older ones.
CREATE TABLE relay_checkpoints (
    id              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid            xid8        NOT NULL,
    global_position BIGINT      NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Pruning: the relay deletes published outbox rows after their retention and
-- superseded checkpoints. `sluice db setup` records the database's app role in
-- `sluice.app_role`; the grant names exactly that role and nothing else.
DO $$
DECLARE
    app_role TEXT := current_setting('sluice.app_role', true);
BEGIN
    IF app_role IS NULL OR app_role = '' THEN
        RAISE EXCEPTION 'sluice.app_role is not set for this database: run `sluice db setup` first';
    END IF;
    EXECUTE format('GRANT DELETE ON outbox, relay_checkpoints TO %I', app_role);
END
$$;
