-- A held stream still missing a version: try again later, doubling up to a minute.
UPDATE held_events
   SET attempts = attempts + 1,
       next_attempt_at = clock_timestamp()
                         + make_interval(secs => least(60, power(2, least(attempts, 6))))
 WHERE topic = $1 AND stream_id = $2
