-- A payment's currency, which its captures and refunds are counted in.
INSERT INTO payments (payment_id, currency) VALUES ($1, $2)
ON CONFLICT (payment_id) DO NOTHING
