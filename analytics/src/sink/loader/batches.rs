//! The Arrow record batches of a load: one for `raw_events`, one per event type
//! for its typed table, built straight from the decoded records.

use apache_avro::types::Value as Avro;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::sink::columns::{BatchBuilder, ColumnBuilder};
use crate::sink::mapping::{Kind, TypedTable, ENVELOPE_COLUMNS};
use crate::sink::record::Row;

/// How a column of the sink's own tables is built.
#[derive(Debug, Clone, Copy)]
enum Column {
    Uuid,
    Varchar,
    Integer,
    BigInt,
    Timestamp,
    Json,
    Blob,
}

impl Column {
    /// An empty column, with room for `rows`.
    fn builder(self, rows: usize) -> ColumnBuilder {
        match self {
            Column::Uuid => ColumnBuilder::uuid(rows),
            Column::Varchar => ColumnBuilder::new(&Kind::Varchar, rows),
            Column::Integer => ColumnBuilder::new(&Kind::Integer, rows),
            Column::BigInt => ColumnBuilder::new(&Kind::BigInt, rows),
            Column::Timestamp => ColumnBuilder::timestamp(rows),
            Column::Json => ColumnBuilder::new(&Kind::Json, rows),
            Column::Blob => ColumnBuilder::blob(rows),
        }
    }
}

/// The columns of `raw_events`, in the order [`raw_batch`] fills them: first
/// the envelope columns of every table of the sink, in [`ENVELOPE_COLUMNS`]
/// order and of the types the typed tables build them with.
const RAW_COLUMNS: [(&str, Column); 19] = [
    ("event_id", Column::Uuid),
    ("stream_id", Column::Varchar),
    ("stream_version", Column::BigInt),
    ("recorded_at", Column::Timestamp),
    ("correlation_id", Column::Uuid),
    ("causation_id", Column::Uuid),
    ("schema_version", Column::Integer),
    ("topic", Column::Varchar),
    ("partition", Column::Integer),
    ("kafka_offset", Column::BigInt),
    ("event_type", Column::Varchar),
    ("stream_type", Column::Varchar),
    ("global_position", Column::BigInt),
    ("traceparent", Column::Varchar),
    ("actor", Column::Varchar),
    ("payload", Column::Json),
    ("payload_avro", Column::Blob),
    ("decode_error", Column::Varchar),
    ("loaded_at", Column::Timestamp),
];

/// The envelope of one event, as every table of the sink holds it.
pub(super) struct Envelope<'a> {
    pub(super) event_id: Uuid,
    pub(super) stream_id: &'a str,
    pub(super) stream_version: Option<i64>,
    pub(super) recorded_at: Option<DateTime<Utc>>,
    pub(super) correlation_id: Option<Uuid>,
    pub(super) causation_id: Option<Uuid>,
    pub(super) schema_version: Option<i32>,
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) offset: i64,
}

impl<'a> Envelope<'a> {
    /// The envelope of a decoded record.
    fn of(row: &'a Row<'_>) -> Self {
        Envelope {
            event_id: row.event_id,
            stream_id: &row.record.key,
            stream_version: row.stream_version,
            recorded_at: row.recorded_at,
            correlation_id: row.correlation_id,
            causation_id: row.causation_id,
            schema_version: row.schema_version,
            topic: &row.record.topic,
            partition: row.record.partition,
            offset: row.record.offset,
        }
    }

    /// Appends the envelope to the first [`ENVELOPE_COLUMNS`] of `batch`.
    fn push(&self, batch: &mut BatchBuilder) {
        batch.column(0).push_uuid(Some(self.event_id));
        batch.column(1).push_str(Some(self.stream_id));
        batch.column(2).push_int(self.stream_version);
        batch.column(3).push_timestamp(self.recorded_at);
        batch.column(4).push_uuid(self.correlation_id);
        batch.column(5).push_uuid(self.causation_id);
        batch.column(6).push_int(self.schema_version.map(i64::from));
        batch.column(7).push_str(Some(self.topic));
        batch.column(8).push_int(Some(i64::from(self.partition)));
        batch.column(9).push_int(Some(self.offset));
    }
}

/// What a typed table holds of one event: the envelope and the decoded payload.
pub(super) struct TypedRow<'a> {
    /// With a schema version: the payload decoded with one.
    pub(super) envelope: Envelope<'a>,
    /// The decoded payload: a record.
    pub(super) payload: &'a Avro,
}

impl<'a> TypedRow<'a> {
    /// The typed row of `row`, when its payload decoded with a schema version.
    pub(super) fn of(row: &'a Row<'_>) -> Option<Self> {
        row.schema_version?;
        Some(TypedRow {
            envelope: Envelope::of(row),
            payload: &row.payload.as_ref()?.value,
        })
    }
}

/// The rows of `raw_events` as one record batch (columns by name).
pub(super) fn raw_batch(rows: &[Row<'_>], loaded_at: DateTime<Utc>) -> BatchBuilder {
    let mut batch = BatchBuilder::new(
        RAW_COLUMNS
            .iter()
            .map(|&(name, column)| (name.to_owned(), column.builder(rows.len())))
            .collect(),
    );
    for row in rows {
        let record = row.record;
        Envelope::of(row).push(&mut batch);
        batch.column(10).push_str(row.event_type.as_deref());
        batch.column(11).push_str(row.stream_type);
        batch.column(12).push_int(row.global_position);
        batch
            .column(13)
            .push_str(record.headers.get("traceparent").map(String::as_str));
        batch
            .column(14)
            .push_str(record.headers.get("actor").map(String::as_str));
        match &row.payload {
            Some(payload) => {
                batch.column(15).push_str(Some(&payload.json));
                batch.column(16).push_bytes(None);
            }
            None => {
                batch.column(15).push_str(None);
                batch.column(16).push_bytes(Some(&record.payload));
            }
        }
        batch.column(17).push_str(row.decode_error.as_deref());
        batch.column(18).push_timestamp(Some(loaded_at));
    }
    batch
}

/// The rows of one typed table as one record batch (columns by name).
pub(super) fn typed_batch(table: &TypedTable, rows: &[TypedRow<'_>]) -> BatchBuilder {
    let n = rows.len();
    let envelope = ENVELOPE_COLUMNS.len();
    let mut columns: Vec<(String, ColumnBuilder)> = RAW_COLUMNS[..envelope]
        .iter()
        .map(|&(name, column)| (name.to_owned(), column.builder(n)))
        .collect();
    debug_assert!(columns
        .iter()
        .zip(ENVELOPE_COLUMNS)
        .all(|((built, _), (name, _))| built == name));
    columns.extend(
        table
            .columns
            .iter()
            .map(|c| (c.column.clone(), ColumnBuilder::new(&c.kind, n))),
    );
    let mut batch = BatchBuilder::new(columns);
    for row in rows {
        row.envelope.push(&mut batch);
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
