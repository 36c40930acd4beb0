//! The outbox relay: publishes a write service's outbox to `<service>.events` in
//! commit-safe order, at least once.
//!
//! Order and gaps. The relay reads outbox rows whose writer transaction id is below
//! its horizon, in `(txid, global_position)` order, after its checkpoint. Every
//! transaction that can still write this outbox has an id at or above the horizon,
//! so no row can appear behind the checkpoint later: a transaction that commits late
//! is published when it commits, never skipped, and writers never wait for one
//! another. Appends take their transaction id after reading the version they append
//! after (see `store`), so each stream's versions reach the topic in order.
//!
//! The horizon counts only outbox writers, not every transaction on the server (a
//! `pg_dump`, a rebuild or a transaction in another database would otherwise stall
//! every relay). Every transaction that writes events takes a shared advisory lock
//! before it has a transaction id (a statement trigger, see
//! `migrations/20260101000003_outbox_writers.sql`). One statement reads, after its
//! snapshot was taken, the holders of that lock and their transaction ids: the
//! horizon is the oldest of them, or the snapshot's xmax when there is none. A writer
//! that takes the lock later gets an id at or above that xmax; one that released it
//! has ended and is visible to the next statement's snapshot, which reads the batch.
//!
//! Delivery. Rows are read in batches of `batch_size` and enqueued on an
//! idempotent producer (`acks=all`) in chunks of a quarter batch, in outbox order,
//! with at most `batch_size` events enqueued and not yet checkpointed: a sliding
//! window, so the broker always has work while the oldest chunk's delivery reports
//! come in, and the next batch is read meanwhile. A chunk is checkpointed (its last
//! `(txid, global_position)`) only once every record of it and of the chunks before
//! it is acknowledged; the checkpoint is written while the next chunk's
//! acknowledgements are awaited, and the chunk counts in the window until it is
//! written. A crash re-sends at most the window: at least once, duplicates bounded
//! by one batch. Consumers drop duplicates by stream version or
//! event id.
//!
//! A record the producer refuses outright (over its size limit, say) stops the
//! enqueueing: nothing after it goes out ahead of it. A record whose delivery fails
//! (a timeout) is re-sent with everything after it, with backoff; idempotence keeps
//! per-partition order across the retries, but a later record of its stream may be
//! on the topic already. The failed record then reaches the topic after it, a step
//! back that consumers look up rather than take for a duplicate
//! (`docs/kafka.md`).
//!
//! One active relay per service: it holds a session advisory lock on its store; a
//! second instance waits as standby and takes over when the lock is released. The
//! lock's session is also the relay's fence: every batch is read and every
//! checkpoint written on that very session, so a relay whose lock session ended
//! (`pg_terminate_backend`, `idle_session_timeout`, a proxy cutting it, a network
//! partition the server noticed through TCP keepalives) fails its next statement and
//! stops, instead of publishing beside the standby that took the lock over. What it
//! had in flight at that moment is at most the window, re-sent by the standby from
//! the last checkpoint: at least once, as always. Checkpoints only move forward:
//! the relay resumes from the highest one, and a lower one is never recorded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sqlx::postgres::PgRow;
use sqlx::{ConnectOptions, PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::registry::{Registry, TopicNames};
use crate::store::Metadata;

/// The relay's horizon: the oldest transaction id among the holders of the outbox
/// writers' lock (key `(1936484707, 1)`, taken by every append before it has an
/// id), read after this statement's snapshot was taken; the snapshot's xmax when no
/// holder has an id. `backend_xid` is 32 bits wide: it is widened against the
/// snapshot's 64-bit xmax (a running transaction is less than 2^31 ids behind it;
/// one that took its id after the snapshot is at or above xmax and cannot lower the
/// horizon).
const WRITERS_HORIZON: &str = "\
WITH snapshot AS (
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax
), writers AS (
    SELECT (s.xmax % 4294967296 - a.backend_xid::text::bigint + 4294967296) % 4294967296 AS behind
      FROM snapshot s, pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.classid = 1936484707 AND l.objid = 1 AND l.objsubid = 2
       AND a.backend_xid IS NOT NULL
)
SELECT (s.xmax - coalesce((SELECT max(behind) FROM writers WHERE behind BETWEEN 1 AND 2147483647), 0))::text
  FROM snapshot s";

