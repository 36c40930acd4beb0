//! `sluice bench relay`: the outbox relay against a raw producer on the same broker,
//! and append-to-consumer latency under steady load.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::broker::{ensure_topics, BrokerKind, LocalBroker};
use sluice_platform::provision::drop_component;
use sluice_platform::registry::{Registry, TopicNames};
use sluice_platform::relay::{producer_config, Relay, RelayConfig, RelaySteps, RelayTimings};
use sluice_platform::store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{BenchDatabase, Figure};

const PARTITIONS: u32 = 3;
/// Events per append when pre-filling the outbox (and records per key in the
/// raw baseline, so both spread over partitions alike).
const PREFILL_APPEND: u64 = 100;
/// The `actor` of the warm-up event of the latency phase (not measured).
const WARMUP_ACTOR: &str = "bench-warmup";
const ACTOR: &str = "bench";

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

pub async fn run(
    registry: &Registry,
    events: u64,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<()> {
    if events == 0 || rate == 0 {
        bail!("--events and --rate must be at least 1");
    }
    let broker = Broker::start(registry).await?;
    let result = match BenchDatabase::create(
        &registry.platform.admin_database_url,
        "",
        sluice_platform::registry::ComponentKind::Service,
    )
    .await
    .context("creating the benchmark database")
    {
        Ok(db) => {
            let result = scenarios(registry, &db, &broker, events, rate, duration).await;
            let dropped = drop_component(&db.admin_url, &db.spec)
                .await
                .context("dropping the benchmark database");
            result.and(dropped)
        }
        Err(e) => Err(e),
    };
    broker.stop().await;
    result
}

/// What every published record carries besides its key: the same value bytes,
/// and 12 text headers of the relay's sizes.
struct Shape {
    catalog: Arc<SchemaCatalog>,
    value: Vec<u8>,
    fingerprint: String,
}

fn order_placed(order_id: Uuid) -> serde_json::Value {
    json!({
        "order_id": order_id.to_string(),
        "customer_id": "bench-customer-0001",
        "currency": "EUR",
        "lines": [
            { "sku": "BENCH-SKU-1", "quantity": 2, "unit_price_minor": 1250 },
            { "sku": "BENCH-SKU-2", "quantity": 1, "unit_price_minor": 4990 },
            { "sku": "BENCH-SKU-3", "quantity": 3, "unit_price_minor": 399 },
        ],
        "total_minor": 2 * 1250 + 4990 + 3 * 399,
    })
}

fn metadata(actor: &str) -> Metadata {
    Metadata {
        correlation_id: Some(Uuid::now_v7()),
        causation_id: Some(Uuid::now_v7()),
        traceparent: Some(format!(
            "00-{}-{}-01",
            Uuid::now_v7().simple(),
            &Uuid::now_v7().simple().to_string()[..16]
        )),
        actor: Some(actor.to_owned()),
    }
}

/// `recorded_at` as the relay writes it (`to_rfc3339` of a microsecond
/// PostgreSQL timestamp).
fn rfc3339_micros(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// The relay's 12 headers with values of the same lengths.
fn raw_headers(shape: &Shape, i: u64, meta: &Metadata) -> OwnedHeaders {
    let text = [
        ("event_id", Uuid::now_v7().to_string()),
        ("event_type", "OrderPlaced".to_owned()),
        ("stream_type", "order".to_owned()),
        ("stream_version", (i % PREFILL_APPEND + 1).to_string()),
        ("global_position", (i + 1).to_string()),
        ("schema_version", "1".to_owned()),
        ("schema_fingerprint", shape.fingerprint.clone()),
        ("recorded_at", rfc3339_micros(Utc::now())),
        (
            "correlation_id",
            meta.correlation_id.unwrap_or_default().to_string(),
        ),
        (
            "causation_id",
            meta.causation_id.unwrap_or_default().to_string(),
        ),
        ("traceparent", meta.traceparent.clone().unwrap_or_default()),
        ("actor", meta.actor.clone().unwrap_or_default()),
    ];
    text.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(value.as_str()),
        })
    })
}

fn header_bytes(headers: &OwnedHeaders) -> usize {
    headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
        .sum()
}

