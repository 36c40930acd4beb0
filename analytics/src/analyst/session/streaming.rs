//! A query's result on its way to the client: the worker encodes rows into a
//! bounded channel, the pgwire response reads them from it.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::BytesMut;
use duckdb::arrow::datatypes::DataType;
use duckdb::types::Value;
use duckdb::{params_from_iter, Connection};
use futures::{stream, Stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{result_columns, Limits};
use crate::analyst::error::{SqlError, ROW_LIMIT, TIMEOUT};
use crate::analyst::metrics;
use crate::analyst::types::encode_field;

/// The row stream handed to pgwire: rows from the worker, then the worker's
/// own end (a panic surfaces as an error instead of being lost).
pub(super) fn rows(
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

/// One statement to run.
pub(super) struct Query<'a> {
    pub(super) sql: &'a str,
    pub(super) params: Vec<Value>,
    pub(super) format: &'a Format,
    pub(super) limits: Limits,
    pub(super) timed_out: &'a AtomicBool,
    /// Set when a CancelRequest came for this statement.
    pub(super) cancelled: &'a AtomicBool,
    /// When the statement timeout passes: sending rows stops then too.
    pub(super) deadline: tokio::time::Instant,
    pub(super) runtime: tokio::runtime::Handle,
    /// Closes the session when its client stops reading.
    pub(super) close: CancellationToken,
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
            SqlError::new(TIMEOUT, crate::analyst::error::CANCELED_BY_USER.to_owned())
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
pub(super) fn stream_query(
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
