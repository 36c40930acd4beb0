//! The sink's typed tables in DuckDB: created or extended for a catalog, and the
//! stream versions already loaded, read back at start.

use std::collections::{BTreeMap, HashMap};

use duckdb::Connection;
use sluice_platform::avro::SchemaCatalog;
use uuid::Uuid;

use super::Versions;
use crate::sink::mapping::{quote_ident, typed_tables, TypedTable, ENVELOPE_COLUMNS};
use crate::sink::SinkError;

/// Creates or extends every typed table of `catalog` (in one transaction of its
/// own) and returns them by event type.
pub(super) fn ensure_typed_tables(
    conn: &Connection,
    catalog: &SchemaCatalog,
) -> Result<BTreeMap<String, TypedTable>, SinkError> {
    let tables = typed_tables(catalog)?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    match tables.values().try_for_each(|t| ensure_table(conn, t)) {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            if let Err(rollback) = conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %rollback, "rollback of the typed tables failed");
            }
            return Err(e);
        }
    }
    Ok(tables)
}

/// `CREATE TABLE IF NOT EXISTS`, then `ADD COLUMN` for every field the table
/// lacks and a widening `ALTER COLUMN … TYPE` for promoted numbers. Nothing is
/// ever dropped.
fn ensure_table(conn: &Connection, table: &TypedTable) -> Result<(), SinkError> {
    let name = quote_ident(&table.name);
    let columns: Vec<String> = ENVELOPE_COLUMNS
        .iter()
        .map(|(c, t)| format!("{} {t}", quote_ident(c)))
        .chain(
            table
                .columns
                .iter()
                .map(|c| format!("{} {}", quote_ident(&c.column), c.sql_type)),
        )
        .collect();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {name} ({})",
        columns.join(", ")
    ))?;
    let mut statement = conn.prepare(
        "SELECT lower(column_name), data_type FROM duckdb_columns() \
             WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?",
    )?;
    let existing: HashMap<String, String> = statement
        .query_map([&table.name], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for column in &table.columns {
        let quoted = quote_ident(&column.column);
        match existing.get(&column.column.to_lowercase()) {
            None => {
                tracing::info!(table = %table.name, column = %column.column, "adding a column for a new field");
                conn.execute_batch(&format!(
                    "ALTER TABLE {name} ADD COLUMN {quoted} {}",
                    column.sql_type
                ))?;
            }
            Some(current) if widens(current, &column.sql_type) => {
                tracing::info!(table = %table.name, column = %column.column, from = %current, to = %column.sql_type, "widening a promoted column");
                conn.execute_batch(&format!(
                    "ALTER TABLE {name} ALTER COLUMN {quoted} TYPE {}",
                    column.sql_type
                ))?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Avro's numeric promotions, as DuckDB types.
fn widens(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("INTEGER", "BIGINT" | "FLOAT" | "DOUBLE")
            | ("BIGINT", "FLOAT" | "DOUBLE")
            | ("FLOAT", "DOUBLE")
    )
}

/// The highest stream version loaded per `(topic, partition, stream)`, with the
/// event that had it.
pub(super) fn loaded_versions(conn: &Connection) -> Result<Versions, SinkError> {
    let mut statement = conn.prepare(
        "SELECT topic, partition, stream_id, max(stream_version), \
                CAST(arg_max(event_id, stream_version) AS VARCHAR) FROM raw_events \
          WHERE stream_version IS NOT NULL GROUP BY ALL",
    )?;
    let rows = statement.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i32>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut versions = Versions::new();
    for row in rows {
        let (topic, partition, stream, version, id) = row?;
        let id = Uuid::parse_str(&id).unwrap_or_default();
        versions
            .entry(topic)
            .or_default()
            .entry(partition)
            .or_default()
            .insert(stream, (version, id));
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_avro_promotions_widen_a_column() {
        assert!(widens("INTEGER", "BIGINT"));
        assert!(widens("FLOAT", "DOUBLE"));
        assert!(!widens("BIGINT", "INTEGER"));
        assert!(!widens("VARCHAR", "BIGINT"));
    }
}
