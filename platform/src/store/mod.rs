//! The event store: append with optimistic concurrency and idempotency keys, read
//! streams back. Schema and invariants live in `platform/migrations/`.
//!
//! An append is one statement (`append.sql`) in its own READ COMMITTED transaction:
//!
//! 1. (with an idempotency key) look the key up; a hit returns the first result;
//! 2. the statement reads the stream's current version from its snapshot, checks the
//!    expected version, and inserts the events and their outbox rows; a statement
//!    trigger first takes the outbox writers' shared advisory lock (the relay's
//!    horizon counts only its holders, see `relay`), then the transaction takes its
//!    id at the insert, after the version it appends after was read as committed;
//! 3. (with a key) record the result under the key in the same transaction; commit.
//!
//! A concurrent append of the same version fails on the `(stream_id, stream_version)`
//! key and surfaces as [`StoreError::Conflict`]; a caller that retries starts a new
//! transaction. This ordering is what makes a stream's later version always carry the
//! larger transaction id, so a relay publishing in transaction-id order keeps each
//! stream in version order.

mod types;

pub use types::*;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// The event store's schema (events, outbox, idempotency keys). Every write service
/// runs it, then its own migrations.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The most bytes an event's payload and metadata may take as compact JSON: an
/// event must fit one Kafka record (1 MB by default, with its headers). The API's
/// 64 KiB request bodies stay far below it; this bounds every other writer of the
/// store through this crate, so no event is appended that the relay could never
/// publish.
pub const MAX_EVENT_BYTES: usize = 900_000;

/// Errors of the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream was not at the expected version: someone else appended first, or
    /// the stream exists when it should not (or the reverse). Nothing was written.
    #[error("stream {stream_id} expected {expected}, but {}", describe(*.actual))]
    Conflict {
        stream_id: StreamId,
        expected: ExpectedVersion,
        actual: Option<StreamVersion>,
    },
    /// The idempotency key was first used for a different command. Nothing was written.
    #[error("idempotency key `{key}` was already used for a different command")]
    IdempotencyKeyReused { key: String },
    /// An append without events.
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// The stream exists with another stream type; a stream keeps its type.
    #[error("stream {stream_id} is a `{actual}` stream, not `{requested}`")]
    StreamTypeMismatch {
        stream_id: StreamId,
        actual: String,
        requested: String,
    },
    /// An event's payload and metadata are larger than an event may be: it could
    /// never be published (Kafka's default record limit is 1 MB). Nothing was
    /// written.
    #[error("event {index} of the append is {bytes} bytes of JSON, more than the {limit} an event may have")]
    TooLarge {
        index: usize,
        bytes: usize,
        limit: usize,
    },
    /// The stored data could not be read back (a corrupt row, an unknown metadata shape).
    #[error("stored event is unreadable: {0}")]
    Corrupt(String),
    /// The database failed or refused the statement.
    #[error("event store database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn describe(actual: Option<StreamVersion>) -> String {
    match actual {
        None => "the stream does not exist".to_owned(),
        Some(v) => format!("it is at version {v}"),
    }
}

/// An append request.
#[derive(Debug, Clone)]
pub struct Append<'a> {
    pub stream_id: &'a StreamId,
    pub stream_type: &'a str,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub metadata: &'a Metadata,
    /// With a key, a retried append returns the first result and writes nothing.
    pub idempotency: Option<Idempotency<'a>>,
}

/// An idempotency key and a fingerprint of the request it was used for.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub key: &'a IdempotencyKey,
    pub fingerprint: &'a str,
}

/// The outcome of an append: written now, or replayed from an earlier append with the
/// same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    New(AppendResult),
    Replayed(AppendResult),
}

impl Appended {
    pub fn result(&self) -> &AppendResult {
        match self {
            Appended::New(r) | Appended::Replayed(r) => r,
        }
    }

    pub fn is_replay(&self) -> bool {
        matches!(self, Appended::Replayed(_))
    }
}

/// A service's event store, over its own pool (its app role).
#[derive(Debug, Clone)]
pub struct EventStore {
    pool: PgPool,
}

const UNIQUE_VIOLATION: &str = "23505";

