//! The outbox relay against real PostgreSQL and a real Kafka-protocol broker (tansu).
//! Payload encoding is not under test here (see the Avro tests): events go out as
//! their JSON payload.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_platform::relay::{EventEncoder, Relay, RelayConfig, RelayError};
use sluice_platform::store::{
    Append, Appended, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId,
};
use sluice_platform::testing::{
    counted, event_store, until, write_concurrently, ConcurrentWrites, Consumed, TestBroker,
    TestDatabase,
};
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for records or metrics: only a guard against a hang.
const PATIENCE: Duration = Duration::from_secs(300);

struct JsonEncoder;

impl EventEncoder for JsonEncoder {
    fn encode(
        &self,
        _event_type: &str,
        _schema_version: i32,
        payload: &serde_json::Value,
    ) -> Result<(Vec<u8>, [u8; 8]), sluice_platform::avro::AvroError> {
        Ok((payload.to_string().into_bytes(), [0; 8]))
    }
}

fn append<'a>(stream: &'a StreamId, events: Vec<NewEvent>, meta: &'a Metadata) -> Append<'a> {
    Append {
        stream_id: stream,
        stream_type: "counter",
        expected: ExpectedVersion::Any,
        events,
        metadata: meta,
        idempotency: None,
    }
}

/// The test's broker with its topic `topic` of `partitions` partitions, and an event
/// store in a fresh database.
async fn setup(topic: &str, partitions: u32) -> (TestBroker, TestDatabase, EventStore) {
    let broker = TestBroker::start().await;
    broker.topic(topic, partitions).await;
    let (db, store) = event_store("relay").await;
    (broker, db, store)
}

/// Appends `events` to the `counter` stream `stream` at any version, without
/// metadata.
async fn write(store: &EventStore, stream: &StreamId, events: Vec<NewEvent>) -> Appended {
    store
        .append(append(stream, events, &Metadata::default()))
        .await
        .unwrap()
}

/// A relay running in the background: its shutdown token and its outcome.
type Running<T> = (CancellationToken, JoinHandle<T>);

/// Starts a relay of `service` over `store` in the background; its outcome in the
/// handle.
fn start_relay(
    service: &str,
    store: &EventStore,
    broker: &TestBroker,
    batch_size: i64,
) -> Running<Result<(), RelayError>> {
    start_relay_with(
        service,
        store,
        broker,
        Arc::new(JsonEncoder),
        RelayConfig {
            batch_size,
            ..RelayConfig::default()
        },
    )
}