/// A window of `batch_size` events is enqueued in this many chunks, each
/// checkpointed once acknowledged, so the broker always has work while the oldest
/// chunk's acknowledgements come in.
const CHUNKS_PER_WINDOW: usize = 4;

/// How often the relay counts its unpublished backlog (gauges, horizon check).
const BACKLOG_INTERVAL: Duration = Duration::from_millis(250);

/// Turns a stored payload into the bytes published on the topic.
pub trait EventEncoder: Send + Sync {
    /// Encodes `payload` of `event_type` at `schema_version`; returns the bytes and
    /// the writer schema's fingerprint (for the `schema_fingerprint` header).
    fn encode(
        &self,
        event_type: &str,
        schema_version: i32,
        payload: &serde_json::Value,
    ) -> Result<(Vec<u8>, [u8; 8]), String>;
}

/// Errors that stop a relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The store could not be read or the checkpoint not written.
    #[error("relay database error")]
    Database(#[from] sqlx::Error),
    /// The producer could not be created (bad configuration).
    #[error("kafka producer")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The session holding the relay lock ended: another relay may hold the lock now,
    /// so this one stops publishing. Run it again to stand by.
    #[error("the relay lost its lock session (terminated or timed out), so another relay may now be active; it stopped publishing")]
    LockLost(#[source] sqlx::Error),
    /// A stored event could not be encoded: it would block the stream forever, so the
    /// relay stops and says which one (payloads are validated at append).
    #[error("event at global position {global_position} ({event_type} v{schema_version}) cannot be encoded: {message}")]
    Unencodable {
        global_position: i64,
        event_type: String,
        schema_version: i32,
        message: String,
    },
}

/// Tuning of a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Outbox rows read and published per batch (also the in-flight bound).
    pub batch_size: i64,
    /// Pause when the outbox holds nothing publishable.
    pub idle_interval: Duration,
    /// How long published rows stay in the outbox before they are pruned.
    pub retention: Duration,
    /// How often pruning runs.
    pub prune_interval: Duration,
    /// How long the horizon may hold unpublished rows back before the relay reports
    /// the blocking transaction.
    pub horizon_warning: Duration,
    /// The namespace of the topic on the broker: the relay publishes `<service>.events`
    /// under the registry's prefix.
    pub topic_names: TopicNames,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 1000,
            idle_interval: Duration::from_millis(20),
            retention: Duration::from_secs(24 * 3600),
            prune_interval: Duration::from_secs(60),
            horizon_warning: Duration::from_secs(10),
            topic_names: TopicNames::default(),
        }
    }
}

impl RelayConfig {
    /// The defaults, in the registry's topic namespace.
    pub fn for_registry(registry: &Registry) -> Self {
        RelayConfig {
            topic_names: registry.topic_names(),
            ..RelayConfig::default()
        }
    }
}

/// Where a relay's time went, by step of its publishing loop, summed since it
/// started: what to look at when it publishes slower than its broker accepts.
/// Shared with whoever holds it (`Relay::timings`); every field counts wall time
/// the loop spent on that step alone.
#[derive(Debug, Default)]
pub struct RelayTimings {
    read: AtomicU64,
    encode_enqueue: AtomicU64,
    await_acks: AtomicU64,
    checkpoint: AtomicU64,
    backlog: AtomicU64,
    idle: AtomicU64,
    overlapped_reads: AtomicU64,
    overlapped_checkpoints: AtomicU64,
}

/// A reading of [`RelayTimings`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RelaySteps {
    /// Reading the horizon and the next batch from the outbox, on the lock session,
    /// with nothing else awaited (live, or at the start of a catch-up).
    pub read: Duration,
    /// Encoding records and handing them to the producer.
    pub encode_enqueue: Duration,
    /// Waiting for the oldest chunk's acknowledgements, together with the previous
    /// chunk's checkpoint and, while catching up, the next batch's read, both done
    /// meanwhile (`overlapped_*`).
    pub await_acks: Duration,
    /// Writing checkpoints with nothing else awaited.
    pub checkpoint: Duration,
    /// Counting the unpublished backlog (gauges, horizon check).
    pub backlog: Duration,
    /// Sleeping with nothing to publish.
    pub idle: Duration,
    /// Batches read while the oldest chunk's acknowledgements were awaited: part of
    /// `await_acks`, not added to it.
    pub overlapped_reads: Duration,
    /// Checkpoints written while the oldest chunk's acknowledgements were awaited:
    /// part of `await_acks` too.
    pub overlapped_checkpoints: Duration,
}

