//! The PostgreSQL catalog as drivers and tools read it.
//!
//! psql's `\d` commands, pgJDBC's `DatabaseMetaData`, SQLAlchemy's inspector and
//! the like introspect the server with PostgreSQL's own catalog queries before
//! they run anything. DuckDB ships a `pg_catalog` of its own (`pg_class`,
//! `pg_attribute`, `pg_type`, `format_type`, …), which serves most of them; what
//! it lacks is filled in two ways:
//!
//! - [`COMPAT_SQL`] creates, on every analyst session's connection, temporary
//!   macros for the functions DuckDB does not have (`pg_get_userbyid`,
//!   `pg_encoding_to_char`, `to_regtype`, …) and temporary views named
//!   `sluice_<relation>` for the relations it has not, or has with columns
//!   missing (`pg_policy` and `pg_inherits` are empty; `pg_database` gains
//!   `datdba` and `encoding`);
//! - [`rewrite`] adjusts the parsed statement (DuckDB's `json_serialize_sql`
//!   tree) before it runs: `pg_catalog.f(…)` calls lose the schema (DuckDB reads
//!   `pg_catalog.version()` as `version(pg_catalog)`); `COLLATE
//!   pg_catalog.default` and `OPERATOR(pg_catalog.~)` become plain; casts to
//!   `regclass`, `regtype`, `regnamespace` and `regproc` become look-ups by name
//!   (and back to the name when cast on to text); PostgreSQL's type names
//!   (`int2`, `oid`, `name`, …) become DuckDB's; relations the compatibility
//!   views replace are read from them, keeping the name the query uses; and an
//!   unnamed function column is named as PostgreSQL names it (`count`, not
//!   `count_star()`).
//!
//! The rewrite only renames and reroutes: it cannot turn a query the guard would
//! refuse into one it accepts, and the guard checks the rewritten tree.

use duckdb::Connection;
use serde_json::{json, Map, Value as Json};

/// The PostgreSQL version the endpoint reports, in `server_version` and
/// `version()`: clients pick their dialect by it (SQLAlchemy refuses to connect
/// without one).
pub(crate) const POSTGRES_VERSION: &str = "16.6";

/// Temporary macros and views each analyst session's connection gets.
const COMPAT_SQL: &str = include_str!("../../sql/pg_compat.sql");

/// Creates the compatibility objects on a session's connection (temporary: its
/// own, gone with it).
pub(crate) fn prepare(conn: &Connection) -> duckdb::Result<()> {
    conn.execute_batch(COMPAT_SQL)?;
    conn.execute_batch(&format!(
        "CREATE TEMP MACRO sluice_version() AS 'PostgreSQL {POSTGRES_VERSION} \
         (Sluice analyst endpoint on DuckDB ' || (SELECT library_version FROM pragma_version()) || ')'"
    ))
}

/// Catalog relations read from the compatibility views (`sluice_<name>`).
const REPLACED_RELATIONS: &[&str] = &[
    "pg_attribute",
    "pg_type",
    "pg_constraint",
    "pg_index",
    "pg_class",
    "pg_namespace",
    "pg_database",
    "pg_collation",
    "pg_roles",
    "pg_user",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_inherits",
    "pg_trigger",
    "pg_rewrite",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_extension",
    "pg_matviews",
    "pg_opclass",
    "pg_operator",
];

/// Functions whose DuckDB namesake answers differently (`version()` must name
/// a PostgreSQL version for SQLAlchemy to connect; `pg_get_expr` takes a third,
/// pretty-printing argument; `format_type` says `int4` where PostgreSQL says
/// `integer`): called as `sluice_<name>`.
const REPLACED_FUNCTIONS: &[&str] = &["version", "pg_get_expr", "format_type"];

/// The object-identifier types: a cast to one looks the object up by name.
const REG_TYPES: &[&str] = &["regclass", "regtype", "regnamespace", "regproc"];

/// PostgreSQL's type names DuckDB does not know, and DuckDB's for them.
const TYPE_NAMES: &[(&str, &str)] = &[
    ("oid", "bigint"),
    ("int2", "smallint"),
    ("int4", "integer"),
    ("int8", "bigint"),
    ("float4", "float"),
    ("float8", "double"),
    ("name", "varchar"),
    ("text", "varchar"),
    ("bpchar", "varchar"),
    ("char", "varchar"),
    ("xid", "bigint"),
    ("cstring", "varchar"),
];

