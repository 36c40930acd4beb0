//! Statement inspection: what an analyst may run.
//!
//! The second of the endpoint's two layers (the first is the sandboxed DuckDB
//! instance itself: external access off, configuration locked, and every
//! statement run in a `READ ONLY` transaction). Before anything executes, the
//! whole query string is split into statements and each one is checked; one
//! refused statement refuses the whole string, so nothing runs.
//!
//! - Harmless client housekeeping (`SET application_name`, `BEGIN`, `SHOW
//!   transaction isolation level`, …) is answered by the endpoint itself.
//! - Everything else must be a query: DuckDB's own parser (`json_serialize_sql`)
//!   must see exactly one `SELECT` statement (which covers `WITH`, `VALUES`,
//!   `FROM`-first, `TABLE`, `DESCRIBE`, `SHOW <table>` and `SUMMARIZE`), or
//!   `EXPLAIN [ANALYZE]` of one. Its syntax tree is walked: table functions
//!   must be on an allow-list (no file readers, `glob`, `query`, settings or
//!   logging functions), a table name that looks like a file or URL (DuckDB's
//!   replacement scans) is refused, and so are side-effecting scalar functions.

use duckdb::Connection;
use serde_json::Value as Json;

use super::catalog;
use super::error::SqlError;

/// Table functions an analyst may call: generators, JSON helpers and the
/// read-only catalog listings (plus the warehouse's own table macros).
const ALLOWED_TABLE_FUNCTIONS: &[&str] = &[
    "range",
    "generate_series",
    "unnest",
    "json_each",
    "json_tree",
    "duckdb_tables",
    "duckdb_columns",
    "duckdb_views",
    "duckdb_schemas",
    "duckdb_types",
    "duckdb_functions",
    "duckdb_constraints",
    "duckdb_indexes",
    "duckdb_keywords",
    "duckdb_sequences",
    "duckdb_dependencies",
    "pragma_table_info",
    "pragma_show",
    "pragma_database_size",
];

/// Scalar functions with side effects, or that reveal the server's settings.
const REFUSED_SCALAR_FUNCTIONS: &[&str] =
    &["nextval", "setval", "getenv", "setseed", "current_setting"];

/// Catalog views that reveal the server's settings, file paths, logs or other
/// sessions' statements (DuckDB's views of the same name, `pg_catalog`'s too).
const REFUSED_VIEWS: &[&str] = &[
    "pg_settings",
    "pg_prepared_statements",
    "duckdb_settings",
    "duckdb_databases",
    "duckdb_logs",
    "duckdb_extensions",
    "duckdb_memory",
    "duckdb_temporary_files",
    "duckdb_secrets",
    "duckdb_optimizers",
];

/// Session settings clients set on connect; accepted and ignored.
const CLIENT_SETTINGS: &[&str] = &[
    "application_name",
    "extra_float_digits",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "search_path",
    "client_min_messages",
    "standard_conforming_strings",
    "bytea_output",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "geqo",
    "jit",
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "default_transaction_isolation",
    "default_transaction_read_only",
];

/// Settings a client may `SHOW`, with the value the endpoint reports.
const SHOWN_SETTINGS: &[(&str, &str)] = &[
    ("transaction isolation level", "read committed"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "on"),
    ("default_transaction_read_only", "on"),
    ("standard_conforming_strings", "on"),
    ("client_encoding", "UTF8"),
    ("server_encoding", "UTF8"),
    ("datestyle", "ISO, YMD"),
    ("intervalstyle", "postgres"),
    ("timezone", "UTC"),
    ("search_path", "main"),
    ("max_identifier_length", "63"),
    ("integer_datetimes", "on"),
];

/// What one statement of the query string is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Client housekeeping, answered with this command tag and nothing run.
    NoOp { tag: &'static str },
    /// `SHOW <client setting>`, answered by the endpoint.
    Setting { name: String, value: &'static str },
    /// A query DuckDB runs; `casts`: parameters it casts to an array or a
    /// blob type ([`catalog::parameter_casts`]).
    Query {
        sql: String,
        explain: bool,
        casts: Vec<(usize, pgwire::api::Type)>,
    },
}

/// Splits a query string into statements at top-level `;`, respecting
/// quotes, dollar quoting and comments. Empty statements are dropped.
pub(crate) fn split_statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == quote {
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                // $tag$ … $tag$ (but not a $1 parameter)
                let tag_end = sql[i + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map(|n| i + 1 + n);
                let is_parameter = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
                if let Some(end) = tag_end.filter(|&e| bytes[e] == b'$' && !is_parameter) {
                    let tag = &sql[i..=end];
                    match sql[end + 1..].find(tag) {
                        Some(close) => i = end + close + tag.len(),
                        None => i = bytes.len(),
                    }
                }
            }
            b';' => {
                push_statement(&mut out, &sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push_statement(&mut out, &sql[start.min(sql.len())..]);
    out
}

fn push_statement<'a>(out: &mut Vec<&'a str>, statement: &'a str) {
    if !strip_comments(statement).trim().is_empty() {
        out.push(statement.trim());
    }
}

/// The statement with leading comments removed, for keyword inspection.
fn strip_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r);
        } else {
            return s;
        }
    }
}