/// [`start_relay`] with this encoder and configuration (in the broker's topic
/// namespace).
fn start_relay_with(
    service: &str,
    store: &EventStore,
    broker: &TestBroker,
    encoder: Arc<dyn EventEncoder>,
    config: RelayConfig,
) -> Running<Result<(), RelayError>> {
    let relay = Relay::new(
        service,
        store.pool().clone(),
        &broker.bootstrap(),
        encoder,
        RelayConfig {
            topic_names: broker.topic_names(),
            ..config
        },
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    (
        shutdown,
        tokio::spawn(async move { relay.run(token).await }),
    )
}

/// [`start_relay`], which must end without an error.
fn spawn_relay(
    service: &str,
    store: &EventStore,
    broker: &TestBroker,
    batch_size: i64,
) -> Running<()> {
    let (shutdown, relay) = start_relay(service, store, broker, batch_size);
    (
        shutdown,
        tokio::spawn(async move { relay.await.unwrap().expect("relay") }),
    )
}

/// Stops a running relay and waits for it: its outcome.
async fn stop<T>((shutdown, relay): Running<T>) -> T {
    shutdown.cancel();
    relay.await.unwrap()
}

/// Waits until this process's metrics show `series`.
async fn wait_for_metric(series: &str) {
    until(
        "the metric series",
        PATIENCE,
        Duration::from_millis(50),
        async || {
            if sluice_platform::telemetry::render_text().contains(series) {
                Ok(())
            } else {
                Err(format!("no {series} in /metrics"))
            }
        },
    )
    .await;
}

/// Waits until the relay of `service` reports the transaction of backend `pid` as
/// the one holding its horizon back.
async fn wait_for_blocker(service: &str, pid: i32) {
    wait_for_metric(&format!(
        "sluice_relay_horizon_blocker_age_seconds{{service=\"{service}\",pid=\"{pid}\"}}"
    ))
    .await;
}

/// A transaction that has appended `{"n": n}` to `stream` and stays open, and the
/// pid of the backend it runs in.
async fn open_append(
    store: &EventStore,
    stream: &StreamId,
    n: i64,
) -> (Transaction<'static, Postgres>, i32) {
    let mut tx = store.pool().begin().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    store
        .append_in(
            &mut tx,
            append(stream, vec![counted(n)], &Metadata::default()),
        )
        .await
        .unwrap();
    (tx, pid)
}

/// Makes the open transaction on `conn` take a transaction id.
async fn take_xact_id(conn: &mut PgConnection) {
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(conn)
        .await
        .unwrap();
}

/// Appends a marker to `stream`, its version `version`, and reads `topic` until the
/// marker is there: a relay publishes in commit order, so by then whatever it was
/// going to publish before the marker is on the topic too.
async fn publish_marker(
    broker: &TestBroker,
    topic: &str,
    store: &EventStore,
    stream: &StreamId,
    version: i64,
) -> Vec<Consumed> {
    write(store, stream, vec![counted(version - 1)]).await;
    let records = broker.consume(topic, version as usize, PATIENCE).await;
    assert_eq!(
        records.last().map(|r| r.header("stream_version")),
        Some(version.to_string().as_str()),
        "the marker was published"
    );
    records
}

/// Per key, the stream versions in topic order.
fn versions_by_stream(records: &[Consumed]) -> BTreeMap<String, Vec<i64>> {
    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in records {
        by_key
            .entry(r.key.clone())
            .or_default()
            .push(r.header("stream_version").parse().unwrap());
    }
    by_key
}

#[tokio::test]
async fn a_late_committing_transaction_is_published_first_and_nothing_is_skipped() {
    let (broker, _db, store) = setup("gap.events", 1).await;

    // A appends and stays open; B appends after it and commits at once.
    let (a, pid) = open_append(&store, &StreamId::new("a").unwrap(), 1).await;
    write(&store, &StreamId::new("b").unwrap(), vec![counted(2)]).await;

    // B committed, but A (the older transaction) is still open: B is not safe yet.
    // The relay says when it has found committed rows it may not publish and names
    // the transaction that holds them back (A's backend); by then it has had its
    // chance to publish B, so the topic must still be empty.
    sluice_platform::telemetry::init();
    let relay = start_relay_with(
        "gap",
        &store,
        &broker,
        Arc::new(JsonEncoder),
        RelayConfig {
            batch_size: 100,
            horizon_warning: Duration::from_millis(100),
            ..RelayConfig::default()
        },
    );
    wait_for_blocker("gap", pid).await;
    let early =
        sluice_platform::broker::topic_size(&broker.bootstrap(), &broker.physical("gap.events"))
            .await
            .expect("the topic's size");
    assert_eq!(early, 0, "published past an open transaction");

    a.commit().await.unwrap();
    let records = broker.consume("gap.events", 2, PATIENCE).await;
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"], "both published, A's transaction first");
    stop(relay).await.expect("relay");
}

#[tokio::test]
async fn concurrent_writers_reach_the_topic_in_stream_version_order() {
    let (broker, _db, store) = setup("order.events", 3).await;
    let relay = spawn_relay("order", &store, &broker, 50);

    // 8 writers append 1 or 2 events at a time to the same 6 streams while the
    // relay publishes.
    let plan = ConcurrentWrites {
        writers: 8,
        appends: 40,
        prefix: "s",
        streams: 6,
        max_events: 2,
    };
    let total = write_concurrently(Arc::new(store), plan).await;
    let records = broker.consume("order.events", total, PATIENCE).await;
    assert_eq!(records.len(), total, "every event published exactly once");
    for (stream, versions) in versions_by_stream(&records) {
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(
            versions, expected,
            "stream {stream} out of order or with a gap"
        );
    }
    // A key's events all land in one partition.
    let mut partition_of: BTreeMap<&str, i32> = BTreeMap::new();
    for r in &records {
        assert_eq!(
            *partition_of.entry(&r.key).or_insert(r.partition),
            r.partition
        );
    }
    stop(relay).await;
}

#[tokio::test]
async fn headers_carry_the_envelope() {
    let (broker, _db, store) = setup("env.events", 1).await;
    let correlation = uuid::Uuid::now_v7();
    let meta = Metadata {
        correlation_id: Some(correlation),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        ..Metadata::default()
    };
    let stream = StreamId::new("e-1").unwrap();
    let written = store
        .append(append(&stream, vec![counted(7)], &meta))
        .await
        .unwrap();
    let relay = spawn_relay("env", &store, &broker, 10);
    let records = broker.consume("env.events", 1, PATIENCE).await;
    let r = &records[0];
    assert_eq!(r.key, "e-1");
    assert_eq!(
        r.header("event_id"),
        written.result().event_ids[0].to_string()
    );
    assert_eq!(r.header("event_type"), "Counted");
    assert_eq!(r.header("stream_type"), "counter");
    assert_eq!(r.header("stream_version"), "1");
    assert_eq!(r.header("schema_version"), "1");
    assert_eq!(r.header("correlation_id"), correlation.to_string());
    assert_eq!(
        r.header("traceparent"),
        meta.traceparent.as_deref().unwrap()
    );
    assert_eq!(
        r.header("global_position"),
        written.result().global_position.get().to_string()
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap(),
        json!({ "n": 7 })
    );
    stop(relay).await;
}

#[tokio::test]
async fn a_broker_restart_loses_nothing_and_the_relay_resumes_by_itself() {
    let mut broker = TestBroker::private().await;
    broker.topic("restart.events", 2).await;
    let (_db, store) = event_store("relay").await;
    let relay = spawn_relay("restart", &store, &broker, 200);
    let mut written = 0;
    for round in 0..6 {
        for s in 0..10 {
            let stream = StreamId::new(format!("r{s}")).unwrap();
            write(&store, &stream, (0..20).map(counted).collect()).await;
            written += 20;
        }
        if round == 2 {
            broker.kill().await;
            // The length of the outage, not a wait for anything: the assertions
            // below hold however long the broker stays down.
            tokio::time::sleep(Duration::from_secs(2)).await;
            broker.restart().await;
        }
    }
    let records = broker
        .consume("restart.events", written, Duration::from_secs(90))
        .await;
    let by_stream = versions_by_stream(&records);
    let mut distinct = 0;
    for (stream, versions) in &by_stream {
        let mut seen: Vec<i64> = versions.clone();
        seen.sort_unstable();
        seen.dedup();
        let expected: Vec<i64> = (1..=seen.len() as i64).collect();
        assert_eq!(seen, expected, "stream {stream} lost an event");
        distinct += seen.len();
    }
    assert_eq!(distinct, written, "every event reached the topic");
    stop(relay).await;
}

#[tokio::test]
async fn a_second_relay_stands_by_while_the_first_is_active() {
    let (broker, _db, store) = setup("standby.events", 1).await;
    let stream = StreamId::new("x").unwrap();
    // The first relay is active once it has published: only then starts the second.
    write(&store, &stream, vec![counted(0)]).await;
    let first = spawn_relay("standby", &store, &broker, 100);
    let records = broker.consume("standby.events", 1, PATIENCE).await;
    assert_eq!(records.len(), 1);
    let second = spawn_relay("standby", &store, &broker, 100);
    for i in 1..5 {
        write(&store, &stream, vec![counted(i)]).await;
    }
    let records = broker.consume("standby.events", 5, PATIENCE).await;
    assert_eq!(records.len(), 5, "published once, by one relay");
    // The first stops; the standby takes over and publishes what follows.
    stop(first).await;
    for i in 5..8 {
        write(&store, &stream, vec![counted(i)]).await;
    }
    let records = broker.consume("standby.events", 8, PATIENCE).await;
    let versions = versions_by_stream(&records).remove("x").unwrap();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
    stop(second).await;
}

#[tokio::test]
async fn an_open_transaction_holding_the_horizon_back_is_reported_with_its_pid() {
    sluice_platform::telemetry::init();
    let (broker, _db, store) = setup("horizon.events", 1).await;
    let (blocker, pid) = open_append(&store, &StreamId::new("held").unwrap(), 1).await;
    write(&store, &StreamId::new("waiting").unwrap(), vec![counted(2)]).await;

    let relay = start_relay_with(
        "horizon",
        &store,
        &broker,
        Arc::new(JsonEncoder),
        RelayConfig {
            horizon_warning: Duration::from_millis(200),
            ..RelayConfig::default()
        },
    );
    wait_for_blocker("horizon", pid).await;
    // B is committed and waiting; A's event is not visible until it commits.
    let backlog = sluice_platform::telemetry::render_text();
    assert!(
        backlog.contains("sluice_relay_unpublished_events{service=\"horizon\"} 1"),
        "{backlog}"
    );
    blocker.commit().await.unwrap();
    let records = broker.consume("horizon.events", 2, PATIENCE).await;
    assert_eq!(records.len(), 2);
    stop(relay).await.expect("relay");
}

/// The relay's horizon counts only transactions that can write this store's outbox.
/// A transaction that took a transaction id in another database on the same server
/// (as a `pg_dump`, a projection rebuild or a reactor sleeping through its backoff
/// would), and one in the store's own database that writes no events, are open for
/// the whole test: the relay publishes past them all the same.
#[tokio::test]
async fn transactions_that_cannot_write_the_outbox_do_not_delay_publishing() {
    let (broker, _db, store) = setup("unrelated.events", 1).await;
    let mut elsewhere = PgConnection::connect(&sluice_platform::testing::admin_url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut elsewhere).await.unwrap();
    take_xact_id(&mut elsewhere).await;
    let mut same_database = store.pool().begin().await.unwrap();
    take_xact_id(&mut same_database).await;
    let stream = StreamId::new("u").unwrap();
    for i in 1..=3 {
        write(&store, &stream, vec![counted(i)]).await;
    }
    let relay = spawn_relay("unrelated", &store, &broker, 100);
    let records = broker
        .consume("unrelated.events", 3, Duration::from_secs(60))
        .await;
    assert_eq!(
        versions_by_stream(&records).remove("u"),
        Some(vec![1, 2, 3]),
        "the relay waited for transactions that cannot write its outbox"
    );
    same_database.rollback().await.unwrap();
    sqlx::query("ROLLBACK")
        .execute(&mut elsewhere)
        .await
        .unwrap();
    stop(relay).await;
}

#[tokio::test]
async fn published_outbox_rows_are_pruned_after_their_retention() {
    let (broker, _db, store) = setup("prune.events", 1).await;
    let stream = StreamId::new("p").unwrap();
    write(&store, &stream, (0..10).map(counted).collect()).await;
    let relay = start_relay_with(
        "prune",
        &store,
        &broker,
        Arc::new(JsonEncoder),
        RelayConfig {
            retention: Duration::ZERO,
            prune_interval: Duration::ZERO,
            ..RelayConfig::default()
        },
    );
    let records = broker.consume("prune.events", 10, PATIENCE).await;
    assert_eq!(records.len(), 10);
    let events: i64 = until(
        "the outbox pruned",
        PATIENCE,
        Duration::from_millis(100),
        async || {
            let (outbox, events): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM events)",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            if outbox == 0 {
                Ok(events)
            } else {
                Err(format!("{outbox} outbox rows never pruned"))
            }
        },
    )
    .await;
    assert_eq!(events, 10, "the events stay: they are the source of truth");
    // Pruned rows are not published again after a restart.
    stop(relay).await.expect("relay");
    // The restarted relay publishes in commit order, so once a marker appended after
    // the restart is on the topic, anything it was going to publish again is there
    // too.
    let again = spawn_relay("prune", &store, &broker, 100);
    let records = publish_marker(&broker, "prune.events", &store, &stream, 11).await;
    assert_eq!(records.len(), 11, "nothing re-published");
    stop(again).await;
}

