-- A partition's next offset, stored in the transaction that applied its records.
INSERT INTO consumer_positions (topic, partition, next_offset) VALUES ($1, $2, $3)
ON CONFLICT (topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, updated_at = clock_timestamp()
