//! The consumer runtime: projections, reactors and other consumers of the services'
//! topics are built on it.
//!
//! - **Positions live in the consumer's own database**, in the same transaction as
//!   the change an event caused (`consumer_positions`: the next offset per topic and
//!   partition). On start the runtime assigns every partition of its topics itself,
//!   at those offsets (no consumer-group coordination, no broker-side commits). A
//!   crash anywhere neither loses an event nor applies one twice.
//! - **Per-stream continuity**: `stream_positions` keeps the last applied version of
//!   each stream. A version at or below it is a duplicate (the relay delivers at least
//!   once) and is dropped; a version beyond the next is a gap: the stream is parked
//!   (the event and every later one of the stream wait in `held_events`), the other
//!   streams move on, and the held events are retried in new transactions with
//!   backoff until the missing version has been applied. Never skipped, never
//!   dead-lettered for the gap alone.
//! - **Poison events**: a handler error is retried with backoff (bounded), then the
//!   event goes to `dead_letters` (and the `<component>.dlq` topic) and the consumer
//!   moves on. Undecodable records (unknown schema fingerprint: a newer producer;
//!   corrupt bytes) are dead-lettered at once: retrying cannot help until the
//!   consumer is upgraded, after which `sluice dlq replay` applies them.
//! - Events are applied in batches: one transaction per batch, a savepoint per event.
//! - Topics have their logical names here (`orders.events`: in positions, dead
//!   letters and every [`ConsumedEvent`]); only the names sent to and read from the
//!   broker carry the registry's prefix ([`ConsumerConfig::topic_names`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::avro::SchemaCatalog;
use crate::registry::{Registry, Replication, TopicNames};
use crate::store::Metadata;

/// How often a consumer retries the events it holds behind stream gaps (each held
/// stream also backs off on its own).
const HELD_RETRY: Duration = Duration::from_secs(1);

/// The consumer runtime's tables (positions, stream positions, dead letters). Every
/// consuming component runs it before its own migrations.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations_consumer")
}

/// An event as a consumer sees it: the envelope from the headers, the payload
/// decoded from Avro into the event store's JSON shape, and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumedEvent {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub stream_id: String,
    pub stream_type: String,
    pub stream_version: i64,
    pub global_position: i64,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

/// Why a handler could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event can never be applied as it is (violates the handler's
    /// expectations): dead-lettered without retries.
    #[error("{0}")]
    Poison(String),
    /// Possibly transient: retried with backoff, then dead-lettered.
    #[error("{0}")]
    Retry(String),
    /// The database refused a statement: retried with backoff, then dead-lettered.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a consumer does with each event. `apply` runs inside the consumer's
/// transaction: whatever it writes commits together with the consumer's position.
pub trait EventHandler: Send + Sync + 'static {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a ConsumedEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;

    /// Applies several events in the same transaction, with the same effect as
    /// [`apply`](Self::apply) on each in turn. `events` keep the consumer's order:
    /// each stream's events in version order, no duplicates, no gaps. A handler may
    /// apply them set-wise (a statement per kind of event rather than per event) as
    /// long as each stream's events take effect in order. On an error the consumer
    /// rolls the whole batch back and applies it event by event with `apply`.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a ConsumedEvent],
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            for event in events {
                self.apply(tx, event).await?;
            }
            Ok(())
        })
    }
}

/// Errors that stop a consumer.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("consumer database error")]
    Database(#[from] sqlx::Error),
    #[error("kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic `{0}` does not exist on the broker")]
    MissingTopic(String),
    #[error("cannot create the dead-letter topic: {0}")]
    DeadLetterTopic(String),
    #[error("the read model was swapped for another generation while catching up")]
    GenerationChanged,
    #[error("interrupted before the fold reached its bound")]
    Interrupted,
    /// A blocking broker request's thread panicked or was cancelled.
    #[error("a broker request on a blocking thread failed: {0}")]
    Blocking(String),
}

/// Tuning of a consumer.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Most events applied in one transaction.
    pub batch_size: usize,
    /// How long to wait for more events before applying a partial batch.
    pub batch_wait: Duration,
    /// Attempts of a failing event before it is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_backoff: Duration,
    /// The namespace of the topics on the broker (the registry's prefix).
    pub topic_names: TopicNames,
    /// Replication of the dead-letter topic the consumer creates.
    pub replication: Replication,
    /// Announce dead letters on `<component>.dlq` (they are always kept in the
    /// `dead_letters` table). Off for a fold that only checks (`sluice verify`).
    pub announce_dead_letters: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            batch_size: 500,
            batch_wait: Duration::from_millis(5),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(20),
            topic_names: TopicNames::default(),
            announce_dead_letters: true,
            replication: Replication::default(),
        }
    }
}

impl ConsumerConfig {
    /// The defaults, with the registry's topic namespace and replication.
    pub fn for_registry(registry: &Registry) -> Self {
        ConsumerConfig {
            topic_names: registry.topic_names(),
            replication: registry.replication(),
            ..ConsumerConfig::default()
        }
    }
}

/// A consumer of some topics into one component's database.
pub struct ConsumerRuntime<H> {
    component: String,
    topics: Vec<String>,
    pool: PgPool,
    bootstrap: String,
    catalog: Arc<SchemaCatalog>,
    handler: H,
    config: ConsumerConfig,
}

/// One record as received, before decoding.
struct Received {
    topic: String,
    partition: i32,
    offset: i64,
    key: String,
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
}

