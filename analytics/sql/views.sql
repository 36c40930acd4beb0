-- The saved cross-service views of the warehouse. Run by the sink at every start
-- (CREATE OR REPLACE), after every typed table exists, so they always compile even
-- before the first event arrives. Amounts are in minor units (cents), as in the
-- events; times are event times (`recorded_at`, UTC). The warehouse has no ICU
-- extension, so TIMESTAMPTZ arithmetic goes through `epoch_us` and days through a
-- cast to TIMESTAMP (UTC).

-- Each order's state as of `ts`, from the events recorded at or before it: one row
-- per order placed by then, with what payments and shipping did for it.
--   status:         placed → confirmed → shipped → delivered, or cancelled;
--   payment_status: none, authorized, declined, voided, captured,
--                   partially_refunded, refunded (over all payments of the order);
--   *_seconds:      from placement to each step.
-- Payments and shipments name their order in their payloads (`order_id`).
CREATE OR REPLACE MACRO order_state_as_of(ts) AS TABLE
WITH
-- Every event of an order up to `ts` in one stream of rows, tagged by kind (k), with
-- the few fields the state needs: one scan of each typed table and one grouping by
-- order, where a join per event type would build a hash table per type and probe
-- it once per order.
events AS (
    SELECT order_id, 1 AS k, recorded_at, customer_id AS txt, currency AS txt2,
           total_minor AS amount, len(lines) AS n, CAST(NULL AS UUID) AS ref
      FROM order_placed WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 2, recorded_at, NULL, NULL, NULL, NULL, NULL
      FROM order_confirmed WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 3, recorded_at, reason, NULL, NULL, NULL, NULL
      FROM order_cancelled WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 4, recorded_at, NULL, NULL, amount_minor, NULL, payment_id
      FROM payment_authorized WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 5, recorded_at, reason, NULL, NULL, NULL, NULL
      FROM payment_declined WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 6, recorded_at, NULL, NULL, NULL, NULL, NULL
      FROM payment_voided WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 7, recorded_at, NULL, NULL, amount_minor, NULL, NULL
      FROM payment_captured WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 8, recorded_at, NULL, NULL, amount_minor, NULL, NULL
      FROM payment_refunded WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 9, recorded_at, NULL, NULL, NULL, NULL, shipment_id
      FROM shipment_created WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 10, recorded_at, carrier, tracking_number, NULL, NULL, NULL
      FROM shipment_dispatched WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 11, recorded_at, NULL, NULL, NULL, NULL, NULL
      FROM shipment_delivered WHERE recorded_at <= ts
    UNION ALL SELECT order_id, 12, recorded_at, NULL, NULL, NULL, NULL, NULL
      FROM shipment_cancelled WHERE recorded_at <= ts
),
orders AS (
    SELECT order_id,
           -- placed (1): the first placement's fields
           arg_min(txt, recorded_at)    FILTER (WHERE k = 1)  AS customer_id,
           arg_min(txt2, recorded_at)   FILTER (WHERE k = 1)  AS currency,
           arg_min(amount, recorded_at) FILTER (WHERE k = 1)  AS total_minor,
           arg_min(n, recorded_at)      FILTER (WHERE k = 1)  AS line_count,
           min(recorded_at)             FILTER (WHERE k = 1)  AS placed_at,
           min(recorded_at)             FILTER (WHERE k = 2)  AS confirmed_at,
           min(recorded_at)             FILTER (WHERE k = 3)  AS cancelled_at,
           arg_min(txt, recorded_at)    FILTER (WHERE k = 3)  AS cancel_reason,
           -- authorized (4): over every payment of the order; the latest payment
           min(recorded_at)             FILTER (WHERE k = 4)  AS authorized_at,
           CAST(sum(amount)             FILTER (WHERE k = 4) AS BIGINT) AS authorized_minor,
           arg_max(ref, recorded_at)    FILTER (WHERE k = 4)  AS payment_id,
           max(recorded_at)             FILTER (WHERE k = 5)  AS declined_at,
           arg_max(txt, recorded_at)    FILTER (WHERE k = 5)  AS decline_reason,
           max(recorded_at)             FILTER (WHERE k = 6)  AS voided_at,
           min(recorded_at)             FILTER (WHERE k = 7)  AS captured_at,
           CAST(sum(amount)             FILTER (WHERE k = 7) AS BIGINT) AS captured_minor,
           CAST(sum(amount)             FILTER (WHERE k = 8) AS BIGINT) AS refunded_minor,
           min(recorded_at)             FILTER (WHERE k = 9)  AS shipment_created_at,
           arg_min(ref, recorded_at)    FILTER (WHERE k = 9)  AS shipment_id,
           min(recorded_at)             FILTER (WHERE k = 10) AS shipped_at,
           arg_min(txt, recorded_at)    FILTER (WHERE k = 10) AS carrier,
           arg_min(txt2, recorded_at)   FILTER (WHERE k = 10) AS tracking_number,
           min(recorded_at)             FILTER (WHERE k = 11) AS delivered_at,
           min(recorded_at)             FILTER (WHERE k = 12) AS shipment_cancelled_at
      FROM events GROUP BY order_id
)
SELECT order_id,
       customer_id,
       currency,
       total_minor,
       line_count,
       placed_at,
       CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled'
            WHEN delivered_at IS NOT NULL THEN 'delivered'
            WHEN shipped_at   IS NOT NULL THEN 'shipped'
            WHEN confirmed_at IS NOT NULL THEN 'confirmed'
            ELSE 'placed' END AS status,
       CASE WHEN coalesce(refunded_minor, 0) > 0 AND refunded_minor >= captured_minor THEN 'refunded'
            WHEN coalesce(refunded_minor, 0) > 0 THEN 'partially_refunded'
            WHEN captured_at   IS NOT NULL THEN 'captured'
            WHEN voided_at     IS NOT NULL THEN 'voided'
            WHEN authorized_at IS NOT NULL THEN 'authorized'
            WHEN declined_at   IS NOT NULL THEN 'declined'
            ELSE 'none' END AS payment_status,
       payment_id,
       authorized_minor,
       coalesce(captured_minor, 0) AS captured_minor,
       coalesce(refunded_minor, 0) AS refunded_minor,
       authorized_at,
       declined_at,
       decline_reason,
       captured_at,
       confirmed_at,
       cancelled_at,
       cancel_reason,
       shipment_id,
       shipment_created_at,
       carrier,
       tracking_number,
       shipped_at,
       delivered_at,
       (epoch_us(authorized_at) - epoch_us(placed_at)) / 1e6 AS time_to_authorize_seconds,
       (epoch_us(confirmed_at) - epoch_us(placed_at)) / 1e6 AS time_to_confirm_seconds,
       (epoch_us(shipped_at) - epoch_us(placed_at)) / 1e6 AS time_to_ship_seconds,
       (epoch_us(delivered_at) - epoch_us(placed_at)) / 1e6 AS time_to_deliver_seconds,
       voided_at,
       shipment_cancelled_at
  FROM orders
 -- Only orders placed by `ts`: payments and shipments of an order not placed (yet)
 -- do not make a row.
 WHERE placed_at IS NOT NULL;

