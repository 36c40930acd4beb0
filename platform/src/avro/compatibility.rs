//! The compatibility rule of the event contracts: for every event type, the latest
//! schema version reads data written with every older version (backward
//! compatibility, transitively), and versions are numbered 1, 2, …, N.
//!
//! Events stay on the topics (and in the stores) for good, so a consumer on the
//! newest schema must be able to read everything ever published.

use std::fmt;

use apache_avro::error::CompatibilityError;
use apache_avro::schema::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

use super::json::kind;
use super::SchemaCatalog;

/// A breach of the compatibility rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incompatibility {
    /// The latest version cannot read data written with an older one: consumers on
    /// the new schema would fail on events already published.
    CannotRead {
        event_type: String,
        reader_version: i32,
        writer_version: i32,
        reason: String,
    },
    /// The versions are not 1, 2, …, N: one was skipped or the first is not 1.
    NotContiguous {
        event_type: String,
        versions: Vec<i32>,
    },
}

impl Incompatibility {
    /// The event type whose schemas breach the rule.
    pub fn event_type(&self) -> &str {
        match self {
            Incompatibility::CannotRead { event_type, .. }
            | Incompatibility::NotContiguous { event_type, .. } => event_type,
        }
    }
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incompatibility::CannotRead {
                event_type,
                reader_version,
                writer_version,
                reason,
            } => write!(
                f,
                "{event_type} v{reader_version} cannot read data written with v{writer_version}: {reason}"
            ),
            Incompatibility::NotContiguous {
                event_type,
                versions,
            } => write!(
                f,
                "{event_type} has versions {}; they must be 1, 2, …, N without gaps",
                versions
                    .iter()
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Every breach of the compatibility rule in `catalog`; empty when all is well.
pub fn check_compatibility(catalog: &SchemaCatalog) -> Vec<Incompatibility> {
    let mut found = Vec::new();
    for event_type in catalog.event_types() {
        let versions = catalog.versions(event_type);
        if !versions.iter().copied().eq(1..=versions.len() as i32) {
            found.push(Incompatibility::NotContiguous {
                event_type: event_type.to_owned(),
                versions: versions.clone(),
            });
        }
        let Some((latest, reader)) = catalog.latest(event_type) else {
            continue;
        };
        for &version in versions.iter().filter(|v| **v != latest) {
            let Some(writer) = catalog.schema(event_type, version) else {
                continue;
            };
            if let Err(e) = SchemaCompatibility::can_read(writer, reader) {
                found.push(Incompatibility::CannotRead {
                    event_type: event_type.to_owned(),
                    reader_version: latest,
                    writer_version: version,
                    reason: explain(&e, writer, reader),
                });
            }
        }
    }
    found
}

/// `apache-avro`'s reasons, without the schemas' debug dumps some of them carry.
fn explain(error: &CompatibilityError, writer: &Schema, reader: &Schema) -> String {
    match error {
        CompatibilityError::FieldTypeMismatch(field, inner) => {
            let types = match (field_schema(writer, field), field_schema(reader, field)) {
                (Some(w), Some(r)) => format!(" (written as {}, read as {})", kind(w), kind(r)),
                _ => String::new(),
            };
            let inner = match inner.as_ref() {
                CompatibilityError::WrongType { .. } | CompatibilityError::TypeExpected { .. } => {
                    "its type changed to one that cannot read the old one".to_owned()
                }
                nested => explain(nested, writer, reader),
            };
            format!("field `{field}`{types}: {inner}")
        }
        CompatibilityError::MissingDefaultValue(field) => format!(
            "field `{field}` is new and has no default, so events written before it cannot \
             fill it; give it a default (an optional field: [\"null\", T] with \"default\": null)"
        ),
        CompatibilityError::WrongType { .. } | CompatibilityError::TypeExpected { .. } => {
            format!(
                "the type changed from {} to {}, which cannot read it",
                kind(writer),
                kind(reader)
            )
        }
        other => other.to_string(),
    }
}

fn field_schema<'a>(record: &'a Schema, field: &str) -> Option<&'a Schema> {
    match record {
        Schema::Record(r) => r.lookup.get(field).map(|i| &r.fields[*i].schema),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SchemaCatalog, SchemaSource};
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Thing","namespace":"io.sluice.test","doc":"t",
        "fields":[{"name":"id","type":{"type":"string","logicalType":"uuid"},"doc":"i"},
                  {"name":"count","type":"int","doc":"c"}]}"#;

    fn v2(extra_fields: &str, count_type: &str) -> String {
        format!(
            r#"{{"type":"record","name":"Thing","namespace":"io.sluice.test","doc":"t",
            "fields":[{{"name":"id","type":{{"type":"string","logicalType":"uuid"}},"doc":"i"}},
                      {{"name":"count","type":{count_type},"doc":"c"}}{extra_fields}]}}"#
        )
    }

    fn check(sources: Vec<(i32, String)>) -> Vec<Incompatibility> {
        let catalog = SchemaCatalog::new(
            sources
                .into_iter()
                .map(|(version, text)| SchemaSource::owned("Thing", version, text)),
        )
        .unwrap();
        check_compatibility(&catalog)
    }

    #[test]
    fn a_new_optional_field_with_a_default_is_compatible() {
        let v2 = v2(
            r#",{"name":"note","type":["null","string"],"default":null,"doc":"n"}"#,
            r#""int""#,
        );
        assert_eq!(check(vec![(1, V1.to_owned()), (2, v2)]), vec![]);
    }

    #[test]
    fn promoting_int_to_long_is_compatible() {
        assert_eq!(
            check(vec![(1, V1.to_owned()), (2, v2("", r#""long""#))]),
            vec![]
        );
    }

    #[test]
    fn a_new_required_field_without_default_is_reported() {
        let v2 = v2(r#",{"name":"note","type":"string","doc":"n"}"#, r#""int""#);
        let found = check(vec![(1, V1.to_owned()), (2, v2)]);
        let [Incompatibility::CannotRead {
            reader_version: 2,
            writer_version: 1,
            reason,
            ..
        }] = found.as_slice()
        else {
            panic!("{found:?}")
        };
        assert!(
            reason.contains("`note`") && reason.contains("default"),
            "{reason}"
        );
    }

    #[test]
    fn changing_a_field_type_incompatibly_is_reported() {
        let found = check(vec![(1, V1.to_owned()), (2, v2("", r#""string""#))]);
        assert_eq!(found.len(), 1, "{found:?}");
        let message = found[0].to_string();
        assert!(
            message.starts_with("Thing v2 cannot read data written with v1: field `count`"),
            "{message}"
        );
        assert!(
            message.contains("written as int, read as string"),
            "{message}"
        );
    }

    #[test]
    fn the_latest_version_must_read_every_older_one_not_only_its_predecessor() {
        // v2 dropped `count` (fine), v3 brings it back as a string: v3 reads v2 but not v1.
        let v2 = r#"{"type":"record","name":"Thing","namespace":"io.sluice.test","doc":"t",
            "fields":[{"name":"id","type":{"type":"string","logicalType":"uuid"},"doc":"i"}]}"#;
        let v3 = v2_with_default_string_count();
        let found = check(vec![(1, V1.to_owned()), (2, v2.to_owned()), (3, v3)]);
        assert!(
            matches!(
                found.as_slice(),
                [Incompatibility::CannotRead {
                    reader_version: 3,
                    writer_version: 1,
                    ..
                }]
            ),
            "{found:?}"
        );
    }

    fn v2_with_default_string_count() -> String {
        v2("", r#""string","default":"none""#)
    }

    #[test]
    fn versions_with_a_gap_are_reported() {
        let v3 = v2(
            r#",{"name":"note","type":["null","string"],"default":null,"doc":"n"}"#,
            r#""int""#,
        );
        let found = check(vec![(1, V1.to_owned()), (3, v3)]);
        assert_eq!(
            found,
            vec![Incompatibility::NotContiguous {
                event_type: "Thing".into(),
                versions: vec![1, 3]
            }]
        );
    }
}
