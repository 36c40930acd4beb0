-- PaymentVoided: $1 order_id, $2 payment_id, $3 recorded_at.
-- The authorization was released. Returns no row when the row follows another payment.
INSERT INTO order_view AS v (order_id, payment_id, payment_status, voided_at, updated_at)
VALUES ($1, $2, 'voided', $3, $3)
ON CONFLICT (order_id) DO UPDATE
SET payment_id     = EXCLUDED.payment_id,
    payment_status = 'voided',
    voided_at      = EXCLUDED.voided_at,
    updated_at     = GREATEST(v.updated_at, EXCLUDED.updated_at)
WHERE v.payment_id IS NULL OR v.payment_id = EXCLUDED.payment_id
RETURNING v.placed_at IS NOT NULL