-- One row per order, as of now: `order_state_as_of` over every event.
CREATE OR REPLACE VIEW order_facts AS
SELECT * FROM order_state_as_of(CAST('infinity' AS TIMESTAMPTZ));

-- Money taken per day (UTC) and currency: captures minus refunds, by the day each
-- happened. A payment's currency is the one it was authorized in (captures and
-- refunds carry none). Authorizations are not revenue: nothing is taken yet.
CREATE OR REPLACE VIEW daily_revenue AS
WITH currencies AS (
    SELECT payment_id, any_value(currency) AS currency FROM payment_authorized GROUP BY payment_id
),
movements AS (
    SELECT recorded_at, payment_id, amount_minor AS captured_minor, 0 AS refunded_minor,
           1 AS captures, 0 AS refunds
      FROM payment_captured
    UNION ALL
    SELECT recorded_at, payment_id, 0, amount_minor, 0, 1
      FROM payment_refunded
)
SELECT CAST(CAST(m.recorded_at AS TIMESTAMP) AS DATE)                           AS day,
       c.currency,
       CAST(sum(m.captured_minor) AS BIGINT)                   AS captured_minor,
       CAST(sum(m.refunded_minor) AS BIGINT)                   AS refunded_minor,
       CAST(sum(m.captured_minor) - sum(m.refunded_minor) AS BIGINT) AS net_minor,
       CAST(sum(m.captures) AS BIGINT)                         AS captures,
       CAST(sum(m.refunds) AS BIGINT)                          AS refunds
  FROM movements m LEFT JOIN currencies c USING (payment_id)
 GROUP BY ALL
 ORDER BY day, currency;

-- Orders through the saga per day of placement (UTC), and a total row (day NULL):
-- placed → paid (payment authorized) → shipped (dispatched) → delivered, with the
-- conversion from each step to the next. Captured and cancelled orders are counted
-- beside the funnel.
CREATE OR REPLACE VIEW fulfilment_funnel AS
SELECT CAST(CAST(placed_at AS TIMESTAMP) AS DATE)                      AS day,
       count(*)                                     AS placed,
       count(authorized_at)                         AS paid,
       count(shipped_at)                            AS shipped,
       count(delivered_at)                          AS delivered,
       count(captured_at)                           AS captured,
       count(cancelled_at)                          AS cancelled,
       count(authorized_at) / nullif(count(*), 0)             AS placed_to_paid,
       count(shipped_at)    / nullif(count(authorized_at), 0) AS paid_to_shipped,
       count(delivered_at)  / nullif(count(shipped_at), 0)    AS shipped_to_delivered,
       count(delivered_at)  / nullif(count(*), 0)             AS placed_to_delivered
  FROM order_facts
 GROUP BY ROLLUP (CAST(CAST(placed_at AS TIMESTAMP) AS DATE))
 ORDER BY day NULLS LAST;
