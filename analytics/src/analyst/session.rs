//! One analyst session: its own DuckDB connection, used on blocking threads.
//!
//! Every statement runs in a `BEGIN TRANSACTION READ ONLY` … `ROLLBACK` of its
//! own, so it sees one snapshot while the sink keeps loading and cannot write
//! even if inspection missed something. Results stream: the query runs on a
//! blocking thread that encodes rows and sends them through a bounded channel
//! into the pgwire response, so a large result is never held in memory. A
//! watchdog interrupts the connection when the statement timeout passes; the
//! timeout covers sending too, so a client that stops reading cannot hold the
//! worker and its snapshot: its session is closed. A panic inside DuckDB's
//! client library fails the statement, not the session: the transaction is
//! rolled back either way.

mod streaming;
mod watchdog;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duckdb::types::Value;
use duckdb::{params_from_iter, Connection, InterruptHandle, Statement};
use pgwire::api::portal::Format;
use pgwire::api::results::QueryResponse;
use pgwire::api::Type;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::error::SqlError;
use super::guard::{self, Checked};
use super::metrics;
use super::types::{pg_type, pg_typmod};
use streaming::{rows, stream_query, Query};
use watchdog::Watchdog;

/// Rows encoded ahead of the client: the backpressure window.
const ROW_BUFFER: usize = 256;
/// Per-statement limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) statement_timeout: Duration,
    pub(crate) row_limit: usize,
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: Type,
    /// PostgreSQL's type modifier (`atttypmod`): a numeric's precision and
    /// scale, `-1` for none.
    pub(crate) typmod: i32,
}

/// Parameter and result types of a statement, without running it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Described {
    pub(crate) params: Vec<Type>,
    pub(crate) columns: Vec<Column>,
}

/// The session's connection.
pub(crate) struct Session {
    conn: Arc<Mutex<Connection>>,
    interrupt: Arc<InterruptHandle>,
    limits: Limits,
    /// Cancelled to close the session (its client stopped reading).
    close: CancellationToken,
    /// Signalled by a CancelRequest with this session's key (see `cancel`).
    cancel: Arc<Notify>,
    /// When the client last sent a statement, or one last ended.
    last_active: Mutex<Instant>,
}

impl Session {
    pub(crate) fn new(
        conn: Connection,
        limits: Limits,
        close: CancellationToken,
        cancel: Arc<Notify>,
    ) -> Self {
        let interrupt = conn.interrupt_handle();
        Session {
            conn: Arc::new(Mutex::new(conn)),
            interrupt,
            limits,
            close,
            cancel,
            last_active: Mutex::new(Instant::now()),
        }
    }

    /// Records activity: a statement arrived or ended.
    pub(crate) fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// How long since the last activity. A statement runs (and sends) for at most
    /// the statement timeout after it arrived, so a session idle for longer than
    /// that runs nothing.
    pub(crate) fn idle_for(&self) -> Duration {
        self.last_active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// Runs `work` on a blocking thread with the connection.
    async fn blocking<T, F>(&self, work: F) -> Result<T, SqlError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, SqlError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            work(&conn)
        })
        .await
        .map_err(|e| SqlError::internal(format!("the session's worker failed: {e}")))?
    }

    /// Splits and checks every statement of a query string; the first refusal
    /// refuses the whole string.
    pub(crate) async fn check(&self, sql: &str) -> Result<Vec<Checked>, SqlError> {
        let statements: Vec<String> = guard::split_statements(sql)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let checked = self
            .blocking(move |conn| {
                statements
                    .iter()
                    .map(|s| guard::check_statement(conn, s))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await;
        if let Err(e) = &checked {
            if e.code == super::error::REFUSED {
                metrics::statement_refused();
            }
        }
        checked
    }

    /// Parameter and result types of a checked query, for `Describe`.
    pub(crate) async fn describe(&self, sql: String, explain: bool) -> Result<Described, SqlError> {
        if explain {
            return Ok(Described {
                params: Vec::new(),
                columns: vec![text_column("explain_key"), text_column("explain_value")],
            });
        }
        self.blocking(move |conn| {
            in_read_only_transaction(conn, |conn| describe(conn, &sql), || {})
        })
        .await
    }

    /// Runs a checked query and streams its rows.
    pub(crate) async fn run(
        &self,
        sql: String,
        explain: bool,
        params: Vec<Value>,
        format: Format,
    ) -> Result<QueryResponse, SqlError> {
        let started = Instant::now();
        let sql = if explain {
            format!("EXPLAIN {sql}")
        } else {
            sql
        };
        let (schema_tx, schema_rx) = oneshot::channel();
        let (rows_tx, rows_rx) = mpsc::channel(ROW_BUFFER);
        let timed_out = Arc::new(AtomicBool::new(false));
        let cancelled = Arc::new(AtomicBool::new(false));
        let watchdog = Watchdog::start(
            self.interrupt.clone(),
            self.limits.statement_timeout,
            self.cancel.clone(),
            [timed_out.clone(), cancelled.clone()],
        );
        let conn = self.conn.clone();
        let limits = self.limits;
        let close = self.close.clone();
        let runtime = tokio::runtime::Handle::current();
        let worker = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            let query = Query {
                sql: &sql,
                params,
                format: &format,
                limits,
                timed_out: &timed_out,
                cancelled: &cancelled,
                deadline: tokio::time::Instant::from_std(started) + limits.statement_timeout,
                runtime,
                close,
            };
            let outcome = in_read_only_transaction(
                &conn,
                |conn| stream_query(conn, &query, schema_tx, &rows_tx),
                // No interrupt may reach the ROLLBACK.
                || watchdog.stop(),
            );
            metrics::query_finished(
                outcome.as_ref().err().map_or("ok", SqlError::outcome),
                started.elapsed(),
            );
            outcome
        });
        match schema_rx.await {
            Ok(Ok(fields)) => Ok(QueryResponse::new(Arc::new(fields), rows(rows_rx, worker))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(match worker.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => SqlError::internal("the query ended without a result".to_owned()),
                Err(e) => SqlError::internal(format!("the query's worker failed: {e}")),
            }),
        }
    }
}

