//! Topic administration: creating the platform's topics as the registry specifies
//! them, checking existing ones against it (`check`), and reading their sizes and
//! settings.

mod check;

pub use check::topic_config;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::BrokerError;
use check::check_topics;

/// Makes the broker hold `topics` as specified. Creates the missing ones with their
/// partitions, replication factor and settings ([`TopicSpec`]), then checks every
/// one, new or existing, against its spec: partitions and replicas per partition
/// from the metadata, settings from `DescribeConfigs`. Every difference is reported
/// at once in [`TopicError::Mismatch`]; an existing topic is never altered.
///
/// Fewer partitions or replicas than specified is a mismatch; more is only a
/// warning (partitions cannot be removed, and an extra replica loses nothing). A
/// broker that answers `DescribeConfigs` as unsupported, or does not report a
/// setting, leaves those settings unchecked with a warning; every value it does
/// report is checked.
///
/// `(name, partitions)` pairs are accepted too: event topics on one replica
/// ([`TopicSpec::from`]).
pub async fn ensure_topics<T: Into<TopicSpec>>(
    bootstrap: &str,
    topics: impl IntoIterator<Item = T>,
) -> Result<(), TopicError> {
    let specs: Vec<TopicSpec> = topics.into_iter().map(Into::into).collect();
    if specs.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?;
    create_missing_topics(&admin, &specs).await?;
    check_topics(&admin, bootstrap, &specs).await
}

/// Records in a topic: the sum of its partitions' high watermarks (0 for a topic the
/// broker does not know).
pub async fn topic_size(bootstrap: &str, topic: &str) -> Result<i64, BrokerError> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "3")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        let mut total = 0;
        for p in 0..partitions as i32 {
            total += consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(10))?
                .1;
        }
        Ok(total)
    })
    .await
    .map_err(|e| BrokerError::Blocking(e.to_string()))?
}

/// The ids of `topic`'s partitions in the broker's metadata, fetched by `consumer`
/// within `timeout`: none for a topic the broker does not know (or reports with an
/// error).
pub fn topic_partitions(
    consumer: &impl Consumer,
    topic: &str,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// A topic as the platform wants it on the broker: what [`ensure_topics`] creates
/// and checks. The registry builds them ([`crate::registry::Registry::topic_spec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic's name on the broker (with the registry's prefix).
    pub name: String,
    pub partitions: u32,
    /// Replicas per partition.
    pub replication_factor: u16,
    /// Topic-level settings (`retention.ms`, `cleanup.policy`, ...): set when the
    /// topic is created, checked when it exists.
    pub config: std::collections::BTreeMap<String, String>,
}

impl TopicSpec {
    /// `partitions` partitions on one replica, with no settings of its own.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: 1,
            config: Default::default(),
        }
    }

    pub fn with_replication_factor(mut self, replicas: u16) -> Self {
        self.replication_factor = replicas;
        self
    }

    /// Sets (or replaces) one topic-level setting.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }
}

impl From<&(String, u32)> for TopicSpec {
    /// An event topic of `partitions` partitions on one replica, with the registry's
    /// defaults for event topics ([`crate::registry::EVENT_TOPIC_DEFAULTS`]).
    fn from((name, partitions): &(String, u32)) -> Self {
        crate::registry::Replication::default().event_topic(
            name.clone(),
            *partitions,
            &Default::default(),
        )
    }
}

impl From<&TopicSpec> for TopicSpec {
    fn from(spec: &TopicSpec) -> Self {
        spec.clone()
    }
}

/// What a topic check found different on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicSetting {
    Partitions,
    ReplicationFactor,
    /// A topic-level setting (`retention.ms`, ...).
    Config(String),
}

impl std::fmt::Display for TopicSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicSetting::Partitions => f.write_str("partitions"),
            TopicSetting::ReplicationFactor => f.write_str("replication factor"),
            TopicSetting::Config(key) => f.write_str(key),
        }
    }
}

