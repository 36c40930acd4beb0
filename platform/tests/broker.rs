//! The embedded development broker: tansu as a child process with durable storage.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_platform::broker::ensure_topics;
use sluice_platform::testing::TestBroker;

#[tokio::test]
async fn the_broker_storage_gets_the_header_index() {
    let broker = TestBroker::start().await;
    let conn = rusqlite::Connection::open(broker.data_dir.join("broker.db")).unwrap();
    let index: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'header' \
               AND name = 'sluice_header_topition_offset'",
            [],
            |row| row.get(0),
        )
        .expect("header index exists");
    assert!(index.contains("topition, offset_id"), "{index}");
}

#[tokio::test]
async fn topics_are_created_once_with_their_partitions() {
    let broker = TestBroker::start().await;
    let topics = vec![("a.events".to_owned(), 3), ("b.events".to_owned(), 1)];
    ensure_topics(&broker.bootstrap(), &topics).await.unwrap();
    // Again: existing topics are left alone.
    ensure_topics(&broker.bootstrap(), &topics).await.unwrap();
    let bootstrap = broker.bootstrap();
    let counts = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        ["a.events", "b.events"].map(|t| {
            consumer
                .fetch_metadata(Some(t), Duration::from_secs(10))
                .unwrap()
                .topics()[0]
                .partitions()
                .len()
        })
    })
    .await
    .unwrap();
    assert_eq!(counts, [3, 1]);
}

#[tokio::test]
async fn a_killed_broker_restarts_on_the_same_port_with_its_topics() {
    let mut broker = TestBroker::start().await;
    broker.topic("keep.events", 2).await;
    let before = broker.bootstrap();
    broker.broker.kill().await;
    broker.broker.restart().await.unwrap();
    assert_eq!(broker.bootstrap(), before);
    let bootstrap = broker.bootstrap();
    let partitions = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        consumer
            .fetch_metadata(Some("keep.events"), Duration::from_secs(10))
            .unwrap()
            .topics()[0]
            .partitions()
            .len()
    })
    .await
    .unwrap();
    assert_eq!(partitions, 2, "the topic survived the broker's restart");
}
