-- The orders this service has learned of from the orders topic: its reactor records
-- each one (`sluice_platform::saga::learn`) in the consumer's transaction, and the
-- API checks every command that names an order against it. No query reaches into
-- the orders service's database.
CREATE TABLE known_orders (
    order_id    UUID        PRIMARY KEY,
    currency    TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    total_minor BIGINT      NOT NULL CHECK (total_minor >= 0),
    stage       TEXT        NOT NULL CHECK (stage IN ('placed', 'confirmed', 'cancelled')),
    learned_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- The app role may otherwise only read and insert in a service's database; an
-- order's stage moves on.
DO $$
DECLARE
    app_role TEXT := current_setting('sluice.app_role', true);
BEGIN
    IF app_role IS NULL OR app_role = '' THEN
        RAISE EXCEPTION 'sluice.app_role is not set for this database: run `sluice db setup` first';
    END IF;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON known_orders TO %I', app_role);
END
$$;