async fn scenarios(
    registry: &Registry,
    db: &BenchDatabase,
    broker: &Broker,
    events: u64,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<()> {
    sluice_platform::db::migrate_with(
        db.options(&db.spec.owner_role, &db.spec.owner_password)?,
        vec![sluice_platform::store::migrator()],
    )
    .await?;
    let pool =
        sluice_platform::db::pool_with(db.options(&db.spec.app_role, &db.spec.app_password)?, 4)
            .await?;
    let result = scenarios_on(registry, &pool, broker, events, rate, duration).await;
    pool.close().await;
    result
}

async fn scenarios_on(
    registry: &Registry,
    pool: &PgPool,
    broker: &Broker,
    events: u64,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<()> {
    let catalog = sluice_orders::SERVICE
        .catalog()
        .context("the orders schemas")?;
    let sample = order_placed(Uuid::now_v7());
    catalog
        .validate_latest("OrderPlaced", &sample)
        .context("the bench's OrderPlaced payload")?;
    let value = catalog.encode_single_object("OrderPlaced", 1, &sample)?;
    let fingerprint = catalog
        .fingerprint("OrderPlaced", 1)
        .context("OrderPlaced v1 fingerprint")?
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let shape = Shape {
        catalog: Arc::new(catalog),
        value,
        fingerprint,
    };

    let (relay_service, latency_service) = ("bench", "bench-latency");
    let names = &broker.topics;
    let raw_topic = names.physical("bench-raw.events");
    let relay_topic = names.physical(&format!("{relay_service}.events"));
    let latency_topic = names.physical(&format!("{latency_service}.events"));
    ensure_topics(
        &broker.bootstrap,
        &[
            (relay_topic.clone(), PARTITIONS),
            (raw_topic.clone(), PARTITIONS),
            (latency_topic.clone(), PARTITIONS),
        ],
    )
    .await
    .context("creating the bench topics")?;

    // An untimed warm-up first: a freshly started broker is still loading its
    // coordinators and compiling its hot paths, which would flatter the ratio.
    let warm_up = (events * 4).max(100_000);
    eprintln!("warm-up: {warm_up} records to {raw_topic}, untimed …");
    raw_producer(&broker.bootstrap, &raw_topic, &shape, warm_up)
        .await
        .context("warm-up")?;
    // The raw baseline runs before and after the relay: the broker slows a little
    // as its log grows, and the mean of the two brackets the relay's conditions.
    eprintln!("raw producer: {events} records to {raw_topic} …");
    let (raw_before, header_size) = raw_producer(&broker.bootstrap, &raw_topic, &shape, events)
        .await
        .context("raw producer phase")?;

    let store = EventStore::new(pool.clone());
    prefill(&store, events)
        .await
        .context("pre-filling the outbox")?;
    eprintln!("relay: publishing {events} outbox events to {relay_topic} …");
    let (relay_rate, relay_profile) = relay_throughput(
        pool,
        &broker.bootstrap,
        relay_service,
        names,
        &shape,
        events,
    )
    .await
    .context("relay phase")?;
    eprintln!("raw producer again: {events} records to {raw_topic} …");
    let (raw_after, _) = raw_producer(&broker.bootstrap, &raw_topic, &shape, events)
        .await
        .context("raw producer phase (after the relay)")?;
    let raw_rate = (raw_before + raw_after) / 2.0;

    eprintln!(
        "latency: {rate} appends/s for {} s, relay to {latency_topic} …",
        duration.as_secs()
    );
    let latency = latency(
        &store,
        &broker.bootstrap,
        latency_service,
        names,
        &shape,
        rate,
        duration,
    )
    .await
    .context("latency phase")?;

    println!(
        "{:<34} {:>8} {:>14} {:>14} {:>7}",
        "scenario", "events", "relay ev/s", "raw ev/s", "ratio"
    );
    println!(
        "{:<34} {events:>8} {relay_rate:>14.0} {raw_rate:>14.0} {:>6.0}%",
        "pre-filled outbox to broker",
        100.0 * relay_rate / raw_rate
    );
    println!(
        "record: key 36 bytes (a stream id), value {} bytes (OrderPlaced, 3 lines, Avro single-object), 12 text headers ({header_size} bytes)",
        shape.value.len()
    );
    println!(
        "relay: Relay::run (RelayConfig::default(), batch {}) from start until the {PARTITIONS} partitions' high watermarks sum to {events} (polled every 20 ms)",
        RelayConfig::default().batch_size
    );
    println!("raw:   one FutureProducer with the relay's producer_config, the same records, first enqueue to last acknowledgement;");
    println!("       mean of a run before the relay ({raw_before:.0}/s) and one after it ({raw_after:.0}/s)");
    println!("where the relay's time went, {relay_profile}");
    latency.print(rate, duration);
    Figure::new(
        "relay",
        format!("pre-filled outbox to broker, {events} events"),
        relay_rate,
        "events/s",
    )
    .raw(
        raw_rate,
        "raw FutureProducer, same records and producer settings",
    )
    .goal_ratio(0.9)
    .profile(relay_profile)
    .record();
    Figure::new(
        "relay",
        format!("append to consumer receipt at {rate}/s, p50"),
        latency.percentile(0.50),
        "ms",
    )
    .record();
    Figure::new(
        "relay",
        format!("append to consumer receipt at {rate}/s, p99"),
        latency.percentile(0.99),
        "ms",
    )
    .record();
    super::results::machine("broker", broker.description.trim_start_matches("broker: "));
    let same_clock = is_local(&registry.platform.admin_database_url);
    println!(
        "clock: recorded_at is PostgreSQL's clock_timestamp() at insert, receipt is this process's clock{}",
        if same_clock {
            "; PostgreSQL runs on this machine, so both read the same clock"
        } else {
            "; PostgreSQL runs elsewhere, so the figures include the clocks' skew"
        }
    );
    super::print_machine(pool, &broker.description).await;
    Ok(())
}

fn is_local(url: &str) -> bool {
    url.parse::<sqlx::postgres::PgConnectOptions>()
        .map(|o| {
            let host = o.get_host();
            host == "127.0.0.1" || host == "localhost" || host == "::1" || host.starts_with('/')
        })
        .unwrap_or(false)
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

/// Produces `events` records shaped like the relay's; returns records/s (first
/// enqueue to last acknowledgement) and the headers' size.
async fn raw_producer(
    bootstrap: &str,
    topic: &str,
    shape: &Shape,
    events: u64,
) -> anyhow::Result<(f64, usize)> {
    let producer: FutureProducer = producer_config(bootstrap).create()?;
    let mut header_size = 0;
    let mut key = String::new();
    let mut meta = Metadata::default();
    let mut deliveries = Vec::with_capacity(events as usize);
    let start = Instant::now();
    for i in 0..events {
        if i % PREFILL_APPEND == 0 {
            key = Uuid::now_v7().to_string();
            meta = metadata(ACTOR);
        }
        let headers = raw_headers(shape, i, &meta);
        header_size = header_bytes(&headers);
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&shape.value)
            .timestamp(Utc::now().timestamp_millis())
            .headers(headers);
        deliveries.push(enqueue(&producer, record).await?);
    }
    let mut failed = 0u64;
    let mut first_error = None;
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(_) => {
                failed += 1;
                first_error.get_or_insert("delivery canceled".to_owned());
            }
        }
    }
    let elapsed = start.elapsed();
    if failed > 0 {
        bail!(
            "{failed} of {events} records were not acknowledged (first: {})",
            first_error.unwrap_or_default()
        );
    }
    Ok((events as f64 / elapsed.as_secs_f64(), header_size))
}

