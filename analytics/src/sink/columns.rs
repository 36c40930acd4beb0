//! Arrow columns built row by row from decoded payloads and envelopes, for
//! DuckDB's Arrow appender.
//!
//! A [`ColumnBuilder`] is made from a column's [`Kind`] and takes one Avro value
//! (the payload field, as its writer schema decoded it) per row. A value the kind cannot
//! hold becomes NULL, never an error: one odd payload does not fail a batch.
//! Strings are Arrow `Utf8`, UUIDs `FixedSizeBinary(16)` with the `arrow.uuid`
//! extension (DuckDB's `UUID`), timestamps microseconds in UTC (`TIMESTAMPTZ`).
//! A kind a payload never holds ([`Kind::Absent`]) is an all-NULL `Utf8` column
//! that the appender casts to the table's type.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use chrono::{DateTime, Utc};
use duckdb::arrow::array::{
    new_null_array, Array, ArrayRef, BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder,
    Float32Builder, Float64Builder, Int32Builder, Int64Builder, ListArray, MapArray, StringBuilder,
    StructArray, TimestampMicrosecondBuilder,
};
use duckdb::arrow::buffer::{NullBuffer, OffsetBuffer};
use duckdb::arrow::datatypes::{DataType, Field, Fields, Schema};
use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::RecordBatch;
use sluice_platform::avro::json_text;
use uuid::Uuid;

use super::mapping::Kind;

/// The Arrow field metadata that makes a `FixedSizeBinary(16)` a DuckDB `UUID`.
const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
const UUID_EXTENSION: &str = "arrow.uuid";

