//! The CDC sink against a real Kafka-protocol broker (tansu), real DuckDB files and,
//! where services are involved, the real write services and relays on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use sluice_analytics::sink::{
    repository_schemas_dir, Loader, Sink, SinkConfig, SinkError, SinkRecord, VIEWS_SQL,
};
use sluice_analytics::warehouse::{Warehouse, WarehouseSettings};
use sluice_platform::avro::{SchemaCatalog, SchemaSource};
use sluice_platform::registry::TopicNames;
use sluice_platform::relay::{Relay, RelayConfig};
use sluice_platform::store::{StreamId, StreamVersion};
use sluice_platform::testing::{tell_of_order, unique_suffix, TestApp, TestBroker};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Support
// ---------------------------------------------------------------------------

/// A fresh directory for one test's warehouse (and schemas), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-sink-{label}-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn warehouse(&self) -> PathBuf {
        self.0.join("warehouse.duckdb")
    }

    /// The warehouse, opened (again).
    fn open(&self) -> Warehouse {
        Warehouse::open(&self.warehouse(), &WarehouseSettings::default()).expect("warehouse")
    }

    /// A copy of the repository's schemas directory, for a test to add to.
    fn schemas(&self) -> PathBuf {
        let schemas = self.0.join("schemas");
        copy_dir(&repository_schemas_dir(), &schemas);
        schemas
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(bootstrap: &str, schemas_dir: &Path) -> SinkConfig {
    SinkConfig {
        bootstrap: bootstrap.to_owned(),
        schemas_dir: schemas_dir.to_owned(),
        batch_size: 500,
        batch_wait: Duration::from_millis(20),
        topic_refresh: Duration::from_millis(500),
    }
}

/// A sink running in this process.
struct RunningSink {
    warehouse: Arc<Warehouse>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SinkError>>,
}

impl RunningSink {
    /// Loads the `*.events` topics of the namespace `names` (a test's own, see
    /// `TestBroker::topic_names`).
    fn start(path: &Path, config: SinkConfig, names: TopicNames) -> Self {
        let warehouse =
            Arc::new(Warehouse::open(path, &WarehouseSettings::default()).expect("warehouse"));
        let sink = Sink::prepare(&warehouse, config)
            .expect("prepare the sink")
            .with_topic_names(names);
        warehouse.lock_configuration().expect("lock");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sink.run(Arc::clone(&warehouse), shutdown.clone()));
        RunningSink {
            warehouse,
            shutdown,
            task,
        }
    }

    /// [`RunningSink::start`] on the warehouse of `scratch`, loading the test
    /// topics of `broker` with the schemas under `schemas_dir`.
    fn of(scratch: &Scratch, broker: &TestBroker, schemas_dir: &Path) -> Self {
        RunningSink::start(
            &scratch.warehouse(),
            config(&broker.bootstrap(), schemas_dir),
            broker.topic_names(),
        )
    }

    fn query<T: duckdb::types::FromSql>(&self, sql: &str) -> T {
        let conn = self.warehouse.connect().expect("connect");
        conn.query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Waits until `sql` (one number) reaches `expected`; the deadline only guards
    /// against a hang.
    async fn wait_for(&self, sql: &str, expected: i64) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let got: Option<i64> = self.query(sql);
            if got == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{sql}: {got:?}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("sink task").expect("sink");
    }
}

/// A loader of `catalog` on a connection of its own to `warehouse`.
fn loader_on(warehouse: &Warehouse, catalog: &SchemaCatalog) -> Loader {
    Loader::new(warehouse.connect().expect("connect"), catalog.clone()).expect("loader")
}

/// `order`'s `OrderConfirmed`, the second event of its stream.
fn order_confirmed(order: Uuid) -> TestEvent {
    TestEvent::new(
        "OrderConfirmed",
        order,
        2,
        json!({"order_id": order.to_string()}),
    )
}

fn repository_catalog() -> SchemaCatalog {
    let services = [
        sluice_orders::schemas(),
        sluice_payments::schemas(),
        sluice_shipping::schemas(),
    ];
    SchemaCatalog::new(services.into_iter().flatten()).expect("catalog")
}

/// An event as the relay publishes it.
#[derive(Debug, Clone)]
struct TestEvent {
    topic: String,
    stream_type: &'static str,
    stream_id: Uuid,
    stream_version: i64,
    event_id: Uuid,
    event_type: &'static str,
    schema_version: i32,
    payload: Value,
    recorded_at: DateTime<Utc>,
}

impl TestEvent {
    fn new(event_type: &'static str, stream_id: Uuid, version: i64, payload: Value) -> Self {
        let (topic, stream_type) = match event_type {
            t if t.starts_with("Order") => ("orders.events", "order"),
            t if t.starts_with("Payment") => ("payments.events", "payment"),
            _ => ("shipping.events", "shipment"),
        };
        TestEvent {
            topic: topic.to_owned(),
            stream_type,
            stream_id,
            stream_version: version,
            event_id: Uuid::now_v7(),
            event_type,
            schema_version: 1,
            payload,
            recorded_at: Utc::now(),
        }
    }

    fn at(mut self, recorded_at: DateTime<Utc>) -> Self {
        self.recorded_at = recorded_at;
        self
    }

