-- OrderConfirmed: $1 order_id, $2 recorded_at.
INSERT INTO order_view AS v (order_id, order_status, confirmed_at, updated_at)
VALUES ($1, 'confirmed', $2, $2)
ON CONFLICT (order_id) DO UPDATE
SET order_status = 'confirmed',
    confirmed_at = EXCLUDED.confirmed_at,
    updated_at   = GREATEST(v.updated_at, EXCLUDED.updated_at)
RETURNING v.placed_at IS NOT NULL
