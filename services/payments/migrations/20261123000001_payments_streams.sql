-- The payments store holds only payment streams: an event of any other stream type is a bug
-- in the writer, and the database refuses it.
ALTER TABLE events ADD CONSTRAINT events_payments_stream_type CHECK (stream_type = 'payment');
