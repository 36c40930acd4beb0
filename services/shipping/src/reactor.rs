//! The shipping reactor: the shipping step of the order saga.
//!
//! - `OrderConfirmed` → create the order's shipment under the order's shipment id
//!   ([`shipment_id_for_order`]);
//! - every other event is ignored.
//!
//! A reaction is a command through the service's own [`CommandHandler`], in its own
//! transaction on its own store (not the consumer's). Its idempotency key is the
//! causing event's id, so a redelivered event replays the first answer and appends
//! nothing: at-least-once delivery, effectively once. The new events carry the
//! causing event's correlation id (its id when it has none) and the causing event's
//! id as their causation id.
//!
//! A refusal meaning "already done" (the shipment id is taken) is logged, counted in
//! `sluice_reactor_reactions_skipped_total` and skipped; a store failure is retried;
//! an event the reactor cannot read is poison.

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sluice_platform::aggregate::{fingerprint, CommandContext, CommandError, CommandHandler};
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::consumer::{ConsumedEvent, EventHandler, HandlerError};
use sluice_platform::store::{Appended, EventStore, IdempotencyKey, Metadata, StreamId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Shipment, ShipmentCommand, ShipmentError};

const SERVICE: &str = "shipping";
/// The `actor` of every event a reaction appends.
pub const ACTOR: &str = "shipping-reactor";

/// The namespace of the shipment ids the reactor derives from order ids. Never
/// change it: the shipments already created are found by it.
pub const SHIPMENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0xd740_c85b_c59a_47d0_9582_20df_4381_7ae1);

/// The shipment the saga creates for an order: a UUIDv5 of the order id, so the
/// saga can be followed from an order to its shipment, and one order gets one
/// reactor shipment however often its `OrderConfirmed` is delivered.
pub fn shipment_id_for_order(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&SHIPMENT_ID_NAMESPACE, order_id.as_bytes())
}

/// The reactor of [`crate::SERVICE`], over the service's store and schemas.
pub fn handler(store: EventStore, schemas: SchemaCatalog) -> Box<dyn EventHandler> {
    Box::new(ShippingReactor {
        handler: CommandHandler::with_schemas(store, schemas),
    })
}

struct ShippingReactor {
    handler: CommandHandler<Shipment>,
}

/// The fields of `OrderConfirmed` the reaction reads (the contract is
/// `schemas/orders/OrderConfirmed`).
#[derive(Debug, Deserialize)]
struct OrderConfirmed {
    order_id: Uuid,
}

impl EventHandler for ShippingReactor {
    fn apply<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        event: &'a ConsumedEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.react(event))
    }
}

impl ShippingReactor {
    #[tracing::instrument(
        name = "reaction",
        skip_all,
        fields(service = SERVICE, event_id = %event.event_id, event_type = %event.event_type, stream_id)
    )]
    async fn react(&self, event: &ConsumedEvent) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            "OrderConfirmed" => self.create_shipment(event).await,
            _ => Ok(()),
        }
    }

    async fn create_shipment(&self, event: &ConsumedEvent) -> Result<(), HandlerError> {
        let confirmed: OrderConfirmed = payload(event)?;
        let shipment_id = shipment_id_for_order(confirmed.order_id);
        let command = ShipmentCommand::Create {
            shipment_id,
            order_id: confirmed.order_id,
        };
        let stream = StreamId::from(shipment_id);
        tracing::Span::current().record("stream_id", tracing::field::display(&stream));
        let result = self
            .handler
            .execute(&stream, &command, &context(event)?)
            .await;
        settle(event, result)
    }
}

/// The refusals of a create that mean "already done".
fn skip_reason(error: &ShipmentError) -> Option<&'static str> {
    match error {
        ShipmentError::AlreadyCreated(_) => Some("shipment_exists"),
        ShipmentError::NotFound
        | ShipmentError::InvalidTransition { .. }
        | ShipmentError::NilId(_)
        | ShipmentError::InvalidCarrier(_)
        | ShipmentError::InvalidTrackingNumber(_) => None,
    }
}

/// The causing event's payload as `T`; poison when it does not fit.
fn payload<T: DeserializeOwned>(event: &ConsumedEvent) -> Result<T, HandlerError> {
    serde_json::from_value(event.payload.clone())
        .map_err(|e| HandlerError::Poison(format!("{} payload: {e}", event.event_type)))
}

/// The command context of a reaction: keyed by the causing event, carrying its
/// correlation and naming it as the cause.
fn context(event: &ConsumedEvent) -> Result<CommandContext, HandlerError> {
    // Prefixed so that no client key can collide with a reaction's.
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
            actor: Some(ACTOR.to_owned()),
        },
    })
}

/// What the consumer makes of a reaction's outcome.
fn settle(
    event: &ConsumedEvent,
    result: Result<Appended, CommandError<ShipmentError>>,
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
                metrics::counter!(
                    "sluice_reactor_reactions_skipped_total",
                    "service" => SERVICE,
                    "event_type" => event.event_type.clone(),
                    "reason" => reason,
                )
                .increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orders_shipment_id_is_stable_and_distinct_per_order() {
        let order = Uuid::now_v7();
        assert_eq!(shipment_id_for_order(order), shipment_id_for_order(order));
        assert_ne!(
            shipment_id_for_order(order),
            shipment_id_for_order(Uuid::now_v7())
        );
        assert_eq!(shipment_id_for_order(order).get_version_num(), 5);
    }

    #[test]
    fn only_a_taken_shipment_id_is_skipped() {
        assert_eq!(
            skip_reason(&ShipmentError::AlreadyCreated(Uuid::nil())),
            Some("shipment_exists")
        );
        assert_eq!(skip_reason(&ShipmentError::NilId("order_id")), None);
    }
}
