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
//! The reaction ([`Reaction`]) maps an event to its command; the platform's
//! [`Reactor`] runs it through the service's own store, in its own transaction,
//! idempotent by the causing event's id ([`sluice_platform::reactor`]).
//!
//! A refusal meaning "already done or not applicable" (the shipment id is taken, a
//! cancelled order's shipment was never created, is already on its way or was
//! cancelled) is logged, counted in
//! `sluice_reactor_reactions_skipped_total` and skipped; a store failure is retried;
//! an event the reactor cannot read is poison.

use serde::Deserialize;
use sluice_platform::consumer::{ConsumedEvent, EventHandler, HandlerError};
use sluice_platform::reactor::{payload, Reaction, Reactor};
use sluice_platform::service::{ServiceContext, ServiceError};
use sluice_platform::store::StreamId;
use uuid::Uuid;

use crate::domain::{Shipment, ShipmentCommand, ShipmentError, ShipmentStatus};

/// The `actor` of every event a reaction appends.
pub const ACTOR: &str = "shipping-reactor";

pub use sluice_platform::saga::{shipment_id_for_order, SHIPMENT_ID_NAMESPACE};

/// The reactor of [`crate::SERVICE`], over the service's store and schemas.
pub fn handler(context: &ServiceContext) -> Result<Box<dyn EventHandler>, ServiceError> {
    Ok(Reactor::boxed(ShippingReaction, context))
}

/// The shipping step of the saga.
struct ShippingReaction;

/// The fields of `OrderConfirmed` the reaction reads (the contract is
/// `schemas/orders/OrderConfirmed`).
#[derive(Debug, Deserialize)]
struct OrderConfirmed {
    order_id: Uuid,
}

impl Reaction for ShippingReaction {
    type Aggregate = Shipment;
    const SERVICE: &'static str = "shipping";
    const ACTOR: &'static str = ACTOR;
    const LEARNS_ORDERS: bool = true;

    fn command_for(
        &self,
        event: &ConsumedEvent,
    ) -> Result<Option<(StreamId, ShipmentCommand)>, HandlerError> {
        match event.event_type.as_str() {
            "OrderConfirmed" => {
                let confirmed: OrderConfirmed = payload(event)?;
                let shipment_id = shipment_id_for_order(confirmed.order_id);
                let command = ShipmentCommand::Create {
                    shipment_id,
                    order_id: confirmed.order_id,
                };
                Ok(Some((StreamId::from(shipment_id), command)))
            }
            "OrderCancelled" => {
                let (order_id, reason) = sluice_platform::saga::cancellation(event)?;
                let stream = StreamId::from(shipment_id_for_order(order_id));
                Ok(Some((stream, ShipmentCommand::Cancel { reason })))
            }
            _ => Ok(None),
        }
    }

    /// The refusals of a create or a cancel that mean "already done or not
    /// applicable".
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_taken_shipment_id_is_skipped() {
        assert_eq!(
            ShippingReaction::skip_reason(&ShipmentError::AlreadyCreated(Uuid::nil())),
            Some("shipment_exists")
        );
        assert_eq!(
            ShippingReaction::skip_reason(&ShipmentError::NilId("order_id")),
            None
        );
    }
}