/// How long an idle consumer waits for a record before checking whether a rebuild
/// swapped its read model.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How often a consumer reports its lag (`sluice_consumer_lag_events`), busy or idle.
const LAG_REPORT: Duration = Duration::from_secs(2);

/// What became of a batch.
enum Applied {
    Committed,
    /// A rebuild swapped the read model: nothing was written.
    GenerationChanged,
}

/// Progress of [`ConsumerRuntime::catch_up`].
#[derive(Debug, Clone)]
pub struct CatchUp {
    /// Records consumed so far (applied, duplicates and dead letters).
    pub applied: u64,
    /// Records between the positions and the high watermarks last read.
    pub remaining: i64,
    pub started: Instant,
}

enum Outcome {
    Applied,
    Duplicate,
    DeadLettered,
    /// Parked behind a gap in its stream (`held_events`).
    Held,
}

impl<H: EventHandler> ConsumerRuntime<H> {
    pub fn new(
        component: &str,
        topics: Vec<String>,
        pool: PgPool,
        bootstrap: &str,
        catalog: Arc<SchemaCatalog>,
        handler: H,
        config: ConsumerConfig,
    ) -> Self {
        ConsumerRuntime {
            component: component.to_owned(),
            topics,
            pool,
            bootstrap: bootstrap.to_owned(),
            catalog,
            handler,
            config,
        }
    }

