-- The client_orders fixture in PostgreSQL's own types, for running the client
-- checks against PostgreSQL itself (SLUICE_CLIENT_CHECK_REFERENCE=postgres): what
-- each driver gives there is what the checks expect from the analyst endpoint.
-- HUGEINT is numeric, STRUCT is json, BLOB is bytea; the schema is `main`, as on
-- the endpoint. Run as a superuser on a scratch database, e.g.
--   createdb client_check && psql -d client_check -f analytics/tests/clients/postgres_reference.sql
CREATE SCHEMA main;
SET search_path = main;
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = main', current_database()); END $$;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE client_orders (
  id INTEGER NOT NULL, line INTEGER NOT NULL, amount DECIMAL(12,2), big NUMERIC,
  order_id UUID, placed_at TIMESTAMPTZ, took INTERVAL, tags VARCHAR[],
  address JSON, feeling mood, raw BYTEA, paid BOOLEAN,
  weight DOUBLE PRECISION, note VARCHAR, day DATE, PRIMARY KEY (id, line));
INSERT INTO client_orders VALUES
  (1, 1, 12.50, 170141183460469231731687303715884105727, '0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f70',
   TIMESTAMPTZ '2024-05-01 10:00:00+00', INTERVAL '1 day 2 hours 3 minutes', ARRAY['a', 'b'],
   '{"city": "Oslo", "zip": 150}', 'happy', '\xDEADBEEF'::BYTEA, true, 1.5, 'née', DATE '2024-05-01'),
  (1, 2, -7.25, -5, '0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f71', TIMESTAMPTZ '2024-05-02 11:30:00.123456+00',
   INTERVAL '3 months', ARRAY[]::VARCHAR[], '{"city": null, "zip": 1}', 'sad', ''::BYTEA, false, -0.5, '',
   DATE '1999-12-31'),
  (2, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE VIEW paid_client_orders AS SELECT id, line, amount FROM client_orders WHERE paid;
