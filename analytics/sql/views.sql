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
placed AS (
    SELECT order_id,
           arg_min(customer_id, recorded_at) AS customer_id,
           arg_min(currency, recorded_at)    AS currency,
           arg_min(total_minor, recorded_at) AS total_minor,
           arg_min(len(lines), recorded_at)  AS line_count,
           min(recorded_at)                  AS placed_at
      FROM order_placed WHERE recorded_at <= ts GROUP BY order_id
),
confirmed AS (
    SELECT order_id, min(recorded_at) AS confirmed_at
      FROM order_confirmed WHERE recorded_at <= ts GROUP BY order_id
),
cancelled AS (
    SELECT order_id, min(recorded_at) AS cancelled_at, arg_min(reason, recorded_at) AS cancel_reason
      FROM order_cancelled WHERE recorded_at <= ts GROUP BY order_id
),
authorized AS (
    SELECT order_id, min(recorded_at) AS authorized_at,
           CAST(sum(amount_minor) AS BIGINT) AS authorized_minor,
           arg_max(payment_id, recorded_at) AS payment_id
      FROM payment_authorized WHERE recorded_at <= ts GROUP BY order_id
),
declined AS (
    SELECT order_id, max(recorded_at) AS declined_at, arg_max(reason, recorded_at) AS decline_reason
      FROM payment_declined WHERE recorded_at <= ts GROUP BY order_id
),
voided AS (
    SELECT order_id, max(recorded_at) AS voided_at
      FROM payment_voided WHERE recorded_at <= ts GROUP BY order_id
),
captured AS (
    SELECT order_id, min(recorded_at) AS captured_at, CAST(sum(amount_minor) AS BIGINT) AS captured_minor
      FROM payment_captured WHERE recorded_at <= ts GROUP BY order_id
),
refunded AS (
    SELECT order_id, max(recorded_at) AS refunded_at, CAST(sum(amount_minor) AS BIGINT) AS refunded_minor
      FROM payment_refunded WHERE recorded_at <= ts GROUP BY order_id
),
created AS (
    SELECT order_id, min(recorded_at) AS shipment_created_at, arg_min(shipment_id, recorded_at) AS shipment_id
      FROM shipment_created WHERE recorded_at <= ts GROUP BY order_id
),
dispatched AS (
    SELECT order_id, min(recorded_at) AS shipped_at,
           arg_min(carrier, recorded_at) AS carrier,
           arg_min(tracking_number, recorded_at) AS tracking_number
      FROM shipment_dispatched WHERE recorded_at <= ts GROUP BY order_id
),
delivered AS (
    SELECT order_id, min(recorded_at) AS delivered_at
      FROM shipment_delivered WHERE recorded_at <= ts GROUP BY order_id
),
shipment_called_off AS (
    SELECT order_id, min(recorded_at) AS shipment_cancelled_at
      FROM shipment_cancelled WHERE recorded_at <= ts GROUP BY order_id
)
SELECT p.order_id,
       p.customer_id,
       p.currency,
       p.total_minor,
       p.line_count,
       p.placed_at,
       CASE WHEN cn.cancelled_at IS NOT NULL THEN 'cancelled'
            WHEN dl.delivered_at IS NOT NULL THEN 'delivered'
            WHEN ds.shipped_at   IS NOT NULL THEN 'shipped'
            WHEN cf.confirmed_at IS NOT NULL THEN 'confirmed'
            ELSE 'placed' END AS status,
       CASE WHEN coalesce(rf.refunded_minor, 0) > 0 AND rf.refunded_minor >= cp.captured_minor THEN 'refunded'
            WHEN coalesce(rf.refunded_minor, 0) > 0 THEN 'partially_refunded'
            WHEN cp.captured_at  IS NOT NULL THEN 'captured'
            WHEN vd.voided_at    IS NOT NULL THEN 'voided'
            WHEN au.authorized_at IS NOT NULL THEN 'authorized'
            WHEN dc.declined_at  IS NOT NULL THEN 'declined'
            ELSE 'none' END AS payment_status,
       au.payment_id,
       au.authorized_minor,
       coalesce(cp.captured_minor, 0) AS captured_minor,
       coalesce(rf.refunded_minor, 0) AS refunded_minor,
       au.authorized_at,
       dc.declined_at,
       dc.decline_reason,
       cp.captured_at,
       cf.confirmed_at,
       cn.cancelled_at,
       cn.cancel_reason,
       cr.shipment_id,
       cr.shipment_created_at,
       ds.carrier,
       ds.tracking_number,
       ds.shipped_at,
       dl.delivered_at,
       (epoch_us(au.authorized_at) - epoch_us(p.placed_at)) / 1e6 AS time_to_authorize_seconds,
       (epoch_us(cf.confirmed_at) - epoch_us(p.placed_at)) / 1e6 AS time_to_confirm_seconds,
       (epoch_us(ds.shipped_at) - epoch_us(p.placed_at)) / 1e6 AS time_to_ship_seconds,
       (epoch_us(dl.delivered_at) - epoch_us(p.placed_at)) / 1e6 AS time_to_deliver_seconds,
       vd.voided_at,
       sc.shipment_cancelled_at
  FROM placed p
  LEFT JOIN confirmed  cf USING (order_id)
  LEFT JOIN cancelled  cn USING (order_id)
  LEFT JOIN authorized au USING (order_id)
  LEFT JOIN declined   dc USING (order_id)
  LEFT JOIN captured   cp USING (order_id)
  LEFT JOIN refunded   rf USING (order_id)
  LEFT JOIN created    cr USING (order_id)
  LEFT JOIN dispatched ds USING (order_id)
  LEFT JOIN delivered  dl USING (order_id)
  LEFT JOIN voided     vd USING (order_id)
  LEFT JOIN shipment_called_off sc USING (order_id);

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
