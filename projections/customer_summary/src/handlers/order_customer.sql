-- Whose order it is; nothing when the order was counted already.
INSERT INTO order_customers (order_id, customer_id) VALUES ($1, $2)
ON CONFLICT (order_id) DO NOTHING
