-- OrderCancelled: $1 order_id, $2 reason, $3 recorded_at.
INSERT INTO order_view AS v (order_id, order_status, cancel_reason, cancelled_at, updated_at)
VALUES ($1, 'cancelled', $2, $3, $3)
ON CONFLICT (order_id) DO UPDATE
SET order_status  = 'cancelled',
    cancel_reason = EXCLUDED.cancel_reason,
    cancelled_at  = EXCLUDED.cancelled_at,
    updated_at    = GREATEST(v.updated_at, EXCLUDED.updated_at)
RETURNING v.placed_at IS NOT NULL
