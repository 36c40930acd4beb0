//! Records into events: the envelope from the headers, the payload from Avro; and
//! records back from the consumer's own tables (`held_events`, `dead_letters`).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use super::ConsumedEvent;
use crate::avro::{AvroError, SchemaCatalog};
use crate::broker::Record;
use crate::store::Metadata;

/// Why a record is not an event this consumer can read: dead-lettered at once, and
/// decoded anew by `sluice dlq replay`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// An envelope header every event carries is missing.
    #[error("header `{0}` missing")]
    MissingHeader(&'static str),
    /// An envelope header is not of its type (a number, a UUID, a timestamp).
    #[error("header `{header}`: {reason}")]
    BadHeader {
        header: &'static str,
        reason: String,
    },
    /// The value is not a single-object encoding of a schema in the catalog (an
    /// unknown fingerprint: a newer producer; or corrupt bytes).
    #[error(transparent)]
    Payload(#[from] AvroError),
}

/// The event `record` carries.
pub(super) fn decode(
    catalog: &SchemaCatalog,
    record: &Record,
) -> Result<ConsumedEvent, DecodeError> {
    let header = |k: &'static str| record.header(k).ok_or(DecodeError::MissingHeader(k));
    let bad = |header: &'static str, e: &dyn std::fmt::Display| DecodeError::BadHeader {
        header,
        reason: e.to_string(),
    };
    let number = |k: &'static str| -> Result<i64, DecodeError> {
        header(k)?.parse().map_err(|e| bad(k, &e))
    };
    let optional_uuid = |k: &str| record.header(k).and_then(|v| Uuid::parse_str(v).ok());
    let decoded = catalog.decode_single_object(&record.payload)?;
    Ok(ConsumedEvent {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        event_id: Uuid::parse_str(header("event_id")?).map_err(|e| bad("event_id", &e))?,
        event_type: decoded.event_type,
        schema_version: decoded.schema_version,
        stream_id: record.key.clone(),
        stream_type: header("stream_type")?.to_owned(),
        stream_version: number("stream_version")?,
        global_position: number("global_position")?,
        payload: decoded.payload,
        metadata: Metadata {
            correlation_id: optional_uuid("correlation_id"),
            causation_id: optional_uuid("causation_id"),
            traceparent: record.header("traceparent").map(str::to_owned),
            actor: record.header("actor").map(str::to_owned),
        },
        recorded_at: DateTime::parse_from_rfc3339(header("recorded_at")?)
            .map_err(|e| bad("recorded_at", &e))?
            .with_timezone(&Utc),
    })
}

/// A record as `held_events` and `dead_letters` keep it, from a row whose first six
/// columns are `topic, partition, kafka_offset, stream_id, headers, payload_bytes`.
pub(super) fn stored_record(row: &PgRow) -> Result<Record, sqlx::Error> {
    let headers: serde_json::Value = row.try_get(4)?;
    Ok(Record {
        topic: row.try_get(0)?,
        partition: row.try_get(1)?,
        offset: row.try_get(2)?,
        key: row.try_get(3)?,
        payload: row.try_get(5)?,
        headers: serde_json::from_value(headers).unwrap_or_default(),
    })
}
