-- PaymentCaptured: $1 order_id, $2 payment_id, $3 amount_minor, $4 recorded_at.
-- Nothing is refunded yet. Returns no row when the row follows another payment.
INSERT INTO order_view AS v (order_id, payment_id, payment_status, captured_minor,
                             refunded_minor, captured_at, updated_at)
VALUES ($1, $2, 'captured', $3, 0, $4, $4)
ON CONFLICT (order_id) DO UPDATE
SET payment_id     = EXCLUDED.payment_id,
    payment_status = 'captured',
    captured_minor = EXCLUDED.captured_minor,
    refunded_minor = COALESCE(v.refunded_minor, 0),
    captured_at    = EXCLUDED.captured_at,
    updated_at     = GREATEST(v.updated_at, EXCLUDED.updated_at)
WHERE v.payment_id IS NULL OR v.payment_id = EXCLUDED.payment_id
RETURNING v.placed_at IS NOT NULL
