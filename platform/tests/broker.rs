//! The local brokers (tansu with durable storage, Apache Kafka) and topic administration.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::Message;
use sluice_platform::broker::{
    assign_at_stored, ensure_topics, lags, self_assigning_reader, AssignError, EmbeddedBroker,
    Offsets, PositionStore,
};
use sluice_platform::testing::TestBroker;

#[tokio::test]
async fn the_tansu_storage_gets_the_header_index() {
    // tansu's own storage, whichever broker the suite runs on.
    let dir = std::env::temp_dir().join(format!(
        "sluice-tansu-{}",
        sluice_platform::testing::unique_suffix()
    ));
    let broker = EmbeddedBroker::start(&dir, 0).await.unwrap();
    let conn = rusqlite::Connection::open(dir.join("broker.db")).unwrap();
    let index: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'header' \
               AND name = 'sluice_header_topition_offset'",
            [],
            |row| row.get(0),
        )
        .expect("header index exists");
    assert!(index.contains("topition, offset_id"), "{index}");
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn topics_are_created_once_with_their_partitions() {
    let broker = TestBroker::start().await;
    let topics = vec![("a.events".to_owned(), 3), ("b.events".to_owned(), 1)];
    ensure_topics(&broker.bootstrap(), &topics).await.unwrap();
    // Again: existing topics are left alone.
    ensure_topics(&broker.bootstrap(), &topics).await.unwrap();
    let counts = [
        partition_count(&broker.bootstrap(), "a.events").await,
        partition_count(&broker.bootstrap(), "b.events").await,
    ];
    assert_eq!(counts, [3, 1]);
}

#[tokio::test]
async fn a_killed_broker_restarts_on_the_same_port_with_its_topics() {
    let mut broker = TestBroker::private().await;
    broker.topic("keep.events", 2).await;
    let before = broker.bootstrap();
    broker.kill().await;
    broker.restart().await;
    assert_eq!(broker.bootstrap(), before);
    let partitions = partition_count(&broker.bootstrap(), &broker.physical("keep.events")).await;
    assert_eq!(partitions, 2, "the topic survived the broker's restart");
}

// Topic settings from the registry, applied at creation and checked at every start.
// These describe topic configurations (DescribeConfigs): a broker that cannot
// answers with an error that fails them, by design (Apache Kafka can).

/// A registry of one topic, `orders.events` with `partitions` partitions, under a
/// test-unique prefix (the broker may be shared by the whole test run).
fn one_topic_registry(partitions: u32) -> sluice_platform::registry::Registry {
    let prefix = format!("t_{}.", sluice_platform::testing::unique_suffix());
    sluice_platform::registry::Registry::parse(&format!(
        r#"
        [platform]
        database_host = "127.0.0.1"
        database_port = 5432
        admin_database_url = "postgres://postgres@127.0.0.1/postgres"
        data_dir = ".sluice"
        kafka_brokers = "127.0.0.1:9092"
        topic_prefix = "{prefix}"
        [topics."orders.events"]
        partitions = {partitions}
        [components.orders]
        kind = "service"
        port = 8101
        database = "sluice_orders"
        app_password = "a"
        owner_password = "o"
        produces = ["orders.events"]
        "#
    ))
    .unwrap()
}

/// Partitions of `topic` in the broker's metadata.
async fn partition_count(bootstrap: &str, topic: &str) -> usize {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        sluice_platform::broker::topic_partitions(&consumer, &topic, Duration::from_secs(10))
            .unwrap()
            .len()
    })
    .await
    .unwrap()
}

/// Creates `topic` directly through the admin API, bypassing the platform.
async fn create_topic_directly(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    config: &[(&str, &str)],
) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .unwrap();
    let topic = config.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
        |t, (k, v)| t.set(k, v),
    );
    let created = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