    /// Consumes until `shutdown`, resuming from the positions in the database. When a
    /// rebuild swaps in a new generation of the read model, resumes from that
    /// generation's positions.
    ///
    /// A database error (the server restarting, the read model's database refusing
    /// connections, a restore) does not end it: it waits (1 s doubling to 30 s) and
    /// resumes from the positions stored in the database, which is what was
    /// committed with the rows, whatever it had read before.
    #[tracing::instrument(name = "consumer", skip_all, fields(component = %self.component))]
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            match self.consume(&shutdown).await {
                Err(ConsumerError::Database(error)) if !shutdown.is_cancelled() => {
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = Duration::from_secs(1);
                    }
                    tracing::warn!(
                        %error,
                        backoff_s = backoff.as_secs(),
                        "consumer database error; resuming from the stored positions"
                    );
                    crate::telemetry::consumer_restart(&self.component);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                outcome => return outcome,
            }
        }
    }

    async fn consume(&self, shutdown: &CancellationToken) -> Result<(), ConsumerError> {
        let dlq = self.dlq_producer().await?;
        'generation: while !shutdown.is_cancelled() {
            let generation = self.generation().await?;
            let (consumer, _) = self.assign().await?;
            tracing::info!(topics = ?self.topics, %generation, "consumer assigned");
            let mut last_lag_report = Instant::now();
            let mut last_release = Instant::now();
            self.release_held(&dlq, generation).await?;
            while !shutdown.is_cancelled() {
                if last_release.elapsed() >= HELD_RETRY {
                    self.release_held(&dlq, generation).await?;
                    last_release = Instant::now();
                }
                let batch = tokio::select! {
                    _ = shutdown.cancelled() => break 'generation,
                    batch = self.next_batch(&consumer) => batch?,
                };
                if batch.is_empty() {
                    // Idle, so caught up or stalled: the lag reported after the last
                    // batch would otherwise stand for good.
                    if last_lag_report.elapsed() > LAG_REPORT {
                        self.report_lag(&consumer, None);
                        last_lag_report = Instant::now();
                    }
                    // Idle: a rebuild may have swapped the read model meanwhile, its
                    // positions behind this consumer's; no batch would reveal it until
                    // new events arrive, so look now.
                    if self.generation().await? != generation {
                        tracing::info!("the read model was swapped for a rebuilt generation; resuming from its positions");
                        continue 'generation;
                    }
                    continue;
                }
                if let Applied::GenerationChanged =
                    self.apply_batch(&batch, &dlq, generation).await?
                {
                    tracing::info!("the read model was swapped for a rebuilt generation; resuming from its positions");
                    continue 'generation;
                }
                if last_lag_report.elapsed() > LAG_REPORT {
                    self.report_lag(&consumer, batch.last());
                    last_lag_report = Instant::now();
                }
            }
        }
        Ok(())
    }

    /// Consumes from the stored positions until caught up with the topics, then
    /// returns: how a rebuild fills a fresh generation and how the projection
    /// benchmark measures a worker. "Caught up" is a round that started with fewer
    /// than a batch of events to go, so a steady stream of new events cannot keep it
    /// chasing forever. `progress` is called after every batch.
    pub async fn catch_up(
        &self,
        shutdown: CancellationToken,
        mut progress: impl FnMut(&CatchUp),
    ) -> Result<CatchUp, ConsumerError> {
        let dlq = self.dlq_producer().await?;
        let generation = self.generation().await?;
        let (consumer, mut positions) = self.assign().await?;
        let mut state = CatchUp {
            applied: 0,
            remaining: 0,
            started: Instant::now(),
        };
        loop {
            let targets = high_watermarks(
                consumer.clone(),
                self.config.topic_names.clone(),
                positions.keys().cloned().collect(),
            )
            .await?;
            let behind = |positions: &BTreeMap<(String, i32), i64>| -> i64 {
                targets
                    .iter()
                    .map(|(k, high)| (high - positions.get(k).copied().unwrap_or(0)).max(0))
                    .sum()
            };
            let round = behind(&positions);
            state.remaining = round;
            progress(&state);
            // Held events whose streams caught up during the round go in before the
            // next one (or before the rebuild's swap).
            self.release_held(&dlq, generation).await?;
            if round == 0 {
                return Ok(state);
            }
            while behind(&positions) > 0 {
                let batch = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(state),
                    batch = self.next_batch(&consumer) => batch?,
                };
                if batch.is_empty() {
                    continue;
                }
                if let Applied::GenerationChanged =
                    self.apply_batch(&batch, &dlq, generation).await?
                {
                    return Err(ConsumerError::GenerationChanged);
                }
                for record in &batch {
                    positions.insert((record.topic.clone(), record.partition), record.offset + 1);
                }
                state.applied += batch.len() as u64;
                state.remaining = behind(&positions);
                progress(&state);
            }
            if round <= self.config.batch_size as i64 {
                return Ok(state);
            }
        }
    }

    /// Consumes from the stored positions up to `until` (per topic and partition, the
    /// first offset not to apply) and returns: the read model then holds exactly
    /// what a consumer that had stored those positions holds. Records at or past
    /// their partition's bound are not applied. How `sluice verify` folds a fresh
    /// copy of a projection to the live one's cut.
    pub async fn catch_up_to(
        &self,
        until: &BTreeMap<(String, i32), i64>,
        shutdown: CancellationToken,
    ) -> Result<u64, ConsumerError> {
        let dlq = self.dlq_producer().await?;
        let generation = self.generation().await?;
        let (consumer, mut positions) = self.assign().await?;
        let bound = |key: &(String, i32)| until.get(key).copied().unwrap_or(0);
        // Partitions whose bound was reached (or passed: an offset the broker skips).
        let mut done: std::collections::BTreeSet<(String, i32)> = positions
            .iter()
            .filter(|(k, next)| **next >= bound(k))
            .map(|(k, _)| k.clone())
            .collect();
        let mut applied = 0;
        while done.len() < positions.len() {
            let mut batch = tokio::select! {
                _ = shutdown.cancelled() => return Err(ConsumerError::Interrupted),
                batch = self.next_batch(&consumer) => batch?,
            };
            batch.retain(|r| {
                let key = (r.topic.clone(), r.partition);
                if r.offset + 1 >= bound(&key) {
                    done.insert(key);
                }
                r.offset < bound(&(r.topic.clone(), r.partition))
            });
            if batch.is_empty() {
                continue;
            }
            if let Applied::GenerationChanged = self.apply_batch(&batch, &dlq, generation).await? {
                return Err(ConsumerError::GenerationChanged);
            }
            for record in &batch {
                positions.insert((record.topic.clone(), record.partition), record.offset + 1);
            }
            applied += batch.len() as u64;
        }
        Ok(applied)
    }

    /// The generation of the read model this consumer's database holds.
    async fn generation(&self) -> Result<Uuid, ConsumerError> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM consumer_generation")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Assigns every partition of the topics at the stored next offsets; returns the
    /// consumer and where each partition starts (its low watermark when nothing is
    /// stored yet).
    async fn assign(
        &self,
    ) -> Result<(Arc<StreamConsumer>, BTreeMap<(String, i32), i64>), ConsumerError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("sluice.{}", self.component))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .set("log_level", "3")
            .create()?;
        let positions: BTreeMap<(String, i32), i64> =
            sqlx::query("SELECT topic, partition, next_offset FROM consumer_positions")
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect();
        // Metadata and watermark requests block for up to their timeouts: they run on
        // a blocking thread, not on the runtime's.
        let consumer = Arc::new(consumer);
        let (topics, names) = (self.topics.clone(), self.config.topic_names.clone());
        let asking = consumer.clone();
        let (assignment, starts) = tokio::task::spawn_blocking(move || {
            let consumer = asking;
            let mut assignment = TopicPartitionList::new();
            let mut starts = BTreeMap::new();
            for topic in &topics {
                let physical = names.physical(topic);
                let metadata = consumer.fetch_metadata(Some(&physical), Duration::from_secs(10))?;
                let partitions = metadata
                    .topics()
                    .first()
                    .map(|t| t.partitions().len())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ConsumerError::MissingTopic(physical.clone()))?;
                for p in 0..partitions as i32 {
                    let key = (topic.clone(), p);
                    let (low, high) =
                        consumer.fetch_watermarks(&physical, p, Duration::from_secs(10))?;
                    let (offset, start) = match positions.get(&key) {
                        Some(o) => {
                            if *o > high {
                                // Nothing is lost by waiting, but nothing arrives either
                                // until the log grows past the stored position.
                                tracing::error!(
                                    topic, partition = p, stored_next_offset = *o, broker_end = high,
                                    "this consumer has applied more of the partition than the broker holds: \
                                     the broker's log was reset or replaced (a deleted data directory?). \
                                     It waits for offset {o}; rebuild a projection with `sluice projection rebuild`, \
                                     or drop the databases too when resetting a development platform"
                                );
                            }
                            (Offset::Offset(*o), *o)
                        }
                        None => (Offset::Beginning, low),
                    };
                    assignment.add_partition_offset(&physical, p, offset)?;
                    starts.insert(key, start);
                }
            }
            Ok::<_, ConsumerError>((assignment, starts))
        })
        .await
        .map_err(|e| ConsumerError::Blocking(e.to_string()))??;
        consumer.assign(&assignment)?;
        Ok((consumer, starts))
    }

    /// Creates `<component>.dlq` if missing (and checks it) and a producer for it.
    async fn dlq_producer(&self) -> Result<FutureProducer, ConsumerError> {
        if !self.config.announce_dead_letters {
            return Ok(crate::relay::producer_config(&self.bootstrap).create()?);
        }
        let topic = self
            .config
            .replication
            .dead_letter_topic(self.dead_letter_topic());
        crate::broker::ensure_topics(&self.bootstrap, [topic])
            .await
            .map_err(|e| ConsumerError::DeadLetterTopic(e.to_string()))?;
        Ok(crate::relay::producer_config(&self.bootstrap).create()?)
    }

    /// Waits (up to [`IDLE_CHECK`]) for one record, then gathers more for up to
    /// `batch_wait`. Empty when nothing arrived.
    async fn next_batch(&self, consumer: &StreamConsumer) -> Result<Vec<Received>, ConsumerError> {
        let mut batch = Vec::new();
        // Giving up on `recv` before it yields loses nothing: no record was taken.
        let Ok(first) = tokio::time::timeout(IDLE_CHECK, consumer.recv()).await else {
            return Ok(batch);
        };
        let names = &self.config.topic_names;
        match first {
            Ok(message) => batch.push(received(&message, names)),
            Err(e) if is_transient(&e) => {
                self.report_transient(&e);
                return Ok(batch);
            }
            Err(e) => return Err(e.into()),
        }
        let deadline = tokio::time::Instant::now() + self.config.batch_wait;
        while batch.len() < self.config.batch_size {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) => batch.push(received(&message, names)),
                Ok(Err(e)) if is_transient(&e) => {
                    self.report_transient(&e);
                    break;
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    /// A broker going away (a leader moving, a node restarting) reaches `recv` as a
    /// consumption error that librdkafka recovers from by itself: logged, not fatal.
    fn report_transient(&self, e: &KafkaError) {
        tracing::warn!(
            component = %self.component,
            error = %e,
            "broker connection trouble; the client reconnects and the consumer carries on"
        );
    }

    /// Applies a batch in one transaction with the new positions, unless the
    /// database now holds another generation of the read model than `generation`.
    async fn apply_batch(
        &self,
        batch: &[Received],
        dlq: &FutureProducer,
        generation: Uuid,
    ) -> Result<Applied, ConsumerError> {
        let started = Instant::now();
        // A `consume` span per event, until the batch has committed (when exported).
        let _spans = crate::trace::HopSpans::open(
            "consume",
            &self.component,
            batch
                .iter()
                .map(|r| r.headers.get("traceparent").map(String::as_str)),
        );
        let mut tx = self.pool.begin().await?;
        if !holds_generation(&mut tx, generation).await? {
            tx.rollback().await?;
            return Ok(Applied::GenerationChanged);
        }
        // Fast path: the whole batch without savepoints. Any failure (a poison event,
        // a gap, an undecodable record) rolls it back and the careful path below
        // isolates the culprit event by event.
        let (applied, duplicates, dead) = match self.apply_fast(&mut tx, batch).await? {
            Some((applied, duplicates)) => (applied, duplicates, Vec::new()),
            None => {
                // The rollback released the generation: a swap may have committed
                // since, and this batch's positions must not land in the new one.
                tx.rollback().await?;
                tx = self.pool.begin().await?;
                if !holds_generation(&mut tx, generation).await? {
                    tx.rollback().await?;
                    return Ok(Applied::GenerationChanged);
                }
                let (mut applied, mut duplicates, mut dead) = (0u64, 0u64, Vec::new());
                for record in batch {
                    match self.apply_one(&mut tx, record).await? {
                        Outcome::Applied => applied += 1,
                        Outcome::Duplicate => duplicates += 1,
                        Outcome::DeadLettered => dead.push(record),
                        Outcome::Held => {}
                    }
                }
                (applied, duplicates, dead)
            }
        };
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for record in batch {
            next.insert((&record.topic, record.partition), record.offset + 1);
        }
        for ((topic, partition), offset) in &next {
            sqlx::query(
                "INSERT INTO consumer_positions (topic, partition, next_offset) VALUES ($1, $2, $3) \
                 ON CONFLICT (topic, partition) DO UPDATE \
                 SET next_offset = EXCLUDED.next_offset, updated_at = clock_timestamp()",
            )
            .bind(topic)
            .bind(partition)
            .bind(offset)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        crate::telemetry::consumer_batch(
            &self.component,
            applied,
            duplicates,
            dead.len() as u64,
            started,
        );
        for record in dead {
            self.publish_dead_letter(dlq, record);
        }
        Ok(Applied::Committed)
    }

    /// Applies a batch with one read and one write of stream positions and no
    /// savepoints; `None` when any record cannot be applied as it is (the caller rolls
    /// back and takes the careful path).
    async fn apply_fast(
        &self,
        tx: &mut PgConnection,
        batch: &[Received],
    ) -> Result<Option<(u64, u64)>, ConsumerError> {
        let Ok(events) = batch
            .iter()
            .map(|r| decode(&self.catalog, r))
            .collect::<Result<Vec<_>, _>>()
        else {
            return Ok(None);
        };
        let (topics, streams): (Vec<&str>, Vec<&str>) = events
            .iter()
            .map(|e| (e.topic.as_str(), e.stream_id.as_str()))
            .unzip();
        let mut versions: BTreeMap<(String, String), i64> = sqlx::query(
            "SELECT p.topic, p.stream_id, p.version FROM stream_positions p \
               JOIN UNNEST($1::text[], $2::text[]) AS b(topic, stream_id) USING (topic, stream_id)",
        )
        .bind(&topics)
        .bind(&streams)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
        // An event of a parked stream waits behind its held ones: the careful path.
        let parked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM held_events h \
               JOIN UNNEST($1::text[], $2::text[]) AS b(topic, stream_id) USING (topic, stream_id)",
        )
        .bind(&topics)
        .bind(&streams)
        .fetch_one(&mut *tx)
        .await?;
        if parked > 0 {
            return Ok(None);
        }
        let read_versions = versions.clone();
        let mut duplicates = 0u64;
        let mut advanced: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        let mut to_apply = Vec::with_capacity(events.len());
        for event in &events {
            let key = (event.topic.clone(), event.stream_id.clone());
            let last = versions.get(&key).copied().unwrap_or(0);
            if event.stream_version <= last {
                duplicates += 1;
                continue;
            }
            if event.stream_version != last + 1 {
                return Ok(None);
            }
            versions.insert(key, event.stream_version);
            advanced.insert((&event.topic, &event.stream_id), event.stream_version);
            to_apply.push(event);
        }
        if self.handler.apply_batch(tx, &to_apply).await.is_err() {
            return Ok(None);
        }
        let applied = to_apply.len() as u64;
        let moves: Vec<StreamMove<'_>> = advanced
            .into_iter()
            .map(|((topic, stream_id), to)| StreamMove {
                topic,
                stream_id,
                from: read_versions
                    .get(&(topic.to_owned(), stream_id.to_owned()))
                    .copied()
                    .unwrap_or(0),
                to,
            })
            .collect();
        // Another consumer of this database moved a stream on since it was read: its
        // events are in; the careful path sorts out which of ours still are not.
        if !advance_streams(tx, &moves).await? {
            return Ok(None);
        }
        Ok(Some((applied, duplicates)))
    }

    /// Decodes, deduplicates and applies one record under a savepoint, retrying a
    /// failing handler before dead-lettering the event.
    async fn apply_one(
        &self,
        tx: &mut PgConnection,
        record: &Received,
    ) -> Result<Outcome, ConsumerError> {
        let event = match decode(&self.catalog, record) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %error, "undecodable record; dead-lettered");
                dead_letter(tx, record, None, &error, 1).await?;
                return Ok(Outcome::DeadLettered);
            }
        };
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM stream_positions WHERE topic = $1 AND stream_id = $2",
        )
        .bind(&event.topic)
        .bind(&event.stream_id)
        .fetch_optional(&mut *tx)
        .await?;
        let last = last.unwrap_or(0);
        if event.stream_version <= last {
            return Ok(Outcome::Duplicate);
        }
        if event.stream_version != last + 1 || is_parked(tx, &event).await? {
            tracing::warn!(
                stream_id = %event.stream_id, stream_version = event.stream_version, applied = last,
                "stream gap: the event waits in held_events until the versions before it are applied"
            );
            hold(tx, record, &event).await?;
            return Ok(Outcome::Held);
        }
        self.apply_in_order(tx, record, &event, last).await
    }

    /// Applies `event`, the next version of its stream after `last`, under a
    /// savepoint, retrying a failing handler before dead-lettering the event.
    async fn apply_in_order(
        &self,
        tx: &mut PgConnection,
        record: &Received,
        event: &ConsumedEvent,
        last: i64,
    ) -> Result<Outcome, ConsumerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                sqlx::query("SAVEPOINT sluice_event")
                    .execute(&mut *tx)
                    .await?;
                match self.handler.apply(tx, event).await {
                    Ok(()) => {
                        let moved = StreamMove {
                            topic: &event.topic,
                            stream_id: &event.stream_id,
                            from: last,
                            to: event.stream_version,
                        };
                        if !advance_streams(tx, &[moved]).await? {
                            // Another consumer of this database applied it meanwhile.
                            sqlx::query("ROLLBACK TO SAVEPOINT sluice_event")
                                .execute(&mut *tx)
                                .await?;
                            return Ok(Outcome::Duplicate);
                        }
                        sqlx::query("RELEASE SAVEPOINT sluice_event")
                            .execute(&mut *tx)
                            .await?;
                        Ok(())
                    }
                    Err(e) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT sluice_event")
                            .execute(&mut *tx)
                            .await?;
                        Err(e)
                    }
                }
            };
            match result {
                Ok(()) => return Ok(Outcome::Applied),
                Err(error) => {
                    let poison = matches!(error, HandlerError::Poison(_));
                    if poison || attempt >= self.config.max_attempts {
                        tracing::warn!(event_id = %event.event_id, event_type = %event.event_type, attempts = attempt, %error, "event dead-lettered");
                        dead_letter(tx, record, Some(event), &error.to_string(), attempt).await?;
                        return Ok(Outcome::DeadLettered);
                    }
                    tokio::time::sleep(self.config.retry_backoff * 2u32.pow(attempt - 1)).await;
                }
            }
        }
    }

    /// Applies the held events whose stream has caught up with them, each stream in
    /// version order, in a transaction of their own; a stream still missing a version
    /// backs off (doubling up to a minute). Reports the held streams and events.
    async fn release_held(
        &self,
        dlq: &FutureProducer,
        generation: Uuid,
    ) -> Result<(), ConsumerError> {
        let mut tx = self.pool.begin().await?;
        if !holds_generation(&mut tx, generation).await? {
            tx.rollback().await?;
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT topic, stream_id, stream_version, partition, kafka_offset, headers, payload_bytes \
               FROM held_events WHERE next_attempt_at <= clock_timestamp() \
              ORDER BY topic, stream_id, stream_version",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut still_missing: std::collections::BTreeSet<(String, String)> = Default::default();
        let mut dead = Vec::new();
        let mut released = 0u64;
        for row in &rows {
            let (topic, stream_id, version): (String, String, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let stream = (topic.clone(), stream_id.clone());
            if still_missing.contains(&stream) {
                continue;
            }
            let headers: serde_json::Value = row.try_get(5)?;
            let record = Received {
                topic: topic.clone(),
                partition: row.try_get(3)?,
                offset: row.try_get(4)?,
                key: stream_id.clone(),
                payload: row.try_get(6)?,
                headers: serde_json::from_value(headers).unwrap_or_default(),
            };
            let last: i64 = sqlx::query_scalar(
                "SELECT version FROM stream_positions WHERE topic = $1 AND stream_id = $2",
            )
            .bind(&topic)
            .bind(&stream_id)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
            if version > last + 1 {
                sqlx::query(
                    "UPDATE held_events SET attempts = attempts + 1, \
                            next_attempt_at = clock_timestamp() \
                              + make_interval(secs => least(60, power(2, least(attempts, 6)))) \
                      WHERE topic = $1 AND stream_id = $2",
                )
                .bind(&topic)
                .bind(&stream_id)
                .execute(&mut *tx)
                .await?;
                still_missing.insert(stream);
                continue;
            }
            sqlx::query(
                "DELETE FROM held_events WHERE topic = $1 AND stream_id = $2 AND stream_version = $3",
            )
            .bind(&topic)
            .bind(&stream_id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            if version <= last {
                continue; // applied meanwhile: a duplicate
            }
            let outcome = match decode(&self.catalog, &record) {
                Ok(event) => self.apply_in_order(&mut tx, &record, &event, last).await?,
                Err(error) => {
                    dead_letter(&mut tx, &record, None, &error, 1).await?;
                    Outcome::DeadLettered
                }
            };
            match outcome {
                Outcome::Applied => released += 1,
                Outcome::DeadLettered => dead.push(record),
                Outcome::Duplicate | Outcome::Held => {}
            }
        }
        let (streams, events): (i64, i64) =
            sqlx::query_as("SELECT count(DISTINCT (topic, stream_id)), count(*) FROM held_events")
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        crate::telemetry::consumer_held(&self.component, streams, events);
        if released > 0 {
            tracing::info!(
                released,
                still_held = events,
                "held events applied: their streams caught up"
            );
        }
        for record in &dead {
            self.publish_dead_letter(dlq, record);
        }
        Ok(())
    }

    /// Announces a dead letter on `<component>.dlq`. Fire and forget: the dead-letter
    /// row is the record of truth, the topic a notification, and the consumer must
    /// not wait on it.
    fn publish_dead_letter(&self, dlq: &FutureProducer, record: &Received) {
        if !self.config.announce_dead_letters {
            return;
        }
        let topic = self.dead_letter_topic();
        let enqueued = dlq.send_result(
            FutureRecord::to(&topic)
                .key(&record.key)
                .payload(&record.payload),
        );
        if let Err((e, _)) = enqueued {
            tracing::warn!(%topic, error = %e, "dead letter not published to its topic");
        }
    }

    /// `<component>.dlq` as the broker names it.
    fn dead_letter_topic(&self) -> String {
        self.config
            .topic_names
            .physical(&format!("{}.dlq", self.component))
    }

    /// Reports each partition's lag in events (the watermark requests on a blocking
    /// thread, not awaited) and the last record's lag in seconds.
    fn report_lag(&self, consumer: &Arc<StreamConsumer>, last: Option<&Received>) {
        let (consumer, names) = (consumer.clone(), self.config.topic_names.clone());
        let component = self.component.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(positions) = consumer.position() else {
                return;
            };
            for element in positions.elements() {
                let Offset::Offset(position) = element.offset() else {
                    continue;
                };
                if let Ok((_, high)) = consumer.fetch_watermarks(
                    element.topic(),
                    element.partition(),
                    Duration::from_millis(500),
                ) {
                    crate::telemetry::consumer_lag(
                        &component,
                        names.logical(element.topic()).unwrap_or(element.topic()),
                        element.partition(),
                        high - position,
                    );
                }
            }
        });
        if let Some(record) = last {
            if let Some(at) = record
                .headers
                .get("recorded_at")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            {
                let seconds =
                    (Utc::now() - at.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0;
                crate::telemetry::consumer_lag_seconds(
                    &self.component,
                    &record.topic,
                    record.partition,
                    seconds,
                );
            }
        }
    }
}

/// The high watermark of every partition in `partitions` (logical topic names),
/// asked on a blocking thread.
async fn high_watermarks(
    consumer: Arc<StreamConsumer>,
    names: TopicNames,
    partitions: Vec<(String, i32)>,
) -> Result<BTreeMap<(String, i32), i64>, ConsumerError> {
    tokio::task::spawn_blocking(move || {
        partitions
            .into_iter()
            .map(|(topic, partition)| {
                let (_, high) = consumer.fetch_watermarks(
                    &names.physical(&topic),
                    partition,
                    Duration::from_secs(10),
                )?;
                Ok(((topic, partition), high))
            })
            .collect()
    })
    .await
    .map_err(|e| ConsumerError::Blocking(e.to_string()))?
}

/// Whether `event`'s stream has events held behind a gap (they go first).
async fn is_parked(tx: &mut PgConnection, event: &ConsumedEvent) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM held_events WHERE topic = $1 AND stream_id = $2)",
    )
    .bind(&event.topic)
    .bind(&event.stream_id)
    .fetch_one(&mut *tx)
    .await
}

