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

mod lease;
mod outbox;
mod publish;

pub use outbox::{horizon_blocker, HorizonBlocker};

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
    ) -> Result<(Vec<u8>, [u8; 8]), crate::avro::AvroError>;
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
    #[error("event at global position {global_position} ({event_type} v{schema_version}) cannot be encoded")]
    Unencodable {
        global_position: i64,
        event_type: String,
        schema_version: i32,
        #[source]
        source: Box<crate::avro::AvroError>,
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
}