/// Rewrites one parsed statement in place (see the module docs); whether
/// anything changed, i.e. whether the statement must be rendered again.
pub(crate) fn rewrite(statement: &mut Json) -> bool {
    let mut changed = name_columns(statement);
    changed |= rewrite_node(statement);
    changed
}

fn rewrite_node(node: &mut Json) -> bool {
    match node {
        Json::Array(items) => items.iter_mut().fold(false, |c, n| rewrite_node(n) | c),
        Json::Object(map) => {
            if let Some(replacement) = replacement(map) {
                *node = replacement;
                // The replacement's own children are rewritten too.
                rewrite_node(node);
                return true;
            }
            let changed = rewrite_in_place(map);
            map.values_mut().fold(changed, |c, n| rewrite_node(n) | c)
        }
        _ => false,
    }
}

fn text<'a>(map: &'a Map<String, Json>, key: &str) -> &'a str {
    map.get(key).and_then(Json::as_str).unwrap_or_default()
}

/// A node that is replaced whole: a `COLLATE` of a PostgreSQL collation (by its
/// child), a cast to an object-identifier type (by a look-up).
fn replacement(map: &Map<String, Json>) -> Option<Json> {
    match text(map, "class") {
        "COLLATE" => {
            let collation = text(map, "collation");
            let postgres = collation.starts_with("pg_catalog.")
                || matches!(collation, "default" | "C" | "POSIX");
            postgres.then(|| map.get("child").cloned()).flatten()
        }
        "CAST" => {
            let target = type_name(map.get("type_expr")?);
            let child = map.get("child")?;
            let alias = map.get("alias").cloned().unwrap_or(json!(""));
            // `x::regclass::text`: the name.
            if matches!(target.as_str(), "text" | "varchar" | "name") {
                let inner = child.as_object()?;
                if text(inner, "class") == "CAST" {
                    let kind = type_name(inner.get("type_expr")?);
                    if REG_TYPES.contains(&kind.as_str()) {
                        return Some(function(
                            &format!("sluice_{kind}_name"),
                            vec![inner.get("child")?.clone()],
                            alias,
                        ));
                    }
                }
                return None;
            }
            REG_TYPES
                .contains(&target.as_str())
                .then(|| function(&format!("sluice_{target}"), vec![child.clone()], alias))
        }
        _ => None,
    }
}

/// Adjusts a node that stays: schema-qualified functions, type names and
/// catalog relations.
fn rewrite_in_place(map: &mut Map<String, Json>) -> bool {
    let mut changed = false;
    if text(map, "class") == "FUNCTION" {
        let schema = text(map, "schema").to_owned();
        let name = text(map, "function_name").to_owned();
        let renamed = match (schema.as_str(), name.as_str()) {
            ("information_schema", "_pg_expandarray") => Some("sluice_pg_expandarray".to_owned()),
            ("pg_catalog" | "", n) if REPLACED_FUNCTIONS.contains(&n) => {
                Some(format!("sluice_{n}"))
            }
            ("pg_catalog", n) => Some(n.to_owned()),
            // PostgreSQL's LIKE escapes with `\` unless told otherwise (psql's
            // completion sends `LIKE 'paid\_%'`); DuckDB's has no escape.
            ("", "~~") => Some("sluice_like".to_owned()),
            ("", "!~~") => Some("sluice_not_like".to_owned()),
            ("", "~~*") => Some("sluice_ilike".to_owned()),
            ("", "!~~*") => Some("sluice_not_ilike".to_owned()),
            _ => None,
        };
        if let Some(renamed) = renamed {
            if renamed.starts_with("sluice_") && renamed.contains("like") {
                map.insert("is_operator".into(), json!(false));
            }
            rename(map, ("schema", "function_name"), &renamed);
            changed = true;
        }
    }
    if text(map, "class") == "TYPE" {
        let name = text(map, "type_name").to_ascii_lowercase();
        let duckdb = TYPE_NAMES
            .iter()
            .find(|(pg, _)| *pg == name)
            .map(|(_, d)| *d);
        if duckdb.is_some() || text(map, "schema") == "pg_catalog" {
            let renamed = duckdb.map_or(name, str::to_owned);
            rename(map, ("schema", "type_name"), &renamed);
            changed = true;
        }
    }
    if text(map, "type") == "BASE_TABLE" {
        let schema = text(map, "schema_name").to_owned();
        let table = text(map, "table_name").to_owned();
        let replaced = REPLACED_RELATIONS.contains(&table.as_str())
            && matches!(schema.as_str(), "pg_catalog" | "")
            && text(map, "catalog_name").is_empty();
        if schema == "pg_catalog" || replaced {
            // `pg_catalog.pg_class.relname` still names the relation.
            if text(map, "alias").is_empty() {
                map.insert("alias".into(), json!(table));
                changed = true;
            }
        }
        if replaced {
            rename(
                map,
                ("schema_name", "table_name"),
                &format!("sluice_{table}"),
            );
            changed = true;
        }
    }
    if text(map, "class") == "COLUMN_REF" {
        // pg_catalog.pg_class.relname → pg_class.relname (the relation's alias).
        if let Some(Json::Array(names)) = map.get_mut("column_names") {
            if names.len() >= 3 && names[0] == "pg_catalog" {
                names.remove(0);
                changed = true;
            }
        }
    }
    changed
}

