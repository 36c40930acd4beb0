//! The Avro spec's Parsing Canonical Form and its CRC-64-AVRO (Rabin) fingerprint.
//!
//! Computed here from the schema's JSON text, not with `apache-avro`: its canonical
//! form of a logical type keeps the stripped primitive as an object
//! (`{"type":"string"}` for a uuid field where the spec, Java and fastavro write
//! `"string"`), which would give our schemas fingerprints no other Avro library
//! computes. The tests pin both functions to the spec's published test vectors.

use std::collections::HashSet;
use std::fmt;

use serde_json::{Map, Value};

use super::SchemaError;

/// The CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form, as the 8 bytes
/// that follow `C3 01` in a single-object encoding (little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 8]);

impl Fingerprint {
    /// The fingerprint as the spec's 64-bit value.
    pub fn value(self) -> u64 {
        u64::from_le_bytes(self.0)
    }
}

impl fmt::Display for Fingerprint {
    /// Hex of the little-endian bytes, as they appear on the wire (and as fastavro
    /// prints them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The spec's `EMPTY` value of the Rabin fingerprint.
const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut bit = 0;
        while bit < 8 {
            fp = (fp >> 1) ^ (EMPTY & 0u64.wrapping_sub(fp & 1));
            bit += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// The spec's 64-bit Rabin fingerprint (CRC-64-AVRO) of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> Fingerprint {
    let fp = bytes.iter().fold(EMPTY, |fp, b| {
        (fp >> 8) ^ TABLE[((fp ^ u64::from(*b)) & 0xff) as usize]
    });
    Fingerprint(fp.to_le_bytes())
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of a schema given as JSON: primitives in their simple
/// form, full names without namespaces, only the attributes that matter for parsing
/// (`name`, `type`, `fields`, `symbols`, `items`, `values`, `size`) in that order,
/// no whitespace; a named type already written appears by its full name.
pub fn parsing_canonical_form(schema: &Value) -> Result<String, SchemaError> {
    let mut out = String::new();
    write_schema(schema, "", &mut HashSet::new(), &mut out)?;
    Ok(out)
}

fn write_schema(
    schema: &Value,
    namespace: &str,
    defined: &mut HashSet<String>,
    out: &mut String,
) -> Result<(), SchemaError> {
    match schema {
        Value::String(name) => {
            write_reference(name, namespace, defined, out);
            Ok(())
        }
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(branch, namespace, defined, out)?;
            }
            out.push(']');
            Ok(())
        }
        Value::Object(object) => write_object(object, namespace, defined, out),
        other => Err(SchemaError::NotASchema(other.to_string())),
    }
}

fn write_object(
    object: &Map<String, Value>,
    namespace: &str,
    defined: &mut HashSet<String>,
    out: &mut String,
) -> Result<(), SchemaError> {
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        // `{"type": <schema>}` is that schema.
        Some(nested) => return write_schema(nested, namespace, defined, out),
        None => return Err(SchemaError::MissingType),
    };
    match kind {
        // Logical types and any other attribute vanish with the [PRIMITIVES] rule.
        _ if PRIMITIVES.contains(&kind) => out.push_str(&quote(kind)),
        "array" => {
            out.push_str("{\"type\":\"array\",\"items\":");
            write_schema(attribute(object, "items")?, namespace, defined, out)?;
            out.push('}');
        }
        "map" => {
            out.push_str("{\"type\":\"map\",\"values\":");
            write_schema(attribute(object, "values")?, namespace, defined, out)?;
            out.push('}');
        }
        "record" | "error" | "enum" | "fixed" => {
            write_named(object, kind, namespace, defined, out)?
        }
        reference => write_reference(reference, namespace, defined, out),
    }
    Ok(())
}

