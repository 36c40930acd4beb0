//! The relay's publishing loop: fetch the outbox in commit order up to the horizon,
//! send it to the topic keyed by stream, settle each chunk's acknowledgements, and
//! move the checkpoint.

use super::lease::fenced;
use super::outbox::{headers, outbox_event, save_checkpoint, save_pending};
use super::*;

impl Relay {
    /// Publishes until `shutdown`, reading batches and writing checkpoints on the
    /// `lock` session (the fence). See *Delivery* in the module docs.
    pub(super) async fn publish_loop(
        &self,
        lock: &mut PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        tracing::info!(topic = %self.topic, "relay active");
        if !self.wait_until_store_holds_topic_tail(shutdown).await? {
            return Ok(());
        }
        let window = self.config.batch_size.max(1) as usize;
        let chunk_size = window.div_ceil(CHUNKS_PER_WINDOW);
        let mut checkpoint = self.load_checkpoint().await?;
        // The last row read: reading goes on after it while earlier rows are in
        // flight.
        let mut read_to = checkpoint;
        // Read, not yet enqueued, in outbox order.
        let mut unsent: VecDeque<OutboxEvent> = VecDeque::new();
        // Enqueued, oldest first; their events are all before `unsent`'s.
        let mut in_flight: VecDeque<Chunk> = VecDeque::new();
        let mut last_prune = Instant::now();
        let mut blocked_since: Option<Instant> = None;
        let mut last_backlog: Option<Instant> = None;
        let mut backoff = Duration::from_millis(100);
        // The last batch read was full: the relay is catching up, and reads the
        // next batch while the oldest chunk's acknowledgements come in. Live, with
        // partial batches, it reads only when nothing is left to send, so a row
        // committed during a delivery is read right after it, not a round later.
        let mut catching_up = false;
        // An acknowledged chunk whose checkpoint is not written yet: it is written
        // while the next chunk's acknowledgements are awaited, and its events count
        // in the window until then.
        let mut pending: Option<(Checkpoint, usize)> = None;
        let timings = &*self.timings;
        while !shutdown.is_cancelled() {
            let flying: usize = in_flight.iter().map(|c| c.events.len()).sum::<usize>()
                + pending.map_or(0, |(_, n)| n);
            let halted = in_flight.iter().any(|c| c.refused.is_some());
            // Read when the window has room and nothing read waits to be sent.
            if unsent.is_empty() && flying < window && !halted {
                save_pending(lock, &mut pending, &timings.checkpoint).await?;
                let started = Instant::now();
                let batch = self.fetch(lock, read_to).await.map_err(fenced)?;
                RelayTimings::add(&timings.read, started);
                if let Some(last) = batch.last() {
                    read_to = last.checkpoint;
                }
                catching_up = batch.len() as i64 >= self.config.batch_size;
                let idle = batch.is_empty() && in_flight.is_empty();
                self.maybe_report_backlog(checkpoint, idle, &mut blocked_since, &mut last_backlog)
                    .await?;
                if idle {
                    let started = Instant::now();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(self.config.idle_interval) => {}
                    }
                    RelayTimings::add(&timings.idle, started);
                    continue;
                }
                unsent.extend(batch);
            }
            // Enqueue while the window has room, up to a refusal.
            let mut flying: usize = in_flight.iter().map(|c| c.events.len()).sum::<usize>()
                + pending.map_or(0, |(_, n)| n);
            let mut halted = halted;
            let started = Instant::now();
            while !unsent.is_empty() && flying < window && !halted {
                let take = chunk_size.min(window - flying).min(unsent.len());
                let chunk = self.send(unsent.drain(..take).collect()).await?;
                flying += chunk.events.len();
                halted = chunk.refused.is_some();
                in_flight.push_back(chunk);
            }
            RelayTimings::add(&timings.encode_enqueue, started);
            // Settle the oldest chunk: checkpoint it, or re-send from its first
            // undelivered record on. Meanwhile the chunk settled before it is
            // checkpointed and, while catching up, the next batch is read; it goes
            // after everything read before it, re-sends too.
            let Some(oldest) = in_flight.pop_front() else {
                continue;
            };
            let last = oldest.events.last().map(|e| e.checkpoint);
            let read_ahead = catching_up && unsent.is_empty() && !halted;
            let started = Instant::now();
            let write = pending.take();
            let (settled, session) = tokio::join!(oldest.settle(), async {
                if let Some((at, _)) = write {
                    let started = Instant::now();
                    save_checkpoint(lock, at).await?;
                    RelayTimings::add(&timings.overlapped_checkpoints, started);
                }
                if !read_ahead {
                    return Ok::<_, RelayError>(None);
                }
                let started = Instant::now();
                let batch = self.fetch(lock, read_to).await?;
                RelayTimings::add(&timings.overlapped_reads, started);
                Ok(Some(batch))
            });
            RelayTimings::add(&timings.await_acks, started);
            if let Some(batch) = session.map_err(fenced)? {
                if let Some(last) = batch.last() {
                    read_to = last.checkpoint;
                }
                catching_up = batch.len() as i64 >= self.config.batch_size;
                unsent.extend(batch);
            }
            match settled {
                Ok(chunk) => {
                    backoff = Duration::from_millis(100);
                    crate::telemetry::relay_batch(&self.service, chunk.len, chunk.started);
                    if let Some(last) = last {
                        checkpoint = last;
                        pending = Some((last, chunk.len));
                        tracing::debug!(
                            events = chunk.len,
                            txid = last.txid,
                            global_position = last.global_position,
                            "published"
                        );
                    }
                    // With nothing else in flight there is no wait to write it in.
                    if in_flight.is_empty() {
                        save_pending(lock, &mut pending, &timings.checkpoint).await?;
                    }
                }
                Err(failed) => {
                    // Whatever else is in flight may land or not: wait for it, then
                    // send again from the failure on, in order.
                    let mut resend: Vec<OutboxEvent> = failed.rest;
                    for later in in_flight.drain(..) {
                        resend.extend(later.drain().await);
                    }
                    let first = &resend[0];
                    tracing::warn!(
                        undelivered = resend.len(),
                        backoff_ms = backoff.as_millis() as u64,
                        error = %failed.error,
                        event_id = %first.event_id,
                        stream_id = first.stream_id,
                        global_position = first.checkpoint.global_position,
                        record_bytes = failed.record_bytes,
                        "broker did not acknowledge; retrying"
                    );
                    crate::telemetry::relay_retry(&self.service);
                    for event in resend.into_iter().rev() {
                        unsent.push_front(event);
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            if read_ahead {
                // The sequential read above counts the backlog; while catching up
                // it does not run, so the gauges are kept fresh here.
                self.maybe_report_backlog(checkpoint, false, &mut blocked_since, &mut last_backlog)
                    .await?;
            }
            if last_prune.elapsed() >= self.config.prune_interval {
                self.prune(checkpoint).await?;
                last_prune = Instant::now();
            }
        }
        // An acknowledged chunk is checkpointed on the way out; what is in flight
        // and unacknowledged is not: it goes out again on the next start.
        save_pending(lock, &mut pending, &timings.checkpoint).await?;
        self.producer.flush(Duration::from_secs(10))?;
        Ok(())
    }

    /// The next batch after `checkpoint`, below the outbox writers' horizon, read on
    /// the lock session: the horizon in one statement, the batch in the next (its
    /// snapshot must be newer than the lock holders read by the first).
    pub(super) async fn fetch(
        &self,
        lock: &mut PgConnection,
        checkpoint: Checkpoint,
    ) -> Result<Vec<OutboxEvent>, RelayError> {
        let horizon: String = sqlx::query_scalar(WRITERS_HORIZON)
            .fetch_one(&mut *lock)
            .await?;
        let rows = sqlx::query(
            "SELECT o.txid::text AS txid, o.global_position, e.event_id, e.stream_id, e.stream_type, \
                    e.stream_version, e.event_type, e.schema_version, e.payload, e.metadata, e.recorded_at \
               FROM outbox o JOIN events e ON e.global_position = o.global_position \
              WHERE (o.txid, o.global_position) > ($1::text::xid8, $2) \
                AND o.txid < $4::text::xid8 \
              ORDER BY o.txid, o.global_position \
              LIMIT $3",
        )
        .bind(checkpoint.txid.to_string())
        .bind(checkpoint.global_position)
        .bind(self.config.batch_size)
        .bind(horizon)
        .fetch_all(&mut *lock)
        .await?;
        rows.iter().map(outbox_event).collect()
    }

    /// Encodes and enqueues `events` in order, up to the first record the producer
    /// refuses outright (one over its size limit, say): none after it goes out
    /// ahead of it, so a refusal never reorders a stream.
    pub(super) async fn send(&self, events: Vec<OutboxEvent>) -> Result<Chunk, RelayError> {
        let started = Instant::now();
        let mut deliveries = Vec::with_capacity(events.len());
        let mut refused = None;
        let spans = crate::trace::HopSpans::open(
            "publish",
            &self.service,
            events.iter().map(|e| {
                e.metadata
                    .get("traceparent")
                    .and_then(serde_json::Value::as_str)
            }),
        );
        for (i, event) in events.iter().enumerate() {
            let (bytes, fingerprint) = self
                .encoder
                .encode(&event.event_type, event.schema_version, &event.payload)
                .map_err(|e| RelayError::Unencodable {
                    global_position: event.checkpoint.global_position,
                    event_type: event.event_type.clone(),
                    schema_version: event.schema_version,
                    source: Box::new(e),
                })?;
            let record = FutureRecord::to(&self.topic)
                .key(&event.stream_id)
                .payload(&bytes)
                .timestamp(event.recorded_at.timestamp_millis())
                .headers(headers(event, &fingerprint, spans.traceparent(i)));
            match self.enqueue(record).await {
                Ok(delivery) => deliveries.push((delivery, bytes.len())),
                Err(e) => {
                    refused = Some((e.to_string(), bytes.len()));
                    break;
                }
            }
        }
        Ok(Chunk {
            events,
            deliveries,
            refused,
            started,
            _spans: spans,
        })
    }

    /// Enqueues one record, waiting while the producer queue is full; the producer's
    /// refusal otherwise (a record over its size limit, say).
    pub(super) async fn enqueue<'a>(
        &self,
        mut record: FutureRecord<'a, String, Vec<u8>>,
    ) -> Result<rdkafka::producer::DeliveryFuture, rdkafka::error::KafkaError> {
        loop {
            match self.producer.send_result(record) {
                Ok(future) => return Ok(future),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}
