-- The customer's spend row in a currency. Created apart from the sums: an upsert
-- would check the proposed row (a refund alone, refunded above captured) against
-- the table's CHECK before merging it.
INSERT INTO customer_spend (customer_id, currency) VALUES ($1, $2)
ON CONFLICT (customer_id, currency) DO NOTHING