impl RelayTimings {
    fn add(counter: &AtomicU64, since: Instant) -> Duration {
        let spent = since.elapsed();
        counter.fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
        spent
    }

    /// The sums so far.
    pub fn steps(&self) -> RelaySteps {
        let read = |c: &AtomicU64| Duration::from_nanos(c.load(Ordering::Relaxed));
        RelaySteps {
            read: read(&self.read),
            encode_enqueue: read(&self.encode_enqueue),
            await_acks: read(&self.await_acks),
            checkpoint: read(&self.checkpoint),
            backlog: read(&self.backlog),
            idle: read(&self.idle),
            overlapped_reads: read(&self.overlapped_reads),
            overlapped_checkpoints: read(&self.overlapped_checkpoints),
        }
    }
}

/// A relay of one service's outbox.
pub struct Relay {
    service: String,
    /// `<service>.events` as the broker names it.
    topic: String,
    pool: PgPool,
    producer: FutureProducer,
    encoder: Arc<dyn EventEncoder>,
    config: RelayConfig,
    bootstrap: String,
    timings: Arc<RelayTimings>,
}

/// The last published outbox position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Checkpoint {
    txid: u64,
    global_position: i64,
}

/// One outbox row with its event, ready to publish.
struct OutboxEvent {
    checkpoint: Checkpoint,
    stream_id: String,
    event_id: uuid::Uuid,
    stream_type: String,
    stream_version: i64,
    event_type: String,
    schema_version: i32,
    payload: serde_json::Value,
    metadata: serde_json::Value,
    recorded_at: DateTime<Utc>,
}

/// Events enqueued together and checkpointed together once all are acknowledged.
struct Chunk {
    events: Vec<OutboxEvent>,
    /// The delivery of each enqueued event, in order, with its record's size; the
    /// events after the last one were not enqueued (see `refused`).
    deliveries: Vec<(rdkafka::producer::DeliveryFuture, usize)>,
    /// Why the producer refused the event after the last enqueued one, and its
    /// record's size.
    refused: Option<(String, usize)>,
    started: Instant,
    /// A `publish` span per event, open until the chunk is settled (when exported).
    _spans: crate::trace::HopSpans,
}

/// A chunk whose events were all acknowledged.
struct Settled {
    len: usize,
    started: Instant,
}

/// A chunk that was not: its events from the first undelivered one on.
struct Undelivered {
    rest: Vec<OutboxEvent>,
    error: String,
    record_bytes: usize,
}

impl Chunk {
    /// Awaits every delivery report.
    async fn settle(self) -> Result<Settled, Undelivered> {
        let enqueued = self.deliveries.len();
        let mut failure = None;
        for (i, (delivery, record_bytes)) in self.deliveries.into_iter().enumerate() {
            let error = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e.to_string(),
                Err(_) => "the producer dropped the delivery".to_owned(),
            };
            failure.get_or_insert((i, error, record_bytes));
        }
        let failure = failure.or_else(|| {
            self.refused
                .map(|(error, record_bytes)| (enqueued, error, record_bytes))
        });
        match failure {
            None => Ok(Settled {
                len: self.events.len(),
                started: self.started,
            }),
            Some((i, error, record_bytes)) => Err(Undelivered {
                rest: self.events.into_iter().skip(i).collect(),
                error,
                record_bytes,
            }),
        }
    }

    /// Awaits every delivery report, whatever it says, and hands the events back.
    async fn drain(self) -> Vec<OutboxEvent> {
        for (delivery, _) in self.deliveries {
            let _ = delivery.await;
        }
        self.events
    }
}

/// The producer settings every relay uses: idempotent, all replicas, the Java
/// client's key hashing (murmur2) so any Kafka client agrees on a key's partition.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("log_level", "3");
    config
}

