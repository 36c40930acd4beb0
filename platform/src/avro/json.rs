//! Between JSON payloads (as the event store keeps them) and Avro values, guided by
//! the schema.
//!
//! The mapping is strict: a missing field without default, a field the schema does
//! not know, a number out of the type's range or a string that is not a UUID where
//! the schema says `uuid` is a mismatch naming the field's path. Only the Avro types
//! with an obvious JSON form are supported (primitives but `bytes`, `uuid`, records,
//! arrays, maps, enums, unions); a schema using another is refused when the catalog
//! is built, not when an event is encoded.

use std::collections::HashMap;
use std::fmt;

use apache_avro::schema::{Name, RecordSchema, Schema, SchemaKind};
use apache_avro::types::Value as Avro;
use serde_json::Value as Json;

use super::{JsonError, SchemaError};

/// Named types of one schema, by full name (for `Schema::Ref`).
pub(super) type Names = HashMap<Name, Schema>;

/// Where in a payload a mismatch is, and what it is.
#[derive(Debug)]
pub(super) struct Mismatch {
    /// Innermost segment first (pushed while unwinding).
    path: Vec<Segment>,
    message: String,
}

#[derive(Debug)]
enum Segment {
    Field(String),
    Index(usize),
    Key(String),
}

impl Mismatch {
    fn new(message: impl Into<String>) -> Self {
        Mismatch {
            path: Vec::new(),
            message: message.into(),
        }
    }

    fn at(mut self, segment: Segment) -> Self {
        self.path.push(segment);
        self
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            return f.write_str(&self.message);
        }
        let mut path = String::new();
        for segment in self.path.iter().rev() {
            match segment {
                Segment::Field(name) if path.is_empty() => path.push_str(name),
                Segment::Field(name) => path.push_str(&format!(".{name}")),
                Segment::Index(i) => path.push_str(&format!("[{i}]")),
                Segment::Key(k) => path.push_str(&format!("[{k:?}]")),
            }
        }
        write!(f, "`{path}`: {}", self.message)
    }
}

/// A JSON value as an Avro value of `schema`.
pub(super) fn to_avro(schema: &Schema, names: &Names, json: &Json) -> Result<Avro, Mismatch> {
    match schema {
        Schema::Null => match json {
            Json::Null => Ok(Avro::Null),
            other => Err(expected("null", other)),
        },
        Schema::Boolean => json
            .as_bool()
            .map(Avro::Boolean)
            .ok_or_else(|| expected("a boolean", json)),
        Schema::Int => match json.as_i64() {
            Some(n) => i32::try_from(n)
                .map(Avro::Int)
                .map_err(|_| Mismatch::new(format!("{n} is out of the range of an Avro int"))),
            None => Err(expected("an int (a whole number)", json)),
        },
        Schema::Long => json
            .as_i64()
            .map(Avro::Long)
            .ok_or_else(|| expected("a long (a whole number within 64 bits)", json)),
        Schema::Float => json
            .as_f64()
            .filter(|x| x.abs() <= f64::from(f32::MAX))
            .map(|x| Avro::Float(x as f32))
            .ok_or_else(|| expected("a float", json)),
        Schema::Double => json
            .as_f64()
            .map(Avro::Double)
            .ok_or_else(|| expected("a double", json)),
        Schema::String => json
            .as_str()
            .map(|s| Avro::String(s.to_owned()))
            .ok_or_else(|| expected("a string", json)),
        Schema::Uuid => json
            .as_str()
            .and_then(|s| apache_avro::Uuid::parse_str(s).ok())
            .map(Avro::Uuid)
            .ok_or_else(|| expected("a UUID string", json)),
        Schema::Enum(e) => {
            let symbol = json.as_str().ok_or_else(|| expected("a string", json))?;
            e.symbols
                .iter()
                .position(|s| s == symbol)
                .map(|i| Avro::Enum(i as u32, symbol.to_owned()))
                .ok_or_else(|| {
                    Mismatch::new(format!(
                        "`{symbol}` is not one of the symbols {}",
                        e.symbols.join(", ")
                    ))
                })
        }
        Schema::Array(a) => json
            .as_array()
            .ok_or_else(|| expected("an array", json))?
            .iter()
            .enumerate()
            .map(|(i, item)| to_avro(&a.items, names, item).map_err(|m| m.at(Segment::Index(i))))
            .collect::<Result<_, _>>()
            .map(Avro::Array),
        Schema::Map(m) => json
            .as_object()
            .ok_or_else(|| expected("an object", json))?
            .iter()
            .map(|(k, v)| {
                to_avro(&m.types, names, v)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| e.at(Segment::Key(k.clone())))
            })
            .collect::<Result<_, _>>()
            .map(Avro::Map),
        Schema::Union(u) => union(u.variants(), names, json),
        Schema::Record(r) => record(r, names, json),
        Schema::Ref { name } => match names.get(name) {
            Some(schema) => to_avro(schema, names, json),
            None => Err(Mismatch::new(format!(
                "the schema refers to `{}`, which it does not define",
                name.fullname(None)
            ))),
        },
        other => Err(Mismatch::new(format!(
            "the schema type {} has no JSON mapping",
            kind(other)
        ))),
    }
}

