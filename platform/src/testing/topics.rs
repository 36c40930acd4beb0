//! Records read back from a topic, and topic sizes.

use super::unique_suffix;
/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: std::collections::BTreeMap<String, String>,
}

impl Consumed {
    pub fn header(&self, key: &str) -> &str {
        self.headers.get(key).map_or("", String::as_str)
    }
}

/// Reads every partition of `topic` from the beginning until `at_least` records
/// arrived (or `timeout`), then drains what else is there; records in partition
/// order.
pub async fn consume(
    bootstrap: &str,
    topic: &str,
    at_least: usize,
    timeout: std::time::Duration,
) -> Vec<Consumed> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || consume_blocking(&bootstrap, &topic, at_least, timeout))
        .await
        .expect("consumer thread")
}

fn consume_blocking(
    bootstrap: &str,
    topic: &str,
    at_least: usize,
    timeout: std::time::Duration,
) -> Vec<Consumed> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::{Duration, Instant};
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-{}", unique_suffix()))
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign partitions");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let r = crate::broker::Record::from_message(
                    &m,
                    &crate::registry::TopicNames::default(),
                );
                out.push(Consumed {
                    partition: r.partition,
                    offset: r.offset,
                    key: r.key,
                    payload: r.payload,
                    headers: r.headers,
                });
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            None => {
                if out.len() >= at_least && quiet_since.elapsed() > Duration::from_millis(500) {
                    break;
                }
            }
        }
    }
    out
}

/// Records in a topic: the sum of its partitions' high watermarks; 0 while the
/// broker cannot tell yet (callers poll).
pub async fn topic_size(bootstrap: &str, topic: &str) -> i64 {
    crate::broker::topic_size(bootstrap, topic)
        .await
        .unwrap_or(0)
}
