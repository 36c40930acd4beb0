//! The reading side: finds every `*.events` topic, assigns its partitions at the
//! positions stored in the warehouse, and hands batches of records to the loader.
//!
//! Topics are found in the registry's namespace only (the broker's topics that start
//! with its prefix, [`TopicNames`]) and carry their logical names from here on: in
//! positions, `raw_events.topic` and every record handed to the loader.
//!
//! No consumer group coordinates anything and nothing is committed to the broker:
//! the warehouse's `sluice_positions` is the one record of progress. A partition
//! without a stored position is read from its beginning. The broker's metadata is
//! refreshed every `topic_refresh`, so a new topic or partition is picked up
//! while running.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use sluice_platform::broker::{assign_at_stored, lags, self_assigning_reader, AssignError};
use sluice_platform::registry::TopicNames;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::positions::WarehousePositions;
use super::record::SinkRecord;
use super::{telemetry, SinkConfig, SinkError, EAGER_SHARE};

/// The suffix of every topic the sink loads (of its logical name).
pub const TOPIC_SUFFIX: &str = ".events";

/// A partition of a topic under the topic's logical name.
type Partition = (String, i32);

/// The logical name of the broker's topic `physical` when the sink loads it: in the
/// namespace of `names` and named `*.events`.
fn loaded_topic<'a>(names: &TopicNames, physical: &'a str) -> Option<&'a str> {
    names
        .logical(physical)
        .filter(|logical| logical.ends_with(TOPIC_SUFFIX))
}

pub(crate) struct Reader {
    consumer: Arc<StreamConsumer>,
    config: SinkConfig,
    /// The namespace of the topics on the broker.
    names: TopicNames,
    /// Where the loader stores the positions.
    positions: WarehousePositions,
    /// Partitions assigned so far, with the next offset this reader will hand over.
    assigned: BTreeMap<Partition, i64>,
    /// The lag report in flight, if any.
    lag_report: Option<tokio::task::JoinHandle<()>>,
}

impl Reader {
    pub(crate) fn new(
        config: SinkConfig,
        names: TopicNames,
        positions: WarehousePositions,
    ) -> Result<Self, SinkError> {
        // Partitions are assigned by hand; the offsets live in DuckDB.
        let consumer: StreamConsumer = self_assigning_reader(&config.bootstrap, "sluice.sink")
            .set("fetch.wait.max.ms", "50")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .create()?;
        Ok(Reader {
            consumer: Arc::new(consumer),
            config,
            names,
            positions,
            assigned: BTreeMap::new(),
            lag_report: None,
        })
    }

