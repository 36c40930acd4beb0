//! The sink's write path alone: `Loader::load` over batches generated in memory,
//! against DuckDB's Arrow appender of pre-built `raw_events` rows, and beside dlt.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use duckdb::arrow::array::{
    ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use duckdb::arrow::record_batch::RecordBatch;
use serde_json::json;
use sluice_analytics::sink::{LoadTimings, Loader, SinkConfig};
use sluice_analytics::warehouse::{Warehouse, WarehouseSettings};
use sluice_platform::avro::SchemaCatalog;

use crate::bench::Progress;

use super::events::{generate, repository_catalog, sink_records, Event};
use super::PARTITIONS;

/// The sink's write path beside dlt: `events` events written as JSON lines to
/// `jsonl` (dlt's input), and loaded by `Loader::load` into a fresh warehouse in
/// `scratch`; the loader's events/s.
pub(in crate::bench) fn loader_beside_dlt(
    scratch: &Path,
    events: u64,
    jsonl: &Path,
) -> anyhow::Result<f64> {
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

/// The write path's time by step, as shares of the loads.
pub(super) fn load_profile(t: &LoadTimings) -> String {
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

pub(super) struct WritePath {
    /// Events/s, the final checkpoint included.
    pub(super) loader: f64,
    /// The checkpoint after the last batch.
    pub(super) checkpoint: Duration,
    pub(super) appender: f64,
    pub(super) raw_rows: usize,
    /// Events/s of each tenth of the load, in order (flat or not as the tables grow).
    pub(super) tenths: Vec<f64>,
    pub(super) timings: LoadTimings,
    /// Size of the warehouse file (and its log) afterwards, per event.
    pub(super) bytes_per_event: f64,
}

/// The raw appender over the first events, then `Loader::load` over `events`
/// events generated batch by batch (generation untimed), into fresh DuckDB files;
/// events/s of each.
pub(super) fn write_path(
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
