-- ShipmentCreated, ShipmentDelivered, ShipmentCancelled: $1 order_id, $2 shipment_id,
-- $3 the status the shipment moves to (`created`, `delivered`, `cancelled`),
-- $4 recorded_at, set in that status's timestamp column (the others keep theirs).
-- Returns no row when the row follows another shipment.
INSERT INTO order_view AS v (order_id, shipment_id, shipment_status, shipment_created_at,
                             delivered_at, shipment_cancelled_at, updated_at)
VALUES ($1, $2, $3, CASE WHEN $3 = 'created' THEN $4 END, CASE WHEN $3 = 'delivered' THEN $4 END, CASE WHEN $3 = 'cancelled' THEN $4 END, $4)
ON CONFLICT (order_id) DO UPDATE
SET shipment_id           = EXCLUDED.shipment_id,
    shipment_status       = EXCLUDED.shipment_status,
    shipment_created_at   = COALESCE(EXCLUDED.shipment_created_at, v.shipment_created_at),
    delivered_at          = COALESCE(EXCLUDED.delivered_at, v.delivered_at),
    shipment_cancelled_at = COALESCE(EXCLUDED.shipment_cancelled_at, v.shipment_cancelled_at),
    updated_at            = GREATEST(v.updated_at, EXCLUDED.updated_at)
WHERE v.shipment_id IS NULL OR v.shipment_id = EXCLUDED.shipment_id
RETURNING v.placed_at IS NOT NULL
