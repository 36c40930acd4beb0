-- OrderPlaced: $1 order_id, $2 customer_id, $3 currency, $4 lines, $5 total_minor,
-- $6 recorded_at. Fills the order's fields; a status that is already further along
-- stays (a status never steps back to `placed`).
INSERT INTO order_view AS v (order_id, customer_id, currency, lines, total_minor,
                             order_status, placed_at, updated_at)
VALUES ($1, $2, $3, $4, $5, 'placed', $6, $6)
ON CONFLICT (order_id) DO UPDATE
SET customer_id  = EXCLUDED.customer_id,
    currency     = EXCLUDED.currency,
    lines        = EXCLUDED.lines,
    total_minor  = EXCLUDED.total_minor,
    order_status = COALESCE(v.order_status, 'placed'),
    placed_at    = EXCLUDED.placed_at,
    updated_at   = GREATEST(v.updated_at, EXCLUDED.updated_at)
RETURNING v.placed_at IS NOT NULL
