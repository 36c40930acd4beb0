//! The write path: decodes a batch of records and loads it into DuckDB in one
//! transaction together with the positions it covers.
//!
//! Per batch:
//! 1. decode every record (an unknown fingerprint rescans the schemas directory:
//!    at once for a fingerprint not seen before, then at most every few seconds
//!    while records keep naming it; a schema that appears is adopted, and the rows
//!    kept without a payload that it decodes are backfilled into `raw_events` and
//!    their typed tables);
//! 2. drop what is already loaded, in memory (see *Duplicates*);
//! 3. build Arrow record batches straight from the decoded records: one for
//!    `raw_events`, one per event type for its typed table ([`super::columns`]);
//! 4. `BEGIN`; append each record batch with DuckDB's Arrow appender; upsert
//!    `sluice_positions` and `sluice_watermarks`; `COMMIT`.
//!
//! Data and positions commit together: a crash at any point either keeps the whole
//! batch with its positions or neither, and a restart resumes at the stored
//! positions.
//!
//! Duplicates. The relay delivers at least once, and each stream's versions reach
//! its partition in order (see `sluice_platform::relay`), except that a record
//! whose delivery failed is re-sent after the later ones already on the topic. The
//! loader keeps the highest version loaded (and its event id) per `(topic,
//! partition, stream)` in memory, read from `raw_events` at start and advanced only
//! after a commit. A record above it is new, and one equal to it with the same
//! event id is a re-delivery: a hash lookup however large the tables grow, and no
//! table has a primary key to maintain. A record below it, a re-delivery or a late
//! one, is looked up by event id in `raw_events` (one scan per batch that has
//! any), as are records without a readable stream version (a broken envelope).
//! A different event at the same version (which the store never writes) is kept,
//! like any record that cannot be read. Within a batch, an event id is loaded once.

mod batches;
mod rescan;
mod tables;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use duckdb::types::{TimeUnit, Value};
use duckdb::{params, Connection};
use sluice_platform::avro::SchemaCatalog;
use uuid::Uuid;

use self::batches::{raw_batch, typed_batch, TypedRow};
use self::tables::{ensure_typed_tables, loaded_versions};
use super::columns::BatchBuilder;
use super::mapping::TypedTable;
use super::record::{decode, Row, SinkRecord};
use super::{telemetry, SinkError};

const TABLES_SQL: &str = include_str!("../../sql/tables.sql");

/// The highest stream version loaded and the event that had it, by topic,
/// partition and stream id.
type Versions = HashMap<String, HashMap<i32, HashMap<String, (i64, Uuid)>>>;
/// How often, at most, the schemas directory is looked at again for a fingerprint
/// it was already rescanned for.
const RESCAN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// What one [`Loader::load`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Records in the batch.
    pub records: usize,
    /// New rows in `raw_events`.
    pub loaded: usize,
    /// Records whose event id was already loaded (or repeated within the batch).
    pub duplicates: usize,
    /// New rows whose payload did not decode (kept with their Avro bytes).
    pub undecodable: usize,
    /// Where the time of the load went.
    pub timings: LoadTimings,
}

/// The time of one [`Loader::load`], by step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadTimings {
    /// Decoding Avro and the envelope, and dropping duplicates.
    pub decode: std::time::Duration,
    /// Building the Arrow columns.
    pub build: std::time::Duration,
    /// DuckDB's appender taking the record batches.
    pub append: std::time::Duration,
    /// Positions, watermarks and `COMMIT`.
    pub commit: std::time::Duration,
}

/// New rows of one topic in one batch.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TopicCounts {
    pub loaded: u64,
    pub undecodable: u64,
}

/// Decodes and loads batches on one DuckDB connection. Owns its connection; use
/// it from one thread (the sink runs it on a dedicated OS thread).
pub struct Loader {
    conn: Connection,
    catalog: SchemaCatalog,
    /// Where to look again for a schema when a fingerprint is unknown.
    schemas_dir: Option<PathBuf>,
    /// Unknown fingerprints the directory was already rescanned for.
    rescanned: HashSet<[u8; 8]>,
    /// When the directory was last rescanned.
    last_rescan: Option<Instant>,
    /// The typed table of each event type.
    tables: BTreeMap<String, TypedTable>,
    /// The highest stream version loaded per stream (see the module docs).
    versions: Versions,
}

impl Loader {
    /// A loader over `conn` for the event types of `catalog`. Creates the sink's
    /// tables and every typed table when missing, and adds the columns of newer
    /// schema versions.
    pub fn new(conn: Connection, catalog: SchemaCatalog) -> Result<Self, SinkError> {
        conn.execute_batch(TABLES_SQL)?;
        let tables = ensure_typed_tables(&conn, &catalog)?;
        let versions = loaded_versions(&conn)?;
        Ok(Loader {
            conn,
            catalog,
            schemas_dir: None,
            rescanned: HashSet::new(),
            last_rescan: None,
            tables,
            versions,
        })
    }

    /// Rescans `dir` when a record names a schema the catalog does not have (see
    /// the module docs).
    pub fn rescanning(mut self, dir: PathBuf) -> Self {
        self.schemas_dir = Some(dir);
        self
    }

