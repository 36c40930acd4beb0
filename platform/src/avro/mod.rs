//! The Avro contracts of events: schemas, the single-object encoding, validation
//! and the compatibility rule.
//!
//! Each service keeps one `.avsc` per event type and version under
//! `schemas/<service>/<EventType>/v<N>.avsc` and embeds them in the binary
//! (`include_str!`), listing them as [`SchemaSource`]s; a [`SchemaCatalog`] is built
//! from those at start-up. The highest version of an event type is its writer
//! schema: new events are validated against it and stored with its number as
//! `schema_version`. Older versions stay, so events stored with them can still be
//! encoded and decoded, and so [`check_compatibility`] can prove the latest reads
//! them all.
//!
//! On the wire an event is the spec's single-object encoding: `C3 01`, the writer
//! schema's CRC-64-AVRO fingerprint (8 bytes, little-endian), then the Avro binary
//! datum. Any Avro library decodes it given the `.avsc`.

mod canonical;
mod compatibility;
mod error;
mod json;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apache_avro::schema::{ResolvedSchema, Schema};
use serde_json::Value;

pub use canonical::{crc64_avro, parsing_canonical_form, Fingerprint};
pub use compatibility::{check_compatibility, Incompatibility};
pub use error::{AvroError, JsonError, SchemaError};

/// The two bytes that open every single-object encoding.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
/// Marker and fingerprint: the bytes before the datum.
pub const SINGLE_OBJECT_HEADER_LEN: usize = 10;

/// One version of one event type's schema, as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaSource {
    /// The event type (`OrderPlaced`); the schema is a record of that name.
    pub event_type: Cow<'static, str>,
    /// 1, 2, …; stored as the event's `schema_version`.
    pub version: i32,
    /// The `.avsc` text.
    pub text: Cow<'static, str>,
}

impl SchemaSource {
    /// A schema embedded in the binary:
    /// `SchemaSource::embedded("OrderPlaced", 1, include_str!("…/OrderPlaced/v1.avsc"))`.
    pub const fn embedded(event_type: &'static str, version: i32, text: &'static str) -> Self {
        SchemaSource {
            event_type: Cow::Borrowed(event_type),
            version,
            text: Cow::Borrowed(text),
        }
    }

    /// A schema read or built at run time.
    pub fn owned(event_type: impl Into<String>, version: i32, text: impl Into<String>) -> Self {
        SchemaSource {
            event_type: Cow::Owned(event_type.into()),
            version,
            text: Cow::Owned(text.into()),
        }
    }
}

/// An event decoded from its single-object encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedEvent {
    pub event_type: String,
    /// The version of the schema that wrote it.
    pub schema_version: i32,
    /// The datum as JSON, in the shape the event store keeps payloads.
    pub payload: Value,
}

/// An event decoded from its single-object encoding, as the Avro value its writer
/// schema gave.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedDatum {
    pub event_type: String,
    /// The version of the schema that wrote it.
    pub schema_version: i32,
    pub value: apache_avro::types::Value,
}

/// The JSON text of a decoded Avro value, in the shape the event store keeps
/// payloads: the text of [`DecodedEvent::payload`] for the same datum, written
/// without building it (object keys in sorted order, as there).
pub fn json_text(value: &apache_avro::types::Value) -> Result<String, JsonError> {
    serde_json::to_string(&json::JsonOf(value)).map_err(JsonError::from)
}

/// The schemas of a set of event types, by event type, version and fingerprint.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct SchemaCatalog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    contracts: BTreeMap<String, BTreeMap<i32, Contract>>,
    by_fingerprint: HashMap<Fingerprint, (String, i32)>,
}

/// One parsed schema version.
#[derive(Debug)]
struct Contract {
    schema: Schema,
    names: json::Names,
    canonical_form: String,
    fingerprint: Fingerprint,
    text: Cow<'static, str>,
    /// Decodes this version's single-object encoding with the schema's names
    /// resolved once (`from_avro_datum` resolves them again on every call).
    reader: DatumReader,
}

/// A prepared single-object reader of one schema version.
struct DatumReader(apache_avro::GenericSingleObjectReader);

impl std::fmt::Debug for DatumReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatumReader")
    }
}

/// The single-object header of a fingerprint, as the catalog writes it.
struct SingleObjectHeader(Fingerprint);

impl apache_avro::headers::HeaderBuilder for SingleObjectHeader {
    fn build_header(&self) -> Vec<u8> {
        let mut header = SINGLE_OBJECT_MARKER.to_vec();
        header.extend_from_slice(&self.0 .0);
        header
    }
}