#[tokio::test]
async fn created_topics_carry_the_registry_partitions_and_keep_their_history_forever() {
    let broker = TestBroker::start().await;
    let registry = one_topic_registry(3);
    let specs = registry.topic_specs();
    let topic = registry.topic_names().physical("orders.events");
    assert_eq!(specs[0].name, topic);
    ensure_topics(&broker.bootstrap(), &specs).await.unwrap();
    // Again, now checking the existing topic: it matches.
    ensure_topics(&broker.bootstrap(), &specs).await.unwrap();
    assert_eq!(partition_count(&broker.bootstrap(), &topic).await, 3);
    let config = sluice_platform::broker::topic_config(&broker.bootstrap(), &topic)
        .await
        .unwrap_or_else(|e| {
            panic!("this test needs a broker that describes topic configurations: {e}")
        });
    assert_eq!(
        config.get("retention.ms").map(String::as_str),
        Some("-1"),
        "{config:?}"
    );
    assert_eq!(
        config.get("cleanup.policy").map(String::as_str),
        Some("delete"),
        "{config:?}"
    );
    assert_eq!(
        config.get("min.insync.replicas").map(String::as_str),
        Some("1"),
        "{config:?}"
    );
}

#[tokio::test]
async fn an_existing_topic_with_another_retention_fails_the_check() {
    let broker = TestBroker::start().await;
    let registry = one_topic_registry(2);
    let topic = registry.topic_names().physical("orders.events");
    // Apache Kafka's default retention, set explicitly so any broker reports it.
    create_topic_directly(
        &broker.bootstrap(),
        &topic,
        2,
        &[("retention.ms", "604800000")],
    )
    .await;
    let error = ensure_topics(&broker.bootstrap(), registry.topic_specs())
        .await
        .expect_err("a topic that expires events must not pass the check")
        .to_string();
    assert_eq!(
        error,
        format!(
            "topic {topic}: retention.ms is 604800000 on the broker, the registry says -1 \
             (fix the topic with kafka-configs --alter, or the registry)"
        )
    );
}

#[tokio::test]
async fn an_existing_topic_with_fewer_partitions_fails_the_check() {
    let broker = TestBroker::start().await;
    let registry = one_topic_registry(3);
    let topic = registry.topic_names().physical("orders.events");
    let settings = [
        ("retention.ms", "-1"),
        ("cleanup.policy", "delete"),
        ("min.insync.replicas", "1"),
    ];
    create_topic_directly(&broker.bootstrap(), &topic, 1, &settings).await;
    let error = ensure_topics(&broker.bootstrap(), registry.topic_specs())
        .await
        .expect_err("a topic with fewer partitions must not pass the check");
    let sluice_platform::broker::TopicError::Mismatch(found) = &error else {
        panic!("{error}");
    };
    assert_eq!(found.len(), 1, "only the partitions differ: {error}");
    assert_eq!(
        found[0].setting,
        sluice_platform::broker::TopicSetting::Partitions
    );
    assert_eq!(
        (found[0].broker.as_str(), found[0].registry.as_str()),
        ("1", "3")
    );
    assert!(
        error
            .to_string()
            .contains("partitions are 1 on the broker, the registry says 3"),
        "{error}"
    );
    // More partitions than the registry is only a warning.
    let grown = one_topic_registry(1);
    let name = grown.topic_names().physical("orders.events");
    create_topic_directly(&broker.bootstrap(), &name, 2, &settings).await;
    ensure_topics(&broker.bootstrap(), grown.topic_specs())
        .await
        .unwrap();
}

