-- One more confirmed order for the customer of order $1.
UPDATE customers c
   SET orders_confirmed = c.orders_confirmed + 1
  FROM order_customers o
 WHERE o.order_id = $1 AND c.customer_id = o.customer_id