/// One setting of one topic that differs between the broker and the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMismatch {
    /// The topic's name on the broker.
    pub topic: String,
    pub setting: TopicSetting,
    /// What the registry says.
    pub registry: String,
    /// What the broker has.
    pub broker: String,
}

impl std::fmt::Display for TopicMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let TopicMismatch {
            topic,
            setting,
            registry,
            broker,
        } = self;
        match setting {
            TopicSetting::Partitions => write!(
                f,
                "topic {topic}: partitions are {broker} on the broker, the registry says {registry} \
                 (add partitions with kafka-topics --alter --partitions {registry}; a topic's partitions cannot be removed)"
            ),
            TopicSetting::ReplicationFactor => write!(
                f,
                "topic {topic}: replication factor is {broker} on the broker, the registry says {registry} \
                 (reassign the partitions with kafka-reassign-partitions, or change [platform] replication_factor)"
            ),
            TopicSetting::Config(key) => write!(
                f,
                "topic {topic}: {key} is {broker} on the broker, the registry says {registry} \
                 (fix the topic with kafka-configs --alter, or the registry)"
            ),
        }
    }
}

/// Why topics could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The admin client could not be created, or a request failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The broker refused to create a topic.
    #[error("cannot create topic `{topic}`: {message}")]
    Create { topic: String, message: String },
    /// A topic the broker created, or says exists, never showed in its metadata.
    #[error("topic `{topic}` does not show in the broker's metadata ({seconds} s after it was created or found)")]
    NotVisible { topic: String, seconds: u64 },
    /// Topics on the broker differ from the registry.
    #[error("{}", mismatches(.0))]
    Mismatch(Vec<TopicMismatch>),
    /// The broker cannot describe a topic's configuration.
    #[error("the broker cannot describe the configuration of topic `{topic}`: it answered DescribeConfigs with `{code}`")]
    CannotDescribe {
        topic: String,
        code: RDKafkaErrorCode,
    },
    /// The broker answered `DescribeConfigs` for a topic with an error.
    #[error("cannot describe the configuration of topic `{topic}`: {code}")]
    Describe {
        topic: String,
        code: RDKafkaErrorCode,
    },
    /// A metadata request's blocking thread panicked or was cancelled.
    #[error("a broker request on a blocking thread failed: {0}")]
    Blocking(String),
}

fn mismatches(list: &[TopicMismatch]) -> String {
    let lines: Vec<String> = list.iter().map(ToString::to_string).collect();
    match lines.as_slice() {
        [one] => one.clone(),
        _ => format!(
            "{} topic settings differ from the registry: {}",
            lines.len(),
            lines.join("; ")
        ),
    }
}

async fn create_missing_topics(
    admin: &AdminClient<DefaultClientContext>,
    specs: &[TopicSpec],
) -> Result<(), TopicError> {
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|spec| {
            let topic = NewTopic::new(
                &spec.name,
                i32::try_from(spec.partitions).unwrap_or(i32::MAX),
                TopicReplication::Fixed(i32::from(spec.replication_factor)),
            );
            spec.config
                .iter()
                .fold(topic, |topic, (key, value)| topic.set(key, value))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                let spec = specs.iter().find(|s| s.name == topic);
                let message = match (code, spec) {
                    (RDKafkaErrorCode::InvalidReplicationFactor, Some(spec)) => format!(
                        "{code}: the broker has fewer nodes than the replication factor {} \
                         ([platform] replication_factor, SLUICE_TOPIC_REPLICATION_FACTOR)",
                        spec.replication_factor
                    ),
                    (_, Some(spec)) => format!(
                        "{code} (asked for {} partitions, replication factor {}, settings {:?})",
                        spec.partitions, spec.replication_factor, spec.config
                    ),
                    (_, None) => code.to_string(),
                };
                return Err(TopicError::Create { topic, message });
            }
        }
    }
    Ok(())
}
