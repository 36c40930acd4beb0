//! From Avro schemas to the typed tables: one table per event type, one column per
//! Avro field, over the union of every version of that event type.
//!
//! | Avro | DuckDB |
//! |---|---|
//! | `boolean`, `int`, `long`, `float`, `double`, `string` | `BOOLEAN`, `INTEGER`, `BIGINT`, `FLOAT`, `DOUBLE`, `VARCHAR` |
//! | `bytes`, `fixed` | `BLOB` |
//! | `uuid` | `UUID` |
//! | `enum` | `VARCHAR` (a new symbol never needs a DDL change) |
//! | `record` | `STRUCT(...)` |
//! | `array` / `map` | `T[]` / `MAP(VARCHAR, T)` |
//! | `["null", T]` | `T`, nullable |
//! | other unions | `JSON` |
//! | `date`, `time-*`, `timestamp-*`, `local-timestamp-*` | `DATE`, `TIME`, `TIMESTAMPTZ`, `TIMESTAMP` |
//! | `decimal(p, s)` | `DECIMAL(p, s)` (p ≤ 38; `VARCHAR` beyond) |
//!
//! Every column also has a [`Kind`]: the loader builds an Arrow column of that kind
//! from each decoded payload ([`super::columns`]), with NULL for a value it cannot
//! convert rather than failing the batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use apache_avro::schema::{Name, ResolvedSchema, Schema};
use sluice_platform::avro::SchemaCatalog;

/// The envelope columns every typed table starts with, in order.
///
/// No primary key: the loader drops what is already loaded before it appends (see
/// [`super::loader`]), so an index never grows with the table.
pub(crate) const ENVELOPE_COLUMNS: [(&str, &str); 10] = [
    ("event_id", "UUID NOT NULL"),
    ("stream_id", "VARCHAR NOT NULL"),
    ("stream_version", "BIGINT"),
    ("recorded_at", "TIMESTAMPTZ"),
    ("correlation_id", "UUID"),
    ("causation_id", "UUID"),
    ("schema_version", "INTEGER NOT NULL"),
    ("topic", "VARCHAR NOT NULL"),
    ("partition", "INTEGER NOT NULL"),
    ("kafka_offset", "BIGINT NOT NULL"),
];

/// Tables of the sink itself: an event type whose table name would be one of
/// these is refused.
const RESERVED_TABLES: [&str; 3] = ["raw_events", "sluice_positions", "sluice_watermarks"];

/// Why an event type cannot have a typed table.
#[derive(Debug, thiserror::Error)]
pub enum TypedTableError {
    /// Its table would be one of the sink's own.
    #[error("event type {event_type} would be loaded into `{table}`, a table of the sink itself")]
    Reserved { event_type: String, table: String },
    /// Two event types map to one table name (`OrderPlaced` and `Order_Placed`).
    #[error("event types {first} and {second} would share the table `{table}`")]
    Shared {
        first: String,
        second: String,
        table: String,
    },
    /// A version's schema names a type it does not define.
    #[error("{event_type} v{version}: {source}")]
    Schema {
        event_type: String,
        version: i32,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

/// One event type's typed table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypedTable {
    pub event_type: String,
    /// `OrderPlaced` → `order_placed`.
    pub name: String,
    /// Payload columns, in field order of the latest version, then fields only
    /// older versions have.
    pub columns: Vec<PayloadColumn>,
}

/// One Avro field as a column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PayloadColumn {
    /// The Avro field name (the key in the JSON payload).
    pub field: String,
    /// The column name: the field name, prefixed with `payload_` when it would
    /// clash with an envelope column.
    pub column: String,
    /// The DuckDB type.
    pub sql_type: String,
    /// What the column holds, to build it from a payload.
    pub kind: Kind,
}

/// The shape of a column, as the loader builds it from a JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Boolean,
    Integer,
    BigInt,
    Float,
    Double,
    Varchar,
    Uuid,
    /// Any JSON value, kept as its text.
    Json,
    /// A type a payload of the catalog never holds (the catalog refuses schemas
    /// without a JSON mapping): always NULL.
    Absent(String),
    List(Box<Kind>),
    /// Fields by name, in schema order.
    Struct(Vec<(String, Kind)>),
    /// String keys.
    Map(Box<Kind>),
}

