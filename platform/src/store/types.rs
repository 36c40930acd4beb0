//! The event envelope's types: what a stream, a version, an event and its metadata
//! are. Invalid values cannot be constructed.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::validated_newtype;

/// Rejected identifiers and versions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// A stream id is empty, longer than 200 bytes or holds control characters.
    #[error("invalid stream id {0:?}: must be 1 to 200 bytes without control characters")]
    StreamId(String),
    /// A stream version is below 1.
    #[error("stream versions start at 1, got {0}")]
    StreamVersion(i64),
    /// An idempotency key is empty, longer than 200 bytes or not printable ASCII.
    #[error("invalid idempotency key: must be 1 to 200 printable ASCII characters")]
    IdempotencyKey,
}

/// Identifies one stream (one aggregate instance) within a store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    pub const MAX_LEN: usize = 200;

    pub fn new(id: impl Into<String>) -> Result<Self, InvalidValue> {
        let id = id.into();
        if id.is_empty() || id.len() > Self::MAX_LEN || id.chars().any(char::is_control) {
            return Err(InvalidValue::StreamId(id));
        }
        Ok(StreamId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Uuid> for StreamId {
    fn from(id: Uuid) -> Self {
        StreamId(id.to_string())
    }
}

validated_newtype!(StreamId(String), InvalidValue);

/// The 1-based position of an event within its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct StreamVersion(i64);

impl StreamVersion {
    pub const FIRST: StreamVersion = StreamVersion(1);

    pub fn new(v: i64) -> Result<Self, InvalidValue> {
        if v < 1 {
            return Err(InvalidValue::StreamVersion(v));
        }
        Ok(StreamVersion(v))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn next(self) -> Self {
        StreamVersion(self.0 + 1)
    }
}

validated_newtype!(StreamVersion(i64), InvalidValue);

/// The position of an event in its store's log (per store, not global to the
/// platform); increases with every append but may have holes (rolled-back appends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GlobalPosition(pub(crate) i64);

impl GlobalPosition {
    /// The position as stored (`events.global_position`).
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A UUIDv7 event id: unique, and sortable by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub(crate) Uuid);

impl EventId {
    /// A new id: a UUIDv7 of now.
    pub fn new() -> Self {
        EventId(Uuid::now_v7())
    }

    /// The id as a UUID.
    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The version an append expects its stream to be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version.
    Exact(StreamVersion),
}

impl ExpectedVersion {
    /// Whether a stream currently at `current` (`None`: no stream) satisfies this.
    pub fn admits(self, current: Option<StreamVersion>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::Exact(v) => current == Some(v),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// A client-chosen key that makes a command safe to retry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidValue> {
        let key = key.into();
        if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(InvalidValue::IdempotencyKey);
        }
        Ok(IdempotencyKey(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who and what caused an event; stored with it and carried to Kafka headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Shared by every event that descends from one original command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event (or command) that directly caused this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// W3C trace context of the request that appended the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The user or component that issued the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// An event to append: its type, schema version and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
}

/// An event as stored: the full envelope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    pub event_id: EventId,
    pub stream_id: StreamId,
    pub stream_type: String,
    pub stream_version: StreamVersion,
    pub global_position: GlobalPosition,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

/// What an append wrote: the answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    pub stream_id: StreamId,
    /// The stream's version after the append.
    pub stream_version: StreamVersion,
    pub event_ids: Vec<EventId>,
    /// Position of the last appended event in this store.
    pub global_position: GlobalPosition,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_reject_empty_long_and_control_characters() {
        assert!(StreamId::new("").is_err());
        assert!(StreamId::new("a".repeat(201)).is_err());
        assert!(StreamId::new("a\nb").is_err());
        assert!(StreamId::new("order-1").is_ok());
    }

    #[test]
    fn versions_start_at_one() {
        assert!(StreamVersion::new(0).is_err());
        assert_eq!(StreamVersion::new(1).unwrap(), StreamVersion::FIRST);
    }

    #[test]
    fn expected_version_admits() {
        let v2 = StreamVersion::new(2).unwrap();
        assert!(ExpectedVersion::Any.admits(None));
        assert!(ExpectedVersion::NoStream.admits(None));
        assert!(!ExpectedVersion::NoStream.admits(Some(v2)));
        assert!(ExpectedVersion::Exact(v2).admits(Some(v2)));
        assert!(!ExpectedVersion::Exact(v2).admits(Some(StreamVersion::FIRST)));
        assert!(!ExpectedVersion::Exact(v2).admits(None));
    }

    #[test]
    fn idempotency_keys_are_printable_ascii() {
        assert!(IdempotencyKey::new("retry-1").is_ok());
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new("é").is_err());
    }
}
