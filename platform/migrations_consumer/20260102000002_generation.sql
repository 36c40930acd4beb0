-- Which generation of the read model this schema holds. `sluice projection rebuild`
-- builds a new generation in a schema beside the live one and swaps the two: it
-- marks this row retired under FOR UPDATE, then renames the schemas, all in one
-- transaction. A consumer reads the row FOR SHARE at the start of every batch: a
-- retired row or another generation id means its positions now live elsewhere, and
-- it resumes from the new generation's positions instead of writing on.
CREATE TABLE consumer_generation (
    singleton  BOOLEAN     PRIMARY KEY DEFAULT true CHECK (singleton),
    generation UUID        NOT NULL DEFAULT gen_random_uuid(),
    retired    BOOLEAN     NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO consumer_generation DEFAULT VALUES;

-- Row locks (FOR SHARE) need UPDATE; write services' app roles lack it by default.
DO $$
BEGIN
    EXECUTE format('GRANT SELECT, UPDATE ON consumer_generation TO %I',
                   current_setting('sluice.app_role', true));
END
$$;
