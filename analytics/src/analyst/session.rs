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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use duckdb::arrow::datatypes::DataType;
use duckdb::types::Value;
use duckdb::{params_from_iter, Connection, InterruptHandle, Statement};
use futures::{stream, Stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::{SqlError, ROW_LIMIT, TIMEOUT};
use super::guard::{self, Checked};
use super::metrics;
use super::types::{encode_field, pg_type, pg_typmod};

/// Rows encoded ahead of the client: the backpressure window.
const ROW_BUFFER: usize = 256;
/// How often the watchdog repeats its interrupt: DuckDB clears the flag when a
/// query starts executing, so a single interrupt can be lost.
const INTERRUPT_REPEAT: Duration = Duration::from_millis(50);

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

/// Interrupts the connection once the statement timeout has passed or a cancel
/// request came, repeatedly (DuckDB clears the flag when a query starts
/// executing), until stopped.
struct Watchdog {
    /// Whether the statement still runs. The watchdog interrupts only while
    /// holding this lock and seeing `true`, so once [`Watchdog::stop`] returns no
    /// interrupt can reach the statements that follow (the ROLLBACK).
    running: Arc<Mutex<bool>>,
    done: CancellationToken,
}

impl Watchdog {
    /// `why`: set to `true` when the timeout passes, and when a cancel comes.
    fn start(
        interrupt: Arc<InterruptHandle>,
        timeout: Duration,
        cancel: Arc<Notify>,
        why: [Arc<AtomicBool>; 2],
    ) -> Self {
        let running = Arc::new(Mutex::new(true));
        let done = CancellationToken::new();
        let (gate, stopped) = (running.clone(), done.clone());
        let [timed_out, cancelled] = why;
        tokio::spawn(async move {
            tokio::select! {
                _ = stopped.cancelled() => return,
                _ = tokio::time::sleep(timeout) => timed_out.store(true, Ordering::SeqCst),
                _ = cancel.notified() => cancelled.store(true, Ordering::SeqCst),
            }
            loop {
                {
                    let running = gate.lock().unwrap_or_else(|e| e.into_inner());
                    if !*running {
                        return;
                    }
                    interrupt.interrupt();
                }
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    _ = tokio::time::sleep(INTERRUPT_REPEAT) => {}
                }
            }
        });
        Watchdog { running, done }
    }

    /// Stops interrupting; returns once no interrupt can follow.
    fn stop(&self) {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.done.cancel();
    }
}

impl Drop for Watchdog {
    /// However the statement ended.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The row stream handed to pgwire: rows from the worker, then the worker's
/// own end (a panic surfaces as an error instead of being lost).
fn rows(
    rx: mpsc::Receiver<Result<DataRow, SqlError>>,
    worker: JoinHandle<Result<(), SqlError>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    // `failed`: an error was already passed on; the worker's own error is the same.
    stream::unfold(
        (rx, Some(worker), false),
        |(mut rx, worker, failed)| async move {
            match rx.recv().await {
                Some(row) => {
                    let failed = failed || row.is_err();
                    Some((row.map_err(Into::into), (rx, worker, failed)))
                }
                None => {
                    // The worker's end: an error it did not send (one reading a
                    // value, a panic) ends the result with that error, never with
                    // a normal completion of a truncated result.
                    let error = match worker?.await {
                        Ok(Ok(())) => return None,
                        Ok(Err(_)) if failed => return None,
                        Ok(Err(e)) => e,
                        Err(e) => SqlError::internal(format!("the query's worker failed: {e}")),
                    };
                    Some((Err(error.into()), (rx, None, true)))
                }
            }
        },
    )
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

/// One statement to run.
struct Query<'a> {
    sql: &'a str,
    params: Vec<Value>,
    format: &'a Format,
    limits: Limits,
    timed_out: &'a AtomicBool,
    /// Set when a CancelRequest came for this statement.
    cancelled: &'a AtomicBool,
    /// When the statement timeout passes: sending rows stops then too.
    deadline: tokio::time::Instant,
    runtime: tokio::runtime::Handle,
    /// Closes the session when its client stops reading.
    close: CancellationToken,
}

impl Query<'_> {
    fn timeout(&self) -> SqlError {
        SqlError::new(
            TIMEOUT,
            format!(
                "canceling statement due to statement timeout ({} s)",
                self.limits.statement_timeout.as_secs_f64()
            ),
        )
        .with_hint("narrow the query (filters, LIMIT, aggregates) or ask for a longer timeout")
    }

