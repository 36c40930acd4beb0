//! `sluice bench sink`: the analytics sink end to end from pre-filled topics into
//! DuckDB beside a raw consumer of the same topics; its write path alone
//! (`Loader::load` over batches in memory) beside raw appender rows into the same
//! DuckDB; and the latency of an aggregate over `order_facts` with 1M orders.
//! Every DuckDB file is a temporary one, removed afterwards.

use std::path::Path;

use anyhow::{bail, Context};
use duckdb::Connection;
use sluice_analytics::sink::SinkConfig;
use sluice_analytics::warehouse::WarehouseSettings;
use sluice_platform::broker::ensure_topics;
use sluice_platform::registry::Registry;

use super::broker::{record_machine, Broker};
use super::results::{machine, Figure};

/// Partitions of each of the three topics.
const PARTITIONS: u32 = 3;

mod end_to_end;
mod events;
mod facts;
mod write_path;

use end_to_end::sink_end_to_end;
use events::{generate, produce, repository_catalog, Event};
use facts::order_facts_latency;
pub(super) use write_path::loader_beside_dlt;
use write_path::{load_profile, write_path};

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