fn text_column(name: &str) -> Column {
    Column {
        name: name.to_owned(),
        ty: Type::TEXT,
        typmod: -1,
    }
}

/// Runs `work` inside a read-only transaction, always rolled back (there is
/// nothing to commit), also when `work` panics (duckdb-rs panics on some
/// values it cannot convert): the panic fails the statement, and the session
/// goes on. `before_rollback` runs first, whatever `work` did.
fn in_read_only_transaction<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, SqlError>,
    before_rollback: impl FnOnce(),
) -> Result<T, SqlError> {
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")
        .map_err(|e| SqlError::from_duckdb(&e))?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|panic| {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".to_owned());
            tracing::warn!(%reason, "analyst session: the statement panicked in DuckDB's client library");
            Err(SqlError::new(
                "XX000",
                format!("the statement failed inside the warehouse's client library: {reason}"),
            )
            .with_hint("a value of a type the endpoint cannot convert; cast it, e.g. to VARCHAR"))
        });
    before_rollback();
    if let Err(e) = conn.execute_batch("ROLLBACK") {
        tracing::warn!(error = %e, "analyst session: rollback failed");
    }
    outcome
}

fn describe(conn: &Connection, sql: &str) -> Result<Described, SqlError> {
    let params = parameter_types(conn, sql)?;
    let nulls = vec![Value::Null; params.len()];
    // LIMIT 0 around the query: DuckDB plans it to an empty result, so the
    // column names and types come without running the query. Statements that
    // cannot be a subquery (DESCRIBE, SUMMARIZE) are cheap enough to run.
    let wrapped = format!("SELECT * FROM (\n{sql}\n) AS sluice_describe LIMIT 0");
    let columns = match columns_of(conn, &wrapped, &nulls) {
        Ok(columns) => columns,
        Err(_) => columns_of(conn, sql, &nulls)?,
    };
    Ok(Described { params, columns })
}

fn columns_of(conn: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Column>, SqlError> {
    let mut stmt = conn.prepare(sql).map_err(|e| SqlError::from_duckdb(&e))?;
    drop(
        stmt.stream_arrow(params_from_iter(params.iter()))
            .map_err(|e| SqlError::from_duckdb(&e))?,
    );
    Ok(result_columns(&stmt))
}

fn result_columns(stmt: &Statement<'_>) -> Vec<Column> {
    stmt.column_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let logical = stmt.column_logical_type(i);
            Column {
                name,
                ty: pg_type(&logical),
                typmod: pg_typmod(&logical),
            }
        })
        .collect()
}

/// Parameter types: DuckDB's API reports how many parameters a statement
/// has but not their types, so they are announced as `text` (like PostgreSQL's
/// unknown-typed parameters) and DuckDB casts the text to the type it
/// resolved. Types a client declares in `Parse` take precedence.
fn parameter_types(conn: &Connection, sql: &str) -> Result<Vec<Type>, SqlError> {
    let stmt = conn.prepare(sql).map_err(|e| SqlError::from_duckdb(&e))?;
    Ok(vec![Type::TEXT; stmt.parameter_count()])
}
