-- The payments of order $1 parked while it was unknown, folded into the spend of
-- its customer $2, per currency.
WITH folded AS (
    DELETE FROM pending_payments WHERE order_id = $1
    RETURNING kind, amount_minor, currency)
INSERT INTO customer_spend (customer_id, currency, captured_minor, refunded_minor)
SELECT $2, currency,
       COALESCE(sum(amount_minor) FILTER (WHERE kind = 'captured'), 0)::bigint,
       COALESCE(sum(amount_minor) FILTER (WHERE kind = 'refunded'), 0)::bigint
  FROM folded
 GROUP BY currency
ON CONFLICT (customer_id, currency) DO UPDATE
SET captured_minor = customer_spend.captured_minor + EXCLUDED.captured_minor,
    refunded_minor = customer_spend.refunded_minor + EXCLUDED.refunded_minor
