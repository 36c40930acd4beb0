//! Topics in the registry: `[topics."<name>"]`, their names on the broker
//! ([`TopicNames`]) and the replication the platform creates them with.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Registry;
use crate::broker::TopicSpec;

/// A Kafka topic (`[topics."<name>"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub partitions: u32,
    /// Topic-level Kafka settings (`"retention.ms" = "86400000"`), over
    /// [`EVENT_TOPIC_DEFAULTS`] and `[platform].min_insync_replicas`. Values may be
    /// written as strings, integers or booleans.
    #[serde(default, deserialize_with = "config_values")]
    pub config: BTreeMap<String, String>,
}

/// The topic-level settings every event topic gets unless its
/// `[topics."<name>"].config` says otherwise (`min.insync.replicas` comes from
/// `[platform].min_insync_replicas`):
///
/// - `retention.ms = -1`: the history is kept forever, so a read model or the
///   warehouse rebuilt from offset 0 never finds events expired by the broker's
///   default retention (7 days on Apache Kafka);
/// - `cleanup.policy = delete`: never compacted; every event of a stream stays.
pub const EVENT_TOPIC_DEFAULTS: [(&str, &str); 2] =
    [("retention.ms", "-1"), ("cleanup.policy", "delete")];

/// Accepts `"text"`, integers and booleans as topic setting values.
fn config_values<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Integer(i64),
        Boolean(bool),
    }
    let raw = BTreeMap::<String, Value>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Text(t) => t,
                Value::Integer(i) => i.to_string(),
                Value::Boolean(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// The namespace of the platform's topics on the broker: `[platform].topic_prefix`
/// in front of every logical name. The one place where logical and broker (physical)
/// topic names meet: whatever names a topic to Kafka goes through
/// [`physical`](Self::physical), whatever reads a topic name from Kafka through
/// [`logical`](Self::logical).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    /// The namespace of `prefix` (empty: topics are named on the broker as they are).
    pub fn new(prefix: impl Into<String>) -> Self {
        TopicNames {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The broker's name of the logical topic `logical`.
    pub fn physical(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// The logical name of the broker's topic `physical`; `None` when it is not in
    /// this namespace (another environment's topic, or the bare prefix).
    pub fn logical<'a>(&self, physical: &'a str) -> Option<&'a str> {
        physical
            .strip_prefix(self.prefix.as_str())
            .filter(|logical| !logical.is_empty())
    }
}

/// Why a topic prefix cannot name topics: Kafka topic names are ASCII letters,
/// digits, `.`, `_` and `-`, at most 249 characters.
pub(super) fn invalid_topic_prefix(prefix: &str) -> Option<String> {
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "topic_prefix `{prefix}` has `{c}`: Kafka topic names are ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    if prefix.len() > 200 {
        return Some(format!(
            "topic_prefix `{prefix}` is longer than 200 characters (topic names end at 249)"
        ));
    }
    None
}

/// Replication of every topic the platform creates (`[platform]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Replicas per partition.
    pub factor: u16,
    /// `min.insync.replicas`: replicas that must have a record before `acks=all`
    /// acknowledges it.
    pub min_insync: u16,
}

impl Default for Replication {
    /// One replica: a development broker.
    fn default() -> Self {
        Replication {
            factor: 1,
            min_insync: 1,
        }
    }
}

impl Replication {
    /// An event topic: `partitions` partitions, this replication,
    /// [`EVENT_TOPIC_DEFAULTS`] and then `config` over them.
    pub fn event_topic(
        &self,
        name: String,
        partitions: u32,
        config: &BTreeMap<String, String>,
    ) -> TopicSpec {
        let mut spec = TopicSpec::new(name, partitions)
            .with_replication_factor(self.factor)
            .with_config("min.insync.replicas", self.min_insync.to_string());
        for (key, value) in EVENT_TOPIC_DEFAULTS {
            spec = spec.with_config(key, value);
        }
        for (key, value) in config {
            spec = spec.with_config(key, value.clone());
        }
        spec
    }

    /// A dead-letter topic (`<component>.dlq`): one partition, this replication and
    /// `cleanup.policy = delete`. Its retention is the broker's: the dead-letter
    /// table in the consumer's database is the record of truth, the topic a
    /// notification.
    pub fn dead_letter_topic(&self, name: String) -> TopicSpec {
        TopicSpec::new(name, 1)
            .with_replication_factor(self.factor)
            .with_config("min.insync.replicas", self.min_insync.to_string())
            .with_config("cleanup.policy", "delete")
    }
}
impl Registry {
    /// The namespace of the platform's topics on the broker.
    pub fn topic_names(&self) -> TopicNames {
        TopicNames::new(self.platform.topic_prefix.clone())
    }

    /// Replication of every topic the platform creates.
    pub fn replication(&self) -> Replication {
        Replication {
            factor: self.platform.replication_factor,
            min_insync: self.platform.min_insync_replicas,
        }
    }

    /// The registry topic `logical` as it must be on the broker (its physical name,
    /// partitions, replication and settings); `None` when the registry has no such
    /// topic.
    pub fn topic_spec(&self, logical: &str) -> Option<TopicSpec> {
        let topic = self.topics.get(logical)?;
        Some(self.replication().event_topic(
            self.topic_names().physical(logical),
            topic.partitions,
            &topic.config,
        ))
    }

    /// Every registry topic as it must be on the broker.
    pub fn topic_specs(&self) -> Vec<TopicSpec> {
        self.topics
            .keys()
            .filter_map(|name| self.topic_spec(name))
            .collect()
    }

    /// The dead-letter topic of the consumer `consumer` (`<consumer>.dlq`) as it must
    /// be on the broker.
    pub fn dead_letter_topic(&self, consumer: &str) -> TopicSpec {
        self.replication()
            .dead_letter_topic(self.topic_names().physical(&format!("{consumer}.dlq")))
    }
}
