//! What the broker holds of a topic, against its spec: partitions and replicas
//! from the metadata, settings from `DescribeConfigs`.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::{TopicError, TopicMismatch, TopicSetting, TopicSpec};

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
pub(super) async fn check_topics(
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
