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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use apache_avro::types::Value as Avro;
use chrono::{DateTime, Utc};
use duckdb::types::{TimeUnit, Value};
use duckdb::{params, Connection};
use sluice_platform::avro::json_text;
use sluice_platform::avro::SchemaCatalog;
use uuid::Uuid;

use super::columns::{BatchBuilder, ColumnBuilder};
use super::mapping::{quote_ident, typed_tables, Kind, TypedTable, ENVELOPE_COLUMNS};
use super::record::{decode, Row, SinkRecord};
use super::{schemas, telemetry, SinkError};

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

    /// The stored next offset of every partition the sink has loaded from.
    pub fn positions(&self) -> Result<BTreeMap<(String, i32), i64>, SinkError> {
        let mut statement = self
            .conn
            .prepare("SELECT topic, partition, next_offset FROM sluice_positions")?;
        let rows = statement.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
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

    /// Rescans the schemas directory when a row has a fingerprint not rescanned for
    /// yet. Returns whether the catalog changed (the batch must be decoded again).
    fn rescan_for(&mut self, rows: &[Row<'_>]) -> Result<bool, SinkError> {
        let Some(dir) = &self.schemas_dir else {
            return Ok(false);
        };
        let unknown: Vec<[u8; 8]> = rows
            .iter()
            .filter(|r| r.unknown_fingerprint)
            .filter_map(|r| r.record.payload.get(2..10)?.try_into().ok())
            .collect();
        let fresh = unknown.iter().any(|f| !self.rescanned.contains(f));
        let due = self
            .last_rescan
            .is_none_or(|at| at.elapsed() >= RESCAN_INTERVAL);
        // A schema may land on disk after its first records: a fingerprint already
        // rescanned for is looked for again, at most every RESCAN_INTERVAL.
        if unknown.is_empty() || !(fresh || due) {
            return Ok(false);
        }
        self.rescanned.extend(unknown);
        self.last_rescan = Some(Instant::now());
        tracing::info!(dir = %dir.display(), "unknown schema fingerprint; rescanning the schemas");
        let catalog = match schemas::load_catalog(dir) {
            Ok(catalog) => catalog,
            Err(error) => {
                // A half-written schema file must not stop loading: the records
                // are kept undecoded, and a later fingerprint rescans again.
                tracing::warn!(%error, "rescan of the schemas failed; keeping the current ones");
                return Ok(false);
            }
        };
        let before: usize = self
            .catalog
            .event_types()
            .map(|t| self.catalog.versions(t).len())
            .sum();
        let after: usize = catalog
            .event_types()
            .map(|t| catalog.versions(t).len())
            .sum();
        if after == before {
            return Ok(false);
        }
        self.adopt(catalog)?;
        let backfilled = self.backfill()?;
        if backfilled > 0 {
            tracing::info!(
                backfilled,
                "rows kept without a payload decoded with the new schemas"
            );
        }
        Ok(true)
    }

    /// Decodes the rows of `raw_events` kept without a payload whose schema the
    /// catalog now has: fills in their payload and loads them into their typed
    /// tables, in one transaction. Returns how many rows it decoded.
    fn backfill(&mut self) -> Result<usize, SinkError> {
        let pending: Vec<Kept> = {
            let mut kept = self.conn.prepare(
                "SELECT CAST(event_id AS VARCHAR), payload_avro, stream_id, stream_version, \
                        epoch_us(recorded_at), CAST(correlation_id AS VARCHAR), \
                        CAST(causation_id AS VARCHAR), topic, partition, kafka_offset \
                   FROM raw_events WHERE payload IS NULL AND payload_avro IS NOT NULL",
            )?;
            let rows = kept.query_map([], |r| {
                let uuid = |text: Option<String>| text.and_then(|t| Uuid::parse_str(&t).ok());
                Ok(Kept {
                    event_id: r.get(0)?,
                    bytes: r.get(1)?,
                    stream_id: r.get(2)?,
                    stream_version: r.get(3)?,
                    recorded_at: r
                        .get::<_, Option<i64>>(4)?
                        .and_then(DateTime::<Utc>::from_timestamp_micros),
                    correlation_id: uuid(r.get(5)?),
                    causation_id: uuid(r.get(6)?),
                    topic: r.get(7)?,
                    partition: r.get(8)?,
                    offset: r.get(9)?,
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let decoded: Vec<(&Kept, sluice_platform::avro::DecodedDatum, String)> = pending
            .iter()
            .filter_map(|kept| {
                let datum = self.catalog.decode_single_object_datum(&kept.bytes).ok()?;
                let json = json_text(&datum.value).ok()?;
                Some((kept, datum, json))
            })
            .collect();
        if decoded.is_empty() {
            return Ok(0);
        }
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        let outcome = (|| -> Result<(), SinkError> {
            let mut by_type: BTreeMap<&str, Vec<TypedRow<'_>>> = BTreeMap::new();
            let mut update = self.conn.prepare(
                "UPDATE raw_events SET payload = CAST(? AS JSON), event_type = ?, \
                        schema_version = ?, payload_avro = NULL, decode_error = NULL \
                  WHERE event_id = CAST(? AS UUID)",
            )?;
            for (kept, event, json) in &decoded {
                update.execute(params![
                    json,
                    event.event_type,
                    event.schema_version,
                    kept.event_id
                ])?;
                let Ok(event_id) = Uuid::parse_str(&kept.event_id) else {
                    continue;
                };
                by_type
                    .entry(event.event_type.as_str())
                    .or_default()
                    .push(TypedRow {
                        event_id,
                        stream_id: &kept.stream_id,
                        stream_version: kept.stream_version,
                        recorded_at: kept.recorded_at,
                        correlation_id: kept.correlation_id,
                        causation_id: kept.causation_id,
                        schema_version: event.schema_version,
                        topic: &kept.topic,
                        partition: kept.partition,
                        offset: kept.offset,
                        payload: &event.value,
                    });
            }
            self.append_typed(by_type, &mut LoadTimings::default())
        })();
        match outcome.and_then(|()| Ok(self.conn.execute_batch("COMMIT")?)) {
            Ok(()) => Ok(decoded.len()),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Makes `catalog` current: creates or extends the typed tables and prepares
    /// their inserts.
    fn adopt(&mut self, catalog: SchemaCatalog) -> Result<(), SinkError> {
        self.tables = ensure_typed_tables(&self.conn, &catalog)?;
        self.catalog = catalog;
        Ok(())
    }
}

/// Creates or extends every typed table of `catalog` (in one transaction of its
/// own) and returns them by event type.
fn ensure_typed_tables(
    conn: &Connection,
    catalog: &SchemaCatalog,
) -> Result<BTreeMap<String, TypedTable>, SinkError> {
    let tables = typed_tables(catalog).map_err(SinkError::TypedTable)?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    match tables.values().try_for_each(|t| ensure_table(conn, t)) {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            if let Err(rollback) = conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %rollback, "rollback of the typed tables failed");
            }
            return Err(e);
        }
    }
    Ok(tables)
}

/// `CREATE TABLE IF NOT EXISTS`, then `ADD COLUMN` for every field the table
/// lacks and a widening `ALTER COLUMN … TYPE` for promoted numbers. Nothing is
/// ever dropped.
fn ensure_table(conn: &Connection, table: &TypedTable) -> Result<(), SinkError> {
    let name = quote_ident(&table.name);
    let columns: Vec<String> = ENVELOPE_COLUMNS
        .iter()
        .map(|(c, t)| format!("{} {t}", quote_ident(c)))
        .chain(
            table
                .columns
                .iter()
                .map(|c| format!("{} {}", quote_ident(&c.column), c.sql_type)),
        )
        .collect();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {name} ({})",
        columns.join(", ")
    ))?;
    let mut statement = conn.prepare(
        "SELECT lower(column_name), data_type FROM duckdb_columns() \
             WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?",
    )?;
    let existing: HashMap<String, String> = statement
        .query_map([&table.name], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for column in &table.columns {
        let quoted = quote_ident(&column.column);
        match existing.get(&column.column.to_lowercase()) {
            None => {
                tracing::info!(table = %table.name, column = %column.column, "adding a column for a new field");
                conn.execute_batch(&format!(
                    "ALTER TABLE {name} ADD COLUMN {quoted} {}",
                    column.sql_type
                ))?;
            }
            Some(current) if widens(current, &column.sql_type) => {
                tracing::info!(table = %table.name, column = %column.column, from = %current, to = %column.sql_type, "widening a promoted column");
                conn.execute_batch(&format!(
                    "ALTER TABLE {name} ALTER COLUMN {quoted} TYPE {}",
                    column.sql_type
                ))?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Avro's numeric promotions, as DuckDB types.
fn widens(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("INTEGER", "BIGINT" | "FLOAT" | "DOUBLE")
            | ("BIGINT", "FLOAT" | "DOUBLE")
            | ("FLOAT", "DOUBLE")
    )
}

/// The highest stream version loaded per `(topic, partition, stream)`, with the
/// event that had it.
fn loaded_versions(conn: &Connection) -> Result<Versions, SinkError> {
    let mut statement = conn.prepare(
        "SELECT topic, partition, stream_id, max(stream_version), \
                CAST(arg_max(event_id, stream_version) AS VARCHAR) FROM raw_events \
          WHERE stream_version IS NOT NULL GROUP BY ALL",
    )?;
    let rows = statement.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i32>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut versions = Versions::new();
    for row in rows {
        let (topic, partition, stream, version, id) = row?;
        let id = Uuid::parse_str(&id).unwrap_or_default();
        versions
            .entry(topic)
            .or_default()
            .entry(partition)
            .or_default()
            .insert(stream, (version, id));
    }
    Ok(versions)
}

/// A row of `raw_events` kept without a payload, as the backfill reads it.
struct Kept {
    event_id: String,
    bytes: Vec<u8>,
    stream_id: String,
    stream_version: Option<i64>,
    recorded_at: Option<DateTime<Utc>>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    topic: String,
    partition: i32,
    offset: i64,
}

/// What a typed table holds of one event: the envelope and the decoded payload.
struct TypedRow<'a> {
    event_id: Uuid,
    stream_id: &'a str,
    stream_version: Option<i64>,
    recorded_at: Option<DateTime<Utc>>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    schema_version: i32,
    topic: &'a str,
    partition: i32,
    offset: i64,
    /// The decoded payload: a record.
    payload: &'a Avro,
}

impl<'a> TypedRow<'a> {
    fn of(row: &'a Row<'_>) -> Option<Self> {
        Some(TypedRow {
            event_id: row.event_id,
            stream_id: &row.record.key,
            stream_version: row.stream_version,
            recorded_at: row.recorded_at,
            correlation_id: row.correlation_id,
            causation_id: row.causation_id,
            schema_version: row.schema_version?,
            topic: &row.record.topic,
            partition: row.record.partition,
            offset: row.record.offset,
            payload: &row.payload.as_ref()?.value,
        })
    }
}

/// The rows of `raw_events` as one record batch (columns by name).
fn raw_batch(rows: &[Row<'_>], loaded_at: DateTime<Utc>) -> BatchBuilder {
    let n = rows.len();
    let text = |name: &str| (name.to_owned(), ColumnBuilder::new(&Kind::Varchar, n));
    let mut batch = BatchBuilder::new(vec![
        ("event_id".to_owned(), ColumnBuilder::uuid(n)),
        text("event_type"),
        (
            "schema_version".to_owned(),
            ColumnBuilder::new(&Kind::Integer, n),
        ),
        text("stream_type"),
        text("stream_id"),
        (
            "stream_version".to_owned(),
            ColumnBuilder::new(&Kind::BigInt, n),
        ),
        (
            "global_position".to_owned(),
            ColumnBuilder::new(&Kind::BigInt, n),
        ),
        ("recorded_at".to_owned(), ColumnBuilder::timestamp(n)),
        ("correlation_id".to_owned(), ColumnBuilder::uuid(n)),
        ("causation_id".to_owned(), ColumnBuilder::uuid(n)),
        text("traceparent"),
        text("actor"),
        ("payload".to_owned(), ColumnBuilder::new(&Kind::Json, n)),
        ("payload_avro".to_owned(), ColumnBuilder::blob(n)),
        text("decode_error"),
        text("topic"),
        (
            "partition".to_owned(),
            ColumnBuilder::new(&Kind::Integer, n),
        ),
        (
            "kafka_offset".to_owned(),
            ColumnBuilder::new(&Kind::BigInt, n),
        ),
        ("loaded_at".to_owned(), ColumnBuilder::timestamp(n)),
    ]);
    for row in rows {
        let record = row.record;
        batch.column(0).push_uuid(Some(row.event_id));
        batch.column(1).push_str(row.event_type.as_deref());
        batch.column(2).push_int(row.schema_version.map(i64::from));
        batch.column(3).push_str(row.stream_type);
        batch.column(4).push_str(Some(&record.key));
        batch.column(5).push_int(row.stream_version);
        batch.column(6).push_int(row.global_position);
        batch.column(7).push_timestamp(row.recorded_at);
        batch.column(8).push_uuid(row.correlation_id);
        batch.column(9).push_uuid(row.causation_id);
        batch
            .column(10)
            .push_str(record.headers.get("traceparent").map(String::as_str));
        batch
            .column(11)
            .push_str(record.headers.get("actor").map(String::as_str));
        match &row.payload {
            Some(payload) => {
                batch.column(12).push_str(Some(&payload.json));
                batch.column(13).push_bytes(None);
            }
            None => {
                batch.column(12).push_str(None);
                batch.column(13).push_bytes(Some(&record.payload));
            }
        }
        batch.column(14).push_str(row.decode_error.as_deref());
        batch.column(15).push_str(Some(&record.topic));
        batch.column(16).push_int(Some(i64::from(record.partition)));
        batch.column(17).push_int(Some(record.offset));
        batch.column(18).push_timestamp(Some(loaded_at));
    }
    batch
}

/// The rows of one typed table as one record batch (columns by name).
fn typed_batch(table: &TypedTable, rows: &[TypedRow<'_>]) -> BatchBuilder {
    let n = rows.len();
    let mut columns = vec![
        ("event_id".to_owned(), ColumnBuilder::uuid(n)),
        (
            "stream_id".to_owned(),
            ColumnBuilder::new(&Kind::Varchar, n),
        ),
        (
            "stream_version".to_owned(),
            ColumnBuilder::new(&Kind::BigInt, n),
        ),
        ("recorded_at".to_owned(), ColumnBuilder::timestamp(n)),
        ("correlation_id".to_owned(), ColumnBuilder::uuid(n)),
        ("causation_id".to_owned(), ColumnBuilder::uuid(n)),
        (
            "schema_version".to_owned(),
            ColumnBuilder::new(&Kind::Integer, n),
        ),
        ("topic".to_owned(), ColumnBuilder::new(&Kind::Varchar, n)),
        (
            "partition".to_owned(),
            ColumnBuilder::new(&Kind::Integer, n),
        ),
        (
            "kafka_offset".to_owned(),
            ColumnBuilder::new(&Kind::BigInt, n),
        ),
    ];
    debug_assert_eq!(columns.len(), ENVELOPE_COLUMNS.len());
    columns.extend(
        table
            .columns
            .iter()
            .map(|c| (c.column.clone(), ColumnBuilder::new(&c.kind, n))),
    );
    let mut batch = BatchBuilder::new(columns);
    let envelope = ENVELOPE_COLUMNS.len();
    for row in rows {
        batch.column(0).push_uuid(Some(row.event_id));
        batch.column(1).push_str(Some(row.stream_id));
        batch.column(2).push_int(row.stream_version);
        batch.column(3).push_timestamp(row.recorded_at);
        batch.column(4).push_uuid(row.correlation_id);
        batch.column(5).push_uuid(row.causation_id);
        batch
            .column(6)
            .push_int(Some(i64::from(row.schema_version)));
        batch.column(7).push_str(Some(row.topic));
        batch.column(8).push_int(Some(i64::from(row.partition)));
        batch.column(9).push_int(Some(row.offset));
        let fields: &[(String, Avro)] = match row.payload {
            Avro::Record(fields) => fields,
            _ => &[],
        };
        for (i, column) in table.columns.iter().enumerate() {
            let value = fields
                .iter()
                .find(|(name, _)| *name == column.field)
                .map(|(_, v)| v);
            batch.column(envelope + i).push_avro(value);
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_avro_promotions_widen_a_column() {
        assert!(widens("INTEGER", "BIGINT"));
        assert!(widens("FLOAT", "DOUBLE"));
        assert!(!widens("BIGINT", "INTEGER"));
        assert!(!widens("VARCHAR", "BIGINT"));
    }
}