    /// The relay's headers.
    fn headers(&self, catalog: &SchemaCatalog) -> BTreeMap<String, String> {
        let fingerprint = catalog
            .fingerprint(self.event_type, self.schema_version)
            .expect("schema");
        [
            ("event_id", self.event_id.to_string()),
            ("event_type", self.event_type.to_owned()),
            ("stream_type", self.stream_type.to_owned()),
            ("stream_version", self.stream_version.to_string()),
            ("global_position", self.stream_version.to_string()),
            ("schema_version", self.schema_version.to_string()),
            (
                "schema_fingerprint",
                fingerprint.0.iter().map(|b| format!("{b:02x}")).collect(),
            ),
            ("recorded_at", self.recorded_at.to_rfc3339()),
            ("correlation_id", self.stream_id.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn bytes(&self, catalog: &SchemaCatalog) -> Vec<u8> {
        catalog
            .encode_single_object(self.event_type, self.schema_version, &self.payload)
            .expect("encode")
    }

    /// The record as the sink would read it at `offset`.
    fn record(&self, catalog: &SchemaCatalog, offset: i64) -> SinkRecord {
        SinkRecord {
            topic: self.topic.clone(),
            partition: 0,
            offset,
            key: self.stream_id.to_string(),
            payload: self.bytes(catalog),
            headers: self.headers(catalog),
        }
    }
}

fn producer(bootstrap: &str) -> FutureProducer {
    rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("log_level", "3")
        .create()
        .expect("producer")
}

type RawRecord = (String, Vec<u8>, BTreeMap<String, String>);

/// Publishes raw records (key, value, headers) to the broker's topic `topic` (a
/// physical name) and waits for the acks.
async fn publish_raw(producer: &FutureProducer, topic: &str, records: &[RawRecord]) {
    let mut deliveries = Vec::new();
    for (key, value, headers) in records {
        let headers = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_str()),
            })
        });
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(headers);
        deliveries.push(producer.send(record, Duration::from_secs(10)));
    }
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
}

/// Publishes events to their (logical) topics in the namespace `names`.
async fn publish(
    producer: &FutureProducer,
    names: &TopicNames,
    catalog: &SchemaCatalog,
    events: &[TestEvent],
) {
    let mut by_topic: BTreeMap<&str, Vec<RawRecord>> = BTreeMap::new();
    for e in events {
        by_topic.entry(&e.topic).or_default().push((
            e.stream_id.to_string(),
            e.bytes(catalog),
            e.headers(catalog),
        ));
    }
    for (topic, records) in by_topic {
        publish_raw(producer, &names.physical(topic), &records).await;
    }
}

fn order_placed(order: Uuid, customer: &str, total: i64) -> Value {
    json!({
        "order_id": order.to_string(),
        "customer_id": customer,
        "currency": "EUR",
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": total}],
        "total_minor": total,
    })
}

// ---------------------------------------------------------------------------
// The three services, end to end
// ---------------------------------------------------------------------------

fn spawn_relay(
    service: &sluice_platform::service::WriteService,
    app: &TestApp,
    broker: &TestBroker,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let catalog = service.catalog().expect("schemas");
    let relay = Relay::new(
        service.name,
        app.store.pool().clone(),
        &broker.bootstrap(),
        Arc::new(catalog),
        RelayConfig {
            idle_interval: Duration::from_millis(20),
            topic_names: broker.topic_names(),
            ..RelayConfig::default()
        },
    )
    .expect("relay");
    let token = shutdown.clone();
    tokio::spawn(async move { relay.run(token).await.expect("relay") })
}

