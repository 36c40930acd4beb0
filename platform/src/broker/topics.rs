//! Topic administration: creating the platform's topics as the registry specifies
//! them, checking existing ones against it, and reading their sizes and settings.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::BrokerError;

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

/// How long a topic may take to show in the metadata (and its configuration in
/// `DescribeConfigs`) after it was created: on a cluster the controller's answer
/// reaches the other nodes a moment later.
const TOPIC_VISIBLE: Duration = Duration::from_secs(15);

/// Answers to `DescribeConfigs` that mean the broker does not implement it (rather
/// than a fault of the request or the topic): the settings cannot be checked there.
fn cannot_describe(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnsupportedVersion
            | RDKafkaErrorCode::InvalidRequest
            | RDKafkaErrorCode::UnsupportedFeature
    )
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

/// Partitions and replicas of a topic as the metadata shows them.
#[derive(Debug, Clone, Copy)]
struct Layout {
    partitions: usize,
    /// Fewest and most replicas of any partition.
    min_replicas: usize,
    max_replicas: usize,
}

/// The layout of each topic in the broker's metadata; `None` for a topic it does
/// not show (yet).
async fn topic_layouts(
    bootstrap: &str,
    names: Vec<String>,
) -> Result<Vec<(String, Option<Layout>)>, TopicError> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "3")
            .create()?;
        names
            .into_iter()
            .map(|name| {
                let metadata = consumer.fetch_metadata(Some(&name), Duration::from_secs(10))?;
                let layout = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name && t.error().is_none())
                    .filter(|t| !t.partitions().is_empty())
                    .map(|t| {
                        let replicas = t.partitions().iter().map(|p| p.replicas().len());
                        Layout {
                            partitions: t.partitions().len(),
                            min_replicas: replicas.clone().min().unwrap_or(0),
                            max_replicas: replicas.max().unwrap_or(0),
                        }
                    });
                Ok((name, layout))
            })
            .collect()
    })
    .await
    .map_err(|e| TopicError::Blocking(e.to_string()))?
}

/// What the broker answered about one topic's configuration.
#[derive(Debug)]
enum Described {
    /// The settings it reports (a value may be hidden: sensitive, or none).
    Config(std::collections::BTreeMap<String, Option<String>>),
    /// It does not know the topic (yet).
    Unknown,
    /// It cannot describe configurations: the code it answered with.
    Unsupported(RDKafkaErrorCode),
}

async fn describe_topics(
    admin: &AdminClient<DefaultClientContext>,
    names: &[String],
) -> Result<Vec<Described>, TopicError> {
    use rdkafka::admin::ResourceSpecifier;
    let resources: Vec<ResourceSpecifier> = names
        .iter()
        .map(|n| ResourceSpecifier::Topic(n.as_str()))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let answers = match admin.describe_configs(&resources, &options).await {
        Ok(answers) => answers,
        Err(rdkafka::error::KafkaError::AdminOp(code)) if cannot_describe(code) => {
            return Ok(names.iter().map(|_| Described::Unsupported(code)).collect())
        }
        Err(e) => return Err(e.into()),
    };
    // librdkafka answers in the order of the request; a described resource also
    // names itself, an error does not.
    let by_name: std::collections::HashMap<&str, &rdkafka::admin::ConfigResource> = answers
        .iter()
        .filter_map(|answer| match answer {
            Ok(resource) => match &resource.specifier {
                rdkafka::admin::OwnedResourceSpecifier::Topic(name) => {
                    Some((name.as_str(), resource))
                }
                _ => None,
            },
            Err(_) => None,
        })
        .collect();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if let Some(resource) = by_name.get(name.as_str()) {
                return Ok(Described::Config(
                    resource
                        .entries
                        .iter()
                        .map(|e| (e.name.clone(), e.value.clone()))
                        .collect(),
                ));
            }
            match answers.get(i) {
                Some(Err(code)) if cannot_describe(*code) => Ok(Described::Unsupported(*code)),
                Some(Err(RDKafkaErrorCode::UnknownTopicOrPartition)) | Some(Ok(_)) | None => {
                    Ok(Described::Unknown)
                }
                Some(Err(code)) => Err(TopicError::Describe {
                    topic: name.clone(),
                    code: *code,
                }),
            }
        })
        .collect()
}

/// Comparable form of a setting's value: comma-separated lists in any order and
/// spacing (`cleanup.policy = "compact, delete"`) are the same list.
fn normalized(value: &str) -> String {
    let mut items: Vec<&str> = value.split(',').map(str::trim).collect();
    items.sort_unstable();
    items.join(",")
}

