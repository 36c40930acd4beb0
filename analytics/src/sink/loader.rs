//! The write path: decodes a batch of records and loads it into DuckDB in one
//! transaction together with the positions it covers.
//!
//! Per batch:
//! 1. decode every record (an unknown fingerprint rescans the schemas directory:
//!    at once for a fingerprint not seen before, then at most every few seconds
//!    while records keep naming it; a schema that appears is adopted, and the rows
//!    kept without a payload that it decodes are backfilled into `raw_events` and
//!    their typed tables);
//! 2. drop duplicates within the batch (same event id);
//! 3. `BEGIN`; append the rows to a per-connection temporary stage table with
//!    DuckDB's appender;
//! 4. `INSERT OR IGNORE INTO raw_events SELECT … FROM stage`: the primary key on
//!    `event_id` skips events already loaded (the relay delivers at least once);
//! 5. per event type in the batch, `INSERT OR IGNORE INTO <typed> SELECT …` with
//!    `from_json(payload, <structure>)` turning the JSON payload into typed columns
//!    (lists and structs included) inside DuckDB, vectorised;
//! 6. upsert `sluice_positions` and `sluice_watermarks`; empty the stage; `COMMIT`.
//!
//! Data and positions commit together: a crash at any point either keeps the whole
//! batch with its positions or neither, and a restart resumes at the stored
//! positions. The event-id key covers what the relay sends twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use duckdb::types::{TimeUnit, Value};
use duckdb::{params, Connection};
use sluice_platform::avro::SchemaCatalog;

use super::mapping::{quote_ident, quote_literal, typed_tables, TypedTable, ENVELOPE_COLUMNS};
use super::record::{decode, Row, SinkRecord};
use super::{schemas, telemetry, SinkError};

const TABLES_SQL: &str = include_str!("../../sql/tables.sql");
const STAGE: &str = "sluice_stage";
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
    /// The `INSERT … SELECT` of each event type's typed table.
    typed_inserts: HashMap<String, String>,
}