impl Relay {
    pub fn new(
        service: &str,
        pool: PgPool,
        bootstrap: &str,
        encoder: Arc<dyn EventEncoder>,
        config: RelayConfig,
    ) -> Result<Self, RelayError> {
        Ok(Relay {
            service: service.to_owned(),
            topic: config.topic_names.physical(&format!("{service}.events")),
            pool,
            producer: producer_config(bootstrap).create()?,
            encoder,
            config,
            bootstrap: bootstrap.to_owned(),
            timings: Arc::default(),
        })
    }

    /// Where this relay's time goes, by step of its loop (see [`RelayTimings`]).
    pub fn timings(&self) -> Arc<RelayTimings> {
        self.timings.clone()
    }

    /// Runs until `shutdown`: waits for the service's relay lock, then publishes.
    #[tracing::instrument(name = "relay", skip_all, fields(service = %self.service))]
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), RelayError> {
        let Some(mut lock) = self.acquire_lock(&shutdown).await? else {
            return Ok(());
        };
        let result = self.publish_loop(&mut lock, &shutdown).await;
        if let Err(RelayError::LockLost(e)) = &result {
            tracing::error!(error = %e, "the relay's lock session ended; stopping so that at most one relay publishes");
        }
        // Closing the session releases the lock for a standby.
        let _ = sqlx::Connection::close(lock).await;
        result
    }

    /// Publishes until `shutdown`, reading batches and writing checkpoints on the
    /// `lock` session (the fence). See *Delivery* in the module docs.
    async fn publish_loop(
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

    /// Holds a session advisory lock on a dedicated connection (outside the pool) for
    /// as long as the relay is active: when the relay stops or its process dies, the
    /// connection closes and a standby takes over. `None` when shut down while
    /// standing by.
    async fn acquire_lock(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<PgConnection>, RelayError> {
        let mut conn = self.pool.connect_options().connect().await?;
        // The server probes the session while it is quiet and ends it (releasing the
        // lock) within about 25 s of the relay's host going away; neither idle
        // timeout ends it while it holds the lock.
        sqlx::query(
            "SELECT set_config('tcp_keepalives_idle', '10', false), \
                    set_config('tcp_keepalives_interval', '5', false), \
                    set_config('tcp_keepalives_count', '3', false), \
                    set_config('idle_session_timeout', '0', false), \
                    set_config('idle_in_transaction_session_timeout', '0', false)",
        )
        .execute(&mut conn)
        .await?;
        let mut announced = false;
        loop {
            let locked: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('sluice.relay'))")
                    .fetch_one(&mut conn)
                    .await?;
            if locked {
                return Ok(Some(conn));
            }
            if !announced {
                tracing::info!("another relay is active for this service; standing by");
                announced = true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// A store restored from an older backup (or dropped while its topic was kept)
    /// is behind its topic: events the topic holds are gone from it. Publishing from
    /// it would reuse their stream versions for new events, which every consumer
    /// would then drop as duplicates. So before publishing, the relay checks that the
    /// store holds the last event of every partition of its topic; while it does not,
    /// the relay says so and what to do, publishes nothing, and looks again every
    /// 10 s. `false` when shut down while waiting.
    async fn wait_until_store_holds_topic_tail(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<bool, RelayError> {
        let mut warned = false;
        loop {
            let tail = {
                let (bootstrap, topic) = (self.bootstrap.clone(), self.topic.clone());
                tokio::task::spawn_blocking(move || topic_tail(&bootstrap, &topic))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            };
            let tail = match tail {
                Ok(tail) => tail,
                Err(e) => {
                    // The broker is checked again by publishing; an unreadable tail
                    // must not stop a relay that may be needed to drain the outbox
                    // of a healthy store.
                    tracing::warn!(error = %e, "cannot read the topic's last records; not checking the store against them");
                    return Ok(true);
                }
            };
            let ids: Vec<uuid::Uuid> = tail.iter().map(|(_, _, id)| *id).collect();
            let held: Vec<uuid::Uuid> =
                sqlx::query_scalar("SELECT event_id FROM events WHERE event_id = ANY($1)")
                    .bind(&ids)
                    .fetch_all(&self.pool)
                    .await?;
            let missing: Vec<String> = tail
                .iter()
                .filter(|(_, _, id)| !held.contains(id))
                .map(|(partition, offset, id)| {
                    format!("{id} (partition {partition} offset {offset})")
                })
                .collect();
            if missing.is_empty() {
                if warned {
                    tracing::info!("the store holds its topic's last events again; publishing");
                }
                crate::telemetry::relay_store_behind(&self.service, 0);
                return Ok(true);
            }
            tracing::error!(
                topic = %self.topic,
                missing = %missing.join(", "),
                "the store is behind its topic (restored from an older backup, or dropped while the topic was kept): \
                 the topic's last events are not in it, and publishing now would reuse their stream versions. \
                 Nothing is published. Run `sluice reappend {service}` to copy the topic's missing events back into the store \
                 (`sluice verify` lists them), or delete and recreate the topic if its events are to be dropped; \
                 the relay resumes by itself",
                service = self.service,
            );
            crate::telemetry::relay_store_behind(&self.service, missing.len());
            warned = true;
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    }

    async fn load_checkpoint(&self) -> Result<Checkpoint, RelayError> {
        let row = sqlx::query(
            "SELECT txid::text, global_position FROM relay_checkpoints \
              ORDER BY txid DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => Checkpoint::default(),
            Some(row) => Checkpoint {
                txid: parse_xid(&row.try_get::<String, _>(0)?)?,
                global_position: row.try_get(1)?,
            },
        })
    }

    /// The next batch after `checkpoint`, below the outbox writers' horizon, read on
    /// the lock session: the horizon in one statement, the batch in the next (its
    /// snapshot must be newer than the lock holders read by the first).
    async fn fetch(
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
    async fn send(&self, events: Vec<OutboxEvent>) -> Result<Chunk, RelayError> {
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
                .map_err(|message| RelayError::Unencodable {
                    global_position: event.checkpoint.global_position,
                    event_type: event.event_type.clone(),
                    schema_version: event.schema_version,
                    message,
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
    async fn enqueue<'a>(
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

    /// `report_backlog`, at most every `BACKLOG_INTERVAL`: the count scans the
    /// unpublished rows, and a few times a second is plenty for the gauges and the
    /// horizon check, and keeps it off the publishing path when the backlog is large.
    async fn maybe_report_backlog(
        &self,
        checkpoint: Checkpoint,
        idle: bool,
        blocked_since: &mut Option<Instant>,
        last_backlog: &mut Option<Instant>,
    ) -> Result<(), RelayError> {
        if last_backlog.is_some_and(|at| at.elapsed() < BACKLOG_INTERVAL) {
            return Ok(());
        }
        let started = Instant::now();
        self.report_backlog(checkpoint, idle, blocked_since).await?;
        RelayTimings::add(&self.timings.backlog, started);
        *last_backlog = Some(Instant::now());
        Ok(())
    }

    /// Updates the backlog gauges; when unpublished rows are held back by the
    /// horizon for longer than the warning threshold, names the blocking transaction.
    async fn report_backlog(
        &self,
        checkpoint: Checkpoint,
        idle: bool,
        blocked_since: &mut Option<Instant>,
    ) -> Result<(), RelayError> {
        let row = sqlx::query(
            "SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at))::float8 \
               FROM outbox WHERE (txid, global_position) > ($1::text::xid8, $2)",
        )
        .bind(checkpoint.txid.to_string())
        .bind(checkpoint.global_position)
        .fetch_one(&self.pool)
        .await?;
        let unpublished: i64 = row.try_get(0)?;
        let oldest: Option<f64> = row.try_get(1)?;
        crate::telemetry::relay_backlog(&self.service, unpublished, oldest.unwrap_or(0.0));
        if !(idle && unpublished > 0) {
            *blocked_since = None;
            return Ok(());
        }
        let since = *blocked_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.config.horizon_warning {
            return Ok(());
        }
        if let Some(b) = horizon_blocker(&self.pool).await? {
            tracing::warn!(
                pid = b.pid,
                transaction_age_seconds = b.transaction_age_seconds,
                state = b.state,
                query = b.query,
                unpublished,
                "an open transaction holds the relay horizon back; its events and every later one wait for it"
            );
            crate::telemetry::relay_horizon_blocked(
                &self.service,
                b.pid,
                b.transaction_age_seconds,
            );
        }
        *blocked_since = Some(Instant::now());
        Ok(())
    }

    /// Deletes published outbox rows older than the retention and old checkpoints.
    async fn prune(&self, checkpoint: Checkpoint) -> Result<(), RelayError> {
        let retention = self.config.retention.as_secs_f64();
        let pruned = sqlx::query(
            "DELETE FROM outbox WHERE (txid, global_position) <= ($1::text::xid8, $2) \
               AND created_at < clock_timestamp() - make_interval(secs => $3)",
        )
        .bind(checkpoint.txid.to_string())
        .bind(checkpoint.global_position)
        .bind(retention)
        .execute(&self.pool)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM relay_checkpoints WHERE id <> (SELECT id FROM relay_checkpoints \
              ORDER BY txid DESC, global_position DESC LIMIT 1)",
        )
        .execute(&self.pool)
        .await?;
        if pruned > 0 {
            tracing::info!(pruned, "pruned published outbox rows");
        }
        Ok(())
    }
}

/// Records `checkpoint` on the lock session, unless a checkpoint at or beyond it is
/// there already: the newest row is never the lower of two writers'.
async fn save_checkpoint(
    lock: &mut PgConnection,
    checkpoint: Checkpoint,
) -> Result<(), RelayError> {
    sqlx::query(
        "INSERT INTO relay_checkpoints (txid, global_position) \
         SELECT $1::text::xid8, $2 WHERE NOT EXISTS ( \
           SELECT 1 FROM relay_checkpoints WHERE (txid, global_position) >= ($1::text::xid8, $2))",
    )
    .bind(checkpoint.txid.to_string())
    .bind(checkpoint.global_position)
    .execute(&mut *lock)
    .await?;
    Ok(())
}

/// Writes the checkpoint of the acknowledged chunk waiting for one, if any, on the
/// lock session, and counts the time under `spent`.
async fn save_pending(
    lock: &mut PgConnection,
    pending: &mut Option<(Checkpoint, usize)>,
    spent: &AtomicU64,
) -> Result<(), RelayError> {
    if let Some((at, _)) = pending.take() {
        let started = Instant::now();
        save_checkpoint(lock, at).await.map_err(fenced)?;
        RelayTimings::add(spent, started);
    }
    Ok(())
}

/// A database error on the lock session: the fence. Any other error stays as it is.
fn fenced(e: RelayError) -> RelayError {
    match e {
        RelayError::Database(e) if lock_session_gone(&e) => RelayError::LockLost(e),
        other => other,
    }
}

/// Whether `e` means the session itself is gone (terminated by the server, its
/// connection closed or broken), as opposed to a statement failing on a live one.
fn lock_session_gone(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        // 57P01 admin_shutdown (pg_terminate_backend), 57P05 idle_session_timeout,
        // 08xxx connection exceptions.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        _ => false,
    }
}

fn parse_xid(text: &str) -> Result<u64, sqlx::Error> {
    text.parse()
        .map_err(|e| sqlx::Error::Decode(format!("xid8 `{text}`: {e}").into()))
}

fn outbox_event(row: &PgRow) -> Result<OutboxEvent, RelayError> {
    Ok(OutboxEvent {
        checkpoint: Checkpoint {
            txid: parse_xid(&row.try_get::<String, _>("txid")?)?,
            global_position: row.try_get("global_position")?,
        },
        stream_id: row.try_get("stream_id")?,
        event_id: row.try_get("event_id")?,
        stream_type: row.try_get("stream_type")?,
        stream_version: row.try_get("stream_version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// The envelope as Kafka headers (UTF-8 text values).
/// `traceparent` replaces the event's own: the context of its `publish` span.
fn headers(
    event: &OutboxEvent,
    fingerprint: &[u8; 8],
    traceparent: Option<String>,
) -> OwnedHeaders {
    let metadata: Metadata = serde_json::from_value(event.metadata.clone()).unwrap_or_default();
    let text = [
        ("event_id", Some(event.event_id.to_string())),
        ("event_type", Some(event.event_type.clone())),
        ("stream_type", Some(event.stream_type.clone())),
        ("stream_version", Some(event.stream_version.to_string())),
        (
            "global_position",
            Some(event.checkpoint.global_position.to_string()),
        ),
        ("schema_version", Some(event.schema_version.to_string())),
        (
            "schema_fingerprint",
            Some(fingerprint.iter().map(|b| format!("{b:02x}")).collect()),
        ),
        ("recorded_at", Some(event.recorded_at.to_rfc3339())),
        (
            "correlation_id",
            metadata.correlation_id.map(|c| c.to_string()),
        ),
        ("causation_id", metadata.causation_id.map(|c| c.to_string())),
        ("traceparent", traceparent.or(metadata.traceparent)),
        ("actor", metadata.actor),
    ];
    text.into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| match value {
            Some(v) => headers.insert(Header {
                key,
                value: Some(v.as_str()),
            }),
            None => headers,
        })
}

impl EventEncoder for crate::avro::SchemaCatalog {
    fn encode(
        &self,
        event_type: &str,
        schema_version: i32,
        payload: &serde_json::Value,
    ) -> Result<(Vec<u8>, [u8; 8]), String> {
        let bytes = self
            .encode_single_object(event_type, schema_version, payload)
            .map_err(|e| e.to_string())?;
        let fingerprint = self
            .fingerprint(event_type, schema_version)
            .map(|f| f.0)
            .ok_or_else(|| format!("no schema for {event_type} v{schema_version}"))?;
        Ok((bytes, fingerprint))
    }
}

/// The last record of every non-empty partition of `topic` that carries an event
/// id: `(partition, offset, event_id)`.
fn topic_tail(bootstrap: &str, topic: &str) -> Result<Vec<(i32, i64, uuid::Uuid)>, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-relay-tail-check")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut wanted = std::collections::BTreeMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| e.to_string())?;
        if high > low {
            assignment
                .add_partition_offset(topic, p, rdkafka::Offset::Offset(high - 1))
                .map_err(|e| e.to_string())?;
            wanted.insert(p, high - 1);
        }
    }
    let mut tail = Vec::new();
    if wanted.is_empty() {
        return Ok(tail);
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    while !wanted.is_empty() && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(|e| e.to_string())?;
        if wanted.get(&message.partition()) != Some(&message.offset()) {
            continue;
        }
        wanted.remove(&message.partition());
        let event_id = message.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == "event_id")
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
        });
        if let Some(id) = event_id {
            tail.push((message.partition(), message.offset(), id));
        }
    }
    if !wanted.is_empty() {
        return Err(format!(
            "the last records of partitions {:?} did not arrive",
            wanted.keys()
        ));
    }
    Ok(tail)
}

/// An open transaction of an outbox writer that holds the relay horizon back.
#[derive(Debug, Clone)]
pub struct HorizonBlocker {
    /// Its backend's process id (`pg_terminate_backend` ends it).
    pub pid: i32,
    /// How long its transaction has been open.
    pub transaction_age_seconds: f64,
    /// `idle in transaction`, `active`, …
    pub state: String,
    /// Its last statement, cut to 200 characters.
    pub query: String,
}

/// The oldest open transaction that wrote to the outbox and has not committed: the
/// relay publishes nothing committed after it started until it ends. Only outbox
/// writers hold the horizon (they take the writer advisory lock), so it is the one.
pub async fn horizon_blocker(pool: &PgPool) -> Result<Option<HorizonBlocker>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT a.pid, extract(epoch FROM clock_timestamp() - a.xact_start)::float8, \
                left(a.query, 200), a.state \
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
          WHERE l.locktype = 'advisory' AND l.granted \
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND l.classid = 1936484707 AND l.objid = 1 AND l.objsubid = 2 \
            AND a.backend_xid IS NOT NULL \
          ORDER BY age(a.backend_xid) DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    row.map(|b| {
        let (pid, age, query, state): (i32, Option<f64>, Option<String>, Option<String>) =
            (b.try_get(0)?, b.try_get(1)?, b.try_get(2)?, b.try_get(3)?);
        Ok(HorizonBlocker {
            pid,
            transaction_age_seconds: age.unwrap_or(0.0),
            state: state.unwrap_or_default(),
            query: query.unwrap_or_default(),
        })
    })
    .transpose()
}