/// One column of a record batch under construction.
pub(crate) enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Integer(Int32Builder),
    BigInt(Int64Builder),
    Float(Float32Builder),
    Double(Float64Builder),
    Varchar(StringBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Json(StringBuilder),
    Blob(BinaryBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    /// Rows so far of an all-NULL column.
    Absent(usize),
    List {
        rows: Rows,
        item: Box<ColumnBuilder>,
    },
    Struct {
        fields: Vec<(String, ColumnBuilder)>,
        valid: Vec<bool>,
    },
    Map {
        rows: Rows,
        keys: StringBuilder,
        values: Box<ColumnBuilder>,
    },
}

impl ColumnBuilder {
    /// An empty column of `kind`, with room for `rows`.
    pub(crate) fn new(kind: &Kind, rows: usize) -> Self {
        match kind {
            Kind::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(rows)),
            Kind::Integer => ColumnBuilder::Integer(Int32Builder::with_capacity(rows)),
            Kind::BigInt => ColumnBuilder::BigInt(Int64Builder::with_capacity(rows)),
            Kind::Float => ColumnBuilder::Float(Float32Builder::with_capacity(rows)),
            Kind::Double => ColumnBuilder::Double(Float64Builder::with_capacity(rows)),
            Kind::Varchar => ColumnBuilder::Varchar(StringBuilder::with_capacity(rows, rows * 16)),
            Kind::Uuid => ColumnBuilder::uuid(rows),
            Kind::Json => ColumnBuilder::Json(StringBuilder::with_capacity(rows, rows * 32)),
            Kind::Absent(_) => ColumnBuilder::Absent(0),
            Kind::List(item) => ColumnBuilder::List {
                rows: Rows::with_capacity(rows),
                item: Box::new(ColumnBuilder::new(item, rows)),
            },
            Kind::Struct(fields) => ColumnBuilder::Struct {
                fields: fields
                    .iter()
                    .map(|(name, kind)| (name.clone(), ColumnBuilder::new(kind, rows)))
                    .collect(),
                valid: Vec::with_capacity(rows),
            },
            Kind::Map(value) => ColumnBuilder::Map {
                rows: Rows::with_capacity(rows),
                keys: StringBuilder::new(),
                values: Box::new(ColumnBuilder::new(value, rows)),
            },
        }
    }

    /// A `UUID` column.
    pub(crate) fn uuid(rows: usize) -> Self {
        ColumnBuilder::Uuid(FixedSizeBinaryBuilder::with_capacity(rows, 16))
    }

    /// A `TIMESTAMPTZ` column.
    pub(crate) fn timestamp(rows: usize) -> Self {
        ColumnBuilder::Timestamp(
            TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
        )
    }

    /// A `BLOB` column.
    pub(crate) fn blob(rows: usize) -> Self {
        ColumnBuilder::Blob(BinaryBuilder::with_capacity(rows, rows * 64))
    }

    /// Appends one row's Avro value (`None` or Avro `null`: NULL), unwrapping
    /// unions. Numbers widen as Avro promotes them; a value the column cannot
    /// hold is NULL.
    pub(crate) fn push_avro(&mut self, value: Option<&Avro>) {
        let value = value.map(unwrap_union).filter(|v| !matches!(v, Avro::Null));
        match self {
            ColumnBuilder::Boolean(b) => b.append_option(match value {
                Some(Avro::Boolean(x)) => Some(*x),
                _ => None,
            }),
            ColumnBuilder::Integer(b) => {
                b.append_option(value.and_then(whole).and_then(|n| i32::try_from(n).ok()))
            }
            ColumnBuilder::BigInt(b) => b.append_option(value.and_then(whole)),
            ColumnBuilder::Float(b) => b.append_option(value.and_then(real).map(|x| x as f32)),
            ColumnBuilder::Double(b) => b.append_option(value.and_then(real)),
            ColumnBuilder::Varchar(b) => match value {
                Some(Avro::String(s) | Avro::Enum(_, s)) => b.append_value(s),
                Some(Avro::Uuid(u)) => b.append_value(u.hyphenated().to_string()),
                Some(other) => b.append_option(json_text(other).ok()),
                None => b.append_null(),
            },
            ColumnBuilder::Uuid(_) => {
                let id = match value {
                    Some(Avro::Uuid(u)) => Some(*u),
                    Some(Avro::String(s)) => Uuid::parse_str(s).ok(),
                    _ => None,
                };
                self.push_uuid(id);
            }
            ColumnBuilder::Json(b) => b.append_option(value.and_then(|v| json_text(v).ok())),
            ColumnBuilder::Blob(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Absent(rows) => *rows += 1,
            ColumnBuilder::List { rows, item } => {
                let items = match value {
                    Some(Avro::Array(items)) => {
                        for v in items {
                            item.push_avro(Some(v));
                        }
                        Some(items.len())
                    }
                    _ => None,
                };
                rows.end(items);
            }
            ColumnBuilder::Struct { fields, valid } => match value {
                Some(Avro::Record(record)) => {
                    for (name, field) in fields.iter_mut() {
                        field.push_avro(record.iter().find(|(n, _)| n == name).map(|(_, v)| v));
                    }
                    valid.push(true);
                }
                Some(Avro::Map(map)) => {
                    for (name, field) in fields.iter_mut() {
                        field.push_avro(map.get(name));
                    }
                    valid.push(true);
                }
                _ => {
                    for (_, field) in fields.iter_mut() {
                        field.push_avro(None);
                    }
                    valid.push(false);
                }
            },
            ColumnBuilder::Map { rows, keys, values } => {
                let entries: Option<Vec<(&String, &Avro)>> = match value {
                    Some(Avro::Map(map)) => Some(map.iter().collect()),
                    Some(Avro::Record(record)) => {
                        Some(record.iter().map(|(k, v)| (k, v)).collect())
                    }
                    _ => None,
                };
                let entries = entries.map(|mut entries| {
                    // In key order, as the JSON payload has them.
                    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    for (k, v) in &entries {
                        keys.append_value(k);
                        values.push_avro(Some(v));
                    }
                    entries.len()
                });
                rows.end(entries);
            }
        }
    }

    /// Appends text to a `VARCHAR` or `JSON` column.
    pub(crate) fn push_str(&mut self, value: Option<&str>) {
        match self {
            ColumnBuilder::Varchar(b) | ColumnBuilder::Json(b) => b.append_option(value),
            other => other.push_avro(value.map(|s| Avro::String(s.to_owned())).as_ref()),
        }
    }

    /// Appends to an `INTEGER` or `BIGINT` column.
    pub(crate) fn push_int(&mut self, value: Option<i64>) {
        match self {
            ColumnBuilder::Integer(b) => b.append_option(value.and_then(|n| i32::try_from(n).ok())),
            ColumnBuilder::BigInt(b) => b.append_option(value),
            other => other.push_avro(value.map(Avro::Long).as_ref()),
        }
    }

    /// Appends to a `UUID` column.
    #[expect(
        clippy::expect_used,
        reason = "the column is FixedSizeBinary(16): a UUID's 16 bytes always fit"
    )]
    pub(crate) fn push_uuid(&mut self, value: Option<Uuid>) {
        match self {
            ColumnBuilder::Uuid(b) => match value {
                Some(id) => b
                    .append_value(id.as_bytes())
                    .expect("a UUID is 16 bytes wide"),
                None => b.append_null(),
            },
            other => other.push_str(value.map(|id| id.to_string()).as_deref()),
        }
    }

    /// Appends to a `TIMESTAMPTZ` column.
    pub(crate) fn push_timestamp(&mut self, value: Option<DateTime<Utc>>) {
        match self {
            ColumnBuilder::Timestamp(b) => b.append_option(value.map(|t| t.timestamp_micros())),
            other => other.push_avro(None),
        }
    }

    /// Appends to a `BLOB` column.
    pub(crate) fn push_bytes(&mut self, value: Option<&[u8]>) {
        match self {
            ColumnBuilder::Blob(b) => b.append_option(value),
            other => other.push_avro(None),
        }
    }

    /// The column so far as an Arrow field named `name` and its array; the builder
    /// is empty again afterwards.
    pub(crate) fn finish(&mut self, name: &str) -> (Field, ArrayRef) {
        let (data_type, array, metadata): (DataType, ArrayRef, Option<&str>) = match self {
            ColumnBuilder::Boolean(b) => (DataType::Boolean, Arc::new(b.finish()), None),
            ColumnBuilder::Integer(b) => (DataType::Int32, Arc::new(b.finish()), None),
            ColumnBuilder::BigInt(b) => (DataType::Int64, Arc::new(b.finish()), None),
            ColumnBuilder::Float(b) => (DataType::Float32, Arc::new(b.finish()), None),
            ColumnBuilder::Double(b) => (DataType::Float64, Arc::new(b.finish()), None),
            ColumnBuilder::Varchar(b) | ColumnBuilder::Json(b) => {
                (DataType::Utf8, Arc::new(b.finish()), None)
            }
            ColumnBuilder::Blob(b) => (DataType::Binary, Arc::new(b.finish()), None),
            ColumnBuilder::Uuid(b) => (
                DataType::FixedSizeBinary(16),
                Arc::new(b.finish()),
                Some(UUID_EXTENSION),
            ),
            ColumnBuilder::Timestamp(b) => {
                let array = b.finish();
                (array.data_type().clone(), Arc::new(array), None)
            }
            ColumnBuilder::Absent(rows) => {
                let rows = std::mem::take(rows);
                (DataType::Utf8, new_null_array(&DataType::Utf8, rows), None)
            }
            ColumnBuilder::List { rows, item } => {
                let (item_field, items) = item.finish("item");
                let item_field = Arc::new(item_field);
                let (offsets, valid) = rows.take();
                let array = ListArray::new(item_field.clone(), offsets, items, valid);
                (DataType::List(item_field), Arc::new(array), None)
            }
            ColumnBuilder::Struct { fields, valid } => {
                let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = fields
                    .iter_mut()
                    .map(|(name, field)| field.finish(name))
                    .unzip();
                let fields = Fields::from(fields);
                let valid = std::mem::take(valid);
                let rows = valid.len();
                let array = if fields.is_empty() {
                    StructArray::new_empty_fields(rows, Some(NullBuffer::from(valid)))
                } else {
                    StructArray::new(fields.clone(), arrays, Some(NullBuffer::from(valid)))
                };
                (DataType::Struct(fields), Arc::new(array), None)
            }
            ColumnBuilder::Map { rows, keys, values } => {
                let keys: ArrayRef = Arc::new(keys.finish());
                let (value_field, values) = values.finish("value");
                let entry_fields =
                    Fields::from(vec![Field::new("key", DataType::Utf8, false), value_field]);
                let entries = StructArray::new(entry_fields.clone(), vec![keys, values], None);
                let entries_field =
                    Arc::new(Field::new("entries", DataType::Struct(entry_fields), false));
                let (offsets, valid) = rows.take();
                let array = MapArray::new(entries_field.clone(), offsets, entries, valid, false);
                (DataType::Map(entries_field, false), Arc::new(array), None)
            }
        };
        let mut field = Field::new(name, data_type, true);
        if let Some(extension) = metadata {
            field = field.with_metadata(HashMap::from([(
                EXTENSION_NAME_KEY.to_owned(),
                extension.to_owned(),
            )]));
        }
        (field, array)
    }
}