/// tansu 0.6.0 reads `retention.ms = -1` (keep forever, as every event topic is
/// created) as "older than -1 ms" and deletes every record of such a topic in its
/// maintenance, which runs at start and every 10 minutes: a restarted `sluice up`
/// found its topics empty. The events must survive the broker's restart.
#[tokio::test]
async fn tansu_keeps_the_records_of_a_topic_kept_forever_across_restarts() {
    let dir = std::env::temp_dir().join(format!(
        "sluice-tansu-{}",
        sluice_platform::testing::unique_suffix()
    ));
    let mut broker = EmbeddedBroker::start(&dir, 0).await.unwrap();
    let registry = one_topic_registry(1);
    let specs = registry.topic_specs();
    let topic = registry.topic_names().physical("orders.events");
    ensure_topics(&broker.bootstrap_servers(), &specs)
        .await
        .unwrap();
    let bootstrap = broker.bootstrap_servers();
    let producer: rdkafka::producer::FutureProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for i in 0..3 {
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&topic)
                    .key("k")
                    .payload(&format!("event {i}")),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    drop(producer);
    let before =
        sluice_platform::testing::consume(&bootstrap, &topic, 3, Duration::from_secs(20)).await;
    assert_eq!(before.len(), 3);
    // Twice: the first start after the fix may meet a database without it.
    for _ in 0..2 {
        broker.restart().await.unwrap();
        let after =
            sluice_platform::testing::consume(&bootstrap, &topic, 3, Duration::from_secs(20)).await;
        let payloads: Vec<_> = after
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect();
        assert_eq!(
            payloads,
            ["event 0", "event 1", "event 2"],
            "after a restart"
        );
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}

/// Positions held in memory, as a reader's store would hold them.
struct Stored(Result<Offsets, String>);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StoreDown(String);

impl PositionStore for Stored {
    type Error = StoreDown;

    fn stored_offsets(
        &self,
    ) -> impl std::future::Future<Output = Result<Offsets, StoreDown>> + Send {
        std::future::ready(self.0.clone().map_err(StoreDown))
    }
}

async fn produce(bootstrap: &str, topic: &str, counts: &[(i32, usize)]) {
    let producer: rdkafka::producer::FutureProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for &(partition, count) in counts {
        for i in 0..count {
            let payload = format!("record {i}");
            let record = rdkafka::producer::FutureRecord::to(topic)
                .partition(partition)
                .key("k")
                .payload(&payload);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap();
        }
    }
}

/// The self-assignment every reader shares (the consumer runtime, the sink): each
/// partition at its stored offset or its beginning, and the lag against the high
/// watermarks.
#[tokio::test]
async fn partitions_are_assigned_at_their_stored_offsets_or_their_beginning() {
    let broker = TestBroker::start().await;
    let topic = format!("assign{}.events", sluice_platform::testing::unique_suffix());
    broker.topic(&topic, 2).await;
    produce(
        &broker.bootstrap(),
        &broker.physical(&topic),
        &[(0, 5), (1, 3)],
    )
    .await;
    let (p0, p1) = ((topic.clone(), 0), (topic.clone(), 1));
    let names = broker.topic_names();
    let reader = || -> Arc<StreamConsumer> {
        Arc::new(
            self_assigning_reader(&broker.bootstrap(), "assignment-test")
                .create()
                .unwrap(),
        )
    };

    // A store that cannot answer: nothing is assigned.
    let consumer = reader();
    let down = Stored(Err("the warehouse is locked".into()));
    let error = assign_at_stored(&consumer, &names, vec![p0.clone()], &down, "test")
        .await
        .unwrap_err();
    assert!(matches!(error, AssignError::Positions(_)), "{error:?}");
    assert_eq!(consumer.assignment().unwrap().count(), 0);

    // Partition 0 was applied up to offset 2, partition 1 not at all.
    let store = Stored(Ok(Offsets::from([(p0.clone(), 2)])));
    let partitions = vec![p0.clone(), p1.clone()];
    let starts = assign_at_stored(&consumer, &names, partitions, &store, "test")
        .await
        .unwrap();
    assert_eq!(starts, Offsets::from([(p0.clone(), 2), (p1.clone(), 0)]));
    let mut read = std::collections::BTreeSet::new();
    while read.len() < 6 {
        let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .expect("the assigned records arrive")
            .unwrap();
        read.insert((message.partition(), message.offset()));
    }
    let expected = [(0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2)];
    assert_eq!(read, expected.into_iter().collect());

    let positions = [(p0.clone(), Some(3)), (p1.clone(), None)];
    let lag = lags(&*consumer, &names, positions, Duration::from_secs(10));
    assert_eq!(lag, [(p0, 2), (p1, 3)]);
}
