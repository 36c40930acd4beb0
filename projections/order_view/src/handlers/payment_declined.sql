-- PaymentDeclined: $1 order_id, $2 payment_id, $3 currency, $4 reason, $5 recorded_at.
-- Returns no row when the row follows another payment.
INSERT INTO order_view AS v (order_id, payment_id, payment_status, payment_currency,
                             decline_reason, declined_at, updated_at)
VALUES ($1, $2, 'declined', $3, $4, $5, $5)
ON CONFLICT (order_id) DO UPDATE
SET payment_id       = EXCLUDED.payment_id,
    payment_status   = 'declined',
    payment_currency = EXCLUDED.payment_currency,
    decline_reason   = EXCLUDED.decline_reason,
    declined_at      = EXCLUDED.declined_at,
    updated_at       = GREATEST(v.updated_at, EXCLUDED.updated_at)
WHERE v.payment_id IS NULL OR v.payment_id = EXCLUDED.payment_id
RETURNING v.placed_at IS NOT NULL
