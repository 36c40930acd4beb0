-- ShipmentCancelled: $1 order_id, $2 shipment_id, $3 recorded_at.
-- Returns no row when the row follows another shipment.
INSERT INTO order_view AS v (order_id, shipment_id, shipment_status, shipment_cancelled_at,
                             updated_at)
VALUES ($1, $2, 'cancelled', $3, $3)
ON CONFLICT (order_id) DO UPDATE
SET shipment_id           = EXCLUDED.shipment_id,
    shipment_status       = 'cancelled',
    shipment_cancelled_at = EXCLUDED.shipment_cancelled_at,
    updated_at            = GREATEST(v.updated_at, EXCLUDED.updated_at)
WHERE v.shipment_id IS NULL OR v.shipment_id = EXCLUDED.shipment_id
RETURNING v.placed_at IS NOT NULL