    /// The connection (to create views on it, or to query in tests).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Decodes and loads `batch` in one transaction with its positions.
    pub fn load(&mut self, batch: &[SinkRecord]) -> Result<LoadReport, SinkError> {
        let started = Instant::now();
        // A `load` span per event, until its batch has committed (when exported).
        let _spans = sluice_platform::trace::HopSpans::open(
            "load",
            "analytics",
            batch
                .iter()
                .map(|r| r.headers.get("traceparent").map(String::as_str)),
        );
        let mut rows: Vec<Row<'_>> = batch.iter().map(|r| decode(&self.catalog, r)).collect();
        if self.rescan_for(&rows)? {
            rows = batch.iter().map(|r| decode(&self.catalog, r)).collect();
        }
        let (rows, advanced) = self.new_rows(rows)?;
        let mut timings = LoadTimings {
            decode: started.elapsed(),
            ..LoadTimings::default()
        };

        let loaded_at = Utc::now();
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        let outcome = self.load_in_transaction(batch, &rows, loaded_at, &mut timings);
        let committing = Instant::now();
        match outcome.and_then(|()| Ok(self.conn.execute_batch("COMMIT")?)) {
            Ok(()) => timings.commit += committing.elapsed(),
            Err(e) => {
                // A failed statement or commit may leave the transaction open: end
                // it, so that the retry can begin its own.
                if let Err(rollback) = self.conn.execute_batch("ROLLBACK") {
                    tracing::debug!(error = %rollback, "rollback after a failed load");
                }
                return Err(e);
            }
        }
        // Only what committed counts as loaded.
        for ((topic, partition, stream), newest) in advanced {
            self.versions
                .entry(topic.to_owned())
                .or_default()
                .entry(partition)
                .or_default()
                .insert(stream.to_owned(), newest);
        }
        let mut per_topic: BTreeMap<String, TopicCounts> = BTreeMap::new();
        for row in &rows {
            let counts = per_topic.entry(row.record.topic.clone()).or_default();
            counts.loaded += 1;
            counts.undecodable += u64::from(row.payload.is_none());
        }
        let undecodable = per_topic.values().map(|c| c.undecodable as usize).sum();
        let report = LoadReport {
            records: batch.len(),
            loaded: rows.len(),
            duplicates: batch.len() - rows.len(),
            undecodable,
            timings,
        };
        telemetry::batch_loaded(&per_topic, &report, started.elapsed());
        Ok(report)
    }