/// A checkpoint row lower than the highest, written last (as a relay that lost its
/// fence could have, or a restore of an older table): the relay resumes from the
/// highest, so nothing is published again, and it never records a lower one.
#[tokio::test]
async fn the_relay_resumes_from_its_highest_checkpoint_whichever_row_is_newest() {
    let (broker, _db, store) = setup("forward.events", 1).await;
    let stream = StreamId::new("f").unwrap();
    write(&store, &stream, (0..3).map(counted).collect()).await;
    let relay = spawn_relay("forward", &store, &broker, 100);
    let records = broker.consume("forward.events", 3, PATIENCE).await;
    assert_eq!(records.len(), 3);
    stop(relay).await;

    // The newest row (highest id) now points at the first event.
    let first_txid: String =
        sqlx::query_scalar("SELECT txid::text FROM outbox ORDER BY txid, global_position LIMIT 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
    sqlx::query("INSERT INTO relay_checkpoints (txid, global_position) VALUES ($1::text::xid8, 1)")
        .bind(&first_txid)
        .execute(store.pool())
        .await
        .unwrap();

    // Restarted, the relay publishes the marker and nothing it had published.
    let relay = spawn_relay("forward", &store, &broker, 100);
    let records = publish_marker(&broker, "forward.events", &store, &stream, 4).await;
    assert_eq!(
        versions_by_stream(&records)["f"],
        [1, 2, 3, 4],
        "events 2 and 3 were published again"
    );
    stop(relay).await;
    // And the relay's own checkpoint went forward past the marker.
    let highest: i64 = sqlx::query_scalar(
        "SELECT global_position FROM relay_checkpoints ORDER BY txid DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(highest, 4);
}

/// The active relay's lock session is terminated (as `pg_terminate_backend`, an
/// idle timeout or a proxy would end it) while a standby waits: the standby takes
/// over, and the first relay stops at its next statement instead of publishing
/// beside it. Every event then reaches the topic once.
#[tokio::test]
async fn a_relay_whose_lock_session_ends_stops_and_the_standby_alone_publishes() {
    let (broker, db, store) = setup("fence.events", 1).await;
    let stream = StreamId::new("x").unwrap();
    write(&store, &stream, vec![counted(0)]).await;
    let (_first_stop, first) = start_relay("fence", &store, &broker, 100);
    assert_eq!(broker.consume("fence.events", 1, PATIENCE).await.len(), 1);
    let second = start_relay("fence", &store, &broker, 100);

    // The session holding the lock (as the administrator, who sees every session).
    let admin =
        sluice_platform::db::pool_with(sluice_platform::testing::admin_url().parse().unwrap(), 1)
            .await
            .unwrap();
    let holder = "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                  WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND d.datname = $1";
    let first_pid: i32 = sqlx::query_scalar(holder)
        .bind(&db.spec.name)
        .fetch_one(&admin)
        .await
        .unwrap();
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first_pid)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(terminated);
    // The standby takes the lock.
    until(
        "the standby taking the lock",
        Duration::from_secs(60),
        Duration::from_millis(50),
        async || {
            let now: Option<i32> = sqlx::query_scalar(holder)
                .bind(&db.spec.name)
                .fetch_optional(&admin)
                .await
                .unwrap();
            match now {
                Some(pid) if pid != first_pid => Ok(()),
                _ => Err("the standby never took the lock".to_owned()),
            }
        },
    )
    .await;
    // The first relay has stopped, saying why.
    let stopped = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("the first relay kept running after losing its lock session")
        .unwrap();
    assert!(
        matches!(stopped, Err(RelayError::LockLost(_))),
        "{stopped:?}"
    );
    for i in 1..=40 {
        write(&store, &stream, vec![counted(i)]).await;
    }
    let records = broker.consume("fence.events", 41, PATIENCE).await;
    let versions = versions_by_stream(&records).remove("x").unwrap();
    assert_eq!(
        versions,
        (1..=41).collect::<Vec<i64>>(),
        "each event once, in order"
    );
    stop(second).await.unwrap();
}

/// Encodes `{"n": 2}` as a record over the producer's size limit (librdkafka's
/// `message.max.bytes`, 1 MB by default), which the producer refuses as it is
/// enqueued; every other payload as its JSON.
struct RefusesTwo;

impl EventEncoder for RefusesTwo {
    fn encode(
        &self,
        _event_type: &str,
        _schema_version: i32,
        payload: &serde_json::Value,
    ) -> Result<(Vec<u8>, [u8; 8]), sluice_platform::avro::AvroError> {
        if payload == &json!({ "n": 2 }) {
            return Ok((vec![b' '; 2_000_000], [0; 8]));
        }
        Ok((payload.to_string().into_bytes(), [0; 8]))
    }
}

#[tokio::test]
async fn a_record_the_producer_refuses_holds_back_every_record_after_it() {
    let (broker, _db, store) = setup("refused.events", 1).await;
    let stream = StreamId::new("r-1").unwrap();
    write(&store, &stream, (1..=3).map(counted).collect()).await;
    sluice_platform::telemetry::init();
    let relay = start_relay_with(
        "refused",
        &store,
        &broker,
        Arc::new(RefusesTwo),
        RelayConfig {
            batch_size: 10,
            ..RelayConfig::default()
        },
    );
    // A retry is counted once every delivery report of the round is in: whatever
    // that round put on the topic is there by then.
    wait_for_metric("sluice_relay_retries_total{service=\"refused\"}").await;
    let records = broker
        .consume("refused.events", 1, Duration::from_secs(60))
        .await;
    // Version 3 ahead of version 2 would break the order consumers rely on: the
    // relay waits at the refused record instead.
    assert_eq!(
        versions_by_stream(&records).get("r-1"),
        Some(&vec![1]),
        "only the records before the refused one are published"
    );
    stop(relay).await.expect("relay");
}
