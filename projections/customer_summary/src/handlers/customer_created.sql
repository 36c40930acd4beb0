-- A customer's row, the first time one of their orders is placed.
INSERT INTO customers (customer_id, last_order_at) VALUES ($1, $2)
ON CONFLICT (customer_id) DO NOTHING
