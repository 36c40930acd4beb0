//! Self-assignment, shared by every reader of the services' topics: the consumer
//! runtime (positions in the consumer's PostgreSQL database) and the analytics sink
//! (positions in DuckDB). Each partition is assigned at the next offset its reader's
//! own store holds, written in the transaction that applied the records before it
//! (no consumer group, nothing committed on the broker; ADR 7), and each reader's
//! lag is measured against the broker's high watermarks the same way.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::registry::TopicNames;

/// A partition of a topic, under the topic's logical name (`orders.events`).
pub type Partition = (String, i32);

/// An offset per partition: the next offset to read, or a watermark.
pub type Offsets = BTreeMap<Partition, i64>;

/// How long a watermark request waits for the broker.
const WATERMARKS: Duration = Duration::from_secs(10);

/// Where a reader keeps the next offset of each partition it has applied records
/// from: beside what it applied, in the same transaction, so that the two never
/// disagree after a crash.
pub trait PositionStore {
    /// Why the positions cannot be read.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stored next offset of every partition the reader has applied from.
    fn stored_offsets(&self) -> impl Future<Output = Result<Offsets, Self::Error>> + Send;
}

/// Why partitions could not be assigned.
#[derive(Debug, thiserror::Error)]
pub enum AssignError<E: std::error::Error + 'static> {
    /// The reader's store could not say where to resume.
    #[error("cannot read the stored positions: {0}")]
    Positions(#[source] E),
    /// The broker refused a watermark request or the assignment.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The blocking thread of the broker requests failed.
    #[error("a broker request on a blocking thread failed: {0}")]
    Blocking(String),
}

/// Adds `partitions` to `consumer`'s assignment (`incremental_assign`), each at the
/// next offset `store` holds for it, or at its beginning when it holds none.
/// Returns where each partition starts: the stored offset, or the partition's low
/// watermark. `reader` names the reader in the warning about a stored offset beyond
/// the broker's end.
pub async fn assign_at_stored<S: PositionStore>(
    consumer: &Arc<StreamConsumer>,
    names: &TopicNames,
    partitions: Vec<Partition>,
    store: &S,
    reader: &str,
) -> Result<Offsets, AssignError<S::Error>> {
    let stored = store
        .stored_offsets()
        .await
        .map_err(AssignError::Positions)?;
    let (asking, names, reader) = (consumer.clone(), names.clone(), reader.to_owned());
    // Watermark requests block for up to their timeouts: on a blocking thread.
    let (list, starts) =
        tokio::task::spawn_blocking(move || plan(&*asking, &names, partitions, &stored, &reader))
            .await
            .map_err(|e| AssignError::Blocking(e.to_string()))??;
    if list.count() > 0 {
        consumer.incremental_assign(&list)?;
    }
    Ok(starts)
}

/// The assignment of `partitions` at their `stored` offsets, and where each starts.
fn plan(
    consumer: &impl Consumer,
    names: &TopicNames,
    partitions: Vec<Partition>,
    stored: &Offsets,
    reader: &str,
) -> Result<(TopicPartitionList, Offsets), KafkaError> {
    let mut list = TopicPartitionList::new();
    let mut starts = Offsets::new();
    for (topic, partition) in partitions {
        let physical = names.physical(&topic);
        let (low, high) = consumer.fetch_watermarks(&physical, partition, WATERMARKS)?;
        let key = (topic, partition);
        let (offset, start) = match stored.get(&key) {
            Some(&next) => {
                if next > high {
                    // Nothing is lost by waiting, but nothing arrives either until
                    // the log grows past the stored position.
                    tracing::error!(
                        reader, topic = %key.0, partition, stored_next_offset = next, broker_end = high,
                        "this reader has applied more of the partition than the broker holds: \
                         the broker's log was reset or replaced (a deleted data directory?). \
                         It waits for offset {next}; rebuild a projection with `sluice projection rebuild`, \
                         or drop the databases too when resetting a development platform"
                    );
                }
                (Offset::Offset(next), next)
            }
            None => (Offset::Beginning, low),
        };
        tracing::debug!(reader, topic = %key.0, partition, ?offset, "assigning partition");
        list.add_partition_offset(&physical, partition, offset)?;
        starts.insert(key, start);
    }
    Ok((list, starts))
}

/// Each partition's lag in records: its high watermark less the next offset to read
/// (`None`: nothing read or stored yet, so the low watermark). Blocking, a
/// watermark request per partition; a partition whose watermarks cannot be had
/// within `timeout` is left out.
pub fn lags(
    consumer: &impl Consumer,
    names: &TopicNames,
    positions: impl IntoIterator<Item = (Partition, Option<i64>)>,
    timeout: Duration,
) -> Vec<(Partition, i64)> {
    positions
        .into_iter()
        .filter_map(|((topic, partition), next)| {
            match consumer.fetch_watermarks(&names.physical(&topic), partition, timeout) {
                Ok((low, high)) => {
                    let position = next.unwrap_or(low).max(low);
                    Some(((topic, partition), (high - position).max(0)))
                }
                Err(error) => {
                    tracing::debug!(%topic, partition, %error, "no watermarks for the lag");
                    None
                }
            }
        })
        .collect()
}

/// The next offset of every partition `consumer` is assigned and knows its place
/// in (none before its first fetch), by logical topic.
pub fn consumer_positions(
    consumer: &impl Consumer,
    names: &TopicNames,
) -> Result<Vec<(Partition, Option<i64>)>, KafkaError> {
    Ok(consumer
        .position()?
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(next) => {
                let topic = names.logical(e.topic()).unwrap_or(e.topic()).to_owned();
                Some(((topic, e.partition()), Some(next)))
            }
            _ => None,
        })
        .collect())
}
