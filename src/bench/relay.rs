//! `sluice bench relay`: the outbox relay against a raw producer on the same broker,
//! and append-to-consumer latency under steady load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::broker::ensure_topics;
use sluice_platform::provision::drop_component;
use sluice_platform::registry::Registry;
use sluice_platform::relay::{Relay, RelayConfig, RelaySteps, RelayTimings};
use sluice_platform::store::{EventStore, ExpectedVersion, Metadata, StreamId};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::broker::{record_machine, Broker};
use super::{append_v1, BenchDatabase, Figure, Phases};

mod latency;
mod raw;

use raw::raw_producer;

const PARTITIONS: u32 = 3;
/// Events per append when pre-filling the outbox (and records per key in the
/// raw baseline, so both spread over partitions alike).
const PREFILL_APPEND: u64 = 100;
/// The `actor` of the warm-up event of the latency phase (not measured).
const WARMUP_ACTOR: &str = "bench-warmup";
const ACTOR: &str = "bench";

pub(super) async fn run(registry: &Registry, phases: Phases) -> anyhow::Result<()> {
    if phases.events == 0 || phases.rate == 0 {
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
            let result = scenarios(registry, &db, &broker, phases).await;
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

async fn scenarios(
    registry: &Registry,
    db: &BenchDatabase,
    broker: &Broker,
    phases: Phases,
) -> anyhow::Result<()> {
    db.migrate(vec![sluice_platform::store::migrator()]).await?;
    let pool = db.app_pool(4).await?;
    let result = scenarios_on(registry, &pool, broker, phases).await;
    pool.close().await;
    result
}

async fn scenarios_on(
    registry: &Registry,
    pool: &PgPool,
    broker: &Broker,
    phases: Phases,
) -> anyhow::Result<()> {
    let (events, rate, duration) = (phases.events, phases.rate, phases.duration);
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

    // One run of the raw producer to the raw topic, named `phase` when it fails.
    let (bootstrap, topic, records_shape) = (broker.bootstrap.as_str(), raw_topic.as_str(), &shape);
    let raw = move |records: u64, phase: &'static str| async move {
        raw_producer(bootstrap, topic, records_shape, records)
            .await
            .context(phase)
    };
    // An untimed warm-up first: a freshly started broker is still loading its
    // coordinators and compiling its hot paths, which would flatter the ratio.
    let warm_up = (events * 4).max(100_000);
    eprintln!("warm-up: {warm_up} records to {raw_topic}, untimed …");
    raw(warm_up, "warm-up").await?;
    // The raw baseline runs before and after the relay: the broker slows a little
    // as its log grows, and the mean of the two brackets the relay's conditions.
    eprintln!("raw producer: {events} records to {raw_topic} …");
    let (raw_before, header_size) = raw(events, "raw producer phase").await?;

    let store = EventStore::new(pool.clone());
    prefill(&store, events)
        .await
        .context("pre-filling the outbox")?;
    eprintln!("relay: publishing {events} outbox events to {relay_topic} …");
    let (relay_rate, relay_profile) = relay_throughput(pool, broker, relay_service, &shape, events)
        .await
        .context("relay phase")?;
    eprintln!("raw producer again: {events} records to {raw_topic} …");
    let (raw_after, _) = raw(events, "raw producer phase (after the relay)").await?;
    let raw_rate = (raw_before + raw_after) / 2.0;

    eprintln!(
        "latency: {rate} appends/s for {} s, relay to {latency_topic} …",
        duration.as_secs()
    );
    let latency = latency::run(&store, broker, latency_service, &shape, rate, duration)
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
    record_machine(broker);
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
        let batch = (0..n).map(|_| ("OrderPlaced", order_placed(order_id)));
        append_v1(
            store,
            &stream,
            "order",
            ExpectedVersion::Any,
            batch,
            &metadata(ACTOR),
        )
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
pub(super) type RelayTask = tokio::task::JoinHandle<Result<(), sluice_platform::relay::RelayError>>;

/// A relay of `service` (`RelayConfig::default()`) over `pool`, publishing to
/// `<service>.events` in the broker's namespace until `shutdown`; its task and
/// timings.
pub(super) fn start_relay(
    pool: &PgPool,
    broker: &Broker,
    service: &str,
    catalog: Arc<SchemaCatalog>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(RelayTask, Arc<RelayTimings>)> {
    let relay = Relay::new(
        service,
        pool.clone(),
        &broker.bootstrap,
        catalog,
        RelayConfig {
            topic_names: broker.topics.clone(),
            ..RelayConfig::default()
        },
    )?;
    let token = shutdown.clone();
    let timings = relay.timings();
    Ok((tokio::spawn(async move { relay.run(token).await }), timings))
}

async fn stop_relay(shutdown: CancellationToken, handle: RelayTask) -> anyhow::Result<()> {
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
    broker: &Broker,
    service: &str,
    shape: &Shape,
    events: u64,
) -> anyhow::Result<(f64, String)> {
    let topic = &broker.topics.physical(&format!("{service}.events"));
    let consumer = metadata_consumer(&broker.bootstrap)?;
    let parts = partitions(&consumer, topic)?;
    let stop = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let (start, (mut relay, timings)) = (
        Instant::now(),
        start_relay(pool, broker, service, shape.catalog.clone(), &shutdown)?,
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
