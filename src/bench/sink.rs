//! `sluice bench sink`: the analytics sink end to end from pre-filled topics into
//! DuckDB beside a raw consumer of the same topics; its write path alone
//! (`Loader::load` over batches in memory) beside raw appender rows into the same
//! DuckDB; and the latency of an aggregate over `order_facts` with 1M orders.
//! Every DuckDB file is a temporary one, removed afterwards.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, TimeDelta, Utc};
use duckdb::arrow::array::{
    ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use sluice_analytics::sink::{
    repository_schemas_dir, LoadTimings, Loader, Sink, SinkConfig, SinkRecord, SinkSteps, VIEWS_SQL,
};
use sluice_analytics::warehouse::{Warehouse, WarehouseSettings};
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::broker::ensure_topics;
use sluice_platform::registry::{Registry, TopicNames};
use sluice_platform::relay::producer_config;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::broker::{enqueue, record_machine, text_headers, Broker};
use super::results::{machine, Figure};
use super::Progress;

const PARTITIONS: u32 = 3;
/// Timed runs of the `order_facts` aggregate.
const QUERY_RUNS: usize = 5;
const ORDER_FACTS_QUERY: &str = "SELECT count(*), avg(time_to_confirm_seconds) FROM order_facts";

pub async fn run(
    registry: &Registry,
    events: u64,
    write_events: u64,
    orders: u64,
    batch: usize,
) -> anyhow::Result<()> {
    if events < 7 || write_events < 7 || orders == 0 || batch == 0 {
        bail!(
            "--events and --write-events must be at least 7, and --orders and --batch at least 1"
        );
    }
    let scratch = std::env::temp_dir().join(format!("sluice-bench-sink-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).context("creating the benchmark's scratch directory")?;
    let broker = Broker::start(registry).await;
    let result = match &broker {
        Ok(broker) => phases(broker, &scratch, events, write_events, orders, batch).await,
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    if let Ok(broker) = broker {
        broker.stop().await;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn phases(
    broker: &Broker,
    scratch: &Path,
    events: u64,
    write_events: u64,
    orders: u64,
    batch: usize,
) -> anyhow::Result<()> {
    let catalog = repository_catalog()?;
    // Logical (the warehouse) and as the broker names them.
    let topics = ["orders", "payments", "shipping"].map(|s| format!("{s}.events"));
    let physical = topics.clone().map(|t| broker.topics.physical(&t));
    ensure_topics(
        &broker.bootstrap,
        &physical.clone().map(|t| (t, PARTITIONS)),
    )
    .await
    .context("creating the benchmark topics")?;
    eprintln!("encoding {events} events …");
    let generated = generate(&catalog, events)?;
    let bytes: usize = generated.iter().map(Event::size).sum();

    // Phase 1: pre-filled topics, the raw consumer before and after the sink.
    eprintln!("producing {events} records to {} …", physical.join(", "));
    produce(&broker.bootstrap, &physical, &generated).await?;
    eprintln!("raw consumer: reading {events} records …");
    let raw_before =
        super::raw_consume(&broker.bootstrap, &physical, PARTITIONS, 50, events).await?;
    eprintln!("sink: loading {events} records into a fresh warehouse …");
    let (sink_rate, sink_profile) = sink_end_to_end(
        &broker.bootstrap,
        &broker.topics,
        scratch,
        &topics,
        events,
        batch,
    )
    .await?;
    eprintln!("raw consumer again: reading {events} records …");
    let raw_after =
        super::raw_consume(&broker.bootstrap, &physical, PARTITIONS, 50, events).await?;
    let raw_rate = (raw_before + raw_after) / 2.0;

    // Phases 2 and 3 are DuckDB only: on a blocking thread.
    let dir = scratch.to_owned();
    drop(generated);
    let (write, facts, duckdb_version) = tokio::task::spawn_blocking(move || {
        let write = write_path(&dir, catalog.clone(), &topics, write_events, batch)?;
        let facts = order_facts_latency(&dir.join("facts.duckdb"), catalog, orders)?;
        let version = duckdb_version()?;
        anyhow::Ok((write, facts, version))
    })
    .await??;

    println!(
        "{:<44} {:>8} {:>12} {:>12} {:>6}  goal",
        "scenario", "events", "sink ev/s", "raw ev/s", "ratio"
    );
    println!(
        "{:<44} {events:>8} {sink_rate:>12.0} {raw_rate:>12.0} {:>5.0}%  ≥ 90 % of raw",
        "pre-filled topics into DuckDB (Sink::run)",
        100.0 * sink_rate / raw_rate
    );
    println!(
        "{:<44} {write_events:>8} {:>12.0} {:>12.0} {:>5.0}%  ≥ 300 000 ev/s, flat as tables grow",
        format!("write path (Loader::load, batches of {batch})"),
        write.loader,
        write.appender,
        100.0 * write.loader / write.appender
    );
    let tenths = write
        .tenths
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "        by tenth of the load (events/s): {tenths}; the final CHECKPOINT took {:.2} s (in the rate, not in the tenths)",
        write.checkpoint.as_secs_f64()
    );
    let write_profile = load_profile(&write.timings);
    println!("        where the time goes: {write_profile}");
    println!("        end to end, {sink_profile}");
    println!(
        "        warehouse file afterwards: {:.0} bytes per event (raw_events with its JSON payload, and the typed tables)",
        write.bytes_per_event
    );
    println!(
        "events: {} orders × 7 (OrderPlaced with 2 lines, OrderConfirmed, PaymentAuthorized, PaymentCaptured,",
        events.div_ceil(7)
    );
    println!(
        "        ShipmentCreated, ShipmentDispatched, ShipmentDelivered), Avro single-object + the relay's 12 text"
    );
    println!(
        "        headers, {PARTITIONS} partitions per topic; {:.0} bytes per record on average (key, value, headers)",
        bytes as f64 / events as f64
    );
    println!(
        "sink:   Sink::run (SinkConfig::default(), batch {batch}, wait {} ms) on a fresh DuckDB file, from its start until",
        SinkConfig::default().batch_wait.as_millis()
    );
    println!("        sluice_positions covers every record (polled every 20 ms); raw_events and typed tables checked");
    println!("raw:    one BaseConsumer (the sink reader's fetch settings) assigned the same partitions from the beginning,");
    println!(
        "        counting records until it has all; mean of a run before the sink ({raw_before:.0}/s) and one after ({raw_after:.0}/s)"
    );
    println!(
        "write:  Loader::load (decode Avro and envelope, drop duplicates, Arrow batches for raw_events and 7 typed tables,"
    );
    println!(
        "        positions; one transaction per batch; events generated per batch, untimed) vs DuckDB's Arrow appender"
    );
    println!(
        "        into raw_events alone with {} pre-built rows (one table, no decoding): the engine's own ingest rate",
        write.raw_rows
    );
    facts.print(orders);
    print_machine(&duckdb_version, &broker.description);

    Figure::new(
        "sink",
        format!("pre-filled topics into DuckDB (Sink::run), {events} events"),
        sink_rate,
        "events/s",
    )
    .raw(raw_rate, "raw rdkafka consumer of the same partitions")
    .goal_ratio(0.9)
    .profile(sink_profile)
    .record();
    Figure::new(
        "sink",
        format!("write path (Loader::load), {write_events} events"),
        write.loader,
        "events/s",
    )
    .raw(
        write.appender,
        "DuckDB's Arrow appender, raw_events alone, pre-built rows",
    )
    .goal_at_least(300_000.0)
    .profile(format!(
        "{write_profile}; the raw appender, into one table with nothing to decode, took {:.0} rows/s",
        write.appender
    ))
    .record();
    // Halves, not single tenths: a tenth that holds a checkpoint is slower
    // wherever it falls.
    let half = |tenths: &[f64]| tenths.len() as f64 / tenths.iter().map(|r| 1.0 / r).sum::<f64>();
    let middle = write.tenths.len() / 2;
    let flat = half(&write.tenths[middle..]) / half(&write.tenths[..middle.max(1)]);
    Figure::new(
        "sink",
        "write path: second half of the load against the first",
        100.0 * flat,
        "%",
    )
    .goal_at_least(90.0)
    .profile(format!("events/s by tenth of the load: {tenths}"))
    .record();
    Figure::new(
        "sink",
        "warehouse file per event (raw_events and typed tables)",
        write.bytes_per_event,
        "bytes",
    )
    .record();
    Figure::new(
        "sink",
        format!("order_facts aggregate over {orders} orders (median)"),
        facts.millis[facts.millis.len() / 2],
        "ms",
    )
    .goal_at_most(1000.0)
    .profile(facts.profile.clone())
    .record();
    machine("duckdb", duckdb_version);
    record_machine(broker);
    Ok(())
}

/// The sink's write path beside dlt: `events` events written as JSON lines to
/// `jsonl` (dlt's input), and loaded by `Loader::load` into a fresh warehouse in
/// `scratch`; the loader's events/s.
pub(super) fn loader_beside_dlt(scratch: &Path, events: u64, jsonl: &Path) -> anyhow::Result<f64> {
    use std::io::Write;
    let catalog = repository_catalog()?;
    let topics = ["orders", "payments", "shipping"].map(|s| format!("{s}.events"));
    let warehouse = Warehouse::open(
        &scratch.join("beside-dlt.duckdb"),
        &WarehouseSettings::default(),
    )?;
    let mut loader = Loader::new(warehouse.connect()?, catalog.clone())?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(jsonl).with_context(|| format!("creating {}", jsonl.display()))?,
    );
    let mut offsets = BTreeMap::new();
    let (mut loaded, mut busy) = (0u64, Duration::ZERO);
    while loaded < events {
        let n = (events - loaded).min(batch_size() as u64);
        let generated = generate(&catalog, n)?;
        let records = sink_records(&topics, &generated, &mut offsets);
        for (event, record) in generated.iter().zip(&records) {
            let header = |key: &str| event.header(key).unwrap_or_default();
            let number = |key: &str| header(key).parse::<i64>().unwrap_or_default();
            let line = json!({
                "event_id": header("event_id"),
                "event_type": header("event_type"),
                "schema_version": 1,
                "stream_type": header("stream_type"),
                "stream_id": event.key,
                "stream_version": number("stream_version"),
                "global_position": number("global_position"),
                "recorded_at": header("recorded_at"),
                "correlation_id": header("correlation_id"),
                "causation_id": header("causation_id"),
                "topic": record.topic,
                "partition": record.partition,
                "kafka_offset": record.offset,
                "payload": serde_json::from_str::<serde_json::Value>(&event.payload)?,
            });
            writeln!(out, "{line}")?;
        }
        let start = Instant::now();
        let report = loader.load(&records)?;
        busy += start.elapsed();
        if report.loaded != records.len() {
            bail!(
                "Loader::load loaded {} of {} records",
                report.loaded,
                records.len()
            );
        }
        loaded += n;
    }
    out.flush()?;
    Ok(events as f64 / busy.as_secs_f64())
}

fn repository_catalog() -> anyhow::Result<SchemaCatalog> {
    let services = [
        sluice_orders::schemas(),
        sluice_payments::schemas(),
        sluice_shipping::schemas(),
    ];
    SchemaCatalog::new(services.into_iter().flatten()).context("the services' schemas")
}

/// One record as the relay would publish it.
struct Event {
    /// Index into the three topics.
    topic: usize,
    key: String,
    value: Vec<u8>,
    /// The relay's 12 headers, in its order.
    headers: Vec<(&'static str, String)>,
    /// The payload in the event store's JSON shape (for the raw appender rows).
    payload: String,
    recorded_at: DateTime<Utc>,
}

impl Event {
    fn size(&self) -> usize {
        self.key.len()
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `events` events of whole orders (the last order cut short), encoded.
fn generate(catalog: &SchemaCatalog, events: u64) -> anyhow::Result<Vec<Event>> {
    let mut out = Vec::with_capacity(events as usize);
    let mut position = 0i64;
    let start = Utc::now() - TimeDelta::hours(1);
    'orders: for i in 0.. {
        let (order, payment, shipment) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let lines = json!([
            { "sku": "BOOK-1", "quantity": 2, "unit_price_minor": 1250 },
            { "sku": "PEN-9", "quantity": 1, "unit_price_minor": 300 },
        ]);
        let stream = |id: Uuid, stream_type: &'static str| (id, stream_type);
        let saga = [
            (
                0,
                stream(order, "order"),
                1,
                "OrderPlaced",
                json!({ "order_id": order, "customer_id": format!("customer-{:05}", i % 20_000),
                     "currency": "EUR", "lines": lines, "total_minor": 2800 }),
            ),
            (
                1,
                stream(payment, "payment"),
                1,
                "PaymentAuthorized",
                json!({ "payment_id": payment, "order_id": order, "amount_minor": 2800, "currency": "EUR" }),
            ),
            (
                0,
                stream(order, "order"),
                2,
                "OrderConfirmed",
                json!({ "order_id": order }),
            ),
            (
                2,
                stream(shipment, "shipment"),
                1,
                "ShipmentCreated",
                json!({ "shipment_id": shipment, "order_id": order }),
            ),
            (
                1,
                stream(payment, "payment"),
                2,
                "PaymentCaptured",
                json!({ "payment_id": payment, "order_id": order, "amount_minor": 2800 }),
            ),
            (
                2,
                stream(shipment, "shipment"),
                2,
                "ShipmentDispatched",
                json!({ "shipment_id": shipment, "order_id": order, "carrier": "DHL Express",
                     "tracking_number": format!("JD{:018}", i) }),
            ),
            (
                2,
                stream(shipment, "shipment"),
                3,
                "ShipmentDelivered",
                json!({ "shipment_id": shipment, "order_id": order }),
            ),
        ];
        let mut causation = None;
        for (step, (topic, (stream_id, stream_type), version, event_type, payload)) in
            saga.into_iter().enumerate()
        {
            if out.len() as u64 == events {
                break 'orders;
            }
            position += 1;
            let event_id = Uuid::now_v7();
            let recorded_at = start + TimeDelta::milliseconds(i * 20 + step as i64 * 7);
            let fingerprint = catalog
                .fingerprint(event_type, 1)
                .with_context(|| format!("no schema for {event_type} v1"))?;
            let headers = vec![
                ("event_id", event_id.to_string()),
                ("event_type", event_type.to_owned()),
                ("stream_type", stream_type.to_owned()),
                ("stream_version", version.to_string()),
                ("global_position", position.to_string()),
                ("schema_version", "1".to_owned()),
                (
                    "schema_fingerprint",
                    fingerprint.0.iter().map(|b| format!("{b:02x}")).collect(),
                ),
                ("recorded_at", recorded_at.to_rfc3339()),
                ("correlation_id", order.to_string()),
                ("causation_id", causation.unwrap_or(event_id).to_string()),
                (
                    "traceparent",
                    format!(
                        "00-{}-{}-01",
                        order.simple(),
                        &event_id.simple().to_string()[16..]
                    ),
                ),
                ("actor", "bench".to_owned()),
            ];
            causation = Some(event_id);
            out.push(Event {
                topic,
                key: stream_id.to_string(),
                value: catalog.encode_single_object(event_type, 1, &payload)?,
                headers,
                payload: payload.to_string(),
                recorded_at,
            });
        }
    }
    Ok(out)
}

/// Produces every event to its topic, keyed by stream id (untimed).
async fn produce(bootstrap: &str, topics: &[String; 3], events: &[Event]) -> anyhow::Result<()> {
    let producer: FutureProducer = producer_config(bootstrap).create()?;
    let mut deliveries = Vec::with_capacity(events.len());
    for event in events {
        let headers = text_headers(event.headers.iter().map(|(k, v)| (*k, v.as_str())));
        let record = FutureRecord::to(&topics[event.topic])
            .key(&event.key)
            .payload(&event.value)
            .timestamp(event.recorded_at.timestamp_millis())
            .headers(headers);
        deliveries.push(enqueue(&producer, record).await?);
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => bail!("a pre-fill record was not acknowledged: {e}"),
            Err(_) => bail!("a pre-fill record's delivery was canceled"),
        }
    }
    Ok(())
}

/// Runs the real sink on a fresh warehouse until its positions cover `events`
/// records of `topics` (logical names, in the namespace `names`); events/s from the
/// start of `Sink::run`.
async fn sink_end_to_end(
    bootstrap: &str,
    names: &TopicNames,
    scratch: &Path,
    topics: &[String; 3],
    events: u64,
    batch: usize,
) -> anyhow::Result<(f64, String)> {
    let path = scratch.join("sink.duckdb");
    let warehouse = Arc::new(Warehouse::open(&path, &WarehouseSettings::default())?);
    let config = SinkConfig {
        bootstrap: bootstrap.to_owned(),
        schemas_dir: repository_schemas_dir(),
        batch_size: batch,
        ..SinkConfig::default()
    };
    let sink = Sink::prepare(&warehouse, config)?.with_topic_names(names.clone());
    let timings = sink.timings();
    warehouse.lock_configuration()?;
    let shutdown = CancellationToken::new();
    let stop_watch = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut task = tokio::spawn(sink.run(Arc::clone(&warehouse), shutdown.clone()));
    let mut watch = {
        let (warehouse, topics, stop) = (warehouse.clone(), topics.clone(), stop_watch.clone());
        tokio::task::spawn_blocking(move || wait_for_positions(&warehouse, &topics, events, &stop))
    };
    let done = tokio::select! {
        done = &mut watch => done?,
        ended = &mut task => {
            stop_watch.store(true, Ordering::Relaxed);
            let _ = watch.await;
            return match ended? {
                Ok(()) => Err(anyhow::anyhow!("the sink stopped before loading every record")),
                Err(e) => Err(anyhow::Error::new(e).context("the sink failed")),
            };
        }
    };
    let steps = timings.steps();
    shutdown.cancel();
    task.await?.context("the sink failed")?;
    let done = done?;
    let profile = sink_profile(&steps, done - start);
    let conn = warehouse.connect()?;
    let (loaded, undecodable): (i64, i64) = conn.query_row(
        "SELECT count(*), count(*) FILTER (WHERE decode_error IS NOT NULL) FROM raw_events",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let typed: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM order_placed) + (SELECT count(*) FROM order_confirmed) \
              + (SELECT count(*) FROM payment_authorized) + (SELECT count(*) FROM payment_captured) \
              + (SELECT count(*) FROM shipment_created) + (SELECT count(*) FROM shipment_dispatched) \
              + (SELECT count(*) FROM shipment_delivered)",
        [],
        |r| r.get(0),
    )?;
    if loaded as u64 != events || undecodable != 0 || typed as u64 != events {
        bail!("the sink loaded {loaded} raw rows ({undecodable} undecodable) and {typed} typed rows, expected {events}");
    }
    Ok((events as f64 / (done - start).as_secs_f64(), profile))
}

/// The sink's loader thread over the timed run: busy loading (by step) or waiting
/// for the reader, and the batches it got.
fn sink_profile(steps: &SinkSteps, wall: Duration) -> String {
    let share = |d: Duration| 100.0 * d.as_secs_f64() / wall.as_secs_f64();
    let t = &steps.load;
    format!(
        "of the sink's {:.2} s, its loader thread: decode + dedupe {:.0} %, Arrow build {:.0} %, DuckDB append {:.0} %, \
         positions + commit {:.0} %, waiting for the reader {:.0} %; {} batches of {:.0} records on average",
        wall.as_secs_f64(),
        share(t.decode),
        share(t.build),
        share(t.append),
        share(t.commit),
        share(steps.waiting),
        steps.batches,
        steps.records as f64 / steps.batches.max(1) as f64,
    )
}

/// The write path's time by step, as shares of the loads.
fn load_profile(t: &LoadTimings) -> String {
    let total = (t.decode + t.build + t.append + t.commit).as_secs_f64();
    let share = |d: Duration| 100.0 * d.as_secs_f64() / total;
    format!(
        "decode + dedupe {:.0} %, Arrow build {:.0} %, DuckDB append {:.0} %, positions, commit and checkpoints {:.0} %",
        share(t.decode),
        share(t.build),
        share(t.append),
        share(t.commit)
    )
}

fn wait_for_positions(
    warehouse: &Warehouse,
    topics: &[String; 3],
    events: u64,
    stop: &AtomicBool,
) -> anyhow::Result<Instant> {
    use std::io::IsTerminal;
    let progress = std::io::stderr().is_terminal();
    let conn = warehouse.connect()?;
    let mut covered = conn.prepare(
        "SELECT coalesce(sum(next_offset), 0) FROM sluice_positions WHERE topic IN (?, ?, ?)",
    )?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let sum: i64 = covered
            .query_row(duckdb::params![topics[0], topics[1], topics[2]], |r| {
                r.get(0)
            })?;
        if sum as u64 >= events {
            if progress {
                eprintln!();
            }
            return Ok(Instant::now());
        }
        if progress {
            eprint!("\r  sluice_positions covers {sum}/{events} records");
        }
        if stop.load(Ordering::Relaxed) {
            bail!("stopped at {sum} of {events} records");
        }
        if Instant::now() > deadline {
            bail!("the sink loaded {sum} of {events} records within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The events as the sink's reader hands them over: round-robin over partitions,
/// offsets counting up per partition from `offsets`.
fn sink_records(
    topics: &[String; 3],
    events: &[Event],
    offsets: &mut BTreeMap<(usize, i32), i64>,
) -> Vec<SinkRecord> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let partition = (i as u32 % PARTITIONS) as i32;
            let offset = offsets.entry((e.topic, partition)).or_default();
            *offset += 1;
            SinkRecord {
                topic: topics[e.topic].clone(),
                partition,
                offset: *offset - 1,
                key: e.key.clone(),
                payload: e.value.clone(),
                headers: e
                    .headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            }
        })
        .collect()
}

/// The raw limit of the write path: `raw_events`' columns as Arrow arrays built
/// beforehand (text as DuckDB would store it), appended with DuckDB's Arrow
/// appender; one record batch per batch of the sink.
fn raw_batches(
    topics: &[String; 3],
    events: &[Event],
    batch: usize,
) -> anyhow::Result<Vec<RecordBatch>> {
    let now = Utc::now().timestamp_micros();
    let mut batches = Vec::new();
    for (chunk_index, chunk) in events.chunks(batch).enumerate() {
        let text = |key: &str| -> ArrayRef {
            Arc::new(StringArray::from_iter(
                chunk.iter().map(|e| e.header(key).map(str::to_owned)),
            ))
        };
        let number = |key: &str| -> ArrayRef {
            Arc::new(Int64Array::from_iter(
                chunk
                    .iter()
                    .map(|e| e.header(key).and_then(|v| v.parse().ok())),
            ))
        };
        let micros = |values: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
        };
        let n = chunk.len();
        let base = (chunk_index * batch) as i64;
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("event_id", text("event_id")),
            ("event_type", text("event_type")),
            ("schema_version", Arc::new(Int32Array::from(vec![1; n]))),
            ("stream_type", text("stream_type")),
            (
                "stream_id",
                Arc::new(StringArray::from_iter_values(chunk.iter().map(|e| &e.key))),
            ),
            ("stream_version", number("stream_version")),
            ("global_position", number("global_position")),
            (
                "recorded_at",
                micros(
                    chunk
                        .iter()
                        .map(|e| e.recorded_at.timestamp_micros())
                        .collect(),
                ),
            ),
            ("correlation_id", text("correlation_id")),
            ("causation_id", text("causation_id")),
            ("traceparent", text("traceparent")),
            ("actor", text("actor")),
            (
                "payload",
                Arc::new(StringArray::from_iter_values(
                    chunk.iter().map(|e| &e.payload),
                )),
            ),
            (
                "topic",
                Arc::new(StringArray::from_iter_values(
                    chunk.iter().map(|e| &topics[e.topic]),
                )),
            ),
            (
                "partition",
                Arc::new(Int32Array::from_iter_values(
                    (0..n).map(|i| ((base as usize + i) as u32 % PARTITIONS) as i32),
                )),
            ),
            (
                "kafka_offset",
                Arc::new(Int64Array::from_iter_values(base..base + n as i64)),
            ),
            ("loaded_at", micros(vec![now; n])),
        ];
        batches.push(RecordBatch::try_from_iter(columns)?);
    }
    Ok(batches)
}

/// Records per `Loader::load` call beside dlt: the sink's default batch.
fn batch_size() -> usize {
    SinkConfig::default().batch_size
}

struct WritePath {
    /// Events/s, the final checkpoint included.
    loader: f64,
    /// The checkpoint after the last batch.
    checkpoint: Duration,
    appender: f64,
    raw_rows: usize,
    /// Events/s of each tenth of the load, in order (flat or not as the tables grow).
    tenths: Vec<f64>,
    timings: LoadTimings,
    /// Size of the warehouse file (and its log) afterwards, per event.
    bytes_per_event: f64,
}

/// The raw appender over the first events, then `Loader::load` over `events`
/// events generated batch by batch (generation untimed), into fresh DuckDB files;
/// events/s of each.
fn write_path(
    scratch: &Path,
    catalog: SchemaCatalog,
    topics: &[String; 3],
    events: u64,
    batch: usize,
) -> anyhow::Result<WritePath> {
    // The raw limit: up to 20 batches of raw_events rows, pre-built.
    let raw_events = events.min(20 * batch as u64);
    let sample = generate(&catalog, raw_events)?;
    let batches = raw_batches(topics, &sample, batch)?;
    drop(sample);
    let raw_warehouse =
        Warehouse::open(&scratch.join("raw.duckdb"), &WarehouseSettings::default())?;
    let raw = raw_warehouse.connect()?;
    Loader::new(raw_warehouse.connect()?, catalog.clone())?;
    eprintln!("raw Arrow appender: {raw_events} rows into raw_events …");
    let start = Instant::now();
    for batch in batches {
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        raw.execute_batch("BEGIN TRANSACTION")?;
        let mut appender = raw.appender_with_columns("raw_events", &names)?;
        appender.append_record_batch(batch)?;
        appender.flush()?;
        drop(appender);
        raw.execute_batch("COMMIT")?;
    }
    let appender = raw_events as f64 / start.elapsed().as_secs_f64();
    drop((raw, raw_warehouse));

    let warehouse = Warehouse::open(&scratch.join("write.duckdb"), &WarehouseSettings::default())?;
    let mut loader = Loader::new(warehouse.connect()?, catalog.clone())?;
    let mut offsets = BTreeMap::new();
    let (mut loaded, mut busy, mut timings) = (0u64, Duration::ZERO, LoadTimings::default());
    let mut tenths = Vec::new();
    let (mut tenth_busy, mut tenth_events) = (Duration::ZERO, 0u64);
    let progress = Progress::new("Loader::load", events);
    while loaded < events {
        let n = (events - loaded).min(batch as u64);
        let records = sink_records(topics, &generate(&catalog, n)?, &mut offsets);
        let start = Instant::now();
        let report = loader.load(&records)?;
        let took = start.elapsed();
        if report.undecodable > 0 || report.loaded != records.len() {
            bail!(
                "Loader::load loaded {} of {} records ({} undecodable)",
                report.loaded,
                records.len(),
                report.undecodable
            );
        }
        busy += took;
        tenth_busy += took;
        tenth_events += n;
        loaded += n;
        timings.decode += report.timings.decode;
        timings.build += report.timings.build;
        timings.append += report.timings.append;
        timings.commit += report.timings.commit;
        if tenth_events >= events.div_ceil(10) || loaded == events {
            tenths.push(tenth_events as f64 / tenth_busy.as_secs_f64());
            (tenth_busy, tenth_events) = (Duration::ZERO, 0);
        }
        progress.set(loaded);
    }
    progress.finish();
    // What the load left in the write-ahead log is written to the file by the next
    // checkpoint: its time counts in the rate (a batch size that defers the
    // writing to the checkpoint is no faster), and the file is measured after it.
    let checkpointing = Instant::now();
    loader.connection().execute_batch("CHECKPOINT")?;
    let checkpoint = checkpointing.elapsed();
    timings.commit += checkpoint;
    busy += checkpoint;
    drop(loader);
    let bytes = std::fs::metadata(scratch.join("write.duckdb")).map_or(0, |m| m.len())
        + std::fs::metadata(scratch.join("write.duckdb.wal")).map_or(0, |m| m.len());
    Ok(WritePath {
        loader: events as f64 / busy.as_secs_f64(),
        checkpoint,
        appender,
        raw_rows: raw_events as usize,
        tenths,
        timings,
        bytes_per_event: bytes as f64 / events as f64,
    })
}

struct FactsLatency {
    fill_seconds: f64,
    events: i64,
    answer: (i64, Option<f64>),
    /// Milliseconds per run, sorted.
    millis: Vec<f64>,
    /// Where one more run's time went (DuckDB's profiler).
    profile: String,
}

impl FactsLatency {
    fn print(&self, orders: u64) {
        println!(
            "order_facts: `{ORDER_FACTS_QUERY}` over {orders} orders ({} events in the typed tables, filled by SQL in {:.1} s)",
            self.events, self.fill_seconds
        );
        println!(
            "             {QUERY_RUNS} runs: min {:.0} ms, median {:.0} ms, max {:.0} ms (goal < 1 000 ms); answer: {} orders, avg {:.1} s to confirm",
            self.millis[0],
            self.millis[self.millis.len() / 2],
            self.millis[self.millis.len() - 1],
            self.answer.0,
            self.answer.1.unwrap_or(f64::NAN)
        );
        println!("             {}", self.profile);
    }
}

/// One typed table's fill: table, stream kind, seconds after placement, which
/// orders (SQL over `i`), and its fields with their SQL expressions.
type Fill = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The typed tables of `orders` orders, filled by SQL: every order placed; 97 %
/// authorized (3 % declined), of those 96 % confirmed (the rest cancelled);
/// confirmed orders captured, shipped (created and dispatched), 80 % delivered, 1 %
/// refunded.
const FILL: [Fill; 10] = [
    ("order_placed", "order", "0", "true", &[
        ("order_id", "ORDER"), ("customer_id", "printf('customer-%05d', i % 20000)"),
        ("currency", "'EUR'"), ("total_minor", "2800"),
        ("lines", "[{'sku': 'BOOK-1', 'quantity': 2, 'unit_price_minor': 1250}, {'sku': 'PEN-9', 'quantity': 1, 'unit_price_minor': 300}]"),
    ]),
    ("payment_authorized", "payment", "2 + i % 5", "i % 33 <> 0", &[
        ("payment_id", "PAYMENT"), ("order_id", "ORDER"), ("amount_minor", "2800"), ("currency", "'EUR'"),
    ]),
    ("payment_declined", "payment", "2 + i % 5", "i % 33 = 0", &[
        ("payment_id", "PAYMENT"), ("order_id", "ORDER"), ("amount_minor", "2800"), ("currency", "'EUR'"),
        ("reason", "'insufficient funds'"),
    ]),
    ("order_confirmed", "order", "10 + i % 50", "i % 33 <> 0 AND i % 25 <> 1", &[("order_id", "ORDER")]),
    ("order_cancelled", "order", "60 + i % 50", "i % 33 = 0 OR i % 25 = 1", &[
        ("order_id", "ORDER"), ("reason", "'changed my mind'"),
    ]),
    ("payment_captured", "payment", "120 + i % 60", "i % 33 <> 0 AND i % 25 <> 1", &[
        ("payment_id", "PAYMENT"), ("order_id", "ORDER"), ("amount_minor", "2800"),
    ]),
    ("payment_refunded", "payment", "86400 + i % 600", "i % 33 <> 0 AND i % 25 <> 1 AND i % 100 = 7", &[
        ("payment_id", "PAYMENT"), ("order_id", "ORDER"), ("amount_minor", "300"), ("reason", "NULL"),
    ]),
    ("shipment_created", "shipment", "130 + i % 60", "i % 33 <> 0 AND i % 25 <> 1", &[
        ("shipment_id", "SHIPMENT"), ("order_id", "ORDER"),
    ]),
    ("shipment_dispatched", "shipment", "3600 + i % 3600", "i % 33 <> 0 AND i % 25 <> 1", &[
        ("shipment_id", "SHIPMENT"), ("order_id", "ORDER"), ("carrier", "'DHL Express'"),
        ("tracking_number", "printf('JD%018d', i)"),
    ]),
    ("shipment_delivered", "shipment", "86400 + i % 86400", "i % 33 <> 0 AND i % 25 <> 1 AND i % 5 <> 3", &[
        ("shipment_id", "SHIPMENT"), ("order_id", "ORDER"),
    ]),
];

/// `INSERT … SELECT … FROM range(?)` for one typed table of [`FILL`]. The SQL is
/// built from the constants above only; the order count is a parameter.
fn fill_sql(
    table: &str,
    stream: &str,
    delay: &str,
    filter: &str,
    fields: &[(&str, &str)],
) -> String {
    let id =
        |variant: &str| format!("CAST(printf('00000000-0000-4000-{variant}-%012x', i) AS UUID)");
    let (order, payment, shipment) = (id("8000"), id("9000"), id("a000"));
    let expr = |e: &str| match e {
        "ORDER" => order.clone(),
        "PAYMENT" => payment.clone(),
        "SHIPMENT" => shipment.clone(),
        other => other.to_owned(),
    };
    let (stream_id, topic) = match stream {
        "order" => (&order, "orders.events"),
        "payment" => (&payment, "payments.events"),
        _ => (&shipment, "shipping.events"),
    };
    let columns: Vec<&str> = fields.iter().map(|(c, _)| *c).collect();
    let values: Vec<String> = fields.iter().map(|(_, e)| expr(e)).collect();
    format!(
        "INSERT INTO {table} (event_id, stream_id, stream_version, recorded_at, correlation_id, \
             causation_id, schema_version, topic, partition, kafka_offset, {}) \
         SELECT gen_random_uuid(), CAST({stream_id} AS VARCHAR), 1, \
                to_timestamp(1767225600 + i * 0.05 + {delay}), {order}, NULL, 1, '{topic}', \
                CAST(i % 3 AS INTEGER), i, {} \
           FROM range(CAST(? AS BIGINT)) t(i) WHERE {filter}",
        columns.join(", "),
        values.join(", ")
    )
}

fn order_facts_latency(
    path: &Path,
    catalog: SchemaCatalog,
    orders: u64,
) -> anyhow::Result<FactsLatency> {
    let warehouse = Warehouse::open(path, &WarehouseSettings::default())?;
    let loader = Loader::new(warehouse.connect()?, catalog)?;
    let conn = loader.connection();
    conn.execute_batch(VIEWS_SQL)?;
    eprintln!("order_facts: filling the typed tables with {orders} orders …");
    let start = Instant::now();
    let mut events = 0i64;
    for (table, stream, delay, filter, fields) in FILL {
        let sql = fill_sql(table, stream, delay, filter, fields);
        events += conn
            .execute(&sql, [orders as i64])
            .with_context(|| format!("filling {table}"))? as i64;
    }
    conn.execute_batch("CHECKPOINT")?;
    let fill_seconds = start.elapsed().as_secs_f64();
    eprintln!("order_facts: {QUERY_RUNS} runs of the aggregate …");
    let mut millis = Vec::with_capacity(QUERY_RUNS);
    let mut answer = (0, None);
    for _ in 0..QUERY_RUNS {
        let start = Instant::now();
        answer = conn.query_row(ORDER_FACTS_QUERY, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        millis.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    if answer.0 as u64 != orders {
        bail!("order_facts counted {} orders, expected {orders}", answer.0);
    }
    millis.sort_by(f64::total_cmp);
    // A profile that cannot be taken is said so; the timings stand.
    let profile = query_profile(conn, ORDER_FACTS_QUERY)
        .unwrap_or_else(|e| format!("no profile: DuckDB's profiler failed ({e:#})"));
    Ok(FactsLatency {
        fill_seconds,
        events,
        answer,
        millis,
        profile,
    })
}

/// One more run of `query` under DuckDB's profiler (`EXPLAIN (ANALYZE, FORMAT
/// JSON)`, which needs no file, so it runs in the sandboxed warehouse): its
/// operators that took the most time, with their share of the operators' total and
/// the rows they produced.
fn query_profile(conn: &Connection, query: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    let json: String = conn.query_row(
        &format!("EXPLAIN (ANALYZE, FORMAT JSON) {query}"),
        [],
        |r| r.get(1),
    )?;
    let latency = started.elapsed().as_secs_f64();
    let tree: serde_json::Value = serde_json::from_str(&json)?;
    let mut operators = Vec::new();
    operator_timings(&tree, &mut operators);
    let total: f64 = operators.iter().map(|o| o.1).sum();
    if total <= 0.0 {
        bail!("DuckDB's profile has no operator timings");
    }
    // The same operator over different inputs (eleven hash aggregates, say) sums up.
    let mut by_kind: BTreeMap<String, (f64, u64, usize)> = BTreeMap::new();
    for (name, seconds, rows) in operators {
        let entry = by_kind.entry(name).or_default();
        entry.0 += seconds;
        entry.1 += rows;
        entry.2 += 1;
    }
    let mut kinds: Vec<(String, (f64, u64, usize))> = by_kind.into_iter().collect();
    kinds.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    Ok(format!(
        "one profiled run of {:.0} ms, operators' time (summed over DuckDB's threads): {}",
        latency * 1000.0,
        kinds
            .iter()
            .take(5)
            .map(|(name, (seconds, rows, n))| format!(
                "{name} ×{n} {:.0} % ({} rows out)",
                100.0 * seconds / total,
                rows
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Every operator of a DuckDB JSON profile: its name, seconds and output rows.
/// (The profile's root is an object whose `operator` list holds the plan.)
fn operator_timings(node: &serde_json::Value, out: &mut Vec<(String, f64, u64)>) {
    if let Some(seconds) = node["timing"].as_f64() {
        let name = node["name"]
            .as_str()
            .or_else(|| node["type"].as_str())
            .unwrap_or("?")
            .trim()
            .to_owned();
        let rows = node["intermediate_rows"].as_u64().unwrap_or(0);
        out.push((name, seconds, rows));
    }
    let children = node["children"].as_array().into_iter().flatten();
    for child in children.chain(node["operator"].as_array().into_iter().flatten()) {
        operator_timings(child, out);
    }
}

fn duckdb_version() -> anyhow::Result<String> {
    let conn = Connection::open_in_memory()?;
    Ok(conn.query_row("SELECT version()", [], |r| r.get(0))?)
}

/// The machine line of this bench: no PostgreSQL involved.
fn print_machine(duckdb_version: &str, broker: &str) {
    let first = super::results::proc_field;
    let cpu = first("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let memory = first("/proc/meminfo", "MemTotal")
        .and_then(|m| m.trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or_else(String::new, |kb| {
            format!(", {:.0} GiB", kb / 1024.0 / 1024.0)
        });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let settings = WarehouseSettings::default();
    println!(
        "machine: {cpu}, {cores} cores{memory}; DuckDB {duckdb_version} (threads={}, memory_limit={}, files in {}), {broker}",
        settings.threads,
        settings.memory_limit,
        std::env::temp_dir().display()
    );
}