/// What follows the keyword `keyword` (ASCII, any case) at the start of `s`, or
/// `None` when `s` does not start with that word.
fn after_keyword<'a>(s: &'a str, keyword: &str) -> Option<&'a str> {
    let head = s.get(..keyword.len())?;
    let rest = &s[keyword.len()..];
    let whole_word = !rest
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_');
    (head.eq_ignore_ascii_case(keyword) && whole_word).then_some(rest)
}

/// The statement's leading words, upper-cased (`SET`, `application_name`…).
fn leading_words(statement: &str, n: usize) -> Vec<String> {
    strip_comments(statement)
        .split(|c: char| c.is_whitespace() || c == '=' || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_uppercase)
        .collect()
}

/// Classifies client housekeeping without touching DuckDB; `None` for a
/// statement that needs DuckDB's parser.
pub(crate) fn classify_client_statement(statement: &str) -> Option<Result<Checked, SqlError>> {
    let words = leading_words(statement, 5);
    let first = words.first().map(String::as_str).unwrap_or_default();
    let second = words.get(1).map(String::as_str).unwrap_or_default();
    let noop = |tag| Some(Ok(Checked::NoOp { tag }));
    match first {
        "BEGIN" | "START" => noop("BEGIN"),
        "COMMIT" | "END" => noop("COMMIT"),
        "ROLLBACK" | "ABORT" => noop("ROLLBACK"),
        "DISCARD" => noop("DISCARD ALL"),
        "DEALLOCATE" => noop("DEALLOCATE"),
        "SET" | "RESET" => {
            let name = match second {
                "SESSION" | "LOCAL" => words.get(2).map(String::as_str).unwrap_or_default(),
                other => other,
            };
            let name = name.to_ascii_lowercase();
            if name == "transaction"
                || name == "characteristics"
                || CLIENT_SETTINGS.contains(&name.as_str())
            {
                noop(if first == "SET" { "SET" } else { "RESET" })
            } else {
                Some(Err(SqlError::refused(format!(
                    "{first} {name} is refused: the endpoint's settings are fixed by the server \
                     (only client settings such as application_name are accepted, and ignored)"
                ))))
            }
        }
        "SHOW" => {
            let rest = after_keyword(strip_comments(statement), "SHOW")?
                .trim()
                .trim_end_matches(';')
                .trim()
                .to_ascii_lowercase();
            SHOWN_SETTINGS
                .iter()
                .find(|(name, _)| *name == rest)
                .map(|(name, value)| {
                    Ok(Checked::Setting {
                        name: name.replace(' ', "_").replace("_level", "").to_owned(),
                        value,
                    })
                })
        }
        _ => None,
    }
}

/// The kind of a refused statement, for the error message (`INSERT`,
/// `CREATE MACRO`, `COPY`, …).
fn statement_kind(statement: &str) -> String {
    let words = leading_words(statement, 6);
    let Some(first) = words.first() else {
        return "statement".to_owned();
    };
    if !matches!(first.as_str(), "CREATE" | "DROP" | "ALTER") {
        return first.clone();
    }
    // CREATE [OR REPLACE] [TEMP|TEMPORARY|PERSISTENT] <object>
    let object = words[1..].iter().find(|w| {
        !matches!(
            w.as_str(),
            "OR" | "REPLACE" | "TEMP" | "TEMPORARY" | "PERSISTENT"
        )
    });
    match object {
        Some(object) => format!("{first} {object}"),
        None => first.clone(),
    }
}

