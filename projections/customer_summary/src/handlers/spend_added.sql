-- A capture ($3) or a refund ($4) added to customer $1's spend in currency $2.
UPDATE customer_spend
   SET captured_minor = captured_minor + $3,
       refunded_minor = refunded_minor + $4
 WHERE customer_id = $1 AND currency = $2
