//! Aggregates and the command handler that runs them against the event store.
//!
//! An aggregate is pure: [`Aggregate::decide`] turns a command and the current state
//! into events (or a domain error), [`Aggregate::evolve`] folds an event into the
//! state. No clock, pool or random source reaches it; the handler does the I/O:
//! load (fold the stream), decide, append with the loaded version as the expected
//! version, and on a concurrent append start over in a new transaction.
//!
//! With a [`SchemaCatalog`] (every write service has one), each decided event's
//! payload is checked against the latest version of its Avro schema before anything
//! is appended, and stored with that version as its `schema_version`: an event
//! that could not be published is never stored.

use std::marker::PhantomData;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::avro::SchemaCatalog;
use crate::store::{
    Append, Appended, EventStore, ExpectedVersion, Idempotency, IdempotencyKey, Metadata, NewEvent,
    RecordedEvent, StoreError, StreamId, StreamVersion,
};
use crate::telemetry::{self, CommandOutcome};

/// How a domain error should be reported to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The command names a stream that does not exist (HTTP 404).
    NotFound,
    /// The command is not allowed in the stream's current state (HTTP 409).
    InvalidState,
    /// The command's content is invalid whatever the state (HTTP 422).
    Invalid,
}

/// A domain error knows which kind of rejection it is.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    fn rejection(&self) -> Rejection;
}

/// An event type of an aggregate: serialized as `{"event_type": ..., "payload": ...}`
/// (serde's adjacently tagged enum), so the payload holds the event's fields only.
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync {
    /// The schema version every event of this type is written with, when the handler
    /// has no [`SchemaCatalog`]; with one, it is the latest version of the event
    /// type's schema.
    fn schema_version(&self) -> i32 {
        1
    }
}

/// A pure aggregate.
pub trait Aggregate: Default + Send + Sync + Sized {
    /// Stored as `stream_type` on every event of this aggregate.
    const STREAM_TYPE: &'static str;
    type Command: Send + Sync;
    type Event: DomainEvent;
    type Error: DomainError;

    /// Decides what happens: the events a command produces in this state, or why not.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state.
    fn evolve(self, event: &Self::Event) -> Self;

    /// The state after `events`, from nothing: how a stream's history is read, and
    /// how a test states one (`Order::given(&[placed]).decide(&confirm)`).
    fn given(events: &[Self::Event]) -> Self {
        events.iter().fold(Self::default(), Self::evolve)
    }

    /// The history of an aggregate taken through `commands` from nothing, each
    /// decided on the state the ones before left; the first refusal, with the index
    /// of its command, ends it.
    fn history(commands: &[Self::Command]) -> Result<Vec<Self::Event>, (usize, Self::Error)> {
        let mut events = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            let decided = Self::given(&events).decide(command).map_err(|e| (i, e))?;
            events.extend(decided);
        }
        Ok(events)
    }
}

/// Errors of [`CommandHandler::execute`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: DomainError> {
    /// The aggregate refused the command; nothing was appended.
    #[error(transparent)]
    Domain(E),
    /// The stream was not at the version the caller expected; nothing was appended.
    #[error(transparent)]
    Conflict(StoreError),
    /// Retrying on concurrent appends did not get through within the attempt budget.
    #[error("stream {stream_id} is under heavy concurrent modification; retry later")]
    Contended { stream_id: StreamId },
    /// The idempotency key was used before for a different command.
    #[error(transparent)]
    IdempotencyKeyReused(StoreError),
    /// A decided event's payload does not match the latest version of its schema, or
    /// its event type has no schema: a programming error caught before anything is
    /// appended.
    #[error("event {event_type} was not appended: {message}")]
    InvalidPayload { event_type: String, message: String },
    /// A stored event could not be decoded into the aggregate's event type.
    #[error("stored event {event_type} v{schema_version} at version {stream_version} is undecodable: {message}")]
    Undecodable {
        event_type: String,
        schema_version: i32,
        stream_version: StreamVersion,
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl<E: DomainError> From<StoreError> for CommandError<E> {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => CommandError::Conflict(e),
            StoreError::IdempotencyKeyReused { .. } => CommandError::IdempotencyKeyReused(e),
            other => CommandError::Store(other),
        }
    }
}

/// How a command is to be executed.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    /// The version the caller saw (HTTP `If-Match`). With it, a concurrent change is a
    /// conflict returned to the caller; without it the handler reloads and decides
    /// again.
    pub expected_version: Option<StreamVersion>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Identifies the request behind an idempotency key (see [`fingerprint`]).
    pub fingerprint: String,
    pub metadata: Metadata,
}