/// Appends `events` OrderPlaced events in 100-event appends (one order stream
/// each), untimed.
async fn prefill(store: &EventStore, events: u64) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let progress = std::io::stderr().is_terminal();
    let mut done = 0;
    while done < events {
        let n = PREFILL_APPEND.min(events - done);
        let order_id = Uuid::now_v7();
        let stream = StreamId::from(order_id);
        let meta = metadata(ACTOR);
        let batch = (0..n)
            .map(|_| NewEvent {
                event_type: "OrderPlaced".into(),
                schema_version: 1,
                payload: order_placed(order_id),
            })
            .collect();
        store
            .append(Append {
                stream_id: &stream,
                stream_type: "order",
                expected: ExpectedVersion::Any,
                events: batch,
                metadata: &meta,
                idempotency: None,
            })
            .await?;
        done += n;
        if progress && (done % 5_000 == 0 || done == events) {
            eprint!("\rpre-filling the outbox: {done}/{events} events");
        }
    }
    if progress {
        eprintln!();
    } else {
        eprintln!("pre-filled the outbox with {events} events");
    }
    Ok(())
}

/// A running relay's task.
type RelayTask = tokio::task::JoinHandle<Result<(), sluice_platform::relay::RelayError>>;

/// A relay of `service` publishing to `<service>.events` in the namespace `names`.
fn start_relay(
    pool: &PgPool,
    bootstrap: &str,
    service: &str,
    names: &TopicNames,
    shape: &Shape,
) -> anyhow::Result<(CancellationToken, RelayTask, Arc<RelayTimings>)> {
    let relay = Relay::new(
        service,
        pool.clone(),
        bootstrap,
        shape.catalog.clone(),
        RelayConfig {
            topic_names: names.clone(),
            ..RelayConfig::default()
        },
    )?;
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let timings = relay.timings();
    Ok((
        shutdown,
        tokio::spawn(async move { relay.run(token).await }),
        timings,
    ))
}