fn union(variants: &[Schema], names: &Names, json: &Json) -> Result<Avro, Mismatch> {
    let mut failures = Vec::new();
    for (i, variant) in variants.iter().enumerate() {
        match to_avro(variant, names, json) {
            Ok(value) => return Ok(Avro::Union(i as u32, Box::new(value))),
            Err(e) => failures.push((variant, e)),
        }
    }
    // `["null", T]`: T's own complaint says more than "no branch matched".
    let mut non_null = failures
        .into_iter()
        .filter(|(variant, _)| !matches!(variant, Schema::Null));
    match (non_null.next(), non_null.next()) {
        (Some((_, only)), None) => Err(only),
        _ => Err(Mismatch::new(format!(
            "{} matches none of the union's types ({})",
            describe(json),
            variants.iter().map(kind).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn record(r: &RecordSchema, names: &Names, json: &Json) -> Result<Avro, Mismatch> {
    let object = json
        .as_object()
        .ok_or_else(|| expected(&format!("a {} object", r.name.name), json))?;
    if let Some(unknown) = object.keys().find(|k| !r.lookup.contains_key(*k)) {
        return Err(Mismatch::new(format!(
            "`{unknown}` is not a field of {} (its fields: {})",
            r.name.name,
            r.fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let fields = r
        .fields
        .iter()
        .map(|field| {
            let value = match (object.get(&field.name), &field.default) {
                (Some(value), _) => to_avro(&field.schema, names, value),
                (None, Some(default)) => to_avro(&field.schema, names, default),
                (None, None) => Err(Mismatch::new("the field is required and missing")),
            };
            value
                .map(|v| (field.name.clone(), v))
                .map_err(|m| m.at(Segment::Field(field.name.clone())))
        })
        .collect::<Result<_, _>>()?;
    Ok(Avro::Record(fields))
}

/// An Avro value (decoded with one of the catalog's schemas) as JSON.
pub(super) fn to_json(value: Avro) -> Result<Json, JsonError> {
    Ok(match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => Json::Bool(b),
        Avro::Int(n) => Json::from(n),
        Avro::Long(n) => Json::from(n),
        Avro::Float(x) => finite(f64::from(x))?,
        Avro::Double(x) => finite(x)?,
        Avro::String(s) | Avro::Enum(_, s) => Json::String(s),
        Avro::Uuid(u) => Json::String(u.hyphenated().to_string()),
        Avro::Union(_, inner) => to_json(*inner)?,
        Avro::Array(items) => {
            Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Avro::Map(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(k, v)| to_json(v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        ),
        Avro::Record(fields) => Json::Object(
            fields
                .into_iter()
                .map(|(k, v)| to_json(v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(JsonError::NoMapping(format!("{other:?}"))),
    })
}

/// An Avro value serialised as [`to_json`] would make it, without building the
/// JSON value: records and maps as objects with sorted keys (serde_json's map is
/// ordered by key), UUIDs hyphenated, enums as their symbol.
pub(super) struct JsonOf<'a>(pub &'a Avro);

impl serde::Serialize for JsonOf<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        let float = |x: f64| {
            if x.is_finite() {
                Ok(x)
            } else {
                Err(S::Error::custom(format!("{x} has no JSON form")))
            }
        };
        match self.0 {
            Avro::Null => serializer.serialize_unit(),
            Avro::Boolean(b) => serializer.serialize_bool(*b),
            Avro::Int(n) => serializer.serialize_i32(*n),
            Avro::Long(n) => serializer.serialize_i64(*n),
            Avro::Float(x) => serializer.serialize_f64(float(f64::from(*x))?),
            Avro::Double(x) => serializer.serialize_f64(float(*x)?),
            Avro::String(s) | Avro::Enum(_, s) => serializer.serialize_str(s),
            Avro::Uuid(u) => serializer.serialize_str(&u.hyphenated().to_string()),
            Avro::Union(_, inner) => JsonOf(inner).serialize(serializer),
            Avro::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&JsonOf(item))?;
                }
                seq.end()
            }
            Avro::Map(entries) => {
                let mut sorted: Vec<(&String, &Avro)> = entries.iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut map = serializer.serialize_map(Some(sorted.len()))?;
                for (k, v) in sorted {
                    map.serialize_entry(k, &JsonOf(v))?;
                }
                map.end()
            }
            Avro::Record(fields) => {
                let mut sorted: Vec<&(String, Avro)> = fields.iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                let mut map = serializer.serialize_map(Some(sorted.len()))?;
                for (k, v) in sorted {
                    map.serialize_entry(k, &JsonOf(v))?;
                }
                map.end()
            }
            other => Err(S::Error::custom(format!(
                "a value of type {other:?} has no JSON mapping"
            ))),
        }
    }
}

fn finite(x: f64) -> Result<Json, JsonError> {
    serde_json::Number::from_f64(x)
        .map(Json::Number)
        .ok_or(JsonError::NotFinite(x))
}

/// Refuses schemas that use a type without a JSON mapping, naming where.
pub(super) fn check_supported(schema: &Schema) -> Result<(), SchemaError> {
    match schema {
        Schema::Null
        | Schema::Boolean
        | Schema::Int
        | Schema::Long
        | Schema::Float
        | Schema::Double
        | Schema::String
        | Schema::Uuid
        | Schema::Enum(_)
        | Schema::Ref { .. } => Ok(()),
        Schema::Array(a) => check_supported(&a.items),
        Schema::Map(m) => check_supported(&m.types),
        Schema::Union(u) => u.variants().iter().try_for_each(check_supported),
        Schema::Record(r) => r.fields.iter().try_for_each(|f| {
            check_supported(&f.schema).map_err(|e| match e {
                SchemaError::Unsupported { kind, mut fields } => {
                    fields.insert(0, f.name.clone());
                    SchemaError::Unsupported { kind, fields }
                }
                other => other,
            })
        }),
        other => Err(SchemaError::Unsupported {
            kind: kind(other),
            fields: Vec::new(),
        }),
    }
}

/// A short name of a schema's type for messages (`long`, `uuid`, `record LineItem`).
pub(super) fn kind(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => format!("record {}", r.name.name),
        Schema::Enum(e) => format!("enum {}", e.name.name),
        Schema::Ref { name } => name.name.clone(),
        other => format!("{:?}", SchemaKind::from(other)).to_lowercase(),
    }
}

fn expected(what: &str, got: &Json) -> Mismatch {
    Mismatch::new(format!("expected {what}, got {}", describe(got)))
}

fn describe(json: &Json) -> String {
    let text = json.to_string();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}
