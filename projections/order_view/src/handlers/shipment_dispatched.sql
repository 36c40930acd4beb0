-- ShipmentDispatched: $1 order_id, $2 shipment_id, $3 carrier, $4 tracking_number,
-- $5 recorded_at. Returns no row when the row follows another shipment.
INSERT INTO order_view AS v (order_id, shipment_id, shipment_status, carrier,
                             tracking_number, dispatched_at, updated_at)
VALUES ($1, $2, 'dispatched', $3, $4, $5, $5)
ON CONFLICT (order_id) DO UPDATE
SET shipment_id     = EXCLUDED.shipment_id,
    shipment_status = 'dispatched',
    carrier         = EXCLUDED.carrier,
    tracking_number = EXCLUDED.tracking_number,
    dispatched_at   = EXCLUDED.dispatched_at,
    updated_at      = GREATEST(v.updated_at, EXCLUDED.updated_at)
WHERE v.shipment_id IS NULL OR v.shipment_id = EXCLUDED.shipment_id
RETURNING v.placed_at IS NOT NULL
