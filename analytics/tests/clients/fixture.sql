-- What the client-driver checks read (analytics/tests/analyst.rs creates it in the
-- test warehouse): every type an analyst meets, a composite primary key, a view.
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE client_orders (
  id INTEGER NOT NULL, line INTEGER NOT NULL, amount DECIMAL(12,2), big HUGEINT,
  order_id UUID, placed_at TIMESTAMPTZ, took INTERVAL, tags VARCHAR[],
  address STRUCT(city VARCHAR, zip INTEGER), feeling mood, raw BLOB, paid BOOLEAN,
  weight DOUBLE, note VARCHAR, day DATE, PRIMARY KEY (id, line));
INSERT INTO client_orders VALUES
  (1, 1, 12.50, 170141183460469231731687303715884105727, '0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f70',
   TIMESTAMPTZ '2024-05-01 10:00:00+00', INTERVAL '1 day 2 hours 3 minutes', ['a', 'b'],
   {'city': 'Oslo', 'zip': 150}, 'happy', '\xDE\xAD\xBE\xEF'::BLOB, true, 1.5, 'née', DATE '2024-05-01'),
  (1, 2, -7.25, -5, '0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f71', TIMESTAMPTZ '2024-05-02 11:30:00.123456+00',
   INTERVAL '3 months', [], {'city': NULL, 'zip': 1}, 'sad', ''::BLOB, false, -0.5, '', DATE '1999-12-31'),
  (2, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE VIEW paid_client_orders AS SELECT id, line, amount FROM client_orders WHERE paid;
