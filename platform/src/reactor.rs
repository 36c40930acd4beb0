//! What every reactor (a write service's part of the saga) shares: reading the
//! causing event, the command context of a reaction, and what an outcome means to
//! the consumer.
//!
//! A reaction is a command on the reacting service's own store, keyed for
//! idempotency by the causing event (`reaction:<event id>`), so a redelivered event
//! replays the first answer and appends nothing. It carries the causing event's
//! correlation id (or the event's own id when it has none) and names the event as
//! its cause.
//!
//! A reactor is a [`Reaction`]: it maps an event to the stream and command it
//! causes and names the refusals that mean "already done". [`Reactor`] runs it as
//! the consumer's [`EventHandler`]: the command through the service's
//! [`CommandHandler`], in its own transaction (ADR 9), settled by [`settle`].

use serde::de::DeserializeOwned;
use sqlx::PgConnection;

use crate::aggregate::{
    fingerprint, Aggregate, CommandContext, CommandError, CommandHandler, DomainError,
};
use crate::consumer::{Applied, ConsumedEvent, EventHandler, HandlerError};
use crate::service::ServiceContext;
use crate::store::{Appended, IdempotencyKey, Metadata, StreamId};

/// What an event causes: a command of aggregate `A` on a stream, or nothing.
pub type Caused<A> = Option<(StreamId, <A as Aggregate>::Command)>;

/// What one service's reactor does with the events it consumes.
pub trait Reaction: Send + Sync + 'static {
    /// The aggregate the reactions command.
    type Aggregate: Aggregate;
    /// The reacting service (`payments`): the `service` of its spans and metrics.
    const SERVICE: &'static str;
    /// The `actor` of every event a reaction appends (`payments-reactor`).
    const ACTOR: &'static str;
    /// Whether every orders event also updates what the service knows of its order
    /// (`known_orders`, [`crate::saga::learn`]) in the consumer's transaction.
    const LEARNS_ORDERS: bool = false;

    /// The stream and command `event` causes; `None` for an event the reactor
    /// ignores. An event it cannot read is [`HandlerError::Poison`].
    fn command_for(&self, event: &ConsumedEvent) -> Result<Caused<Self::Aggregate>, HandlerError>;

    /// The reason a refusal means "already done or not applicable" (skipped and
    /// counted), or `None` for one that is poison.
    fn skip_reason(error: &<Self::Aggregate as Aggregate>::Error) -> Option<&'static str>;
}

/// A [`Reaction`] over the service's store: the handler its consumer runs.
pub struct Reactor<R: Reaction> {
    reaction: R,
    commands: CommandHandler<R::Aggregate>,
}

impl<R: Reaction> Reactor<R> {
    /// `reaction`, commanding the service's store with its schemas.
    pub fn new(reaction: R, context: &ServiceContext) -> Self {
        Reactor {
            reaction,
            commands: CommandHandler::with_schemas(context.store.clone(), context.schemas.clone()),
        }
    }

    /// The reactor as the consumer runtime takes it.
    pub fn boxed(reaction: R, context: &ServiceContext) -> Box<dyn EventHandler> {
        Box::new(Self::new(reaction, context))
    }

    #[tracing::instrument(
        name = "reaction",
        skip_all,
        fields(service = R::SERVICE, event_id = %event.event_id, event_type = %event.event_type, stream_id)
    )]
    async fn react(&self, event: &ConsumedEvent) -> Result<(), HandlerError> {
        let Some((stream, command)) = self.reaction.command_for(event)? else {
            return Ok(());
        };
        tracing::Span::current().record("stream_id", tracing::field::display(&stream));
        let result = self
            .commands
            .execute(&stream, &command, &reaction_context(event, R::ACTOR)?)
            .await;
        settle(R::SERVICE, event, result, R::skip_reason)
    }
}

impl<R: Reaction> EventHandler for Reactor<R> {
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, event: &'a ConsumedEvent) -> Applied<'a> {
        Box::pin(async move {
            if R::LEARNS_ORDERS {
                // What the API checks commands that name an order against.
                crate::saga::learn(tx, event).await?;
            }
            self.react(event).await
        })
    }
}

/// The causing event's payload as `T`; poison when it does not fit.
pub fn payload<T: DeserializeOwned>(event: &ConsumedEvent) -> Result<T, HandlerError> {
    serde_json::from_value(event.payload.clone())
        .map_err(|e| HandlerError::Poison(format!("{} payload: {e}", event.event_type)))
}

/// The command context of a reaction to `event` by `actor`.
pub fn reaction_context(
    event: &ConsumedEvent,
    actor: &str,
) -> Result<CommandContext, HandlerError> {
    // Prefixed so that no client's key can collide with a reaction's.
    let key = IdempotencyKey::new(format!("reaction:{}", event.event_id))
        .map_err(|e| HandlerError::Poison(e.to_string()))?;
    Ok(CommandContext {
        expected_version: None,
        idempotency_key: Some(key),
        fingerprint: fingerprint(&("reaction", event.event_id)),
        metadata: Metadata {
            correlation_id: event.metadata.correlation_id.or(Some(event.event_id)),
            causation_id: Some(event.event_id),
            traceparent: event.metadata.traceparent.clone(),
            actor: Some(actor.to_owned()),
        },
    })
}

/// What the consumer makes of a reaction's outcome. A domain refusal for which
/// `skip_reason` names a reason ("already done", "no longer applicable") is skipped
/// and counted; any other refusal is poison; store trouble is retried.
pub fn settle<E: DomainError>(
    service: &'static str,
    event: &ConsumedEvent,
    result: Result<Appended, CommandError<E>>,
    skip_reason: impl Fn(&E) -> Option<&'static str>,
) -> Result<(), HandlerError> {
    match result {
        Ok(Appended::New(appended)) => {
            tracing::info!(stream_version = %appended.stream_version, "reaction appended");
            Ok(())
        }
        Ok(Appended::Replayed(_)) => {
            tracing::debug!("redelivered event: reaction already done");
            Ok(())
        }
        Err(CommandError::Domain(error)) => match skip_reason(&error) {
            Some(reason) => {
                tracing::info!(reason, %error, "reaction skipped");
                crate::telemetry::reaction_skipped(service, &event.event_type, reason);
                Ok(())
            }
            None => Err(HandlerError::Poison(format!("reaction refused: {error}"))),
        },
        Err(
            error @ (CommandError::Store(_)
            | CommandError::Conflict(_)
            | CommandError::Contended { .. }),
        ) => Err(HandlerError::Retry(error.to_string())),
        Err(
            error @ (CommandError::IdempotencyKeyReused(_)
            | CommandError::InvalidPayload { .. }
            | CommandError::Undecodable { .. }),
        ) => Err(HandlerError::Poison(error.to_string())),
    }
}
