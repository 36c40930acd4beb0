-- PaymentRefunded: $1 order_id, $2 payment_id, $3 amount_minor, $4 recorded_at.
-- Refunds add up (the consumer runtime applies each event once); the payment is
-- `refunded` once they reach the captured amount. `refunded_at` is the latest
-- refund's. Returns no row when the row follows another payment.
INSERT INTO order_view AS v (order_id, payment_id, payment_status, refunded_minor,
                             refunded_at, updated_at)
VALUES ($1, $2, 'partially_refunded', $3, $4, $4)
ON CONFLICT (order_id) DO UPDATE
SET payment_id     = EXCLUDED.payment_id,
    refunded_minor = COALESCE(v.refunded_minor, 0) + EXCLUDED.refunded_minor,
    payment_status = CASE
                         WHEN COALESCE(v.refunded_minor, 0) + EXCLUDED.refunded_minor
                              >= v.captured_minor THEN 'refunded'
                         ELSE 'partially_refunded'
                     END,
    refunded_at    = EXCLUDED.refunded_at,
    updated_at     = GREATEST(v.updated_at, EXCLUDED.updated_at)
WHERE v.payment_id IS NULL OR v.payment_id = EXCLUDED.payment_id
RETURNING v.placed_at IS NOT NULL
