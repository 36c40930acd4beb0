//! Assignment: every partition of the consumer's topics, at the offsets stored in
//! its own database (the shared [`assign_at_stored`]; ADR 7).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};

use super::positions::{ConsumerPositions, Offsets};
use super::{ConsumerError, ConsumerRuntime, EventHandler};
use crate::broker::{assign_at_stored, self_assigning_reader};

impl<H: EventHandler> ConsumerRuntime<H> {
    /// Assigns every partition of the topics at the stored next offsets; returns the
    /// consumer and where each partition starts (its low watermark when nothing is
    /// stored yet).
    pub(super) async fn assign(&self) -> Result<(Arc<StreamConsumer>, Offsets), ConsumerError> {
        let consumer: StreamConsumer =
            self_assigning_reader(&self.bootstrap, &format!("sluice.{}", self.component))
                .set("fetch.wait.max.ms", "10")
                .create()?;
        let consumer = Arc::new(consumer);
        // A metadata request blocks for up to its timeout: on a blocking thread.
        let (topics, names) = (self.topics.clone(), self.config.topic_names.clone());
        let asking = consumer.clone();
        let partitions = tokio::task::spawn_blocking(move || {
            let mut partitions = Vec::new();
            for topic in topics {
                let physical = names.physical(&topic);
                let metadata = asking.fetch_metadata(Some(&physical), Duration::from_secs(10))?;
                let count = metadata
                    .topics()
                    .first()
                    .map(|t| t.partitions().len())
                    .filter(|n| *n > 0)
                    .ok_or(ConsumerError::MissingTopic(physical))?;
                partitions.extend((0..count as i32).map(|p| (topic.clone(), p)));
            }
            Ok::<_, ConsumerError>(partitions)
        })
        .await
        .map_err(|e| ConsumerError::Blocking(e.to_string()))??;
        let starts = assign_at_stored(
            &consumer,
            &self.config.topic_names,
            partitions,
            &ConsumerPositions(&self.pool),
            &self.component,
        )
        .await?;
        Ok((consumer, starts))
    }
}
