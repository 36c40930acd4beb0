//! A Kafka record as the sink receives it, and its decoding into a row of
//! `raw_events`: the envelope from the headers, the payload from Avro.
//!
//! Decoding never fails a record: whatever cannot be read (an unknown schema
//! fingerprint, corrupt bytes, a missing header) is written down in the row's
//! `decode_error`, the Avro bytes are kept, and the record is loaded like any other.

use chrono::{DateTime, Utc};
use sluice_platform::avro::{json_text, AvroError, SchemaCatalog};
use uuid::Uuid;

/// One record read from a topic, before decoding: the platform's one conversion
/// of a Kafka message ([`sluice_platform::broker::Record`]).
pub use sluice_platform::broker::Record as SinkRecord;

/// A record decoded for loading: one row of `raw_events`, and of its typed table
/// when the payload decoded.
#[derive(Debug, Clone)]
pub(crate) struct Row<'a> {
    pub record: &'a SinkRecord,
    pub event_id: Uuid,
    pub event_type: Option<String>,
    pub schema_version: Option<i32>,
    pub stream_type: Option<&'a str>,
    pub stream_version: Option<i64>,
    pub global_position: Option<i64>,
    pub recorded_at: Option<DateTime<Utc>>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    /// The payload; `None` when it did not decode.
    pub payload: Option<Payload>,
    /// Everything that could not be read, `; `-separated.
    pub decode_error: Option<String>,
    /// The payload failed only because its fingerprint is unknown: a rescan of
    /// the schemas may help.
    pub unknown_fingerprint: bool,
}

/// A decoded payload: the Avro value (for the typed columns) and its JSON text in
/// the event store's shape (for `raw_events.payload`).
#[derive(Debug, Clone)]
pub(crate) struct Payload {
    pub value: apache_avro::types::Value,
    pub json: String,
}

impl Row<'_> {
    /// Whether the row also goes into its event type's typed table.
    pub(crate) fn is_typed(&self) -> bool {
        self.payload.is_some() && self.event_type.is_some() && self.schema_version.is_some()
    }
}

/// Namespace of the stand-in event ids of records without a readable `event_id`
/// header: a UUIDv5 of `topic/partition/offset`, so a reload names it the same.
const STAND_IN_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b1e_5a4d_4c8e_9a0b_51c3_e7d2_0a11);

/// Decodes a record; never fails (see the module docs).
pub(crate) fn decode<'a>(catalog: &SchemaCatalog, record: &'a SinkRecord) -> Row<'a> {
    let mut errors = Vec::new();
    let mut text = |key: &str| -> Option<&'a str> {
        let value = record.header(key);
        if value.is_none() {
            errors.push(format!("header `{key}` missing"));
        }
        value
    };
    let event_id_text = text("event_id");
    let stream_type = text("stream_type");
    let stream_version_text = text("stream_version");
    let global_position_text = text("global_position");
    let recorded_at_text = text("recorded_at");
    let header_event_type = record.header("event_type").map(str::to_owned);
    let header_schema_version = record.header("schema_version").and_then(|v| v.parse().ok());

    let mut parse_error =
        |key: &str, message: String| errors.push(format!("header `{key}`: {message}"));
    let event_id = match event_id_text.map(Uuid::parse_str) {
        Some(Ok(id)) => Some(id),
        Some(Err(e)) => {
            parse_error("event_id", e.to_string());
            None
        }
        None => None,
    };
    let number = |key: &str, value: Option<&str>, errors: &mut dyn FnMut(&str, String)| {
        value.and_then(|v| {
            v.parse::<i64>()
                .map_err(|e| errors(key, e.to_string()))
                .ok()
        })
    };
    let stream_version = number("stream_version", stream_version_text, &mut parse_error);
    let global_position = number("global_position", global_position_text, &mut parse_error);
    let recorded_at = recorded_at_text.and_then(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| parse_error("recorded_at", e.to_string()))
            .ok()
    });
    let optional_uuid = |key: &str| record.header(key).and_then(|v| Uuid::parse_str(v).ok());

    let event_id = event_id.unwrap_or_else(|| {
        errors
            .push("the event id is a stand-in derived from topic, partition and offset".to_owned());
        Uuid::new_v5(
            &STAND_IN_NAMESPACE,
            format!("{}/{}/{}", record.topic, record.partition, record.offset).as_bytes(),
        )
    });
    let decoded = catalog
        .decode_single_object_datum(&record.payload)
        .and_then(|datum| {
            let json = json_text(&datum.value).map_err(|e| AvroError::MalformedDatum {
                event_type: datum.event_type.clone(),
                version: datum.schema_version,
                message: e.to_string(),
            })?;
            Ok((datum, json))
        });
    let (event_type, schema_version, payload, unknown_fingerprint) = match decoded {
        Ok((datum, json)) => (
            Some(datum.event_type),
            Some(datum.schema_version),
            Some(Payload {
                value: datum.value,
                json,
            }),
            false,
        ),
        Err(error) => {
            let unknown = matches!(error, AvroError::UnknownFingerprint(_));
            errors.push(error.to_string());
            (header_event_type, header_schema_version, None, unknown)
        }
    };
    Row {
        record,
        event_id,
        event_type,
        schema_version,
        stream_type,
        stream_version,
        global_position,
        recorded_at,
        correlation_id: optional_uuid("correlation_id"),
        causation_id: optional_uuid("causation_id"),
        payload,
        decode_error: (!errors.is_empty()).then(|| errors.join("; ")),
        unknown_fingerprint,
    }
}