    /// Reads until `shutdown`, sending batches to the loader. Returns when the
    /// loader is gone (it failed; its own error says why) or on shutdown.
    ///
    /// A batch closes when it holds `batch_size` records or `batch_wait` after its
    /// first record, or, while `loader_idle` says the loader waits with nothing
    /// queued, once it holds `batch_size / EAGER_SHARE` records: a sink starting
    /// on a backlog loads its first records at once instead of waiting for a full
    /// batch, and the batches grow to `batch_size` while the loader is busy. Live
    /// records still wait `batch_wait` (they arrive slower than that share).
    pub(crate) async fn run(
        mut self,
        batches: mpsc::Sender<Vec<SinkRecord>>,
        loader_idle: Arc<AtomicBool>,
        shutdown: CancellationToken,
    ) -> Result<(), SinkError> {
        let eager = (self.config.batch_size / EAGER_SHARE).max(1);
        let mut next_refresh = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_refresh {
                if let Err(error) = self.discover().await {
                    tracing::warn!(%error, "cannot refresh the topics; retrying");
                }
                self.report_lag();
                next_refresh = tokio::time::Instant::now() + self.config.topic_refresh;
            }
            // `recv` is cancel-safe: a record is taken off the queue only when the
            // future completes, so losing a race to the timer or shutdown loses
            // nothing.
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                // A loader that stopped is noticed at once, not at the next batch.
                _ = batches.closed() => return Err(SinkError::LoaderStopped),
                _ = tokio::time::sleep_until(next_refresh) => continue,
                message = self.consumer.recv() => message,
            };
            let mut batch = Vec::with_capacity(self.config.batch_size);
            match first {
                Ok(message) => batch.push(SinkRecord::from_message(&message, &self.names)),
                Err(error) => {
                    tracing::warn!(%error, "kafka error while reading");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            let deadline = tokio::time::Instant::now() + self.config.batch_wait;
            while batch.len() < self.config.batch_size {
                if batch.len() >= eager && loader_idle.load(Ordering::Relaxed) {
                    break;
                }
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(message)) => batch.push(SinkRecord::from_message(&message, &self.names)),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "kafka error while reading");
                        break;
                    }
                    Err(_) => break,
                }
            }
            for r in &batch {
                if let Some(next) = self.assigned.get_mut(&(r.topic.clone(), r.partition)) {
                    *next = r.offset + 1;
                }
            }
            // Waits while the loader is busy: the bounded channel is the
            // back-pressure, and the records stay in librdkafka's queue meanwhile.
            if batches.send(batch).await.is_err() {
                return Err(SinkError::LoaderStopped);
            }
        }
    }

    /// Assigns the partitions of the namespace's `*.events` topics not assigned yet,
    /// at their stored positions (the beginning when there is none).
    async fn discover(&mut self) -> Result<(), SinkError> {
        let consumer = Arc::clone(&self.consumer);
        let names = self.names.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|m| {
                    m.topics()
                        .iter()
                        .filter(|t| t.error().is_none())
                        .filter_map(|t| loaded_topic(&names, t.name()).map(|logical| (logical, t)))
                        .flat_map(|(logical, t)| {
                            t.partitions()
                                .iter()
                                .map(move |p| (logical.to_owned(), p.id()))
                        })
                        .collect::<BTreeSet<Partition>>()
                })
        })
        .await
        .map_err(|e| SinkError::LoaderThread(format!("metadata task: {e}")))??;
        let fresh: Vec<Partition> = metadata
            .into_iter()
            .filter(|p| !self.assigned.contains_key(p))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let starts = assign_at_stored(&self.consumer, &self.names, fresh, &self.positions, "sink")
            .await
            .map_err(|e| match e {
                AssignError::Positions(e) => e,
                AssignError::Kafka(e) => SinkError::Kafka(e),
                AssignError::Blocking(e) => SinkError::LoaderThread(e),
            })?;
        for ((topic, partition), start) in starts {
            tracing::info!(%topic, partition, start, "assigned partition");
            self.assigned.insert((topic, partition), start);
        }
        telemetry::partitions(self.assigned.len());
        Ok(())
    }

    /// Records not yet read per partition, against the high watermarks; on a
    /// blocking thread (the watermark query is a broker round trip), one report
    /// at a time.
    fn report_lag(&mut self) {
        if self.lag_report.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let partitions: Vec<(Partition, Option<i64>)> = self
            .assigned
            .iter()
            .map(|(p, next)| (p.clone(), Some(*next)))
            .collect();
        let consumer = Arc::clone(&self.consumer);
        let names = self.names.clone();
        self.lag_report = Some(tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_millis(500);
            for ((topic, partition), lag) in lags(&*consumer, &names, partitions, timeout) {
                telemetry::lag_records(&topic, partition, lag);
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_event_topics_of_the_namespace_are_loaded_under_their_logical_names() {
        let names = TopicNames::new("t_1a2b.");
        assert_eq!(
            loaded_topic(&names, "t_1a2b.orders.events"),
            Some("orders.events")
        );
        assert_eq!(loaded_topic(&names, "t_1a2b.order_view.dlq"), None);
        assert_eq!(loaded_topic(&names, "orders.events"), None);
        assert_eq!(loaded_topic(&names, "t_ffff.orders.events"), None);
        let none = TopicNames::default();
        assert_eq!(loaded_topic(&none, "orders.events"), Some("orders.events"));
        assert_eq!(loaded_topic(&none, "__consumer_offsets"), None);
    }
}
