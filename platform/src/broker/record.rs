//! How the platform's readers (the consumer runtime, the DuckDB sink, the tests)
//! read topics: a consumer that assigns its partitions itself at offsets it keeps
//! in its own store (ADR 7), and the one conversion of a Kafka message into a
//! [`Record`].

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Headers, Message};
use rdkafka::Offset;

use crate::registry::TopicNames;

/// The settings of a reader that assigns its partitions itself and keeps its
/// offsets in its own store: `group.id` (`name`) only names it on the broker,
/// nothing is committed there, and a partition without a stored offset starts at
/// its beginning.
pub fn self_assigning_reader(bootstrap: &str, name: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", name)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("log_level", "3");
    config
}

/// Where a partition's reading starts: its stored next offset, or its beginning.
pub fn start_offset(stored: Option<i64>) -> Offset {
    stored.map_or(Offset::Beginning, Offset::Offset)
}

/// One record read from a topic, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The topic's logical name (`orders.events`), without the namespace's prefix.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record key: the stream id (lossy UTF-8).
    pub key: String,
    /// The value: the Avro single-object encoding.
    pub payload: Vec<u8>,
    /// The envelope headers, as UTF-8 text (lossy).
    pub headers: BTreeMap<String, String>,
}

impl Record {
    /// `message`, its topic under its logical name in `names` (a topic outside the
    /// namespace keeps its own name: readers assign only the namespace's topics).
    pub fn from_message<M: Message>(message: &M, names: &TopicNames) -> Self {
        let text =
            |bytes: Option<&[u8]>| String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned();
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), text(h.value)))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            topic: names
                .logical(message.topic())
                .unwrap_or(message.topic())
                .to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: text(message.key()),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }

    /// The header `key`, when the record has it.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.get(key).map(String::as_str)
    }
}