    /// The rows not loaded yet (see *Duplicates* in the module docs), and the
    /// highest stream versions they bring, to remember once they are committed.
    #[allow(clippy::type_complexity)]
    fn new_rows<'a>(
        &self,
        rows: Vec<Row<'a>>,
    ) -> Result<(Vec<Row<'a>>, HashMap<(&'a str, i32, &'a str), (i64, Uuid)>), SinkError> {
        // Looked up by event id: records without a stream version, and those below
        // the highest version loaded for their stream (a re-delivery, or a record
        // that reached the topic after a later one of its stream).
        let uncertain: Vec<Uuid> = rows
            .iter()
            .filter(|r| {
                r.stream_version
                    .is_none_or(|v| self.highest(r.record).is_some_and(|(top, _)| v < top))
            })
            .map(|r| r.event_id)
            .collect();
        let mut seen: HashSet<Uuid> = self.loaded_ids(&uncertain)?;
        seen.reserve(rows.len());
        let mut advanced: HashMap<(&'a str, i32, &'a str), (i64, Uuid)> = HashMap::new();
        let mut fresh = Vec::with_capacity(rows.len());
        for row in rows {
            // Loaded before (found above), or earlier in this batch.
            if !seen.insert(row.event_id) {
                continue;
            }
            let record: &'a SinkRecord = row.record;
            if let Some(version) = row.stream_version {
                if self.highest(record) == Some((version, row.event_id)) {
                    continue;
                }
                let key = (record.topic.as_str(), record.partition, record.key.as_str());
                let top = advanced.entry(key).or_insert((version, row.event_id));
                if version > top.0 {
                    *top = (version, row.event_id);
                }
            }
            fresh.push(row);
        }
        // Only a version above the one remembered moves it.
        advanced.retain(|&(topic, partition, stream), &mut (version, _)| {
            self.versions
                .get(topic)
                .and_then(|p| p.get(&partition))
                .and_then(|s| s.get(stream))
                .is_none_or(|&(top, _)| version > top)
        });
        Ok((fresh, advanced))
    }

    /// The highest stream version loaded for `record`'s stream on its partition,
    /// with the event that had it.
    fn highest(&self, record: &SinkRecord) -> Option<(i64, Uuid)> {
        self.versions
            .get(&record.topic)
            .and_then(|p| p.get(&record.partition))
            .and_then(|s| s.get(&record.key))
            .copied()
    }

    /// Which of `ids` are in `raw_events` already (one scan, only for records the
    /// stream versions cannot tell).
    fn loaded_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, SinkError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let list = ids
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut statement = self.conn.prepare(&format!(
            "SELECT CAST(event_id AS VARCHAR) FROM raw_events WHERE event_id IN ({list})"
        ))?;
        let found = statement.query_map([], |r| r.get::<_, String>(0))?;
        let mut loaded = HashSet::new();
        for id in found {
            if let Ok(id) = Uuid::parse_str(&id?) {
                loaded.insert(id);
            }
        }
        Ok(loaded)
    }

    fn load_in_transaction(
        &self,
        batch: &[SinkRecord],
        rows: &[Row<'_>],
        loaded_at: DateTime<Utc>,
        timings: &mut LoadTimings,
    ) -> Result<(), SinkError> {
        if !rows.is_empty() {
            let building = Instant::now();
            let raw = raw_batch(rows, loaded_at);
            timings.build += building.elapsed();
            self.append("raw_events", raw, timings)?;
        }
        let mut by_type: BTreeMap<&str, Vec<TypedRow<'_>>> = BTreeMap::new();
        for row in rows.iter().filter(|r| r.is_typed()) {
            if let (Some(event_type), Some(typed)) = (row.event_type.as_deref(), TypedRow::of(row))
            {
                by_type.entry(event_type).or_default().push(typed);
            }
        }
        self.append_typed(by_type, timings)?;
        let advancing = Instant::now();
        self.advance(batch, rows, loaded_at)?;
        timings.commit += advancing.elapsed();
        Ok(())
    }

    /// Appends each event type's rows to its typed table.
    fn append_typed(
        &self,
        by_type: BTreeMap<&str, Vec<TypedRow<'_>>>,
        timings: &mut LoadTimings,
    ) -> Result<(), SinkError> {
        for (event_type, typed) in by_type {
            if let Some(table) = self.tables.get(event_type) {
                let building = Instant::now();
                let batch = typed_batch(table, &typed);
                timings.build += building.elapsed();
                self.append(&table.name, batch, timings)?;
            }
        }
        Ok(())
    }

    /// Appends a record batch to `table`, by column name.
    fn append(
        &self,
        table: &str,
        mut batch: BatchBuilder,
        timings: &mut LoadTimings,
    ) -> Result<(), SinkError> {
        let appending = Instant::now();
        let names: Vec<String> = batch.names().into_iter().map(str::to_owned).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut appender = self.conn.appender_with_columns(table, &names)?;
        let batch = batch
            .finish()
            .map_err(|e| SinkError::DuckDb(duckdb::Error::ToSqlConversionFailure(Box::new(e))))?;
        appender.append_record_batch(batch)?;
        appender.flush()?;
        timings.append += appending.elapsed();
        Ok(())
    }

    /// Moves each partition's position past the batch and refreshes its watermark.
    fn advance(
        &self,
        batch: &[SinkRecord],
        rows: &[Row<'_>],
        loaded_at: DateTime<Utc>,
    ) -> Result<(), SinkError> {
        let mut last: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for record in batch {
            let offset = last
                .entry((&record.topic, record.partition))
                .or_insert(record.offset);
            *offset = (*offset).max(record.offset);
        }
        let mut newest: HashMap<(&str, i32), DateTime<Utc>> = HashMap::new();
        for row in rows {
            if let Some(at) = row.recorded_at {
                let key = (row.record.topic.as_str(), row.record.partition);
                let entry = newest.entry(key).or_insert(at);
                *entry = (*entry).max(at);
            }
        }
        let loaded = Value::Timestamp(TimeUnit::Microsecond, loaded_at.timestamp_micros());
        let mut position = self.conn.prepare_cached(
            "INSERT INTO sluice_positions (topic, partition, next_offset) VALUES (?, ?, ?) \
             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
        )?;
        let mut watermark = self.conn.prepare_cached(
            "INSERT INTO sluice_watermarks \
                 (topic, partition, loaded_offset, newest_event_time, lag_seconds, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (topic, partition) DO UPDATE SET \
                 loaded_offset = excluded.loaded_offset, \
                 newest_event_time = greatest(sluice_watermarks.newest_event_time, excluded.newest_event_time), \
                 lag_seconds = coalesce(excluded.lag_seconds, sluice_watermarks.lag_seconds), \
                 updated_at = excluded.updated_at",
        )?;
        for ((topic, partition), offset) in last {
            position.execute(params![topic, partition, offset + 1])?;
            let newest = newest.get(&(topic, partition)).copied();
            let lag = newest.map(|t| (loaded_at - t).num_microseconds().unwrap_or(0) as f64 / 1e6);
            if let Some(t) = newest {
                telemetry::watermark(topic, partition, t.timestamp_micros() as f64 / 1e6);
            }
            let newest = newest.map_or(Value::Null, |t| {
                Value::Timestamp(TimeUnit::Microsecond, t.timestamp_micros())
            });
            watermark.execute(params![topic, partition, offset, newest, lag, loaded])?;
            if let Some(lag) = lag {
                telemetry::lag_seconds(topic, partition, lag);
            }
        }
        Ok(())
    }
}