impl EventStore {
    pub fn new(pool: PgPool) -> Self {
        EventStore { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends events to one stream; see the module docs for the protocol.
    #[tracing::instrument(
        name = "store.append",
        skip_all,
        fields(stream_id = %request.stream_id, events = request.events.len(), expected = %request.expected)
    )]
    pub async fn append(&self, request: Append<'_>) -> Result<Appended, StoreError> {
        if request.events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        if let Some(idem) = request.idempotency {
            if let Some(result) = self.idempotent_result(idem).await? {
                return Ok(Appended::Replayed(result));
            }
        }
        let attempt = self.try_append(&request).await;
        match &attempt {
            Ok(_) => crate::telemetry::events_appended(request.stream_type, request.events.len()),
            Err(StoreError::Conflict { .. }) => {
                crate::telemetry::append_conflict(request.stream_type)
            }
            Err(_) => {}
        }
        match attempt {
            Ok(result) => Ok(Appended::New(result)),
            // A concurrent retry with the same key may have won the race: its result is
            // the answer, whether we lost on the key or on the stream version.
            Err(err @ (StoreError::Conflict { .. } | StoreError::Database(_))) => {
                match request.idempotency {
                    Some(idem) => match self.idempotent_result(idem).await? {
                        Some(result) => Ok(Appended::Replayed(result)),
                        None => Err(err),
                    },
                    None => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    async fn try_append(&self, request: &Append<'_>) -> Result<AppendResult, StoreError> {
        let (event_ids, statement) = append_statement(request)?;
        // Without an idempotency key the statement is its own transaction: one round
        // trip. With one, the key is recorded in the same transaction.
        let mut tx = match request.idempotency {
            Some(_) => Some(self.pool.begin().await?),
            None => None,
        };
        let row = match tx.as_mut() {
            Some(tx) => statement.fetch_one(&mut **tx).await,
            None => statement.fetch_one(&self.pool).await,
        };
        let row = match row {
            Ok(row) => row,
            Err(e) => return Err(self.conflict_or(e, request).await),
        };
        let result = append_result(request, event_ids, &row)?;
        if let (Some(mut tx), Some(idem)) = (tx, request.idempotency) {
            let stored =
                serde_json::to_value(&result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO idempotency_keys (idempotency_key, request_fingerprint, stream_id, result) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(idem.key.as_str())
            .bind(idem.fingerprint)
            .bind(request.stream_id.as_str())
            .bind(stored)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(result)
    }

    /// Runs the append statement inside the caller's transaction (no idempotency
    /// key): for callers that must make an append atomic with their own writes. The
    /// append must be the transaction's first write (the database refuses it
    /// otherwise, see `migrations/20260101000003_outbox_writers.sql`); write the rest
    /// after it.
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        request: Append<'_>,
    ) -> Result<AppendResult, StoreError> {
        if request.events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let (event_ids, statement) = append_statement(&request)?;
        let row = statement.fetch_one(&mut *conn).await;
        let row = match row {
            Ok(row) => row,
            Err(e) => return Err(self.conflict_or(e, &request).await),
        };
        append_result(&request, event_ids, &row)
    }

    /// Maps a unique violation on the stream version key to a conflict, reporting the
    /// version the stream moved on to.
    async fn conflict_or(&self, err: sqlx::Error, request: &Append<'_>) -> StoreError {
        let is_version_clash = err.as_database_error().is_some_and(|db| {
            db.code().as_deref() == Some(UNIQUE_VIOLATION)
                && db.constraint() == Some("events_stream_version_key")
        });
        if is_version_clash {
            match self.stream_version(request.stream_id).await {
                Ok(actual) => StoreError::Conflict {
                    stream_id: request.stream_id.clone(),
                    expected: request.expected,
                    actual,
                },
                Err(e) => e,
            }
        } else {
            StoreError::Database(err)
        }
    }

    /// The first result recorded under an idempotency key, if any.
    pub async fn idempotent_result(
        &self,
        idem: Idempotency<'_>,
    ) -> Result<Option<AppendResult>, StoreError> {
        let row = sqlx::query(
            "SELECT request_fingerprint, result FROM idempotency_keys WHERE idempotency_key = $1",
        )
        .bind(idem.key.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let fingerprint: String = row.get(0);
        if fingerprint != idem.fingerprint {
            return Err(StoreError::IdempotencyKeyReused {
                key: idem.key.as_str().to_owned(),
            });
        }
        let result: serde_json::Value = row.get(1);
        serde_json::from_value(result)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("idempotency result: {e}")))
    }

    /// The stream's current version; `None` when it has no events.
    pub async fn stream_version(
        &self,
        stream_id: &StreamId,
    ) -> Result<Option<StreamVersion>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        current_version(&mut conn, stream_id).await
    }

    /// Reads a stream's events in version order, starting at `from`.
    #[tracing::instrument(name = "store.read_stream", skip(self), fields(stream_id = %stream_id))]
    pub async fn read_stream(
        &self,
        stream_id: &StreamId,
        from: StreamVersion,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        sqlx::query(
            "SELECT event_id, stream_id, stream_type, stream_version, global_position, event_type, \
                    schema_version, payload, metadata, recorded_at \
               FROM events WHERE stream_id = $1 AND stream_version >= $2 \
              ORDER BY stream_version",
        )
        .bind(stream_id.as_str())
        .bind(from.get())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(recorded_event)
        .collect()
    }
}

type AppendStatement<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The append statement with its binds, and the event ids it will write.
fn append_statement<'q>(
    request: &'q Append<'_>,
) -> Result<(Vec<EventId>, AppendStatement<'q>), StoreError> {
    let event_ids: Vec<EventId> = request.events.iter().map(|_| EventId::new()).collect();
    let metadata =
        serde_json::to_value(request.metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let metadata_bytes = metadata.to_string().len();
    for (index, event) in request.events.iter().enumerate() {
        let bytes = event.payload.to_string().len() + metadata_bytes;
        if bytes > MAX_EVENT_BYTES {
            return Err(StoreError::TooLarge {
                index,
                bytes,
                limit: MAX_EVENT_BYTES,
            });
        }
    }
    let expected: Option<i64> = match request.expected {
        ExpectedVersion::Any => None,
        ExpectedVersion::NoStream => Some(0),
        ExpectedVersion::Exact(v) => Some(v.get()),
    };
    let events = &request.events;
    let statement = sqlx::query(include_str!("append.sql"))
        .bind(event_ids.iter().map(|e| e.0).collect::<Vec<Uuid>>())
        .bind(request.stream_id.as_str())
        .bind(request.stream_type)
        .bind(
            events
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|e| e.schema_version).collect::<Vec<_>>())
        .bind(events.iter().map(|e| &e.payload).collect::<Vec<_>>())
        .bind(metadata)
        .bind(expected);
    Ok((event_ids, statement))
}

/// Reads the append statement's answer: the result, or why nothing was written.
fn append_result(
    request: &Append<'_>,
    event_ids: Vec<EventId>,
    row: &PgRow,
) -> Result<AppendResult, StoreError> {
    let current: i64 = row.try_get("current_version")?;
    let (Some(new_version), Some(last_position)) = (
        row.try_get::<Option<i64>, _>("new_version")?,
        row.try_get::<Option<i64>, _>("last_position")?,
    ) else {
        if let Some(actual) = row.try_get::<Option<String>, _>("current_type")? {
            if actual != request.stream_type {
                return Err(StoreError::StreamTypeMismatch {
                    stream_id: request.stream_id.clone(),
                    actual,
                    requested: request.stream_type.to_owned(),
                });
            }
        }
        return Err(StoreError::Conflict {
            stream_id: request.stream_id.clone(),
            expected: request.expected,
            actual: StreamVersion::new(current).ok(),
        });
    };
    Ok(AppendResult {
        stream_id: request.stream_id.clone(),
        stream_version: StreamVersion::new(new_version)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        event_ids,
        global_position: GlobalPosition(last_position),
    })
}

async fn current_version(
    conn: &mut PgConnection,
    stream_id: &StreamId,
) -> Result<Option<StreamVersion>, StoreError> {
    let max: Option<i64> =
        sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = $1")
            .bind(stream_id.as_str())
            .fetch_one(&mut *conn)
            .await?;
    max.map(StreamVersion::new)
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn recorded_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
    Ok(RecordedEvent {
        event_id: EventId(row.try_get("event_id")?),
        stream_id: StreamId::new(row.try_get::<String, _>("stream_id")?)
            .map_err(|e| corrupt(&e))?,
        stream_type: row.try_get("stream_type")?,
        stream_version: StreamVersion::new(row.try_get("stream_version")?)
            .map_err(|e| corrupt(&e))?,
        global_position: GlobalPosition(row.try_get("global_position")?),
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        payload: row.try_get("payload")?,
        metadata: serde_json::from_value(row.try_get("metadata")?).map_err(|e| corrupt(&e))?,
        recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
    })
}
