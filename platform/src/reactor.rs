//! What every reactor (a write service's part of the saga) shares: reading the
//! causing event, the command context of a reaction, and what an outcome means to
//! the consumer.
//!
//! A reaction is a command on the reacting service's own store, keyed for
//! idempotency by the causing event (`reaction:<event id>`), so a redelivered event
//! replays the first answer and appends nothing. It carries the causing event's
//! correlation id (or the event's own id when it has none) and names the event as
//! its cause.

use serde::de::DeserializeOwned;

use crate::aggregate::{fingerprint, CommandContext, CommandError, DomainError};
use crate::consumer::{ConsumedEvent, HandlerError};
use crate::store::{Appended, IdempotencyKey, Metadata};

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