/// Parks `record` (of `event`) in `held_events` until its stream catches up.
async fn hold(
    tx: &mut PgConnection,
    record: &Received,
    event: &ConsumedEvent,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO held_events (topic, stream_id, stream_version, partition, kafka_offset, \
                                  headers, payload_bytes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (topic, stream_id, stream_version) DO NOTHING",
    )
    .bind(&event.topic)
    .bind(&event.stream_id)
    .bind(event.stream_version)
    .bind(record.partition)
    .bind(record.offset)
    .bind(serde_json::to_value(&record.headers).unwrap_or_default())
    .bind(&record.payload)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A stream's position moving from the version it was read at to a later one.
struct StreamMove<'a> {
    topic: &'a str,
    stream_id: &'a str,
    /// The version read before applying (0: the stream had no position).
    from: i64,
    to: i64,
}

/// Moves stream positions by compare-and-set, inside the transaction that applied
/// the events: each from the version it was read at, or not at all. False when any
/// stream was moved on by another transaction since it was read (a second instance
/// of this consumer, a dead-letter replay): the caller rolls its changes back, as
/// they are in already. Concurrent movers of one stream serialize on its row (or,
/// for a new stream, on the key), so at most one of them applies each version.
async fn advance_streams(
    tx: &mut PgConnection,
    moves: &[StreamMove<'_>],
) -> Result<bool, sqlx::Error> {
    if moves.is_empty() {
        return Ok(true);
    }
    let topics: Vec<&str> = moves.iter().map(|m| m.topic).collect();
    let streams: Vec<&str> = moves.iter().map(|m| m.stream_id).collect();
    let from: Vec<i64> = moves.iter().map(|m| m.from).collect();
    let to: Vec<i64> = moves.iter().map(|m| m.to).collect();
    let moved: i64 = sqlx::query_scalar(include_str!("consumer_advance_streams.sql"))
        .bind(&topics)
        .bind(&streams)
        .bind(&from)
        .bind(&to)
        .fetch_one(&mut *tx)
        .await?;
    Ok(moved == moves.len() as i64)
}

/// Takes this consumer's generation row FOR SHARE, held until `tx` ends: a rebuild's
/// swap waits for the transaction, and a transaction that waited for a swap sees the
/// row retired. False when the database holds another generation than `generation`.
async fn holds_generation(tx: &mut PgConnection, generation: Uuid) -> Result<bool, sqlx::Error> {
    let (current, retired): (Uuid, bool) =
        sqlx::query_as("SELECT generation, retired FROM consumer_generation FOR SHARE")
            .fetch_one(&mut *tx)
            .await?;
    Ok(current == generation && !retired)
}

/// Whether a `recv` error is one librdkafka recovers from by itself (a broker's
/// connection refused or reset, a leader not available yet). Fatal client errors and
/// anything else stop the consumer.
fn is_transient(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumption(_))
}