impl Kind {
    /// The DuckDB type of the column.
    pub(crate) fn sql_type(&self) -> String {
        match self {
            Kind::Boolean => "BOOLEAN".to_owned(),
            Kind::Integer => "INTEGER".to_owned(),
            Kind::BigInt => "BIGINT".to_owned(),
            Kind::Float => "FLOAT".to_owned(),
            Kind::Double => "DOUBLE".to_owned(),
            Kind::Varchar => "VARCHAR".to_owned(),
            Kind::Uuid => "UUID".to_owned(),
            Kind::Json => "JSON".to_owned(),
            Kind::Absent(sql) => sql.clone(),
            Kind::List(item) => format!("{}[]", item.sql_type()),
            Kind::Struct(fields) => format!(
                "STRUCT({})",
                fields
                    .iter()
                    .map(|(name, kind)| format!("{} {}", quote_ident(name), kind.sql_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Kind::Map(value) => format!("MAP(VARCHAR, {})", value.sql_type()),
        }
    }
}

impl TypedTable {
    /// The table of `event_type` over every version the catalog holds.
    pub(crate) fn for_event_type(
        catalog: &SchemaCatalog,
        event_type: &str,
    ) -> Result<Self, TypedTableError> {
        let name = table_name(event_type);
        if RESERVED_TABLES.contains(&name.as_str()) {
            return Err(TypedTableError::Reserved {
                event_type: event_type.to_owned(),
                table: name,
            });
        }
        let mut columns: Vec<PayloadColumn> = Vec::new();
        let mut seen = HashSet::new();
        // Newest first: a field's type is the one of the newest version that has it
        // (the reader schema, which reads every older datum).
        for version in catalog.versions(event_type).into_iter().rev() {
            let Some(schema) = catalog.schema(event_type, version) else {
                continue;
            };
            let Schema::Record(record) = schema else {
                continue;
            };
            let names: HashMap<Name, Schema> = ResolvedSchema::try_from(schema)
                .map_err(|e| TypedTableError::Schema {
                    event_type: event_type.to_owned(),
                    version,
                    source: Box::new(e),
                })?
                .get_names()
                .iter()
                .map(|(n, s)| (n.clone(), (*s).clone()))
                .collect();
            let mut mapper = Mapper {
                names: &names,
                visiting: Vec::new(),
            };
            for field in &record.fields {
                if !seen.insert(field.name.to_lowercase()) {
                    continue;
                }
                let kind = mapper.map(&field.schema);
                let column = if ENVELOPE_COLUMNS
                    .iter()
                    .any(|(c, _)| c.eq_ignore_ascii_case(&field.name))
                {
                    format!("payload_{}", field.name)
                } else {
                    field.name.clone()
                };
                columns.push(PayloadColumn {
                    field: field.name.clone(),
                    column,
                    sql_type: kind.sql_type(),
                    kind,
                });
            }
        }
        Ok(TypedTable {
            event_type: event_type.to_owned(),
            name,
            columns,
        })
    }
}

/// Every event type's typed table, by event type.
pub(crate) fn typed_tables(
    catalog: &SchemaCatalog,
) -> Result<BTreeMap<String, TypedTable>, TypedTableError> {
    let mut tables = BTreeMap::new();
    let mut by_name: HashMap<String, String> = HashMap::new();
    for event_type in catalog.event_types() {
        let table = TypedTable::for_event_type(catalog, event_type)?;
        if let Some(other) = by_name.insert(table.name.clone(), event_type.to_owned()) {
            return Err(TypedTableError::Shared {
                first: other,
                second: event_type.to_owned(),
                table: table.name,
            });
        }
        tables.insert(event_type.to_owned(), table);
    }
    Ok(tables)
}

/// `OrderPlaced` → `order_placed`, `HTTPRequestSent` → `http_request_sent`.
pub fn table_name(event_type: &str) -> String {
    let chars: Vec<char> = event_type.chars().collect();
    let mut name = String::with_capacity(event_type.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let after_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let before_lower = i > 0
                && chars[i - 1].is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if (after_lower || before_lower) && !name.ends_with('_') {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    name
}

/// A double-quoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

struct Mapper<'a> {
    names: &'a HashMap<Name, Schema>,
    /// Named types being mapped: a reference back to one is recursive and kept
    /// as JSON.
    visiting: Vec<Name>,
}

impl Mapper<'_> {
    /// The kind (and so the DuckDB type) of a schema.
    fn map(&mut self, schema: &Schema) -> Kind {
        let absent = |sql: &str| Kind::Absent(sql.to_owned());
        match schema {
            Schema::Null | Schema::Duration => Kind::Json,
            Schema::Boolean => Kind::Boolean,
            Schema::Int => Kind::Integer,
            Schema::Long => Kind::BigInt,
            Schema::Float => Kind::Float,
            Schema::Double => Kind::Double,
            Schema::Bytes | Schema::Fixed(_) => absent("BLOB"),
            Schema::String | Schema::Enum(_) => Kind::Varchar,
            Schema::Uuid => Kind::Uuid,
            Schema::Date => absent("DATE"),
            Schema::TimeMillis | Schema::TimeMicros => absent("TIME"),
            Schema::TimestampMillis | Schema::TimestampMicros | Schema::TimestampNanos => {
                absent("TIMESTAMPTZ")
            }
            Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => absent("TIMESTAMP"),
            Schema::Decimal(d) if d.precision <= 38 => {
                absent(&format!("DECIMAL({}, {})", d.precision.max(1), d.scale))
            }
            Schema::Decimal(_) | Schema::BigDecimal => absent("VARCHAR"),
            Schema::Array(a) => Kind::List(Box::new(self.map(&a.items))),
            Schema::Map(m) => Kind::Map(Box::new(self.map(&m.types))),
            Schema::Union(u) => {
                let mut branches = u.variants().iter().filter(|v| !matches!(v, Schema::Null));
                match (branches.next(), branches.next()) {
                    (Some(only), None) => self.map(only),
                    _ => Kind::Json,
                }
            }
            Schema::Record(r) => {
                self.visiting.push(r.name.clone());
                let fields: Vec<(String, Kind)> = r
                    .fields
                    .iter()
                    .map(|field| (field.name.clone(), self.map(&field.schema)))
                    .collect();
                self.visiting.pop();
                if fields.is_empty() {
                    return Kind::Json;
                }
                Kind::Struct(fields)
            }
            Schema::Ref { name } => {
                if self.visiting.contains(name) {
                    return Kind::Json;
                }
                match self.names.get(name) {
                    Some(named) => self.map(named),
                    None => Kind::Json,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_platform::avro::SchemaSource;

    #[test]
    fn event_types_become_snake_case_table_names() {
        assert_eq!(table_name("OrderPlaced"), "order_placed");
        assert_eq!(table_name("PaymentRefunded"), "payment_refunded");
        assert_eq!(table_name("HTTPRequestSent"), "http_request_sent");
        assert_eq!(table_name("Order2Placed"), "order2_placed");
    }

    fn catalog(sources: Vec<(&str, i32, &str)>) -> SchemaCatalog {
        SchemaCatalog::new(
            sources
                .into_iter()
                .map(|(t, v, text)| SchemaSource::owned(t, v, text)),
        )
        .expect("catalog")
    }

    /// Each payload column of `table` with its DuckDB type.
    fn column_types(table: &TypedTable) -> Vec<(&str, &str)> {
        table
            .columns
            .iter()
            .map(|c| (c.column.as_str(), c.sql_type.as_str()))
            .collect()
    }

    #[test]
    fn nested_records_arrays_maps_and_optional_fields_map_to_duckdb_types() {
        let catalog = catalog(vec![(
            "Thing",
            1,
            r#"{"type":"record","name":"Thing","fields":[
                {"name":"id","type":{"type":"string","logicalType":"uuid"}},
                {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
                    {"name":"sku","type":"string"},{"name":"quantity","type":"int"}]}}},
                {"name":"tags","type":{"type":"map","values":"long"}},
                {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
                {"name":"note","type":["null","string"],"default":null},
                {"name":"topic","type":"string"},
                {"name":"again","type":"Line"}
            ]}"#,
        )]);
        let table = TypedTable::for_event_type(&catalog, "Thing").expect("table");
        let types = column_types(&table);
        assert_eq!(
            types,
            vec![
                ("id", "UUID"),
                ("lines", "STRUCT(\"sku\" VARCHAR, \"quantity\" INTEGER)[]"),
                ("tags", "MAP(VARCHAR, BIGINT)"),
                ("kind", "VARCHAR"),
                ("note", "VARCHAR"),
                ("payload_topic", "VARCHAR"),
                ("again", "STRUCT(\"sku\" VARCHAR, \"quantity\" INTEGER)"),
            ]
        );
        assert_eq!(
            table.columns[1].kind,
            Kind::List(Box::new(Kind::Struct(vec![
                ("sku".to_owned(), Kind::Varchar),
                ("quantity".to_owned(), Kind::Integer)
            ])))
        );
    }

    #[test]
    fn columns_are_the_union_of_all_versions_with_the_newest_type() {
        let catalog = catalog(vec![
            (
                "Thing",
                1,
                r#"{"type":"record","name":"Thing","fields":[{"name":"n","type":"int"},{"name":"gone","type":"string"}]}"#,
            ),
            (
                "Thing",
                2,
                r#"{"type":"record","name":"Thing","fields":[{"name":"n","type":"long"},{"name":"added","type":["null","string"],"default":null}]}"#,
            ),
        ]);
        let table = TypedTable::for_event_type(&catalog, "Thing").expect("table");
        let types = column_types(&table);
        assert_eq!(
            types,
            vec![("n", "BIGINT"), ("added", "VARCHAR"), ("gone", "VARCHAR")]
        );
    }

    #[test]
    fn a_reserved_or_shared_table_name_is_refused() {
        let thing = |name: &str| {
            format!(r#"{{"type":"record","name":"{name}","fields":[{{"name":"n","type":"int"}}]}}"#)
        };
        let reserved = catalog(vec![("RawEvents", 1, &thing("RawEvents"))]);
        let err = typed_tables(&reserved).unwrap_err();
        assert!(
            matches!(&err, TypedTableError::Reserved { table, .. } if table == "raw_events"),
            "{err}"
        );
        let shared = catalog(vec![
            ("OrderPlaced", 1, &thing("OrderPlaced")),
            ("Order_Placed", 1, &thing("Order_Placed")),
        ]);
        let err = typed_tables(&shared).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event types OrderPlaced and Order_Placed would share the table `order_placed`"
        );
    }
}