/// Checks one statement with DuckDB's parser. Runs on the session's
/// connection (blocking).
pub(crate) fn check_statement(conn: &Connection, statement: &str) -> Result<Checked, SqlError> {
    if let Some(checked) = classify_client_statement(statement) {
        return checked;
    }
    let stripped = strip_comments(statement);
    if let Some(name) = after_keyword(stripped, "SHOW") {
        let name = name.trim().trim_end_matches(';').trim();
        if is_setting(conn, name) {
            return Err(SqlError::refused(format!(
                "SHOW {name} is refused: the endpoint's settings are the server's"
            )));
        }
    }
    let (body, explain) = match after_keyword(stripped, "EXPLAIN") {
        Some(rest) => {
            let rest = rest.trim_start();
            let rest = after_keyword(rest, "ANALYZE")
                .or_else(|| after_keyword(rest, "ANALYSE"))
                .unwrap_or(rest);
            (rest.trim_start(), true)
        }
        None => (statement, false),
    };
    let serialized: String = conn
        .query_row("SELECT json_serialize_sql($1::VARCHAR)", [body], |row| {
            row.get(0)
        })
        .map_err(|e| SqlError::internal(format!("cannot inspect the statement: {e}")))?;
    let mut tree: Json = serde_json::from_str(&serialized)
        .map_err(|e| SqlError::internal(format!("cannot inspect the statement: {e}")))?;
    if tree["error"].as_bool() != Some(false) {
        let message = tree["error_message"].as_str().unwrap_or("unknown error");
        return Err(match tree["error_type"].as_str() {
            Some("parser") => SqlError::new("42601", format!("syntax error: {message}")),
            _ => SqlError::refused(format!(
                "{} is refused: the analyst endpoint is read-only; it runs SELECT, WITH, VALUES, \
                 FROM, TABLE, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN only",
                statement_kind(body)
            )),
        });
    }
    match tree["statements"].as_array().map(Vec::len) {
        Some(1) => {}
        _ => return Err(SqlError::refused(
            "the statement could not be checked as a single query; send one statement at a time"
                .to_owned(),
        )),
    }
    let is_macro = |name: &str| is_table_macro(conn, name);
    walk(&tree["statements"], &is_macro)?;
    let original = body.trim().trim_end_matches(';').to_owned();
    let casts = catalog::parameter_casts(&tree["statements"][0]);
    // The catalog's PostgreSQL idioms (see `catalog`), rewritten and checked
    // again: what runs has passed the same checks. A statement DuckDB cannot
    // render back from its tree runs as sent.
    if !catalog::rewrite(&mut tree["statements"][0]) {
        return Ok(Checked::Query {
            sql: original,
            explain,
            casts,
        });
    }
    walk(&tree["statements"], &is_macro)?;
    let rendered = conn.query_row(
        "SELECT json_deserialize_sql($1::JSON)",
        [tree.to_string()],
        |row| row.get::<_, String>(0),
    );
    let sql = match rendered {
        Ok(sql) => sql,
        Err(error) => {
            tracing::debug!(%error, "a rewritten statement did not render; it runs as sent");
            original
        }
    };
    Ok(Checked::Query {
        sql,
        explain,
        casts,
    })
}

/// Whether `name` names one of DuckDB's settings (`SHOW memory_limit`) rather
/// than a table (`SHOW orders`, which describes it).
fn is_setting(conn: &Connection, name: &str) -> bool {
    conn.query_row(
        "SELECT count(*) FROM duckdb_settings() WHERE name = lower($1)",
        [name],
        |row| row.get::<_, i64>(0),
    )
    .is_ok_and(|n| n > 0)
}

/// Whether `name` is a table macro the warehouse defines (the saved views'
/// `order_state_as_of(ts)`): SQL over the warehouse, so as safe as a view.
fn is_table_macro(conn: &Connection, name: &str) -> bool {
    conn.query_row(
        "SELECT count(*) FROM duckdb_functions() \
         WHERE function_name = $1 AND function_type = 'table_macro' AND NOT internal",
        [name],
        |row| row.get::<_, i64>(0),
    )
    .is_ok_and(|n| n > 0)
}

/// Walks DuckDB's serialized syntax tree for table functions, file-like
/// table names and side-effecting functions.
fn walk(node: &Json, is_table_macro: &dyn Fn(&str) -> bool) -> Result<(), SqlError> {
    match node {
        Json::Array(items) => items.iter().try_for_each(|n| walk(n, is_table_macro)),
        Json::Object(map) => {
            match map.get("type").and_then(Json::as_str) {
                Some("TABLE_FUNCTION") => {
                    let name = map
                        .get("function")
                        .and_then(|f| f.get("function_name"))
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if !ALLOWED_TABLE_FUNCTIONS.contains(&name.as_str()) && !is_table_macro(&name) {
                        return Err(SqlError::refused(format!(
                            "table function {name} is refused: the analyst endpoint reads the \
                             warehouse's tables and views only (no files, network, settings or \
                             nested SQL)"
                        )));
                    }
                }
                Some("BASE_TABLE") => {
                    let name = map
                        .get("table_name")
                        .and_then(Json::as_str)
                        .unwrap_or_default();
                    if REFUSED_VIEWS.contains(&name.to_ascii_lowercase().as_str()) {
                        return Err(SqlError::refused(format!(
                            "{name} is refused: the endpoint's settings, files and logs are \
                             the server's; the analyst endpoint reads the warehouse's tables \
                             and views"
                        )));
                    }
                    if name.contains(['.', '/', '\\', ':', '*']) {
                        return Err(SqlError::refused(format!(
                            "reading '{name}' is refused: the analyst endpoint reads the \
                             warehouse's tables and views only, never files"
                        )));
                    }
                }
                _ => {}
            }
            if map.get("class").and_then(Json::as_str) == Some("FUNCTION") {
                let name = map
                    .get("function_name")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if REFUSED_SCALAR_FUNCTIONS.contains(&name.as_str()) {
                    return Err(SqlError::refused(format!(
                        "function {name} is refused: it has side effects"
                    )));
                }
            }
            map.values().try_for_each(|n| walk(n, is_table_macro))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
