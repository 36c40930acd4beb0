-- One more order placed by the customer $1, at $2 or earlier than their last.
UPDATE customers
   SET orders_placed = orders_placed + 1,
       last_order_at = GREATEST(last_order_at, $2)
 WHERE customer_id = $1
