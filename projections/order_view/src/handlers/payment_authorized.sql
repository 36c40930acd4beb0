-- PaymentAuthorized: $1 order_id, $2 payment_id, $3 amount_minor, $4 currency,
-- $5 recorded_at. Starts following this payment when the row follows none, or one
-- that was declined (a retry after a decline): the earlier payment's fields are
-- cleared. Returns no row when the row follows another payment that was not declined.
INSERT INTO order_view AS v (order_id, payment_id, payment_status, payment_currency,
                             authorized_minor, authorized_at, updated_at)
VALUES ($1, $2, 'authorized', $4, $3, $5, $5)
ON CONFLICT (order_id) DO UPDATE
SET payment_id       = EXCLUDED.payment_id,
    payment_status   = 'authorized',
    payment_currency = EXCLUDED.payment_currency,
    authorized_minor = EXCLUDED.authorized_minor,
    authorized_at    = EXCLUDED.authorized_at,
    decline_reason   = NULL,
    declined_at      = NULL,
    captured_minor   = NULL,
    captured_at      = NULL,
    refunded_minor   = NULL,
    refunded_at      = NULL,
    updated_at       = GREATEST(v.updated_at, EXCLUDED.updated_at)
WHERE v.payment_id IS NULL OR v.payment_id = EXCLUDED.payment_id
   OR v.payment_status = 'declined'
RETURNING v.placed_at IS NOT NULL
