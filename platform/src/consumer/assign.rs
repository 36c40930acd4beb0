//! Assignment: every partition of the consumer's topics, at the offsets stored in
//! its own database (no consumer group, nothing committed on the broker; ADR 7).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use super::positions::{stored_offsets, Offsets};
use super::{ConsumerError, ConsumerRuntime, EventHandler};
use crate::broker::self_assigning_reader;

impl<H: EventHandler> ConsumerRuntime<H> {
    /// Assigns every partition of the topics at the stored next offsets; returns the
    /// consumer and where each partition starts (its low watermark when nothing is
    /// stored yet).
    pub(super) async fn assign(&self) -> Result<(Arc<StreamConsumer>, Offsets), ConsumerError> {
        let consumer: StreamConsumer =
            self_assigning_reader(&self.bootstrap, &format!("sluice.{}", self.component))
                .set("fetch.wait.max.ms", "10")
                .create()?;
        let positions = stored_offsets(&self.pool).await?;
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
}