async fn stop_relay(
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), sluice_platform::relay::RelayError>>,
) -> anyhow::Result<()> {
    shutdown.cancel();
    handle.await?.context("the relay failed")
}

fn metadata_consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?)
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let n = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        if n > 0 {
            return Ok(n as i32);
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no partitions");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a relay over the pre-filled outbox; events/s from its start until the
/// topic holds every event.
async fn relay_throughput(
    pool: &PgPool,
    bootstrap: &str,
    service: &str,
    names: &TopicNames,
    shape: &Shape,
    events: u64,
) -> anyhow::Result<(f64, String)> {
    let topic = &names.physical(&format!("{service}.events"));
    let consumer = metadata_consumer(bootstrap)?;
    let parts = partitions(&consumer, topic)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (start, (shutdown, mut relay, timings)) = (
        Instant::now(),
        start_relay(pool, bootstrap, service, names, shape)?,
    );
    let topic_owned = topic.to_owned();
    let stop_poll = stop.clone();
    let mut watch = tokio::task::spawn_blocking(move || -> anyhow::Result<Instant> {
        loop {
            let mut sum = 0;
            for p in 0..parts {
                sum += consumer
                    .fetch_watermarks(&topic_owned, p, Duration::from_secs(10))?
                    .1;
            }
            if sum >= events as i64 {
                return Ok(Instant::now());
            }
            if stop_poll.load(Ordering::Relaxed) {
                bail!("stopped at {sum} of {events} records");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let done = tokio::select! {
        done = &mut watch => done?,
        ended = &mut relay => {
            stop.store(true, Ordering::Relaxed);
            let _ = watch.await;
            match ended? {
                Ok(()) => bail!("the relay stopped before publishing every event"),
                Err(e) => return Err(anyhow::Error::new(e).context("the relay failed")),
            }
        }
        _ = tokio::time::sleep(Duration::from_secs(600)) => {
            stop.store(true, Ordering::Relaxed);
            let _ = watch.await;
            Err(anyhow::anyhow!("the topic did not reach {events} records within 10 minutes"))
        }
    };
    let steps = timings.steps();
    stop_relay(shutdown, relay).await?;
    let done = done?;
    let wall = done - start;
    Ok((
        events as f64 / wall.as_secs_f64(),
        relay_profile(&steps, wall),
    ))
}

/// The relay's loop steps as shares of the timed run: where its time went.
fn relay_profile(steps: &RelaySteps, wall: Duration) -> String {
    let share = |d: Duration| 100.0 * d.as_secs_f64() / wall.as_secs_f64();
    format!(
        "of the relay's {:.2} s: awaiting acknowledgements {:.0} % (reading the next batch meanwhile {:.0} %), \
         reading with nothing in flight {:.0} %, encoding and enqueueing {:.0} %, checkpoints {:.0} %, \
         backlog counts {:.0} %, idle {:.0} %",
        wall.as_secs_f64(),
        share(steps.await_acks),
        share(steps.overlapped_reads),
        share(steps.read),
        share(steps.encode_enqueue),
        share(steps.checkpoint),
        share(steps.backlog),
        share(steps.idle),
    )
}

struct Latency {
    appended: u64,
    achieved_rate: f64,
    /// Milliseconds from `recorded_at` to receipt, sorted.
    samples: Vec<f64>,
}

impl Latency {
    fn percentile(&self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let rank = (p * self.samples.len() as f64).ceil() as usize;
        self.samples[rank.clamp(1, self.samples.len()) - 1]
    }

    fn print(&self, rate: u64, duration: Duration) {
        println!(
            "latency: {} single-event appends over {} s ({:.0}/s achieved, {rate}/s asked), relay running; {} records received",
            self.appended,
            duration.as_secs(),
            self.achieved_rate,
            self.samples.len()
        );
        println!(
            "         append (recorded_at, at insert, just before commit) to consumer receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.percentile(0.50),
            self.percentile(0.99),
            self.samples.last().copied().unwrap_or(f64::NAN)
        );
    }
}

/// Consumes `topic` from its beginning until stopped; for each record the
/// milliseconds from its `recorded_at` header to receipt. Sets `warm` when the
/// warm-up record arrives (not measured).
fn consume_latencies(
    bootstrap: &str,
    topic: &str,
    warm: &AtomicBool,
    appended: &AtomicU64,
    appender_done: &AtomicBool,
) -> anyhow::Result<Vec<f64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("sluice-bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .set("fetch.min.bytes", "1")
        .set("log_level", "3")
        .create()?;
    let parts = partitions(&consumer, topic)?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..parts {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut samples = Vec::new();
    let mut drain_deadline = None;
    loop {
        if appender_done.load(Ordering::Acquire) {
            let deadline =
                *drain_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
            if samples.len() as u64 >= appended.load(Ordering::Acquire) || Instant::now() > deadline
            {
                return Ok(samples);
            }
        }
        let Some(message) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let received = Utc::now();
        let message = message?;
        let Some(headers) = message.headers() else {
            continue;
        };
        let header = |key: &str| {
            headers
                .iter()
                .find(|h| h.key == key)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        if header("event_type") != Some("OrderConfirmed") {
            continue;
        }
        match header("actor") {
            Some(WARMUP_ACTOR) => warm.store(true, Ordering::Release),
            Some(ACTOR) => {
                let recorded = header("recorded_at")
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .context("a record without a parsable recorded_at header")?;
                let micros = (received - recorded.with_timezone(&Utc))
                    .num_microseconds()
                    .unwrap_or(i64::MAX);
                samples.push(micros as f64 / 1000.0);
            }
            _ => {}
        }
    }
}

async fn confirm(store: &EventStore, actor: &str) -> anyhow::Result<()> {
    let order_id = Uuid::now_v7();
    store
        .append(Append {
            stream_id: &StreamId::from(order_id),
            stream_type: "order",
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                event_type: "OrderConfirmed".into(),
                schema_version: 1,
                payload: json!({ "order_id": order_id.to_string() }),
            }],
            metadata: &metadata(actor),
            idempotency: None,
        })
        .await?;
    Ok(())
}

/// Single-event appends at `rate` for `duration` with a relay running and a
/// consumer on its topic.
async fn latency(
    store: &EventStore,
    bootstrap: &str,
    service: &str,
    names: &TopicNames,
    shape: &Shape,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let topic = &names.physical(&format!("{service}.events"));
    let warm = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let appender_done = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
        let (warm, appended, appender_done) =
            (warm.clone(), appended.clone(), appender_done.clone());
        tokio::task::spawn_blocking(move || {
            consume_latencies(&bootstrap, &topic, &warm, &appended, &appender_done)
        })
    };
    let (shutdown, relay, _) = start_relay(store.pool(), bootstrap, service, names, shape)?;
    let appending = async {
        // One unmeasured event through relay, broker and consumer first.
        confirm(store, WARMUP_ACTOR).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !warm.load(Ordering::Acquire) {
            if Instant::now() > deadline || consumer.is_finished() || relay.is_finished() {
                bail!("the warm-up event did not reach the consumer");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let start = Instant::now();
        while start.elapsed() < duration {
            ticks.tick().await;
            confirm(store, ACTOR).await?;
            appended.fetch_add(1, Ordering::Release);
        }
        Ok(start.elapsed())
    };
    let appending = appending.await;
    appender_done.store(true, Ordering::Release);
    let consumed = consumer.await;
    let stopped = stop_relay(shutdown, relay).await;
    let elapsed = appending?;
    let mut samples = consumed??;
    stopped?;
    samples.sort_by(f64::total_cmp);
    let appended = appended.load(Ordering::Acquire);
    if (samples.len() as u64) < appended {
        eprintln!(
            "warning: {} of {appended} appended events did not reach the consumer within 30 s",
            appended - samples.len() as u64
        );
    }
    Ok(Latency {
        appended,
        achieved_rate: appended as f64 / elapsed.as_secs_f64(),
        samples,
    })
}