/// Checks every topic of `specs` on the broker (see [`ensure_topics`]).
async fn check_topics(
    admin: &AdminClient<DefaultClientContext>,
    bootstrap: &str,
    specs: &[TopicSpec],
) -> Result<(), TopicError> {
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let deadline = Instant::now() + TOPIC_VISIBLE;
    let (layouts, described) = loop {
        let layouts = topic_layouts(bootstrap, names.clone()).await?;
        let described = describe_topics(admin, &names).await?;
        let pending = layouts
            .iter()
            .zip(&described)
            .find(|((_, layout), described)| {
                layout.is_none() || matches!(described, Described::Unknown)
            });
        match pending {
            None => break (layouts, described),
            Some(((name, _), _)) if Instant::now() >= deadline => {
                return Err(TopicError::NotVisible {
                    topic: name.clone(),
                    seconds: TOPIC_VISIBLE.as_secs(),
                })
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let mut found = Vec::new();
    let mut undescribed: Vec<(&str, RDKafkaErrorCode)> = Vec::new();
    let mut unreported: Vec<String> = Vec::new();
    for ((spec, (_, layout)), described) in specs.iter().zip(&layouts).zip(&described) {
        // The loop above waited until every topic showed.
        let Some(layout) = layout else {
            return Err(TopicError::NotVisible {
                topic: spec.name.clone(),
                seconds: TOPIC_VISIBLE.as_secs(),
            });
        };
        let mismatch = |setting, registry: String, broker: String| TopicMismatch {
            topic: spec.name.clone(),
            setting,
            registry,
            broker,
        };
        let partitions = spec.partitions as usize;
        if layout.partitions < partitions {
            found.push(mismatch(
                TopicSetting::Partitions,
                partitions.to_string(),
                layout.partitions.to_string(),
            ));
        } else if layout.partitions > partitions {
            tracing::warn!(
                topic = %spec.name,
                broker = layout.partitions,
                registry = partitions,
                "the topic has more partitions on the broker than the registry says; update the registry"
            );
        }
        let replicas = usize::from(spec.replication_factor);
        if layout.max_replicas == 0 {
            // No partition lists a replica: the broker does not report them.
            unreported.push(format!("{}: replicas", spec.name));
        } else if layout.min_replicas < replicas {
            found.push(mismatch(
                TopicSetting::ReplicationFactor,
                replicas.to_string(),
                layout.min_replicas.to_string(),
            ));
        } else if layout.min_replicas > replicas {
            tracing::warn!(
                topic = %spec.name,
                broker = layout.min_replicas,
                registry = replicas,
                "the topic has more replicas on the broker than the registry says; update [platform] replication_factor"
            );
        }
        match described {
            Described::Unsupported(code) => undescribed.push((&spec.name, *code)),
            Described::Unknown => unreachable!("the loop waits until every topic is described"),
            Described::Config(live) => {
                for (key, wanted) in &spec.config {
                    match live.get(key) {
                        Some(Some(value)) if normalized(value) == normalized(wanted) => {}
                        Some(Some(value)) => found.push(mismatch(
                            TopicSetting::Config(key.clone()),
                            wanted.clone(),
                            value.clone(),
                        )),
                        Some(None) | None => unreported.push(format!("{}: {key}", spec.name)),
                    }
                }
            }
        }
    }
    if let Some((_, code)) = undescribed.first() {
        let topics: Vec<&str> = undescribed.iter().map(|(t, _)| *t).collect();
        tracing::warn!(
            topics = %topics.join(", "),
            answer = %code,
            "this broker cannot describe topic configurations (DescribeConfigs answered `{code}`): \
             the settings of these topics (retention.ms, cleanup.policy, min.insync.replicas, ...) are not \
             checked against the registry; partitions and replicas are"
        );
    }
    if !unreported.is_empty() {
        tracing::warn!(
            unchecked = %unreported.join("; "),
            "the broker does not report these topic settings, so they are not checked against the registry"
        );
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(TopicError::Mismatch(found))
    }
}

/// The configuration of topic `topic` (its name on the broker) as the broker
/// describes it: every setting it reports with a value. A broker that cannot
/// describe configurations answers [`TopicError::CannotDescribe`].
pub async fn topic_config(
    bootstrap: &str,
    topic: &str,
) -> Result<std::collections::BTreeMap<String, String>, TopicError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?;
    let names = [topic.to_owned()];
    match describe_topics(&admin, &names).await?.pop() {
        Some(Described::Config(config)) => Ok(config
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect()),
        Some(Described::Unsupported(code)) => Err(TopicError::CannotDescribe {
            topic: topic.to_owned(),
            code,
        }),
        Some(Described::Unknown) | None => Err(TopicError::Describe {
            topic: topic.to_owned(),
            code: RDKafkaErrorCode::UnknownTopicOrPartition,
        }),
    }
}
