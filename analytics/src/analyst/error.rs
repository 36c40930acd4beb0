//! Errors an analyst sees: a SQLSTATE and a message a person can act on.

use pgwire::error::{ErrorInfo, PgWireError};

/// An error answered to the client as an `ErrorResponse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct SqlError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

/// SQLSTATE `42501` insufficient_privilege: a refused statement.
pub(crate) const REFUSED: &str = "42501";
/// SQLSTATE `57014` query_canceled: the statement timeout fired, or a
/// CancelRequest came (then the message starts with [`CANCELED_BY_USER`]).
pub(crate) const TIMEOUT: &str = "57014";
/// PostgreSQL's message for a statement a CancelRequest interrupted.
pub(crate) const CANCELED_BY_USER: &str = "canceling statement due to user request";
/// SQLSTATE `54000` program_limit_exceeded: the row limit was reached.
pub(crate) const ROW_LIMIT: &str = "54000";

impl SqlError {
    pub(crate) fn new(code: &'static str, message: String) -> Self {
        SqlError {
            code,
            message,
            hint: None,
        }
    }

    pub(crate) fn refused(message: String) -> Self {
        SqlError::new(REFUSED, message)
    }

    pub(crate) fn internal(message: String) -> Self {
        SqlError::new("XX000", message)
    }

    pub(crate) fn with_hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.to_owned());
        self
    }

    /// Maps a DuckDB error to the SQLSTATE PostgreSQL would use for it.
    pub(crate) fn from_duckdb(error: &duckdb::Error) -> Self {
        let message = match error {
            duckdb::Error::DuckDBFailure(_, Some(message)) => message.clone(),
            other => other.to_string(),
        };
        let code = sqlstate_of(&message);
        SqlError::new(code, message)
    }

    /// Which outcome label this error counts under in the metrics.
    pub(crate) fn outcome(&self) -> &'static str {
        match self.code {
            REFUSED => "refused",
            TIMEOUT if self.message.starts_with(CANCELED_BY_USER) => "cancelled",
            TIMEOUT => "timeout",
            ROW_LIMIT => "row_limit",
            _ => "error",
        }
    }
}

/// SQLSTATE of a DuckDB error message (`"Catalog Error: Table with name x
/// does not exist!"`): DuckDB reports an error class, not a code.
fn sqlstate_of(message: &str) -> &'static str {
    let has = |needle: &str| message.contains(needle);
    if has("Parser Error") {
        "42601"
    } else if has("Catalog Error") {
        if has("Function with name") || has("Macro Function") {
            "42883"
        } else if has("Schema with name") {
            "3F000"
        } else {
            "42P01"
        }
    } else if has("Binder Error") {
        if has("Referenced column") || has("not found in FROM clause") || has("Column") {
            "42703"
        } else if has("No function matches") {
            "42883"
        } else if has("must appear in the GROUP BY") {
            "42803"
        } else {
            "42000"
        }
    } else if has("Conversion Error") || has("Invalid Input Error") {
        "22P02"
    } else if has("Out of Range Error") {
        "22003"
    } else if has("Out of Memory Error") {
        "53200"
    } else if has("Permission Error") || has("external access") {
        REFUSED
    } else if has("read-only mode") || has("read only") {
        "25006"
    } else if has("INTERRUPT") || has("Interrupted") {
        TIMEOUT
    } else if has("Constraint Error") {
        "23000"
    } else if has("Not implemented Error") {
        "0A000"
    } else {
        "XX000"
    }
}

impl From<SqlError> for ErrorInfo {
    fn from(e: SqlError) -> Self {
        let mut info = ErrorInfo::new("ERROR".to_owned(), e.code.to_owned(), e.message);
        info.hint = e.hint;
        info
    }
}

impl From<SqlError> for PgWireError {
    fn from(e: SqlError) -> Self {
        PgWireError::UserError(Box::new(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::sqlstate_of;

    #[test]
    fn duckdb_error_classes_map_to_postgres_sqlstates() {
        assert_eq!(
            sqlstate_of("Parser Error: syntax error at or near \"selec\""),
            "42601"
        );
        assert_eq!(
            sqlstate_of("Catalog Error: Table with name nope does not exist!"),
            "42P01"
        );
        assert_eq!(
            sqlstate_of("Binder Error: Referenced column \"x\" not found in FROM clause!"),
            "42703"
        );
        assert_eq!(sqlstate_of("INTERRUPT Error: Interrupted!"), "57014");
    }
}
