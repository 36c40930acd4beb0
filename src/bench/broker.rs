//! The broker a bench runs against, and producing to it.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use sluice_platform::broker::{BrokerKind, LocalBroker};
use sluice_platform::registry::{Registry, TopicNames};

/// The broker under test: external (`KAFKA_BROKERS`), or a local one whose data
/// directory is removed afterwards: Apache Kafka unless `SLUICE_BENCH_BROKER=tansu`.
pub(super) struct Broker {
    pub(super) bootstrap: String,
    /// The namespace of the benchmark's topics: the registry's, and on a reused
    /// external broker one of this run's own inside it (`bench_<pid>.`), so runs
    /// never meet each other's topics.
    pub(super) topics: TopicNames,
    embedded: Option<(LocalBroker, PathBuf)>,
    pub(super) description: String,
}

impl Broker {
    pub(super) async fn start(registry: &Registry) -> anyhow::Result<Self> {
        if std::env::var_os("KAFKA_BROKERS").is_some() {
            let bootstrap = registry.platform.kafka_brokers.clone();
            return Ok(Broker {
                description: format!("broker: KAFKA_BROKERS={bootstrap}"),
                bootstrap,
                topics: TopicNames::new(format!(
                    "{}bench_{}.",
                    registry.platform.topic_prefix,
                    std::process::id()
                )),
                embedded: None,
            });
        }
        let dir = std::env::temp_dir().join(format!("sluice-bench-broker-{}", std::process::id()));
        let kind = match std::env::var("SLUICE_BENCH_BROKER") {
            Ok(kind) if !kind.is_empty() => kind.parse::<BrokerKind>()?,
            _ => BrokerKind::Kafka,
        };
        let broker = match LocalBroker::start(kind, &dir, 0).await {
            Ok(broker) => broker,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(anyhow::Error::new(e).context(format!(
                    "starting the local broker ({kind}; set KAFKA_BROKERS to use another)"
                )));
            }
        };
        let storage = match kind {
            BrokerKind::Tansu => "SQLite storage",
            BrokerKind::Kafka => "one KRaft node, log on local disk",
        };
        Ok(Broker {
            bootstrap: broker.bootstrap_servers(),
            topics: registry.topic_names(),
            embedded: Some((broker, dir)),
            description: format!("broker: {kind} on this machine ({storage})"),
        })
    }

    pub(super) async fn stop(self) {
        if let Some((mut broker, dir)) = self.embedded {
            broker.shutdown().await;
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Records `broker` in the results' machine section (its description without the
/// `broker: ` label).
pub(super) fn record_machine(broker: &Broker) {
    super::results::machine("broker", broker.description.trim_start_matches("broker: "));
}

/// Enqueues `record`, waiting while the producer queue is full.
pub(super) async fn enqueue<'a>(
    producer: &FutureProducer,
    mut record: FutureRecord<'a, String, Vec<u8>>,
) -> anyhow::Result<DeliveryFuture> {
    loop {
        match producer.send_result(record) {
            Ok(future) => return Ok(future),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Text headers as the relay sets them, in the order given.
pub(super) fn text_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> OwnedHeaders {
    headers
        .into_iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        })
}
