//! The consumer's loops: consume until shutdown, catch up to the topics' ends (a
//! rebuild, a benchmark) or to a given cut (`sluice verify`), reading batches and
//! reporting lag.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::positions::{self, advance_offsets};
use super::{ConsumerConfig, ConsumerError, ConsumerRuntime, EventHandler, HELD_RETRY};
use crate::avro::SchemaCatalog;
use crate::broker::{consumer_positions, lags, Record};
use crate::registry::TopicNames;

/// How long an idle consumer waits for a record before checking whether a rebuild
/// swapped its read model.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How often a consumer reports its lag (`sluice_consumer_lag_events`), busy or idle.
const LAG_REPORT: Duration = Duration::from_secs(2);

/// What became of a batch.
pub(super) enum BatchOutcome {
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

/// What became of one event.
pub(super) enum Outcome {
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
                if let BatchOutcome::GenerationChanged =
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
                if let BatchOutcome::GenerationChanged =
                    self.apply_batch(&batch, &dlq, generation).await?
                {
                    return Err(ConsumerError::GenerationChanged);
                }
                advance_offsets(&mut positions, &batch);
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
            if let BatchOutcome::GenerationChanged =
                self.apply_batch(&batch, &dlq, generation).await?
            {
                return Err(ConsumerError::GenerationChanged);
            }
            advance_offsets(&mut positions, &batch);
            applied += batch.len() as u64;
        }
        Ok(applied)
    }

    /// The generation of the read model this consumer's database holds.
    async fn generation(&self) -> Result<Uuid, ConsumerError> {
        Ok(positions::generation(&self.pool).await?)
    }

    /// Waits (up to [`IDLE_CHECK`]) for one record, then gathers more for up to
    /// `batch_wait`. Empty when nothing arrived.
    pub(super) async fn next_batch(
        &self,
        consumer: &StreamConsumer,
    ) -> Result<Vec<Record>, ConsumerError> {
        let mut batch = Vec::new();
        // Giving up on `recv` before it yields loses nothing: no record was taken.
        let Ok(first) = tokio::time::timeout(IDLE_CHECK, consumer.recv()).await else {
            return Ok(batch);
        };
        let names = &self.config.topic_names;
        match first {
            Ok(message) => batch.push(Record::from_message(&message, names)),
            Err(e) if is_transient(&e) => {
                self.report_transient(&e);
                return Ok(batch);
            }
            Err(e) => return Err(e.into()),
        }
        let deadline = tokio::time::Instant::now() + self.config.batch_wait;
        while batch.len() < self.config.batch_size {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) => batch.push(Record::from_message(&message, names)),
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

    /// Reports each partition's lag in events (the watermark requests on a blocking
    /// thread, not awaited) and the last record's lag in seconds.
    fn report_lag(&self, consumer: &Arc<StreamConsumer>, last: Option<&Record>) {
        let (consumer, names) = (consumer.clone(), self.config.topic_names.clone());
        let component = self.component.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(positions) = consumer_positions(&*consumer, &names) else {
                return;
            };
            let timeout = Duration::from_millis(500);
            for ((topic, partition), lag) in lags(&*consumer, &names, positions, timeout) {
                crate::telemetry::consumer_lag(&component, &topic, partition, lag);
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

/// Whether a `recv` error is one librdkafka recovers from by itself (a broker's
/// connection refused or reset, a leader not available yet). Fatal client errors and
/// anything else stop the consumer.
fn is_transient(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumption(_))
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