/// A stable fingerprint of a command as the client sent it: the operation, the ids
/// it named and its body, e.g. `fingerprint(&("confirm_order", id, &body))`. Values
/// the server generates (a new stream id) must not be part of it, or a retry would
/// not match its first attempt.
pub fn fingerprint(request: &impl Serialize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(request).unwrap_or_default());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads aggregates from and appends their decisions to one event store.
#[derive(Debug)]
pub struct CommandHandler<A> {
    store: EventStore,
    schemas: Option<SchemaCatalog>,
    max_attempts: u32,
    _aggregate: PhantomData<fn() -> A>,
}

// Not derived: a handler is cloned whatever its aggregate is.
impl<A> Clone for CommandHandler<A> {
    fn clone(&self) -> Self {
        CommandHandler {
            store: self.store.clone(),
            schemas: self.schemas.clone(),
            max_attempts: self.max_attempts,
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> CommandHandler<A> {
    /// A handler that appends payloads unchecked (tests of the store, tools); write
    /// services use [`with_schemas`](Self::with_schemas).
    pub fn new(store: EventStore) -> Self {
        CommandHandler {
            store,
            schemas: None,
            max_attempts: 8,
            _aggregate: PhantomData,
        }
    }

    /// A handler that validates every new event against its schema in `schemas`.
    pub fn with_schemas(store: EventStore, schemas: SchemaCatalog) -> Self {
        CommandHandler {
            schemas: Some(schemas),
            ..Self::new(store)
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Folds a stream into its state; `None` when the stream has no events.
    pub async fn load(
        &self,
        stream_id: &StreamId,
    ) -> Result<Option<(A, StreamVersion)>, CommandError<A::Error>> {
        let events = self
            .store
            .read_stream(stream_id, StreamVersion::FIRST)
            .await?;
        fold::<A>(&events)
    }

    /// Whether `ctx`'s idempotency key already holds a first result, which
    /// [`execute`](Self::execute) will replay. A caller that checks a command against
    /// state outside the stream (what it learned of another service's aggregate)
    /// skips the check for a replay: a retry answers as its first attempt did, even
    /// if that state has moved on since.
    pub async fn replays(&self, ctx: &CommandContext) -> Result<bool, CommandError<A::Error>> {
        let Some(key) = ctx.idempotency_key.as_ref() else {
            return Ok(false);
        };
        let idem = Idempotency {
            key,
            fingerprint: &ctx.fingerprint,
        };
        Ok(self.store.idempotent_result(idem).await?.is_some())
    }

    /// Runs a command: replay of an idempotent retry, or load → decide → append.
    #[tracing::instrument(
        name = "command",
        skip_all,
        fields(stream_id = %stream_id, stream_type = A::STREAM_TYPE, stream_version, outcome)
    )]
    pub async fn execute(
        &self,
        stream_id: &StreamId,
        command: &A::Command,
        ctx: &CommandContext,
    ) -> Result<Appended, CommandError<A::Error>> {
        let started = Instant::now();
        let result = self.execute_once_decided(stream_id, command, ctx).await;
        let outcome = match &result {
            Ok(Appended::New(r)) => {
                tracing::Span::current().record("stream_version", r.stream_version.get());
                CommandOutcome::Accepted
            }
            Ok(Appended::Replayed(_)) => CommandOutcome::Replayed,
            Err(
                CommandError::Domain(_)
                | CommandError::IdempotencyKeyReused(_)
                | CommandError::InvalidPayload { .. },
            ) => CommandOutcome::Rejected,
            Err(CommandError::Conflict(_) | CommandError::Contended { .. }) => {
                CommandOutcome::Conflict
            }
            Err(CommandError::Store(_) | CommandError::Undecodable { .. }) => {
                CommandOutcome::Failed
            }
        };
        tracing::Span::current().record("outcome", tracing::field::debug(outcome));
        telemetry::command_handled(A::STREAM_TYPE, outcome, started);
        result
    }

    async fn execute_once_decided(
        &self,
        stream_id: &StreamId,
        command: &A::Command,
        ctx: &CommandContext,
    ) -> Result<Appended, CommandError<A::Error>> {
        let idempotency = ctx.idempotency_key.as_ref().map(|key| Idempotency {
            key,
            fingerprint: &ctx.fingerprint,
        });
        // A retried command answers with its first result even if the state has since
        // moved on (deciding again could now refuse it).
        let Some(idem) = idempotency else {
            return self.decide_and_append(stream_id, command, ctx, None).await;
        };
        if let Some(result) = self.store.idempotent_result(idem).await? {
            return Ok(Appended::Replayed(result));
        }
        match self
            .decide_and_append(stream_id, command, ctx, Some(idem))
            .await
        {
            Ok(appended) => Ok(appended),
            // An identical request may have committed between the lookup above and
            // the load: this one then decided on the state that request left (a
            // cancel of a cancelled order) and must answer as the first did.
            Err(error) => match self.store.idempotent_result(idem).await {
                Ok(Some(result)) => Ok(Appended::Replayed(result)),
                Err(reused @ StoreError::IdempotencyKeyReused { .. }) => {
                    Err(CommandError::from(reused))
                }
                Ok(None) | Err(_) => Err(error),
            },
        }
    }

    /// Load → decide → append, deciding again on a concurrent append.
    async fn decide_and_append(
        &self,
        stream_id: &StreamId,
        command: &A::Command,
        ctx: &CommandContext,
        idempotency: Option<Idempotency<'_>>,
    ) -> Result<Appended, CommandError<A::Error>> {
        for attempt in 1..=self.max_attempts {
            let (state, version) = match self.load(stream_id).await? {
                Some((state, version)) => (state, Some(version)),
                None => (A::default(), None),
            };
            let expected = match (ctx.expected_version, version) {
                (Some(seen), _) => ExpectedVersion::Exact(seen),
                (None, Some(v)) => ExpectedVersion::Exact(v),
                (None, None) => ExpectedVersion::NoStream,
            };
            if let (Some(seen), current) = (ctx.expected_version, version) {
                if current != Some(seen) {
                    return Err(CommandError::Conflict(StoreError::Conflict {
                        stream_id: stream_id.clone(),
                        expected,
                        actual: current,
                    }));
                }
            }
            let events = state.decide(command).map_err(CommandError::Domain)?;
            let events = self.to_new_events(&events)?;
            let outcome = self
                .store
                .append(Append {
                    stream_id,
                    stream_type: A::STREAM_TYPE,
                    expected,
                    events,
                    metadata: &ctx.metadata,
                    idempotency,
                })
                .await;
            match outcome {
                Err(StoreError::Conflict { .. }) if ctx.expected_version.is_none() => {
                    tracing::debug!(attempt, "concurrent append; deciding again");
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt) * 2))
                        .await;
                }
                other => return other.map_err(CommandError::from),
            }
        }
        Err(CommandError::Contended {
            stream_id: stream_id.clone(),
        })
    }