/// A record as received, under its topic's logical name.
fn received(m: &rdkafka::message::BorrowedMessage<'_>, names: &TopicNames) -> Received {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Received {
        // Only topics of the namespace are assigned.
        topic: names.logical(m.topic()).unwrap_or(m.topic()).to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// The envelope from the headers and the payload from Avro.
fn decode(catalog: &SchemaCatalog, record: &Received) -> Result<ConsumedEvent, String> {
    let header = |k: &str| {
        record
            .headers
            .get(k)
            .cloned()
            .ok_or_else(|| format!("header `{k}` missing"))
    };
    let number = |k: &str| -> Result<i64, String> {
        header(k)?.parse().map_err(|e| format!("header `{k}`: {e}"))
    };
    let optional_uuid = |k: &str| record.headers.get(k).and_then(|v| Uuid::parse_str(v).ok());
    let decoded = catalog
        .decode_single_object(&record.payload)
        .map_err(|e| e.to_string())?;
    Ok(ConsumedEvent {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        event_id: Uuid::parse_str(&header("event_id")?).map_err(|e| format!("event_id: {e}"))?,
        event_type: decoded.event_type,
        schema_version: decoded.schema_version,
        stream_id: record.key.clone(),
        stream_type: header("stream_type")?,
        stream_version: number("stream_version")?,
        global_position: number("global_position")?,
        payload: decoded.payload,
        metadata: Metadata {
            correlation_id: optional_uuid("correlation_id"),
            causation_id: optional_uuid("causation_id"),
            traceparent: record.headers.get("traceparent").cloned(),
            actor: record.headers.get("actor").cloned(),
        },
        recorded_at: DateTime::parse_from_rfc3339(&header("recorded_at")?)
            .map_err(|e| format!("recorded_at: {e}"))?
            .with_timezone(&Utc),
    })
}

async fn dead_letter(
    tx: &mut PgConnection,
    record: &Received,
    event: Option<&ConsumedEvent>,
    error: &str,
    attempts: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letters (topic, partition, kafka_offset, stream_id, event_id, event_type, \
                                   headers, payload_bytes, event, error, attempts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (topic, partition, kafka_offset) DO UPDATE \
         SET error = EXCLUDED.error, attempts = dead_letters.attempts + EXCLUDED.attempts, \
             last_failed_at = clock_timestamp()",
    )
    .bind(&record.topic)
    .bind(record.partition)
    .bind(record.offset)
    .bind(&record.key)
    .bind(event.map(|e| e.event_id))
    .bind(event.map(|e| e.event_type.clone()))
    .bind(serde_json::to_value(&record.headers).unwrap_or_default())
    .bind(&record.payload)
    .bind(event.and_then(|e| serde_json::to_value(e).ok()))
    .bind(error)
    .bind(attempts as i32)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A dead letter as `sluice dlq list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub stream_id: String,
    pub event_type: Option<String>,
    pub error: String,
    pub attempts: i32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

/// Dead letters in the order they failed; only those not yet replayed unless `all`.
pub async fn dead_letters(pool: &PgPool, all: bool) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, topic, partition, kafka_offset, stream_id, event_type, error, attempts, \
                first_failed_at, last_failed_at, replayed_at \
           FROM dead_letters WHERE $1 OR replayed_at IS NULL ORDER BY id",
    )
    .bind(all)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get(0)?,
                topic: r.try_get(1)?,
                partition: r.try_get(2)?,
                offset: r.try_get(3)?,
                stream_id: r.try_get(4)?,
                event_type: r.try_get(5)?,
                error: r.try_get(6)?,
                attempts: r.try_get(7)?,
                first_failed_at: r.try_get(8)?,
                last_failed_at: r.try_get(9)?,
                replayed_at: r.try_get(10)?,
            })
        })
        .collect()
}

/// What a replay did with one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Applied now; marked replayed.
    Applied(i64),
    /// Its stream had already moved past it; marked replayed.
    AlreadyApplied(i64),
    /// Failed again; stays a dead letter with the new error.
    Failed(i64, String),
}

/// Applies dead letters again (all unreplayed ones in failure order, or `ids`), each
/// in its own transaction with its stream position. Undecodable ones are decoded
/// anew, so a consumer upgraded with a newer schema can take them.
pub async fn replay_dead_letters<H: EventHandler>(
    pool: &PgPool,
    catalog: &SchemaCatalog,
    handler: &H,
    ids: Option<&[i64]>,
) -> Result<Vec<Replayed>, ConsumerError> {
    let rows = sqlx::query(
        "SELECT id, topic, partition, kafka_offset, stream_id, headers, payload_bytes \
           FROM dead_letters \
          WHERE replayed_at IS NULL AND ($1::bigint[] IS NULL OR id = ANY($1)) ORDER BY id",
    )
    .bind(ids.map(<[i64]>::to_vec))
    .fetch_all(pool)
    .await?;
    let mut report = Vec::new();
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let headers: serde_json::Value = row.try_get(5)?;
        let record = Received {
            topic: row.try_get(1)?,
            partition: row.try_get(2)?,
            offset: row.try_get(3)?,
            key: row.try_get(4)?,
            payload: row.try_get(6)?,
            headers: serde_json::from_value(headers).unwrap_or_default(),
        };
        let mut tx = pool.begin().await?;
        let outcome = match decode(catalog, &record) {
            Err(error) => Replayed::Failed(id, error),
            Ok(event) => {
                let last: i64 = sqlx::query_scalar(
                    "SELECT version FROM stream_positions WHERE topic = $1 AND stream_id = $2",
                )
                .bind(&event.topic)
                .bind(&event.stream_id)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0);
                if event.stream_version <= last {
                    Replayed::AlreadyApplied(id)
                } else if event.stream_version != last + 1 {
                    Replayed::Failed(
                        id,
                        format!(
                            "stream {} is at version {last}; version {} needs the ones before it first",
                            event.stream_id, event.stream_version
                        ),
                    )
                } else {
                    sqlx::query("SAVEPOINT sluice_replay")
                        .execute(&mut *tx)
                        .await?;
                    let moved = StreamMove {
                        topic: &event.topic,
                        stream_id: &event.stream_id,
                        from: last,
                        to: event.stream_version,
                    };
                    match handler.apply(&mut tx, &event).await {
                        Ok(()) if advance_streams(&mut tx, &[moved]).await? => {
                            Replayed::Applied(id)
                        }
                        // The live consumer applied it meanwhile.
                        Ok(()) => {
                            sqlx::query("ROLLBACK TO SAVEPOINT sluice_replay")
                                .execute(&mut *tx)
                                .await?;
                            Replayed::AlreadyApplied(id)
                        }
                        Err(e) => Replayed::Failed(id, e.to_string()),
                    }
                }
            }
        };
        match &outcome {
            Replayed::Applied(_) | Replayed::AlreadyApplied(_) => {
                sqlx::query(
                    "UPDATE dead_letters SET replayed_at = clock_timestamp() WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Replayed::Failed(_, error) => {
                tx.rollback().await?;
                sqlx::query(
                    "UPDATE dead_letters SET error = $2, attempts = attempts + 1, \
                     last_failed_at = clock_timestamp() WHERE id = $1",
                )
                .bind(id)
                .bind(error)
                .execute(pool)
                .await?;
            }
        }
        report.push(outcome);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    #[test]
    fn a_broker_going_away_is_transient_and_a_fatal_error_is_not() {
        assert!(is_transient(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
        assert!(is_transient(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::LeaderNotAvailable
        )));
        assert!(!is_transient(&KafkaError::MessageConsumptionFatal(
            RDKafkaErrorCode::Fatal
        )));
    }
}
