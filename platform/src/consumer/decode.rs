//! Records into events: the envelope from the headers, the payload from Avro; and
//! records back from the consumer's own tables (`held_events`, `dead_letters`).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use super::ConsumedEvent;
use crate::avro::{AvroError, SchemaCatalog};
use crate::broker::Record;
use crate::store::{InvalidValue, Metadata, StreamId, StreamVersion};

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
    /// The record's key, the stream id, is not one (empty, too long, control
    /// characters).
    #[error("record key: {0}")]
    Key(InvalidValue),
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
        stream_id: StreamId::new(record.key.clone()).map_err(DecodeError::Key)?,
        stream_type: header("stream_type")?.to_owned(),
        stream_version: StreamVersion::new(number("stream_version")?)
            .map_err(|e| bad("stream_version", &e))?,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests report failures by panicking")]

    use super::*;
    use crate::avro::SchemaSource;

    const COUNTED: &str = r#"{"type": "record", "name": "Counted", "namespace": "io.sluice.test",
      "fields": [{"name": "n", "type": "long"}]}"#;

    /// A record of `Counted {n: 7}` with key `key` at stream version `version`.
    fn record(catalog: &SchemaCatalog, key: &str, version: &str) -> Record {
        let headers = [
            ("event_id", "0193e2a4-7c1e-7d3a-9f00-000000000001"),
            ("stream_type", "counter"),
            ("stream_version", version),
            ("global_position", "1"),
            ("recorded_at", "2026-12-04T05:00:00Z"),
        ];
        Record {
            topic: "counts.events".into(),
            partition: 0,
            offset: 0,
            key: key.into(),
            payload: catalog
                .encode_single_object("Counted", 1, &serde_json::json!({"n": 7}))
                .unwrap(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    fn catalog() -> SchemaCatalog {
        SchemaCatalog::new([SchemaSource::owned("Counted", 1, COUNTED)]).unwrap()
    }

    #[test]
    fn a_record_decodes_into_a_typed_stream_and_version() {
        let catalog = catalog();
        let event = decode(&catalog, &record(&catalog, "counter-1", "3")).unwrap();
        assert_eq!(event.stream_id.as_str(), "counter-1");
        assert_eq!(event.stream_version.get(), 3);
        assert_eq!(event.payload, serde_json::json!({"n": 7}));
    }

    #[test]
    fn a_key_that_is_no_stream_id_or_a_version_below_one_is_undecodable() {
        let catalog = catalog();
        let empty_key = decode(&catalog, &record(&catalog, "", "1")).unwrap_err();
        assert!(matches!(empty_key, DecodeError::Key(_)), "{empty_key:?}");
        assert_eq!(
            empty_key.to_string(),
            "record key: invalid stream id \"\": must be 1 to 200 bytes without control characters"
        );
        let control = decode(&catalog, &record(&catalog, "a\nb", "1")).unwrap_err();
        assert!(matches!(control, DecodeError::Key(_)), "{control:?}");
        let zero = decode(&catalog, &record(&catalog, "counter-1", "0")).unwrap_err();
        assert_eq!(
            zero.to_string(),
            "header `stream_version`: stream versions start at 1, got 0"
        );
    }
}
