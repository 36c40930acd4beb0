//! The consumer runtime: projections, reactors and other consumers of the services'
//! topics are built on it.
//!
//! - **Positions live in the consumer's own database**, in the same transaction as
//!   the change an event caused (`consumer_positions`: the next offset per topic and
//!   partition). On start the runtime assigns every partition of its topics itself,
//!   at those offsets (no consumer-group coordination, no broker-side commits). A
//!   crash anywhere neither loses an event nor applies one twice.
//! - **Per-stream continuity**: `stream_positions` keeps the last applied version of
//!   each stream. A version at or below it is a duplicate (the relay delivers at least
//!   once) and is dropped; a version beyond the next is a gap: the stream is parked
//!   (the event and every later one of the stream wait in `held_events`), the other
//!   streams move on, and the held events are retried in new transactions with
//!   backoff until the missing version has been applied. Never skipped, never
//!   dead-lettered for the gap alone.
//! - **Poison events**: a handler error is retried with backoff (bounded), then the
//!   event goes to `dead_letters` (and the `<component>.dlq` topic) and the consumer
//!   moves on. Undecodable records (unknown schema fingerprint: a newer producer;
//!   corrupt bytes) are dead-lettered at once: retrying cannot help until the
//!   consumer is upgraded, after which `sluice dlq replay` applies them.
//! - Events are applied in batches: one transaction per batch, a savepoint per event.
//! - Topics have their logical names here (`orders.events`: in positions, dead
//!   letters and every [`ConsumedEvent`]); only the names sent to and read from the
//!   broker carry the registry's prefix ([`ConsumerConfig::topic_names`]).

//!
//! The modules: `runtime` (the loops), `assign`, `apply` (batches, the fast and
//! the careful path), `positions` (offsets, stream positions and the continuity
//! check, held events, the generation), `dead_letter` (and `sluice dlq`), `decode`.
//! Their SQL sits beside them in `sql/`.

mod apply;
mod assign;
mod dead_letter;
mod decode;
mod positions;
mod runtime;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub use dead_letter::{dead_letters, replay_dead_letters, DeadLetter, Replayed};
pub use decode::DecodeError;
pub use runtime::CatchUp;

use crate::avro::SchemaCatalog;
use crate::broker::AssignError;
use crate::registry::{Registry, Replication, TopicNames};
use crate::store::{Metadata, StreamId, StreamVersion};

/// How often a consumer retries the events it holds behind stream gaps (each held
/// stream also backs off on its own).
const HELD_RETRY: Duration = Duration::from_secs(1);

/// The consumer runtime's tables (positions, stream positions, dead letters). Every
/// consuming component runs it before its own migrations.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations_consumer")
}

/// An event as a consumer sees it: the envelope from the headers, the payload
/// decoded from Avro into the event store's JSON shape, and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumedEvent {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub stream_id: StreamId,
    pub stream_type: String,
    pub stream_version: StreamVersion,
    pub global_position: i64,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

/// Why a handler could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event can never be applied as it is (violates the handler's
    /// expectations): dead-lettered without retries.
    #[error("{0}")]
    Poison(String),
    /// Possibly transient: retried with backoff, then dead-lettered.
    #[error("{0}")]
    Retry(String),
    /// The database refused a statement: retried with backoff, then dead-lettered.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What [`EventHandler::apply`] and [`EventHandler::apply_batch`] return: the
/// handler's work inside the consumer's transaction.
pub type Applied<'a> = BoxFuture<'a, Result<(), HandlerError>>;

/// What a consumer does with each event. `apply` runs inside the consumer's
/// transaction: whatever it writes commits together with the consumer's position.
pub trait EventHandler: Send + Sync + 'static {
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, event: &'a ConsumedEvent) -> Applied<'a>;

    /// Applies several events in the same transaction, with the same effect as
    /// [`apply`](Self::apply) on each in turn. `events` keep the consumer's order:
    /// each stream's events in version order, no duplicates, no gaps. A handler may
    /// apply them set-wise (a statement per kind of event rather than per event) as
    /// long as each stream's events take effect in order. On an error the consumer
    /// rolls the whole batch back and applies it event by event with `apply`.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a ConsumedEvent],
    ) -> Applied<'a> {
        Box::pin(async move {
            for event in events {
                self.apply(tx, event).await?;
            }
            Ok(())
        })
    }
}

/// Errors that stop a consumer.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The consumer's database failed: `run` waits and resumes from the stored positions.
    #[error("consumer database error")]
    Database(#[from] sqlx::Error),
    /// The Kafka client failed in a way it does not recover from by itself.
    #[error("kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A topic the consumer reads is not on the broker (its service never started?).
    #[error("topic `{0}` does not exist on the broker")]
    MissingTopic(String),
    /// `<component>.dlq` could not be created or differs from its spec.
    #[error("cannot create the dead-letter topic: {0}")]
    DeadLetterTopic(String),
    /// A rebuild swapped the read model while this consumer caught up.
    #[error("the read model was swapped for another generation while catching up")]
    GenerationChanged,
    /// Shutdown came before a bounded catch-up (`sluice verify`'s fold) reached its bound.
    #[error("interrupted before the fold reached its bound")]
    Interrupted,
    /// A blocking broker request's thread panicked or was cancelled.
    #[error("a broker request on a blocking thread failed: {0}")]
    Blocking(String),
}

impl From<AssignError<sqlx::Error>> for ConsumerError {
    fn from(e: AssignError<sqlx::Error>) -> Self {
        match e {
            AssignError::Positions(e) => ConsumerError::Database(e),
            AssignError::Kafka(e) => ConsumerError::Kafka(e),
            AssignError::Blocking(e) => ConsumerError::Blocking(e),
        }
    }
}

/// Tuning of a consumer.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Most events applied in one transaction.
    pub batch_size: usize,
    /// How long to wait for more events before applying a partial batch.
    pub batch_wait: Duration,
    /// Attempts of a failing event before it is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_backoff: Duration,
    /// The namespace of the topics on the broker (the registry's prefix).
    pub topic_names: TopicNames,
    /// Replication of the dead-letter topic the consumer creates.
    pub replication: Replication,
    /// Announce dead letters on `<component>.dlq` (they are always kept in the
    /// `dead_letters` table). Off for a fold that only checks (`sluice verify`).
    pub announce_dead_letters: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            batch_size: 500,
            batch_wait: Duration::from_millis(5),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(20),
            topic_names: TopicNames::default(),
            announce_dead_letters: true,
            replication: Replication::default(),
        }
    }
}

impl ConsumerConfig {
    /// The defaults, with the registry's topic namespace and replication.
    pub fn for_registry(registry: &Registry) -> Self {
        ConsumerConfig {
            topic_names: registry.topic_names(),
            replication: registry.replication(),
            ..ConsumerConfig::default()
        }
    }
}

/// A consumer of some topics into one component's database.
pub struct ConsumerRuntime<H> {
    component: String,
    topics: Vec<String>,
    pool: PgPool,
    bootstrap: String,
    catalog: Arc<SchemaCatalog>,
    handler: H,
    config: ConsumerConfig,
}