impl SchemaCatalog {
    /// Parses and indexes `sources`. Fails on the first invalid or duplicate one.
    pub fn new(sources: impl IntoIterator<Item = SchemaSource>) -> Result<Self, AvroError> {
        let mut contracts: BTreeMap<String, BTreeMap<i32, Contract>> = BTreeMap::new();
        let mut by_fingerprint = HashMap::new();
        for source in sources {
            let event_type = source.event_type.into_owned();
            let version = source.version;
            let contract = Contract::parse(&event_type, version, source.text)?;
            let versions = contracts.entry(event_type.clone()).or_default();
            if versions.contains_key(&version) {
                return Err(AvroError::DuplicateSchema {
                    event_type,
                    version,
                });
            }
            if let Some((other, other_version)) =
                by_fingerprint.insert(contract.fingerprint, (event_type.clone(), version))
            {
                return Err(AvroError::DuplicateFingerprint {
                    first: format!("{other} v{other_version}"),
                    second: format!("{event_type} v{version}"),
                    fingerprint: contract.fingerprint,
                });
            }
            versions.insert(version, contract);
        }
        Ok(SchemaCatalog {
            inner: Arc::new(Inner {
                contracts,
                by_fingerprint,
            }),
        })
    }

    /// The event types, in name order.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.inner.contracts.keys().map(String::as_str)
    }

    /// The versions of an event type, ascending (empty when it has none).
    pub fn versions(&self, event_type: &str) -> Vec<i32> {
        self.inner
            .contracts
            .get(event_type)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The writer schema of new events of this type: its highest version.
    pub fn latest(&self, event_type: &str) -> Option<(i32, &Schema)> {
        let (version, contract) = self.inner.contracts.get(event_type)?.last_key_value()?;
        Some((*version, &contract.schema))
    }

    /// One version's schema.
    pub fn schema(&self, event_type: &str, version: i32) -> Option<&Schema> {
        self.contract(event_type, version).ok().map(|c| &c.schema)
    }

    /// One version's `.avsc` text, as written.
    pub fn schema_text(&self, event_type: &str, version: i32) -> Option<&str> {
        self.contract(event_type, version).ok().map(|c| &*c.text)
    }

    /// One version's Parsing Canonical Form (what the fingerprint is taken of).
    pub fn canonical_form(&self, event_type: &str, version: i32) -> Option<&str> {
        self.contract(event_type, version)
            .ok()
            .map(|c| c.canonical_form.as_str())
    }

    /// One version's CRC-64-AVRO fingerprint.
    pub fn fingerprint(&self, event_type: &str, version: i32) -> Option<Fingerprint> {
        self.contract(event_type, version)
            .ok()
            .map(|c| c.fingerprint)
    }

    /// Checks that `payload` is a valid datum of the schema: exactly what
    /// [`encode_single_object`](Self::encode_single_object) would accept.
    pub fn validate(
        &self,
        event_type: &str,
        version: i32,
        payload: &Value,
    ) -> Result<(), AvroError> {
        self.encode_datum(event_type, version, payload).map(drop)
    }

    /// Validates a new event's payload against the latest version of its schema and
    /// returns that version (the event's `schema_version`).
    pub fn validate_latest(&self, event_type: &str, payload: &Value) -> Result<i32, AvroError> {
        let (version, _) = self
            .latest(event_type)
            .ok_or_else(|| AvroError::UnknownEventType {
                event_type: event_type.to_owned(),
            })?;
        self.validate(event_type, version, payload)?;
        Ok(version)
    }

    /// Encodes a payload as `C3 01`, the schema's fingerprint (little-endian), and
    /// the Avro binary datum.
    pub fn encode_single_object(
        &self,
        event_type: &str,
        version: i32,
        payload: &Value,
    ) -> Result<Vec<u8>, AvroError> {
        let (fingerprint, datum) = self.encode_datum(event_type, version, payload)?;
        let mut bytes = Vec::with_capacity(SINGLE_OBJECT_HEADER_LEN + datum.len());
        bytes.extend_from_slice(&SINGLE_OBJECT_MARKER);
        bytes.extend_from_slice(&fingerprint.0);
        bytes.extend_from_slice(&datum);
        Ok(bytes)
    }

    /// Decodes a single-object encoding with the writer schema its fingerprint names.
    pub fn decode_single_object(&self, bytes: &[u8]) -> Result<DecodedEvent, AvroError> {
        let datum = self.decode_single_object_datum(bytes)?;
        let payload = json::to_json(datum.value).map_err(|e| AvroError::MalformedDatum {
            event_type: datum.event_type.clone(),
            version: datum.schema_version,
            message: e.to_string(),
        })?;
        Ok(DecodedEvent {
            event_type: datum.event_type,
            schema_version: datum.schema_version,
            payload,
        })
    }

    /// [`SchemaCatalog::decode_single_object`], keeping the Avro value (for
    /// readers that build their own representation, like the analytics sink; see
    /// [`json_text`] for its JSON).
    pub fn decode_single_object_datum(&self, bytes: &[u8]) -> Result<DecodedDatum, AvroError> {
        if bytes.len() < SINGLE_OBJECT_HEADER_LEN {
            return Err(AvroError::NotSingleObject(format!(
                "{} bytes, shorter than the {SINGLE_OBJECT_HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        let header = &bytes[..SINGLE_OBJECT_HEADER_LEN];
        if header[..2] != SINGLE_OBJECT_MARKER {
            return Err(AvroError::NotSingleObject(format!(
                "starts with {:02X} {:02X}, not C3 01",
                header[0], header[1]
            )));
        }
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&header[2..]);
        let fingerprint = Fingerprint(fingerprint);
        let (event_type, version) = self
            .inner
            .by_fingerprint
            .get(&fingerprint)
            .ok_or(AvroError::UnknownFingerprint(fingerprint))?;
        let malformed = |message: String| AvroError::MalformedDatum {
            event_type: event_type.clone(),
            version: *version,
            message,
        };
        let contract = self.contract(event_type, *version)?;
        // The reader checks the header again and reads the datum after it.
        let mut datum = bytes;
        let value = contract
            .reader
            .0
            .read_value(&mut datum)
            .map_err(|e| malformed(e.to_string()))?;
        if !datum.is_empty() {
            return Err(malformed(format!(
                "{} bytes left over after the datum",
                datum.len()
            )));
        }
        Ok(DecodedDatum {
            event_type: event_type.clone(),
            schema_version: *version,
            value,
        })
    }

    fn encode_datum(
        &self,
        event_type: &str,
        version: i32,
        payload: &Value,
    ) -> Result<(Fingerprint, Vec<u8>), AvroError> {
        let contract = self.contract(event_type, version)?;
        let mismatch = |message: String| AvroError::PayloadMismatch {
            event_type: event_type.to_owned(),
            version,
            message,
        };
        let value = json::to_avro(&contract.schema, &contract.names, payload)
            .map_err(|m| mismatch(m.to_string()))?;
        let datum = apache_avro::to_avro_datum(&contract.schema, value)
            .map_err(|e| mismatch(e.to_string()))?;
        Ok((contract.fingerprint, datum))
    }

    fn contract(&self, event_type: &str, version: i32) -> Result<&Contract, AvroError> {
        let versions =
            self.inner
                .contracts
                .get(event_type)
                .ok_or_else(|| AvroError::UnknownEventType {
                    event_type: event_type.to_owned(),
                })?;
        versions
            .get(&version)
            .ok_or_else(|| AvroError::UnknownVersion {
                event_type: event_type.to_owned(),
                version,
                known: versions.keys().copied().collect(),
            })
    }
}

impl Contract {
    fn parse(event_type: &str, version: i32, text: Cow<'static, str>) -> Result<Self, AvroError> {
        let invalid = |message: String| AvroError::InvalidSchema {
            event_type: event_type.to_owned(),
            version,
            message,
        };
        if version < 1 {
            return Err(invalid("versions start at 1".to_owned()));
        }
        let json: Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let schema = Schema::parse(&json).map_err(|e| invalid(e.to_string()))?;
        match &schema {
            Schema::Record(r) if r.name.name == event_type => {}
            Schema::Record(r) => {
                return Err(invalid(format!(
                    "the record is named `{}`; it must be named after its event type",
                    r.name.name
                )))
            }
            _ => return Err(invalid("an event schema must be a record".to_owned())),
        }
        json::check_supported(&schema).map_err(|e| invalid(e.to_string()))?;
        let names = ResolvedSchema::try_from(&schema)
            .map_err(|e| invalid(e.to_string()))?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        let canonical_form = parsing_canonical_form(&json).map_err(|e| invalid(e.to_string()))?;
        let fingerprint = crc64_avro(canonical_form.as_bytes());
        let reader = apache_avro::GenericSingleObjectReader::new_with_header_builder(
            schema.clone(),
            SingleObjectHeader(fingerprint),
        )
        .map_err(|e| invalid(e.to_string()))?;
        Ok(Contract {
            fingerprint,
            schema,
            names,
            canonical_form,
            text,
            reader: DatumReader(reader),
        })
    }
}

#[cfg(test)]
mod tests;
