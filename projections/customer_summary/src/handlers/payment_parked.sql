-- A capture or refund of an order not seen yet, until its OrderPlaced folds it in.
INSERT INTO pending_payments
    (event_id, order_id, payment_id, kind, amount_minor, currency, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (event_id) DO NOTHING
