-- ShipmentCreated, ShipmentDispatched, ShipmentDelivered, ShipmentCancelled:
-- $1 order_id, $2 shipment_id, $3 the status the shipment moves to (`created`,
-- `dispatched`, `delivered`, `cancelled`), $4 recorded_at, set in that status's
-- timestamp column (the others keep theirs), $5 carrier and $6 tracking_number
-- (ShipmentDispatched's; NULL for the others, which keep the row's).
-- Returns no row when the row follows another shipment.
INSERT INTO order_view AS v (order_id, shipment_id, shipment_status, carrier, tracking_number,
                             shipment_created_at, dispatched_at, delivered_at,
                             shipment_cancelled_at, updated_at)
VALUES ($1, $2, $3, $5, $6, CASE WHEN $3 = 'created' THEN $4 END, CASE WHEN $3 = 'dispatched' THEN $4 END, CASE WHEN $3 = 'delivered' THEN $4 END, CASE WHEN $3 = 'cancelled' THEN $4 END, $4)
ON CONFLICT (order_id) DO UPDATE
SET shipment_id           = EXCLUDED.shipment_id,
    shipment_status       = EXCLUDED.shipment_status,
    carrier               = COALESCE(EXCLUDED.carrier, v.carrier),
    tracking_number       = COALESCE(EXCLUDED.tracking_number, v.tracking_number),
    shipment_created_at   = COALESCE(EXCLUDED.shipment_created_at, v.shipment_created_at),
    dispatched_at         = COALESCE(EXCLUDED.dispatched_at, v.dispatched_at),
    delivered_at          = COALESCE(EXCLUDED.delivered_at, v.delivered_at),
    shipment_cancelled_at = COALESCE(EXCLUDED.shipment_cancelled_at, v.shipment_cancelled_at),
    updated_at            = GREATEST(v.updated_at, EXCLUDED.updated_at)
WHERE v.shipment_id IS NULL OR v.shipment_id = EXCLUDED.shipment_id
RETURNING v.placed_at IS NOT NULL