async fn command(client: &reqwest::Client, url: String, body: Value) {
    let response = client.post(&url).json(&body).send().await.expect("send");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_all_three_services_land_in_raw_and_typed_tables_and_order_facts_joins_them() {
    let broker = TestBroker::start().await;
    for topic in sluice_platform::testing::repository_registry()
        .topics
        .keys()
    {
        broker.topic(topic, 2).await;
    }
    let orders = TestApp::spawn(&sluice_orders::SERVICE).await;
    let payments = TestApp::spawn(&sluice_payments::SERVICE).await;
    let shipping = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let relays_shutdown = CancellationToken::new();
    let relays = [
        spawn_relay(&sluice_orders::SERVICE, &orders, &broker, &relays_shutdown),
        spawn_relay(
            &sluice_payments::SERVICE,
            &payments,
            &broker,
            &relays_shutdown,
        ),
        spawn_relay(
            &sluice_shipping::SERVICE,
            &shipping,
            &broker,
            &relays_shutdown,
        ),
    ];
    let scratch = Scratch::new("services");
    let sink = RunningSink::of(&scratch, &broker, &repository_schemas_dir());

    // Order A goes the whole way; order B is cancelled. No reactor runs here: the
    // payments and shipping services are told of order A the way their reactors
    // would tell them, so that their APIs accept the commands that name it.
    let client = reqwest::Client::new();
    let (order_a, order_b) = (Uuid::now_v7(), Uuid::now_v7());
    tell_of_order(payments.store.pool(), order_a, "EUR", 2800, &[]).await;
    tell_of_order(
        shipping.store.pool(),
        order_a,
        "EUR",
        2800,
        &["OrderConfirmed"],
    )
    .await;
    let (payment, shipment) = (Uuid::now_v7(), Uuid::now_v7());
    let steps = [
        (
            orders.url("/orders"),
            json!({"order_id": order_a, "customer_id": "cust-a", "currency": "EUR",
                   "lines": [{"sku": "BOOK-1", "quantity": 2, "unit_price_minor": 1250},
                             {"sku": "PEN-7", "quantity": 1, "unit_price_minor": 300}]}),
        ),
        (
            orders.url("/orders"),
            json!({"order_id": order_b, "customer_id": "cust-b", "currency": "USD",
                   "lines": [{"sku": "MUG-3", "quantity": 1, "unit_price_minor": 900}]}),
        ),
        (
            payments.url("/payments"),
            json!({"payment_id": payment, "order_id": order_a, "amount_minor": 2800, "currency": "EUR"}),
        ),
        (orders.url(&format!("/orders/{order_a}/confirm")), json!({})),
        (
            payments.url(&format!("/payments/{payment}/capture")),
            json!({}),
        ),
        (
            shipping.url("/shipments"),
            json!({"shipment_id": shipment, "order_id": order_a}),
        ),
        (
            shipping.url(&format!("/shipments/{shipment}/dispatch")),
            json!({"carrier": "DHL Express", "tracking_number": "JD0001"}),
        ),
        (
            shipping.url(&format!("/shipments/{shipment}/deliver")),
            json!({}),
        ),
        (
            orders.url(&format!("/orders/{order_b}/cancel")),
            json!({"reason": "changed my mind"}),
        ),
    ];
    for (url, body) in steps {
        command(&client, url, body).await;
    }

    let produced =
        orders.event_count().await + payments.event_count().await + shipping.event_count().await;
    assert_eq!(produced, 9);
    sink.wait_for("SELECT count(*) FROM raw_events", produced)
        .await;

    // raw_events: the store's event ids and versions, decoded payloads, no errors.
    let undecoded: i64 = sink
        .query("SELECT count(*) FROM raw_events WHERE payload IS NULL OR decode_error IS NOT NULL");
    assert_eq!(undecoded, 0);
    let topics: i64 = sink.query("SELECT count(DISTINCT topic) FROM raw_events");
    assert_eq!(topics, 3);
    let conn = sink.warehouse.connect().expect("connect");
    let loaded: Vec<(String, i64, String)> = conn
        .prepare(
            "SELECT CAST(event_id AS VARCHAR), stream_version, stream_type FROM raw_events \
              WHERE stream_id = ? ORDER BY stream_version",
        )
        .expect("prepare")
        .query_map([order_a.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let stored: Vec<(String, i64, String)> = orders
        .store
        .read_stream(&StreamId::from(order_a), StreamVersion::FIRST)
        .await
        .expect("read the order stream")
        .iter()
        .map(|e| {
            (
                e.event_id.uuid().to_string(),
                e.stream_version.get(),
                e.stream_type.clone(),
            )
        })
        .collect();
    assert_eq!(loaded, stored, "the warehouse keeps the store's envelope");
    assert_eq!(loaded.len(), 2);

    // Typed tables: values, uuids, lists of structs, timestamps.
    let placed: (String, i64, String, i32, String) = conn
        .query_row(
            "SELECT customer_id, total_minor, array_to_string([l.sku FOR l IN lines], ','), \
                    lines[1].quantity, typeof(order_id) \
               FROM order_placed WHERE order_id = ?",
            [order_a.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("order_placed row");
    assert_eq!(
        placed,
        (
            "cust-a".to_owned(),
            2800,
            "BOOK-1,PEN-7".to_owned(),
            2,
            "UUID".to_owned()
        )
    );
    let captured: i64 = sink.query(&format!(
        "SELECT amount_minor FROM payment_captured WHERE payment_id = '{payment}'"
    ));
    assert_eq!(captured, 2800);
    let carrier: String = sink.query(&format!(
        "SELECT carrier || '/' || tracking_number FROM shipment_dispatched WHERE order_id = '{order_a}'"
    ));
    assert_eq!(carrier, "DHL Express/JD0001");
    let reason: String = sink.query("SELECT reason FROM order_cancelled");
    assert_eq!(reason, "changed my mind");
    let same_time: bool = sink.query(
        "SELECT bool_and(t.recorded_at = r.recorded_at \
                         AND epoch_us(t.recorded_at) > epoch_us(now()) - 300000000) \
           FROM order_placed t JOIN raw_events r USING (event_id)",
    );
    assert!(same_time, "typed tables carry the event time");

    // order_facts: one row per order with payment and shipment joined in.
    let facts: i64 = sink.query("SELECT count(*) FROM order_facts");
    assert_eq!(facts, 2);
    let a: (String, String, i64, String, bool) = conn
        .query_row(
            "SELECT status, payment_status, authorized_minor, carrier, \
                    time_to_deliver_seconds >= time_to_ship_seconds \
               FROM order_facts WHERE order_id = ?",
            [order_a.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("order A facts");
    assert_eq!(
        a,
        (
            "delivered".to_owned(),
            "captured".to_owned(),
            2800,
            "DHL Express".to_owned(),
            true
        )
    );
    let b: (String, String, String) = conn
        .query_row(
            "SELECT status, payment_status, cancel_reason FROM order_facts WHERE order_id = ?",
            [order_b.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("order B facts");
    assert_eq!(
        b,
        (
            "cancelled".to_owned(),
            "none".to_owned(),
            "changed my mind".to_owned()
        )
    );
    drop(conn);

    sink.stop().await;
    relays_shutdown.cancel();
    for relay in relays {
        relay.await.expect("relay task");
    }
}

// ---------------------------------------------------------------------------
// Delivery guarantees
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_records_are_loaded_once() {
    let broker = TestBroker::start().await;
    broker.topic("orders.events", 2).await;
    let catalog = repository_catalog();
    let events: Vec<TestEvent> = (0..50)
        .map(|i| {
            let order = Uuid::now_v7();
            TestEvent::new(
                "OrderPlaced",
                order,
                1,
                order_placed(order, &format!("c{i}"), 100 + i),
            )
        })
        .collect();
    let producer = producer(&broker.bootstrap());
    publish(&producer, &broker.topic_names(), &catalog, &events).await;
    let scratch = Scratch::new("redelivery");
    let sink = RunningSink::of(&scratch, &broker, &repository_schemas_dir());
    sink.wait_for("SELECT count(*) FROM raw_events", 50).await;

    // The relay sends everything again (a crash before its checkpoint), and part
    // of it a third time.
    publish(&producer, &broker.topic_names(), &catalog, &events).await;
    publish(&producer, &broker.topic_names(), &catalog, &events[..20]).await;
    sink.wait_for(
        "SELECT CAST(sum(next_offset) AS BIGINT) FROM sluice_positions",
        120,
    )
    .await;
    let (rows, distinct, typed): (i64, i64, i64) = (
        sink.query("SELECT count(*) FROM raw_events"),
        sink.query("SELECT count(DISTINCT event_id) FROM raw_events"),
        sink.query("SELECT count(*) FROM order_placed"),
    );
    assert_eq!((rows, distinct, typed), (50, 50, 50));
    let watermark: i64 =
        sink.query("SELECT CAST(sum(loaded_offset + 1) AS BIGINT) FROM sluice_watermarks");
    assert_eq!(watermark, 120);
    sink.stop().await;
}

// The sink killed mid-load, as the real process: `tests/sink_crash.rs` in the
// repository root, which runs `sluice run analytics`.

// ---------------------------------------------------------------------------
// Schemas and bad records
// ---------------------------------------------------------------------------

const ORDER_CANCELLED_V2: &str = r#"{
  "type": "record",
  "name": "OrderCancelled",
  "namespace": "io.sluice.orders",
  "doc": "A placed or confirmed order was cancelled; it is final.",
  "fields": [
    {"name": "order_id", "type": {"type": "string", "logicalType": "uuid"}, "doc": "The order."},
    {"name": "reason", "type": "string", "doc": "Why."},
    {"name": "cancelled_by", "type": ["null", "string"], "default": null, "doc": "Who, when known."}
  ]
}"#;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// The orders service's schemas and [`ORDER_CANCELLED_V2`].
fn cancelled_v2_catalog() -> SchemaCatalog {
    SchemaCatalog::new(
        sluice_orders::schemas()
            .into_iter()
            .chain([SchemaSource::owned("OrderCancelled", 2, ORDER_CANCELLED_V2)]),
    )
    .expect("v2 catalog")
}

/// Puts [`ORDER_CANCELLED_V2`] in the copied schemas directory `schemas`.
fn write_cancelled_v2(schemas: &Path) {
    std::fs::write(
        schemas.join("orders/OrderCancelled/v2.avsc"),
        ORDER_CANCELLED_V2,
    )
    .expect("write v2");
}

/// A record written with a schema version that reaches the sink's directory only
/// after the record: kept without a payload at first, then, once the `.avsc` is
/// there and another record names it, decoded and loaded into its typed table too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_arrives_before_its_schema_is_backfilled_once_the_schema_appears() {
    let broker = TestBroker::start().await;
    broker.topic("orders.events", 1).await;
    let scratch = Scratch::new("late-schema");
    let schemas = scratch.schemas();
    let sink = RunningSink::of(&scratch, &broker, &schemas);
    let v2 = cancelled_v2_catalog();
    let producer = producer(&broker.bootstrap());
    let cancelled = |by: &str| {
        let order = Uuid::now_v7();
        let mut event = TestEvent::new(
            "OrderCancelled",
            order,
            2,
            json!({"order_id": order.to_string(), "reason": "late", "cancelled_by": by}),
        );
        event.schema_version = 2;
        event
    };
    publish(&producer, &broker.topic_names(), &v2, &[cancelled("first")]).await;
    sink.wait_for("SELECT count(*) FROM raw_events WHERE payload IS NULL", 1)
        .await;

    // The schema lands on disk; the next records that name it make the sink look
    // again (at most every few seconds), and the first record is decoded too.
    write_cancelled_v2(&schemas);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut later = 0;
    loop {
        let kept: i64 = sink.query("SELECT count(*) FROM raw_events WHERE payload IS NULL");
        if kept == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the record that came before its schema was never decoded"
        );
        later += 1;
        publish(&producer, &broker.topic_names(), &v2, &[cancelled("later")]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sink.wait_for("SELECT count(*) FROM raw_events", 1 + later)
        .await;
    sink.wait_for("SELECT count(*) FROM raw_events WHERE payload IS NULL", 0)
        .await;
    sink.wait_for("SELECT count(*) FROM order_cancelled", 1 + later)
        .await;
    let first: i64 =
        sink.query("SELECT count(*) FROM order_cancelled WHERE cancelled_by = 'first'");
    assert_eq!(first, 1, "the early record is in its typed table");
    let errors: i64 = sink.query("SELECT count(*) FROM raw_events WHERE decode_error IS NOT NULL");
    assert_eq!(errors, 0);
    sink.stop().await;
}

/// A DuckDB statement of the loader fails (here: a typed table is renamed away
/// under it, as an analyst's query filling memory or temp space would make a
/// statement fail): the batch is rolled back and retried with backoff, the sink
/// keeps running, and once the statement can succeed again every record is loaded
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_warehouse_statement_is_retried_and_the_sink_keeps_loading() {
    sluice_platform::telemetry::init();
    let broker = TestBroker::start().await;
    broker.topic("orders.events", 1).await;
    let scratch = Scratch::new("retry");
    let sink = RunningSink::of(&scratch, &broker, &repository_schemas_dir());
    let catalog = repository_catalog();
    let producer = producer(&broker.bootstrap());
    let placed = |n: i64| {
        let order = Uuid::now_v7();
        TestEvent::new("OrderPlaced", order, 1, order_placed(order, "c-retry", n))
    };
    publish(&producer, &broker.topic_names(), &catalog, &[placed(1)]).await;
    sink.wait_for("SELECT count(*) FROM order_placed", 1).await;

    let other = sink.warehouse.connect().expect("connect");
    other
        .execute_batch("ALTER TABLE order_placed RENAME TO order_placed_away")
        .expect("rename");
    publish(
        &producer,
        &broker.topic_names(),
        &catalog,
        &[placed(2), placed(3), placed(4)],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sluice_platform::telemetry::render_text().contains("sluice_sink_load_retries_total") {
        assert!(
            !sink.task.is_finished(),
            "the sink stopped on a failing warehouse statement"
        );
        assert!(Instant::now() < deadline, "the loader never retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink.query::<i64>("SELECT count(*) FROM raw_events"), 1);
    other
        .execute_batch("ALTER TABLE order_placed_away RENAME TO order_placed")
        .expect("rename back");
    sink.wait_for("SELECT count(*) FROM order_placed", 4).await;
    sink.wait_for("SELECT count(*) FROM raw_events", 4).await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_schema_version_with_an_optional_field_adds_a_column_while_running() {
    let broker = TestBroker::start().await;
    broker.topic("orders.events", 1).await;
    let scratch = Scratch::new("evolution");
    let schemas = scratch.schemas();
    let sink = RunningSink::of(&scratch, &broker, &schemas);
    let v1 = repository_catalog();
    let producer = producer(&broker.bootstrap());
    let cancelled = |reason: &str, by: Option<String>| {
        let order = Uuid::now_v7();
        let mut payload = json!({"order_id": order.to_string(), "reason": reason});
        let mut event = TestEvent::new("OrderCancelled", order, 2, Value::Null);
        if let Some(by) = by {
            payload["cancelled_by"] = json!(by);
            event.schema_version = 2;
        }
        event.payload = payload;
        event
    };
    let old: Vec<TestEvent> = (0..3).map(|_| cancelled("v1", None)).collect();
    publish(&producer, &broker.topic_names(), &v1, &old).await;
    sink.wait_for("SELECT count(*) FROM order_cancelled", 3)
        .await;

    // A producer upgraded to v2 publishes before the sink has heard of it: the
    // unknown fingerprint makes the sink rescan its schemas directory.
    write_cancelled_v2(&schemas);
    let v2 = cancelled_v2_catalog();
    let new: Vec<TestEvent> = (0..2)
        .map(|i| cancelled("v2", Some(format!("agent-{i}"))))
        .collect();
    publish(&producer, &broker.topic_names(), &v2, &new).await;
    sink.wait_for("SELECT count(*) FROM order_cancelled", 5)
        .await;

    let conn = sink.warehouse.connect().expect("connect");
    let rows: Vec<(String, i32, Option<String>)> = conn
        .prepare(
            "SELECT reason, schema_version, cancelled_by FROM order_cancelled \
              ORDER BY schema_version, cancelled_by",
        )
        .expect("the new column exists")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let v1_row = ("v1".to_owned(), 1, None);
    assert_eq!(
        rows,
        vec![
            v1_row.clone(),
            v1_row.clone(),
            v1_row,
            ("v2".to_owned(), 2, Some("agent-0".to_owned())),
            ("v2".to_owned(), 2, Some("agent-1".to_owned())),
        ]
    );
    let errors: i64 = sink.query("SELECT count(*) FROM raw_events WHERE decode_error IS NOT NULL");
    assert_eq!(errors, 0, "v2 events decoded after the rescan");
    drop(conn);
    sink.stop().await;

    // A restart knows both versions from the start and keeps the column.
    let sink = RunningSink::of(&scratch, &broker, &schemas);
    let with_value: i64 = sink.query("SELECT count(cancelled_by) FROM order_cancelled");
    assert_eq!(with_value, 2);
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_kept_with_their_error_and_loading_goes_on() {
    let broker = TestBroker::start().await;
    broker.topic("payments.events", 1).await;
    let scratch = Scratch::new("undecodable");
    let sink = RunningSink::of(&scratch, &broker, &repository_schemas_dir());
    let catalog = repository_catalog();
    let producer = producer(&broker.bootstrap());
    let payment = Uuid::now_v7();
    let good = TestEvent::new(
        "PaymentAuthorized",
        payment,
        1,
        json!({"payment_id": payment.to_string(), "order_id": Uuid::now_v7().to_string(),
               "amount_minor": 500, "currency": "EUR"}),
    );
    let later = TestEvent::new(
        "PaymentCaptured",
        payment,
        2,
        json!({"payment_id": payment.to_string(), "order_id": Uuid::now_v7().to_string(),
               "amount_minor": 500}),
    );
    let with_id = |id: Uuid| {
        let mut headers = good.headers(&catalog);
        headers.insert("event_id".to_owned(), id.to_string());
        headers
    };
    let (unknown_id, garbage_id, truncated_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut unknown_bytes = good.bytes(&catalog);
    unknown_bytes[2..10].copy_from_slice(&[0xAB; 8]);
    let truncated_bytes = good.bytes(&catalog)[..12].to_vec();
    let key = payment.to_string();
    publish_raw(
        &producer,
        &broker.physical("payments.events"),
        &[
            (key.clone(), unknown_bytes.clone(), with_id(unknown_id)),
            (
                key.clone(),
                b"not avro at all".to_vec(),
                with_id(garbage_id),
            ),
            (key.clone(), truncated_bytes.clone(), with_id(truncated_id)),
            // No headers at all: a stand-in id keeps the record.
            (key.clone(), b"\xC3\x01".to_vec(), BTreeMap::new()),
        ],
    )
    .await;
    publish(
        &producer,
        &broker.topic_names(),
        &catalog,
        &[good.clone(), later.clone()],
    )
    .await;
    sink.wait_for("SELECT count(*) FROM raw_events", 6).await;

    let conn = sink.warehouse.connect().expect("connect");
    type Kept = (Option<String>, Option<Vec<u8>>, String, Option<String>);
    let kept = |id: Uuid| -> Kept {
        conn.query_row(
            "SELECT CAST(payload AS VARCHAR), payload_avro, decode_error, event_type \
               FROM raw_events WHERE event_id = ?",
            [id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap_or_else(|e| panic!("{id}: {e}"))
    };
    let (payload, bytes, error, event_type) = kept(unknown_id);
    assert_eq!(payload, None);
    assert_eq!(bytes.as_deref(), Some(unknown_bytes.as_slice()));
    assert!(error.contains("fingerprint"), "{error}");
    assert_eq!(
        event_type.as_deref(),
        Some("PaymentAuthorized"),
        "from the headers"
    );
    let (_, bytes, error, _) = kept(garbage_id);
    assert_eq!(bytes.as_deref(), Some(&b"not avro at all"[..]));
    assert!(error.contains("single-object"), "{error}");
    let (_, bytes, error, _) = kept(truncated_id);
    assert_eq!(bytes.as_deref(), Some(truncated_bytes.as_slice()));
    assert!(error.contains("malformed"), "{error}");
    let headerless: String = conn
        .query_row(
            "SELECT decode_error FROM raw_events WHERE event_type IS NULL",
            [],
            |r| r.get(0),
        )
        .expect("the headerless record");
    assert!(
        headerless.contains("header `event_id` missing"),
        "{headerless}"
    );

    // Loading went on: the good events are typed.
    let typed: (i64, i64) = (
        sink.query("SELECT count(*) FROM payment_authorized"),
        sink.query("SELECT count(*) FROM payment_captured"),
    );
    assert_eq!(typed, (1, 1));
    drop(conn);
    sink.stop().await;
}

// ---------------------------------------------------------------------------
// Views (the loader alone, on records already in memory)
// ---------------------------------------------------------------------------

fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, day, hour, minute, 0)
        .single()
        .expect("time")
}

fn with(mut payload: Value, extra: Value) -> Value {
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    payload
}

#[test]
fn views_and_order_state_as_of_answer_from_the_events() {
    let scratch = Scratch::new("views");
    let warehouse = scratch.open();
    let catalog = repository_catalog();
    let mut loader = loader_on(&warehouse, &catalog);
    loader
        .connection()
        .execute_batch(VIEWS_SQL)
        .expect("views over empty tables");
    let empty: i64 = loader
        .connection()
        .query_row("SELECT count(*) FROM order_facts", [], |r| r.get(0))
        .expect("order_facts over empty tables");
    assert_eq!(empty, 0);

    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (pay_a, pay_b, pay_c, ship_a) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let payment = |t: &'static str, id: Uuid, order: Uuid, v: i64, extra: Value| {
        let base = json!({"payment_id": id.to_string(), "order_id": order.to_string()});
        TestEvent::new(t, id, v, with(base, extra))
    };
    let shipment = |t: &'static str, v: i64, extra: Value| {
        let base = json!({"shipment_id": ship_a.to_string(), "order_id": a.to_string()});
        TestEvent::new(t, ship_a, v, with(base, extra))
    };
    let confirmed = json!({"order_id": a.to_string()});
    let eur = |amount: i64| json!({"amount_minor": amount, "currency": "EUR"});
    let events = vec![
        // A: placed day 1 10:00, delivered day 2, partly refunded.
        TestEvent::new("OrderPlaced", a, 1, order_placed(a, "alice", 1000)).at(at(1, 10, 0)),
        payment("PaymentAuthorized", pay_a, a, 1, eur(1000)).at(at(1, 10, 1)),
        TestEvent::new("OrderConfirmed", a, 2, confirmed).at(at(1, 10, 2)),
        payment(
            "PaymentCaptured",
            pay_a,
            a,
            2,
            json!({"amount_minor": 1000}),
        )
        .at(at(1, 11, 0)),
        shipment("ShipmentCreated", 1, json!({})).at(at(1, 10, 3)),
        shipment(
            "ShipmentDispatched",
            2,
            json!({"carrier": "UPS", "tracking_number": "1Z"}),
        )
        .at(at(1, 18, 0)),
        shipment("ShipmentDelivered", 3, json!({})).at(at(2, 9, 0)),
        payment(
            "PaymentRefunded",
            pay_a,
            a,
            3,
            json!({"amount_minor": 300, "reason": null}),
        )
        .at(at(2, 12, 0)),
        // B: placed day 1, payment declined, cancelled.
        TestEvent::new("OrderPlaced", b, 1, order_placed(b, "bob", 99_999)).at(at(1, 12, 0)),
        payment(
            "PaymentDeclined",
            pay_b,
            b,
            1,
            with(eur(99_999), json!({"reason": "limit"})),
        )
        .at(at(1, 12, 1)),
        TestEvent::new(
            "OrderCancelled",
            b,
            2,
            json!({"order_id": b.to_string(), "reason": "payment declined"}),
        )
        .at(at(1, 12, 2)),
        // C: placed day 2, authorized only.
        TestEvent::new("OrderPlaced", c, 1, order_placed(c, "carol", 500)).at(at(2, 8, 0)),
        payment("PaymentAuthorized", pay_c, c, 1, eur(500)).at(at(2, 8, 1)),
    ];
    let records: Vec<SinkRecord> = events
        .iter()
        .enumerate()
        .map(|(i, e)| e.record(&catalog, i as i64))
        .collect();
    let report = loader.load(&records).expect("load");
    assert_eq!(
        (report.loaded, report.duplicates, report.undecodable),
        (13, 0, 0)
    );
    let again = loader.load(&records).expect("reload");
    assert_eq!(
        (again.loaded, again.duplicates),
        (0, 13),
        "a reload is all duplicates"
    );

    let conn = loader.connection();
    type Fact = (String, String, i64, i64, Option<f64>, Option<f64>);
    let fact = |order: Uuid| -> Fact {
        conn.query_row(
            "SELECT status, payment_status, captured_minor, refunded_minor, \
                    time_to_authorize_seconds, time_to_deliver_seconds \
               FROM order_facts WHERE order_id = ?",
            [order.to_string()],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("fact")
    };
    let s = |t: &str| t.to_owned();
    assert_eq!(
        fact(a),
        (
            s("delivered"),
            s("partially_refunded"),
            1000,
            300,
            Some(60.0),
            Some(82_800.0)
        )
    );
    assert_eq!(fact(b), (s("cancelled"), s("declined"), 0, 0, None, None));
    assert_eq!(
        fact(c),
        (s("placed"), s("authorized"), 0, 0, Some(60.0), None)
    );

    let revenue: Vec<(String, String, i64, i64, i64)> = conn
        .prepare(
            "SELECT CAST(day AS VARCHAR), currency, captured_minor, refunded_minor, net_minor \
               FROM daily_revenue",
        )
        .expect("daily_revenue")
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        revenue,
        vec![
            (s("2025-03-01"), s("EUR"), 1000, 0, 1000),
            (s("2025-03-02"), s("EUR"), 0, 300, -300),
        ]
    );

    let funnel: (i64, i64, i64, i64, f64) = conn
        .query_row(
            "SELECT placed, paid, shipped, delivered, placed_to_paid \
               FROM fulfilment_funnel WHERE day IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("funnel total");
    assert_eq!(funnel, (3, 2, 1, 1, 2.0 / 3.0));
    let day_one: (i64, i64) = conn
        .query_row(
            "SELECT placed, cancelled FROM fulfilment_funnel WHERE day = DATE '2025-03-01'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("funnel of day one");
    assert_eq!(day_one, (2, 1));

    // As of day 1, 12:00:30: A is confirmed and captured but not shipped, B only
    // placed (its decline comes 30 s later), C not placed yet.
    let as_of: Vec<(String, String, String)> = conn
        .prepare(
            "SELECT customer_id, status, payment_status \
               FROM order_state_as_of(TIMESTAMPTZ '2025-03-01 12:00:30+00') ORDER BY customer_id",
        )
        .expect("order_state_as_of")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        as_of,
        vec![
            (s("alice"), s("confirmed"), s("captured")),
            (s("bob"), s("placed"), s("none")),
        ]
    );
}

#[test]
fn redeliveries_after_a_restart_are_dropped_by_stream_version_without_any_index() {
    let scratch = Scratch::new("restart-dedupe");
    let catalog = repository_catalog();
    let order = Uuid::now_v7();
    let placed = TestEvent::new("OrderPlaced", order, 1, order_placed(order, "dora", 700));
    let confirmed = order_confirmed(order);
    let first: Vec<SinkRecord> = vec![placed.record(&catalog, 0), confirmed.record(&catalog, 1)];
    {
        let warehouse = scratch.open();
        let mut loader = loader_on(&warehouse, &catalog);
        assert_eq!(loader.load(&first).expect("load").loaded, 2);
    }

    // A new loader on the same warehouse: what it remembers comes from the file.
    let warehouse = scratch.open();
    let mut loader = loader_on(&warehouse, &catalog);
    // The relay re-sends both at new offsets, then the stream goes on.
    let cancelled = TestEvent::new(
        "OrderCancelled",
        order,
        3,
        json!({"order_id": order.to_string(), "reason": "changed mind"}),
    );
    let again = vec![
        placed.record(&catalog, 2),
        confirmed.record(&catalog, 3),
        cancelled.record(&catalog, 4),
    ];
    let report = loader.load(&again).expect("reload");
    assert_eq!((report.loaded, report.duplicates), (1, 2));
    // A different event claiming the newest version is kept, not taken for a
    // re-delivery (the store never writes one; the warehouse keeps what came).
    let mut impostor = cancelled.clone();
    impostor.event_id = Uuid::now_v7();
    let report = loader
        .load(&[impostor.record(&catalog, 5)])
        .expect("impostor");
    assert_eq!((report.loaded, report.duplicates), (1, 0));

    let conn = loader.connection();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(count("SELECT count(*) FROM raw_events"), 4);
    assert_eq!(count("SELECT count(*) FROM order_placed"), 1);
    assert_eq!(count("SELECT count(*) FROM order_cancelled"), 2);
    assert_eq!(
        count(
            "SELECT (SELECT count(*) FROM duckdb_indexes() \
                      WHERE table_name IN ('raw_events', 'order_placed')) \
                  + (SELECT count(*) FROM duckdb_constraints() \
                      WHERE table_name IN ('raw_events', 'order_placed') \
                        AND constraint_type IN ('PRIMARY KEY', 'UNIQUE'))"
        ),
        0,
        "no index to maintain on the loaded tables"
    );
    let positions = count("SELECT CAST(sum(next_offset) AS BIGINT) FROM sluice_positions");
    assert_eq!(positions, 6);
}

#[test]
fn a_record_that_reaches_the_topic_after_a_later_one_of_its_stream_is_loaded_once() {
    let scratch = Scratch::new("step-back");
    let catalog = repository_catalog();
    let order = Uuid::now_v7();
    let placed = TestEvent::new("OrderPlaced", order, 1, order_placed(order, "ines", 900));
    let confirmed = order_confirmed(order);
    let cancelled = TestEvent::new(
        "OrderCancelled",
        order,
        3,
        json!({"order_id": order.to_string(), "reason": "late"}),
    );
    let warehouse = scratch.open();
    let mut loader = loader_on(&warehouse, &catalog);
    // Version 2's first delivery failed while version 3 went through; the relay
    // re-sends from version 2 on: 1, 3, then 2, 3.
    let report = loader
        .load(&[placed.record(&catalog, 0), cancelled.record(&catalog, 1)])
        .expect("first batch");
    assert_eq!((report.loaded, report.duplicates), (2, 0));
    let report = loader
        .load(&[confirmed.record(&catalog, 2), cancelled.record(&catalog, 3)])
        .expect("re-sent batch");
    assert_eq!(
        (report.loaded, report.duplicates),
        (1, 1),
        "version 2 is late, not a duplicate"
    );
    // In one batch too, and again after a restart: version 2 re-sent once more.
    let report = loader
        .load(&[
            placed.record(&catalog, 4),
            confirmed.record(&catalog, 5),
            confirmed.record(&catalog, 6),
        ])
        .expect("re-deliveries");
    assert_eq!((report.loaded, report.duplicates), (0, 3));
    drop(loader);
    let mut loader = loader_on(&warehouse, &catalog);
    let report = loader
        .load(&[confirmed.record(&catalog, 7)])
        .expect("after a restart");
    assert_eq!((report.loaded, report.duplicates), (0, 1));

    let conn = loader.connection();
    let versions: Vec<i64> = conn
        .prepare("SELECT stream_version FROM raw_events ORDER BY stream_version")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|v| v.expect("row"))
        .collect();
    assert_eq!(versions, vec![1, 2, 3], "each version once");
    let confirmed_rows: i64 = conn
        .query_row("SELECT count(*) FROM order_confirmed", [], |r| r.get(0))
        .expect("order_confirmed");
    assert_eq!(confirmed_rows, 1);
}
