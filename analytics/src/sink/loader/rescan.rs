//! Schemas that appear while the sink runs: a rescan of the schemas directory
//! for an unknown fingerprint, and the backfill of the rows kept without a
//! payload that the new schemas decode (see the [`super`] module docs).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use duckdb::params;
use sluice_platform::avro::{json_text, SchemaCatalog};
use uuid::Uuid;

use super::batches::{Envelope, TypedRow};
use super::tables::ensure_typed_tables;
use super::{LoadTimings, Loader, RESCAN_INTERVAL};
use crate::sink::record::Row;
use crate::sink::{schemas, SinkError};

impl Loader {
    /// Rescans the schemas directory when a row has a fingerprint not rescanned for
    /// yet. Returns whether the catalog changed (the batch must be decoded again).
    pub(super) fn rescan_for(&mut self, rows: &[Row<'_>]) -> Result<bool, SinkError> {
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
                        envelope: Envelope {
                            event_id,
                            stream_id: &kept.stream_id,
                            stream_version: kept.stream_version,
                            recorded_at: kept.recorded_at,
                            correlation_id: kept.correlation_id,
                            causation_id: kept.causation_id,
                            schema_version: Some(event.schema_version),
                            topic: &kept.topic,
                            partition: kept.partition,
                            offset: kept.offset,
                        },
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