fn unwrap_union(value: &Avro) -> &Avro {
    match value {
        Avro::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

/// A whole number, as an Avro `int` or `long`.
fn whole(value: &Avro) -> Option<i64> {
    match value {
        Avro::Int(n) => Some(i64::from(*n)),
        Avro::Long(n) => Some(*n),
        _ => None,
    }
}

/// Any Avro number, as a double.
fn real(value: &Avro) -> Option<f64> {
    match value {
        Avro::Int(n) => Some(f64::from(*n)),
        Avro::Long(n) => Some(*n as f64),
        Avro::Float(x) => Some(f64::from(*x)),
        Avro::Double(x) => Some(*x),
        _ => None,
    }
}

/// The rows of a list or a map column: where each row's items end, and which
/// rows are not NULL.
pub(crate) struct Rows {
    offsets: Vec<i32>,
    valid: Vec<bool>,
}

impl Rows {
    fn with_capacity(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Rows {
            offsets,
            valid: Vec::with_capacity(rows),
        }
    }

    /// Ends one row: `items` more items, or NULL.
    fn end(&mut self, items: Option<usize>) {
        let end = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(end + items.unwrap_or(0) as i32);
        self.valid.push(items.is_some());
    }

    /// The rows so far as Arrow offsets and validity; empty again afterwards.
    fn take(&mut self) -> (OffsetBuffer<i32>, Option<NullBuffer>) {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let valid = std::mem::take(&mut self.valid);
        (
            OffsetBuffer::new(offsets.into()),
            Some(NullBuffer::from(valid)),
        )
    }
}

/// Named columns under construction: a record batch to be.
pub(crate) struct BatchBuilder {
    columns: Vec<(String, ColumnBuilder)>,
}

impl BatchBuilder {
    pub(crate) fn new(columns: Vec<(String, ColumnBuilder)>) -> Self {
        BatchBuilder { columns }
    }

    /// The column at `index` (in the order given to [`BatchBuilder::new`]).
    pub(crate) fn column(&mut self, index: usize) -> &mut ColumnBuilder {
        &mut self.columns[index].1
    }

    /// The names of the columns, in order.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The rows so far as one record batch.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = self
            .columns
            .iter_mut()
            .map(|(name, column)| column.finish(name))
            .unzip();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
    }
}

#[cfg(test)]
mod tests;