    fn error(&self, e: &duckdb::Error) -> SqlError {
        if self.cancelled.load(Ordering::SeqCst) {
            SqlError::new(TIMEOUT, super::error::CANCELED_BY_USER.to_owned())
        } else if self.timed_out.load(Ordering::SeqCst) {
            self.timeout()
        } else {
            SqlError::from_duckdb(e)
        }
    }

    /// Hands one row to the client's stream, waiting at most until the deadline.
    /// `Ok(false)`: the client is gone. A client still connected but not reading
    /// at the deadline has its session closed: nothing else can be sent to it.
    fn send(
        &self,
        rows_tx: &mpsc::Sender<Result<DataRow, SqlError>>,
        row: DataRow,
    ) -> Result<bool, SqlError> {
        let sent = self.runtime.block_on(tokio::time::timeout_at(
            self.deadline,
            rows_tx.send(Ok(row)),
        ));
        match sent {
            Ok(Ok(())) => Ok(true),
            Ok(Err(_)) => Ok(false),
            Err(_) => {
                tracing::warn!(
                    "analyst session: the client stopped reading the result; closing the session"
                );
                self.close.cancel();
                Err(self.timeout())
            }
        }
    }
}

/// Executes `query` (streaming), sends its schema, then its rows.
fn stream_query(
    conn: &Connection,
    query: &Query<'_>,
    schema_tx: oneshot::Sender<Result<Vec<FieldInfo>, SqlError>>,
    rows_tx: &mpsc::Sender<Result<DataRow, SqlError>>,
) -> Result<(), SqlError> {
    let prepared = conn.prepare(query.sql).and_then(|mut stmt| {
        drop(stmt.stream_arrow(params_from_iter(query.params.iter()))?);
        Ok(stmt)
    });
    let stmt = match prepared {
        Ok(stmt) => stmt,
        Err(e) => {
            let error = query.error(&e);
            let _ = schema_tx.send(Err(error.clone()));
            return Err(error);
        }
    };
    let columns = result_columns(&stmt);
    let binary: Vec<bool> = (0..columns.len())
        .map(|i| match query.format {
            Format::Individual(codes) if codes.len() != columns.len() => false,
            format => format.is_binary(i),
        })
        .collect();
    let fields = columns
        .iter()
        .zip(&binary)
        .map(|(c, &binary)| {
            let format = if binary {
                FieldFormat::Binary
            } else {
                FieldFormat::Text
            };
            FieldInfo::new(c.name.clone(), None, None, c.ty.clone(), format)
                .with_type_modifier(c.typmod)
        })
        .collect();
    if schema_tx.send(Ok(fields)).is_err() {
        return Ok(());
    }
    // A column of DuckDB's NULL type (an untyped `NULL`, as catalog views have
    // them) has no Arrow values to read: each of its fields is NULL.
    let untyped: Vec<bool> = (0..columns.len())
        .map(|i| stmt.column_type(i) == DataType::Null)
        .collect();
    let mut rows = stmt.raw_query();
    let mut sent = 0usize;
    loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => return fail(rows_tx, query.error(&e)),
        };
        if sent == query.limits.row_limit {
            let error = SqlError::new(
                ROW_LIMIT,
                format!(
                    "the result has more than {} rows, the endpoint's row limit",
                    query.limits.row_limit
                ),
            )
            .with_hint("add a LIMIT, filter, or aggregate");
            return fail(rows_tx, error);
        }
        let mut buf = BytesMut::with_capacity(16 * columns.len());
        for (i, column) in columns.iter().enumerate() {
            let value: Value = if untyped[i] {
                Value::Null
            } else {
                row.get(i).map_err(|e| SqlError::from_duckdb(&e))?
            };
            encode_field(&mut buf, &value, &column.ty, binary[i]);
        }
        if !query.send(rows_tx, DataRow::new(buf, columns.len() as i16))? {
            // The client went away: stop the query.
            return Ok(());
        }
        sent += 1;
    }
    metrics::rows_sent(sent);
    Ok(())
}

fn fail(
    rows_tx: &mpsc::Sender<Result<DataRow, SqlError>>,
    error: SqlError,
) -> Result<(), SqlError> {
    let _ = rows_tx.blocking_send(Err(error.clone()));
    Err(error)
}