impl Loader {
    /// A loader over `conn` for the event types of `catalog`. Creates the sink's
    /// tables and every typed table when missing, and adds the columns of newer
    /// schema versions.
    pub fn new(conn: Connection, catalog: SchemaCatalog) -> Result<Self, SinkError> {
        conn.execute_batch(TABLES_SQL)?;
        conn.execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE {STAGE} AS SELECT * FROM raw_events LIMIT 0"
        ))?;
        let typed_inserts = ensure_typed_tables(&conn, &catalog)?;
        Ok(Loader {
            conn,
            catalog,
            schemas_dir: None,
            rescanned: HashSet::new(),
            last_rescan: None,
            typed_inserts,
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
        let mut rows: Vec<Row<'_>> = batch.iter().map(|r| decode(&self.catalog, r)).collect();
        if self.rescan_for(&rows)? {
            rows = batch.iter().map(|r| decode(&self.catalog, r)).collect();
        }
        let mut seen = HashSet::with_capacity(rows.len());
        rows.retain(|row| seen.insert(row.event_id));
        let within_batch = batch.len() - rows.len();

        let loaded_at = Utc::now();
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        let outcome = self.load_in_transaction(batch, &rows, loaded_at);
        let per_topic = match outcome {
            Ok(counts) => {
                if let Err(e) = self.conn.execute_batch("COMMIT") {
                    // A failed commit may leave the transaction open: end it, so
                    // that the retry can begin its own.
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
                counts
            }
            Err(e) => {
                // The stage is a table of this transaction too: rolled back with it.
                if let Err(rollback) = self.conn.execute_batch("ROLLBACK") {
                    tracing::warn!(error = %rollback, "rollback after a failed load failed");
                }
                return Err(e);
            }
        };
        let loaded = per_topic.values().map(|c| c.loaded as usize).sum::<usize>();
        let undecodable = per_topic.values().map(|c| c.undecodable as usize).sum();
        let report = LoadReport {
            records: batch.len(),
            loaded,
            duplicates: within_batch + (rows.len() - loaded),
            undecodable,
        };
        telemetry::batch_loaded(&per_topic, &report, started.elapsed());
        Ok(report)
    }

    fn load_in_transaction(
        &self,
        batch: &[SinkRecord],
        rows: &[Row<'_>],
        loaded_at: DateTime<Utc>,
    ) -> Result<BTreeMap<String, TopicCounts>, SinkError> {
        self.stage(rows, loaded_at)?;
        // RETURNING yields only the rows inserted, not the ignored duplicates.
        let mut insert = self.conn.prepare(&format!(
            "INSERT OR IGNORE INTO raw_events SELECT * FROM temp.{STAGE} \
             RETURNING topic, payload IS NULL"
        ))?;
        let mut per_topic: BTreeMap<String, TopicCounts> = BTreeMap::new();
        let inserted =
            insert.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))?;
        for row in inserted {
            let (topic, undecodable) = row?;
            let counts = per_topic.entry(topic).or_default();
            counts.loaded += 1;
            counts.undecodable += u64::from(undecodable);
        }
        drop(insert);
        let event_types: HashSet<&str> = rows
            .iter()
            .filter(|r| r.is_typed())
            .filter_map(|r| r.event_type.as_deref())
            .collect();
        for event_type in event_types {
            if let Some(insert) = self.typed_inserts.get(event_type) {
                self.conn.execute(insert, params![event_type])?;
            }
        }
        self.conn
            .execute_batch(&format!("DELETE FROM temp.{STAGE}"))?;
        self.advance(batch, rows, loaded_at)?;
        Ok(per_topic)
    }

    /// Appends the rows to the stage table.
    fn stage(&self, rows: &[Row<'_>], loaded_at: DateTime<Utc>) -> Result<(), SinkError> {
        let timestamp =
            |t: DateTime<Utc>| Value::Timestamp(TimeUnit::Microsecond, t.timestamp_micros());
        let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::Text(s.to_owned()));
        let uuid = |u: Option<uuid::Uuid>| u.map_or(Value::Null, |u| Value::Text(u.to_string()));
        let mut appender = self
            .conn
            .appender_to_catalog_and_db(STAGE, "temp", "main")?;
        for row in rows {
            let record = row.record;
            appender.append_row([
                Value::Text(row.event_id.to_string()),
                text(row.event_type.as_deref()),
                row.schema_version.map_or(Value::Null, Value::Int),
                text(row.stream_type.as_deref()),
                Value::Text(record.key.clone()),
                row.stream_version.map_or(Value::Null, Value::BigInt),
                row.global_position.map_or(Value::Null, Value::BigInt),
                row.recorded_at.map_or(Value::Null, timestamp),
                uuid(row.correlation_id),
                uuid(row.causation_id),
                text(record.headers.get("traceparent").map(String::as_str)),
                text(record.headers.get("actor").map(String::as_str)),
                text(row.payload.as_deref()),
                if row.payload.is_none() {
                    Value::Blob(record.payload.clone())
                } else {
                    Value::Null
                },
                text(row.decode_error.as_deref()),
                Value::Text(record.topic.clone()),
                Value::Int(record.partition),
                Value::BigInt(record.offset),
                timestamp(loaded_at),
            ])?;
        }
        appender.flush()?;
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
        let pending: Vec<(String, Vec<u8>)> = {
            let mut kept = self.conn.prepare(
                "SELECT CAST(event_id AS VARCHAR), payload_avro FROM raw_events \
                  WHERE payload IS NULL AND payload_avro IS NOT NULL",
            )?;
            let rows = kept.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let decoded: Vec<(String, sluice_platform::avro::DecodedEvent)> = pending
            .into_iter()
            .filter_map(|(id, bytes)| Some((id, self.catalog.decode_single_object(&bytes).ok()?)))
            .collect();
        if decoded.is_empty() {
            return Ok(0);
        }
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        let outcome = (|| -> Result<(), SinkError> {
            let mut event_types = HashSet::new();
            for (id, event) in &decoded {
                self.conn.execute(
                    "UPDATE raw_events SET payload = CAST(? AS JSON), event_type = ?, \
                            schema_version = ?, payload_avro = NULL, decode_error = NULL \
                      WHERE event_id = CAST(? AS UUID)",
                    params![
                        event.payload.to_string(),
                        event.event_type,
                        event.schema_version,
                        id
                    ],
                )?;
                self.conn.execute(
                    &format!(
                        "INSERT INTO temp.{STAGE} SELECT * FROM raw_events WHERE event_id = CAST(? AS UUID)"
                    ),
                    params![id],
                )?;
                event_types.insert(event.event_type.as_str());
            }
            for event_type in event_types {
                if let Some(insert) = self.typed_inserts.get(event_type) {
                    self.conn.execute(insert, params![event_type])?;
                }
            }
            self.conn
                .execute_batch(&format!("DELETE FROM temp.{STAGE}"))?;
            Ok(())
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
        self.typed_inserts = ensure_typed_tables(&self.conn, &catalog)?;
        self.catalog = catalog;
        Ok(())
    }
}

/// Creates or extends every typed table of `catalog` (in one transaction of its
/// own) and returns their inserts by event type.
fn ensure_typed_tables(
    conn: &Connection,
    catalog: &SchemaCatalog,
) -> Result<HashMap<String, String>, SinkError> {
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
    Ok(tables
        .values()
        .map(|t| (t.event_type.clone(), typed_insert(t)))
        .collect())
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

/// The `INSERT … SELECT` that fills a typed table from the stage (the event type
/// is its one parameter).
fn typed_insert(table: &TypedTable) -> String {
    let envelope: Vec<&str> = ENVELOPE_COLUMNS.iter().map(|(c, _)| *c).collect();
    let target: Vec<String> = envelope
        .iter()
        .map(|c| quote_ident(c))
        .chain(table.columns.iter().map(|c| quote_ident(&c.column)))
        .collect();
    let source: Vec<String> = envelope
        .iter()
        .map(|c| format!("s.{}", quote_ident(c)))
        .chain(table.columns.iter().map(|c| {
            format!(
                "struct_extract(s.sluice_payload, {})",
                quote_literal(&c.field)
            )
        }))
        .collect();
    let payload = if table.columns.is_empty() {
        "NULL".to_owned()
    } else {
        format!(
            "from_json(payload, {})",
            quote_literal(&table.structure().to_string())
        )
    };
    format!(
        "INSERT OR IGNORE INTO {} ({}) SELECT {} FROM \
         (SELECT *, {payload} AS sluice_payload FROM temp.{STAGE} WHERE event_type = ? AND payload IS NOT NULL) s",
        quote_ident(&table.name),
        target.join(", "),
        source.join(", ")
    )
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
