-- The orders store holds only order streams: an event of any other stream type is a bug
-- in the writer, and the database refuses it.
ALTER TABLE events ADD CONSTRAINT events_orders_stream_type CHECK (stream_type = 'order');