    /// Serializes decided events and, with a catalog, validates each against the
    /// latest version of its schema, which becomes its `schema_version`.
    fn to_new_events(&self, events: &[A::Event]) -> Result<Vec<NewEvent>, CommandError<A::Error>> {
        let mut new_events = events
            .iter()
            .map(to_new_event)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CommandError::Store(StoreError::Corrupt(e.to_string())))?;
        if let Some(catalog) = &self.schemas {
            for event in &mut new_events {
                match catalog.validate_latest(&event.event_type, &event.payload) {
                    Ok(version) => event.schema_version = version,
                    Err(e) => {
                        tracing::error!(
                            event_type = %event.event_type,
                            error = %e,
                            "decided event does not match its schema"
                        );
                        return Err(CommandError::InvalidPayload {
                            event_type: event.event_type.clone(),
                            message: e.to_string(),
                        });
                    }
                }
            }
        }
        Ok(new_events)
    }
}

/// Folds recorded events into an aggregate's state.
pub fn fold<A: Aggregate>(
    events: &[RecordedEvent],
) -> Result<Option<(A, StreamVersion)>, CommandError<A::Error>> {
    let Some(last) = events.last() else {
        return Ok(None);
    };
    let mut state = A::default();
    for recorded in events {
        state = state.evolve(&decode_event::<A::Event>(recorded).map_err(|e| {
            CommandError::Undecodable {
                event_type: recorded.event_type.clone(),
                schema_version: recorded.schema_version,
                stream_version: recorded.stream_version,
                message: e.to_string(),
            }
        })?);
    }
    Ok(Some((state, last.stream_version)))
}

/// Serializes a domain event into the store's shape.
pub fn to_new_event<E: DomainEvent>(event: &E) -> Result<NewEvent, serde_json::Error> {
    let mut tagged = serde_json::to_value(event)?;
    let event_type = tagged
        .get("event_type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| serde::ser::Error::custom("event enum must be tagged with `event_type`"))?;
    let payload = tagged
        .get_mut("payload")
        .map(serde_json::Value::take)
        .unwrap_or(serde_json::Value::Object(Default::default()));
    Ok(NewEvent {
        event_type,
        schema_version: event.schema_version(),
        payload,
    })
}

/// Decodes a recorded event into a domain event.
pub fn decode_event<E: DomainEvent>(recorded: &RecordedEvent) -> Result<E, serde_json::Error> {
    decode_payload(&recorded.event_type, &recorded.payload)
}

/// Decodes an event type and its payload (as stored, or decoded from Avro) into a
/// domain event.
pub fn decode_payload<E: DomainEvent>(
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<E, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "event_type": event_type,
        "payload": payload,
    }))
}
