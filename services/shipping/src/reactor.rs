//! The shipping reactor: the shipping step of the order saga.
//!
//! - `OrderConfirmed` → create the order's shipment under the order's shipment id
//!   ([`shipment_id_for_order`]);
//! - `OrderCancelled` → cancel the order's saga shipment, unless it was dispatched;
//! - every other event is ignored.
//!
//! Every orders event also updates what the service knows of its order
//! (`known_orders`, [`sluice_platform::saga::learn`]), in the consumer's transaction:
//! `POST /shipments` is checked against it.
//!
//! A reaction is a command through the service's own [`CommandHandler`], in its own
//! transaction on its own store (not the consumer's). Its idempotency key is the
//! causing event's id, so a redelivered event replays the first answer and appends
//! nothing: at-least-once delivery, effectively once. The new events carry the
//! causing event's correlation id (its id when it has none) and the causing event's
//! id as their causation id.
//!
//! A refusal meaning "already done or not applicable" (the shipment id is taken, a
//! cancelled order's shipment was never created, is already on its way or was
//! cancelled) is logged, counted in
//! `sluice_reactor_reactions_skipped_total` and skipped; a store failure is retried;
//! an event the reactor cannot read is poison.

use futures::future::BoxFuture;
use serde::Deserialize;
use sluice_platform::aggregate::CommandHandler;
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::consumer::{ConsumedEvent, EventHandler, HandlerError};
use sluice_platform::reactor::{payload, reaction_context, settle};
use sluice_platform::store::{EventStore, StreamId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Shipment, ShipmentCommand, ShipmentError, ShipmentStatus};

const SERVICE: &str = "shipping";
/// The `actor` of every event a reaction appends.
pub const ACTOR: &str = "shipping-reactor";

pub use sluice_platform::saga::{shipment_id_for_order, SHIPMENT_ID_NAMESPACE};

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
        tx: &'a mut PgConnection,
        event: &'a ConsumedEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            // What the API checks commands that name an order against.
            sluice_platform::saga::learn(tx, event).await?;
            self.react(event).await
        })
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
            "OrderCancelled" => self.cancel_shipment(event).await,
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
            .execute(&stream, &command, &reaction_context(event, ACTOR)?)
            .await;
        settle(SERVICE, event, result, skip_reason)
    }
}

impl ShippingReactor {
    async fn cancel_shipment(&self, event: &ConsumedEvent) -> Result<(), HandlerError> {
        let (order_id, reason) = sluice_platform::saga::cancellation(event)?;
        let command = ShipmentCommand::Cancel { reason };
        let stream = StreamId::from(shipment_id_for_order(order_id));
        tracing::Span::current().record("stream_id", tracing::field::display(&stream));
        let result = self
            .handler
            .execute(&stream, &command, &reaction_context(event, ACTOR)?)
            .await;
        settle(SERVICE, event, result, skip_reason)
    }
}

/// The refusals of a create or a cancel that mean "already done or not applicable".
fn skip_reason(error: &ShipmentError) -> Option<&'static str> {
    match error {
        ShipmentError::AlreadyCreated(_) => Some("shipment_exists"),
        ShipmentError::NotFound => Some("no_shipment"),
        ShipmentError::InvalidTransition {
            action: "cancel",
            status,
            ..
        } => Some(match status {
            ShipmentStatus::Cancelled => "shipment_cancelled",
            _ => "shipment_dispatched",
        }),
        ShipmentError::InvalidTransition { .. }
        | ShipmentError::NilId(_)
        | ShipmentError::InvalidCarrier(_)
        | ShipmentError::InvalidTrackingNumber(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_taken_shipment_id_is_skipped() {
        assert_eq!(
            skip_reason(&ShipmentError::AlreadyCreated(Uuid::nil())),
            Some("shipment_exists")
        );
        assert_eq!(skip_reason(&ShipmentError::NilId("order_id")), None);
    }
}