fn write_named(
    object: &Map<String, Value>,
    kind: &str,
    enclosing: &str,
    defined: &mut HashSet<String>,
    out: &mut String,
) -> Result<(), SchemaError> {
    let name = attribute(object, "name")?
        .as_str()
        .ok_or(wrong("`name`", "a string"))?;
    let full = match (name.contains('.'), object.get("namespace")) {
        (true, _) => name.to_owned(),
        (false, Some(Value::String(ns))) => qualify(name, ns),
        (false, _) => qualify(name, enclosing),
    };
    if !defined.insert(full.clone()) {
        out.push_str(&quote(&full));
        return Ok(());
    }
    out.push_str(&format!(
        "{{\"name\":{},\"type\":{}",
        quote(&full),
        quote(kind)
    ));
    let namespace = full.rsplit_once('.').map_or("", |(ns, _)| ns);
    match kind {
        "enum" => {
            let symbols = attribute(object, "symbols")?
                .as_array()
                .ok_or(wrong("`symbols`", "an array"))?
                .iter()
                .map(|s| s.as_str().map(quote).ok_or(wrong("symbols", "strings")))
                .collect::<Result<Vec<_>, _>>()?;
            out.push_str(&format!(",\"symbols\":[{}]", symbols.join(",")));
        }
        "fixed" => {
            // [INTEGERS]: no quotes, no leading zeros.
            let size = match attribute(object, "size")? {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse::<u64>().ok(),
                _ => None,
            }
            .ok_or(wrong("`size`", "a non-negative integer"))?;
            out.push_str(&format!(",\"size\":{size}"));
        }
        _ => {
            out.push_str(",\"fields\":[");
            let fields = attribute(object, "fields")?
                .as_array()
                .ok_or(wrong("`fields`", "an array"))?;
            for (i, field) in fields.iter().enumerate() {
                let field = field.as_object().ok_or(wrong("a field", "an object"))?;
                let field_name = attribute(field, "name")?
                    .as_str()
                    .ok_or(wrong("a field's `name`", "a string"))?;
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{{\"name\":{},\"type\":", quote(field_name)));
                write_schema(attribute(field, "type")?, namespace, defined, out)?;
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
    Ok(())
}

/// A primitive, or a reference to a named type written before (by its full name).
fn write_reference(name: &str, namespace: &str, defined: &HashSet<String>, out: &mut String) {
    let full = if PRIMITIVES.contains(&name) || name.contains('.') {
        name.to_owned()
    } else {
        let qualified = qualify(name, namespace);
        if defined.contains(&qualified) {
            qualified
        } else {
            name.to_owned()
        }
    };
    out.push_str(&quote(&full));
}

fn qualify(name: &str, namespace: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

fn attribute<'a>(
    object: &'a Map<String, Value>,
    key: &'static str,
) -> Result<&'a Value, SchemaError> {
    object.get(key).ok_or(SchemaError::MissingAttribute(key))
}

fn wrong(what: &'static str, expected: &'static str) -> SchemaError {
    SchemaError::WrongAttribute { what, expected }
}

/// A JSON string literal with the [STRINGS] rule: escapes only where JSON requires.
fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors of the Avro project's shared schema tests
    /// (`share/test/data/schema-tests.txt`): input, canonical form, fingerprint as the
    /// signed 64-bit value the file lists (absent where the file gives none).
    const SPEC_VECTORS: &[(&str, &str, Option<i64>)] = &[
        (r#""null""#, r#""null""#, Some(7195948357588979594)),
        (r#"{"type":"null"}"#, r#""null""#, None),
        (r#""boolean""#, r#""boolean""#, Some(-6970731678124411036)),
        (r#""int""#, r#""int""#, Some(8247732601305521295)),
        (r#""long""#, r#""long""#, Some(-3434872931120570953)),
        (r#""float""#, r#""float""#, Some(5583340709985441680)),
        (r#""double""#, r#""double""#, Some(-8181574048448539266)),
        (r#""bytes""#, r#""bytes""#, Some(5746618253357095269)),
        (r#""string""#, r#""string""#, Some(-8142146995180207161)),
        (r#"{"type":"string"}"#, r#""string""#, None),
        (r#"[  ]"#, r#"[]"#, Some(-1241056759729112623)),
        (r#"[ "int"  ]"#, r#"["int"]"#, Some(-5232228896498058493)),
        (
            r#"[ "int" , {"type":"boolean"} ]"#,
            r#"["int","boolean"]"#,
            Some(5392556393470105090),
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo"}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            Some(-4824392279771201922),
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}"#,
            r#"{"name":"x.y.foo","type":"record","fields":[]}"#,
            Some(5916914534497305771),
        ),
        (
            r#"{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}"#,
            r#"{"name":"a.b.foo","type":"record","fields":[]}"#,
            Some(-4616218487480524110),
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            Some(-4824392279771201922),
        ),
        (
            r#"{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}"#,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}"#,
            Some(7843277075252814651),
        ),
        (
            r#"{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":"true"},
                          {"order":"descending","name":"f2","doc":"Hello","type":"int"}],
                "type":"record", "name":"foo" }"#,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}"#,
            Some(-4860222112080293046),
        ),
        (
            r#"{"type":"enum", "name":"foo", "symbols":["A1"]}"#,
            r#"{"name":"foo","type":"enum","symbols":["A1"]}"#,
            Some(-6342190197741309591),
        ),
        (
            r#"{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}"#,
            r#"{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}"#,
            Some(-4448647247586288245),
        ),
        (
            r#"{"name":"foo","type":"fixed","size":15}"#,
            r#"{"name":"foo","type":"fixed","size":15}"#,
            Some(1756455273707447556),
        ),
        (
            r#"{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}"#,
            r#"{"name":"x.y.z.foo","type":"fixed","size":32}"#,
            Some(-3064184465700546786),
        ),
        (
            r#"{ "items":{"type":"null"}, "type":"array"}"#,
            r#"{"type":"array","items":"null"}"#,
            Some(-589620603366471059),
        ),
        (
            r#"{ "values":"string", "type":"map"}"#,
            r#"{"type":"map","values":"string"}"#,
            Some(-8732877298790414990),
        ),
        (
            r#"{"name":"PigValue","type":"record",
                "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}"#,
            r#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
            Some(-1759257747318642341),
        ),
    ];

    #[test]
    fn canonical_forms_and_fingerprints_match_the_spec_test_vectors() {
        for (input, canonical, fingerprint) in SPEC_VECTORS {
            let json: Value = serde_json::from_str(input).unwrap();
            let form = parsing_canonical_form(&json).unwrap();
            assert_eq!(&form, canonical, "{input}");
            if let Some(expected) = fingerprint {
                assert_eq!(
                    crc64_avro(form.as_bytes()).value(),
                    *expected as u64,
                    "{input}"
                );
            }
        }
    }

    #[test]
    fn logical_types_reduce_to_their_primitive_and_nested_names_are_qualified() {
        let schema: Value = serde_json::from_str(
            r#"{"type":"record","name":"R","namespace":"io.x","doc":"d","fields":[
                {"name":"id","type":{"type":"string","logicalType":"uuid"},"doc":"d"},
                {"name":"note","type":["null","string"],"default":null},
                {"name":"a","type":{"type":"array","items":{"type":"record","name":"L","fields":[]}}},
                {"name":"b","type":"L"}]}"#,
        )
        .unwrap();
        assert_eq!(
            parsing_canonical_form(&schema).unwrap(),
            r#"{"name":"io.x.R","type":"record","fields":[{"name":"id","type":"string"},{"name":"note","type":["null","string"]},{"name":"a","type":{"type":"array","items":{"name":"io.x.L","type":"record","fields":[]}}},{"name":"b","type":"io.x.L"}]}"#
        );
    }

    #[test]
    fn fingerprints_agree_with_apache_avro_where_its_canonical_form_is_right() {
        // Without logical types apache-avro's canonical form follows the spec.
        let text = r#"{"type":"record","name":"R","namespace":"io.x","fields":[
            {"name":"n","type":"long"},{"name":"s","type":["null","string"],"default":null},
            {"name":"l","type":{"type":"array","items":{"type":"record","name":"L","fields":[{"name":"q","type":"int"}]}}}]}"#;
        let ours = crc64_avro(
            parsing_canonical_form(&serde_json::from_str(text).unwrap())
                .unwrap()
                .as_bytes(),
        );
        let theirs = apache_avro::Schema::parse_str(text)
            .unwrap()
            .fingerprint::<apache_avro::rabin::Rabin>();
        assert_eq!(ours.0.as_slice(), theirs.bytes.as_slice());
    }
}