/// Names the object of a function, type or table node `name`, unqualified: its
/// `schema` and `name` keys (they differ by node kind) and its qualified path.
fn rename(map: &mut Map<String, Json>, (schema, key): (&str, &str), name: &str) {
    map.insert(schema.into(), json!(""));
    map.insert(key.into(), json!(name));
    map.insert("qualified_name".into(), json!({ "path": [name] }));
}

/// The lower-cased name of a `TYPE` node (`int2`, `regclass`, `list`, …).
fn type_name(node: &Json) -> String {
    node.get("type_name")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// A call of `name(arguments)` carrying `alias`.
fn function(name: &str, arguments: Vec<Json>, alias: Json) -> Json {
    json!({
        "class": "FUNCTION",
        "type": "FUNCTION",
        "alias": alias,
        "query_location": u64::MAX,
        "function_name": name,
        "schema": "",
        "catalog": "",
        "filter": null,
        "order_bys": { "type": "ORDER_MODIFIER", "orders": [] },
        "distinct": false,
        "is_operator": false,
        "export_state": false,
        "arguments": arguments
            .into_iter()
            .map(|a| json!({ "name": "", "expression": a }))
            .collect::<Vec<_>>(),
        "qualified_name": { "path": [name] },
        "is_legacy_function_call": false,
    })
}

/// Names the unnamed columns of the statement's outermost select list as
/// PostgreSQL does: a function after itself (`count(*)` is `count`), a `CASE`
/// `case`, and a constant or an operator's result `?column?`.
fn name_columns(statement: &mut Json) -> bool {
    let Some(list) = statement
        .pointer_mut("/node/select_list")
        .and_then(Json::as_array_mut)
    else {
        return false;
    };
    let mut changed = false;
    for column in list {
        let Some(map) = column.as_object_mut() else {
            continue;
        };
        if !text(map, "alias").is_empty() {
            continue;
        }
        let name = match (text(map, "class"), text(map, "function_name")) {
            ("FUNCTION", "count_star") => "count".to_owned(),
            ("FUNCTION", f) if f.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => {
                f.to_owned()
            }
            ("FUNCTION" | "CONSTANT" | "COMPARISON" | "CONJUNCTION" | "OPERATOR", _) => {
                "?column?".to_owned()
            }
            ("CASE", _) => "case".to_owned(),
            _ => continue,
        };
        map.insert("alias".into(), json!(name));
        changed = true;
    }
    changed
}

/// Parameters the statement casts to a type whose PostgreSQL text form DuckDB
/// reads differently: `CAST($1 AS VARCHAR[])` (or `$1::text[]`) takes an
/// array and `CAST($1 AS BLOB)` a bytea. DuckDB's API does not tell a
/// parameter's resolved type, so the statement's own casts are read: the
/// parameter is then described as that type, and a client's `{a,b}` or
/// `\x…` is read as PostgreSQL means it (1-based parameter numbers).
pub(crate) fn parameter_casts(statement: &Json) -> Vec<(usize, pgwire::api::Type)> {
    let mut found = Vec::new();
    collect_casts(statement, &mut found);
    found
}

fn collect_casts(node: &Json, found: &mut Vec<(usize, pgwire::api::Type)>) {
    match node {
        Json::Object(map) => {
            if text(map, "class") == "CAST" {
                let child = &map["child"];
                if child["class"] == "PARAMETER" {
                    let index = child["identifier"].as_str().and_then(|i| i.parse().ok());
                    if let (Some(index), Some(ty)) = (index, cast_type(&map["type_expr"])) {
                        found.push((index, ty));
                    }
                }
            }
            map.values().for_each(|v| collect_casts(v, found));
        }
        Json::Array(items) => items.iter().for_each(|v| collect_casts(v, found)),
        _ => {}
    }
}

/// The PostgreSQL type of a cast's target, for the types `parameter_casts`
/// is about: a list of a scalar type, and a blob.
fn cast_type(ty: &Json) -> Option<pgwire::api::Type> {
    use pgwire::api::Type;
    let name = ty["type_name"].as_str()?.to_ascii_lowercase();
    match name.as_str() {
        "blob" | "bytea" | "binary" | "varbinary" => Some(Type::BYTEA),
        "list" => {
            let element = ty["children"].get(0)?["type_name"]
                .as_str()?
                .to_ascii_lowercase();
            Some(match element.as_str() {
                "boolean" | "bool" => Type::BOOL_ARRAY,
                "smallint" | "int2" | "tinyint" => Type::INT2_ARRAY,
                "integer" | "int" | "int4" => Type::INT4_ARRAY,
                "bigint" | "int8" => Type::INT8_ARRAY,
                "double" | "float8" | "double precision" => Type::FLOAT8_ARRAY,
                "float" | "real" | "float4" => Type::FLOAT4_ARRAY,
                "decimal" | "numeric" => Type::NUMERIC_ARRAY,
                "date" => Type::DATE_ARRAY,
                "timestamp" => Type::TIMESTAMP_ARRAY,
                "timestamptz" | "timestamp with time zone" => Type::TIMESTAMPTZ_ARRAY,
                "uuid" => Type::UUID_ARRAY,
                _ => Type::TEXT_ARRAY,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses, rewrites and renders `sql` on `conn`, as the guard does.
    fn rewritten(conn: &Connection, sql: &str) -> String {
        let serialized: String = conn
            .query_row("SELECT json_serialize_sql($1::VARCHAR)", [sql], |r| {
                r.get(0)
            })
            .unwrap();
        let mut tree: Json = serde_json::from_str(&serialized).unwrap();
        assert!(rewrite(&mut tree["statements"][0]));
        conn.query_row(
            "SELECT json_deserialize_sql($1::JSON)",
            [tree.to_string()],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// An in-memory database with the catalog prepared and `ddl` run on it.
    fn catalog_with(ddl: &str) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        prepare(&conn).unwrap();
        conn.execute_batch(ddl).unwrap();
        conn
    }

    /// The rows of `sql`, two text columns each.
    fn text_pairs(conn: &Connection, sql: &str) -> Vec<(String, String)> {
        let mut statement = conn.prepare(sql).unwrap();
        statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn psql_column_listing_runs_with_postgres_type_names() {
        let conn = catalog_with("CREATE TABLE t (id INTEGER, amount DECIMAL(12,2), name VARCHAR)");
        let sql = rewritten(
            &conn,
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), \
               (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t \
                 WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation \
             FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = (SELECT oid FROM pg_catalog.pg_class WHERE relname = 't') \
               AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        );
        assert!(sql.contains("sluice_format_type"), "{sql}");
        let types = text_pairs(&conn, &sql);
        assert_eq!(
            types,
            [
                ("id", "integer"),
                ("amount", "numeric(12,2)"),
                ("name", "text")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }

    #[test]
    fn column_types_join_pg_type() {
        let conn = catalog_with("CREATE TABLE t (id INTEGER, placed TIMESTAMPTZ, tags VARCHAR[])");
        let sql = rewritten(
            &conn,
            "SELECT a.attname, t.typname FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_type t ON (a.atttypid = t.oid) \
             WHERE a.attrelid = 't'::regclass ORDER BY a.attnum",
        );
        let types = text_pairs(&conn, &sql);
        assert_eq!(types.len(), 3, "{types:?}");
        assert_eq!(types[0], ("id".to_owned(), "int4".to_owned()));
        assert_eq!(types[1], ("placed".to_owned(), "timestamptz".to_owned()));
        assert_eq!(types[2], ("tags".to_owned(), "_text".to_owned()));
    }

    #[test]
    fn regclass_casts_look_up_by_name_and_back() {
        let conn = catalog_with("CREATE TABLE t (id INTEGER)");
        let sql = rewritten(
            &conn,
            "SELECT 't'::regclass::oid, 't'::pg_catalog.regclass::text",
        );
        let (oid, name): (i64, String) = conn
            .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        let expected: i64 = conn
            .query_row(
                "SELECT oid FROM pg_catalog.pg_class WHERE relname = 't'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!((oid, name.as_str()), (expected, "t"));
    }
}
