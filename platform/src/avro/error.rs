//! The typed errors of the Avro module.

use super::Fingerprint;

/// Why a schema, a payload or an encoded event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvroError {
    /// A schema does not parse, is not a record named after its event type, has a
    /// version below 1, or uses a type without a JSON mapping.
    #[error("schema {event_type} v{version} is invalid: {message}")]
    InvalidSchema {
        event_type: String,
        version: i32,
        message: String,
    },
    /// Two sources define the same event type and version.
    #[error("schema {event_type} v{version} is defined twice")]
    DuplicateSchema { event_type: String, version: i32 },
    /// Two schemas have the same canonical form, hence the same fingerprint: a
    /// reader could not tell which one wrote a datum.
    #[error("schemas {first} and {second} are identical once canonical (fingerprint {fingerprint}); a new version must change something")]
    DuplicateFingerprint {
        first: String,
        second: String,
        fingerprint: Fingerprint,
    },
    /// No schema exists for the event type.
    #[error("no schema for event type {event_type}: add schemas/<service>/{event_type}/v1.avsc and list it in the service's `schemas()`")]
    UnknownEventType { event_type: String },
    /// The event type has schemas, but not this version.
    #[error("no schema {event_type} v{version} (known versions: {known:?})")]
    UnknownVersion {
        event_type: String,
        version: i32,
        known: Vec<i32>,
    },
    /// A payload does not match its schema: a required field is missing, a field is
    /// unknown to the schema, or a value has the wrong type or range.
    #[error("payload does not match schema {event_type} v{version}: {message}")]
    PayloadMismatch {
        event_type: String,
        version: i32,
        message: String,
    },
    /// The bytes are shorter than the header or do not start with `C3 01`.
    #[error("not an Avro single-object encoding: {0}")]
    NotSingleObject(String),
    /// The header's fingerprint names no schema of this catalog (written with a
    /// schema this build does not have).
    #[error("no schema has fingerprint {0}: the event was written with a schema this build does not know")]
    UnknownFingerprint(Fingerprint),
    /// The datum does not decode with its writer schema: truncated, corrupt, or with
    /// bytes left over.
    #[error("the datum of {event_type} v{version} is malformed: {message}")]
    MalformedDatum {
        event_type: String,
        version: i32,
        message: String,
    },
}

/// Why a schema's JSON has no Parsing Canonical Form, or uses a type Sluice cannot
/// map to JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A JSON value that is neither a type name, a union (array) nor an object.
    #[error("`{0}` is not a schema")]
    NotASchema(String),
    /// A schema object without its `type` attribute.
    #[error("a schema object without `type`")]
    MissingType,
    /// A named type, array, map or field lacks an attribute it requires.
    #[error("missing attribute `{0}`")]
    MissingAttribute(&'static str),
    /// An attribute has the wrong JSON type (`size` that is no integer, …).
    #[error("{what} must be {expected}")]
    WrongAttribute {
        /// The attribute as the message names it (`` `name` ``, `symbols`, …).
        what: &'static str,
        /// What it must be (`a string`, `an array`, …).
        expected: &'static str,
    },
    /// A type without a JSON mapping (bytes, fixed, decimal, dates, …), with the
    /// fields that lead to it, outermost first.
    #[error(
        "{}{kind} has no JSON mapping in Sluice; use string, long, int, double, boolean, \
         uuid, enum, record, array, map or a union of them",
        .fields.iter().map(|f| format!("field `{f}`: ")).collect::<String>()
    )]
    Unsupported {
        /// The short name of the type (`bytes`, `fixed`, …).
        kind: String,
        /// The record fields on the way to it, outermost first.
        fields: Vec<String>,
    },
}

/// Why a decoded Avro value has no JSON form.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// A float or double that is NaN or infinite.
    #[error("{0} has no JSON form")]
    NotFinite(f64),
    /// A value of a type without a JSON mapping (bytes, fixed, …); schemas that use
    /// one are refused when the catalog is built.
    #[error("a value of type {0} has no JSON mapping")]
    NoMapping(String),
    /// Serialising the value failed (a non-finite number or unmapped type met while
    /// writing JSON text).
    #[error("the value has no JSON text: {0}")]
    Text(#[from] serde_json::Error),
}
