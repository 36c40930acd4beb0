//! The payments reactor: the payments step of the order saga.
//!
//! - `OrderPlaced` → authorize the order's total in its currency under the order's
//!   payment id ([`payment_id_for_order`]); declined above the authorization limit,
//!   the same rule and the same configuration as the HTTP API ([`crate::config`]).
//! - `OrderCancelled` → compensate the order's saga payment: void its authorization,
//!   or refund what remains of its capture;
//! - every other event is ignored.
//!
//! Every orders event also updates what the service knows of its order
//! (`known_orders`, [`sluice_platform::saga::learn`]), in the consumer's transaction:
//! `POST /payments` is checked against it.
//!
//! The reaction ([`Reaction`]) maps an event to its command; the platform's
//! [`Reactor`] runs it through the service's own store, in its own transaction,
//! idempotent by the causing event's id ([`sluice_platform::reactor`]).
//!
//! A refusal meaning "already done or not applicable" (the payment id is taken, a
//! free order has nothing to authorize, a cancelled order's payment was declined or
//! never made) is logged, counted in
//! `sluice_reactor_reactions_skipped_total` and skipped; a store failure is retried;
//! an event the reactor cannot read is poison.

use serde::Deserialize;
use sluice_platform::consumer::{ConsumedEvent, EventHandler, HandlerError};
use sluice_platform::reactor::{payload, Reaction, Reactor};
use sluice_platform::service::{ServiceContext, ServiceError};
use sluice_platform::store::StreamId;
use sluice_platform::values::{Amount, Currency};
use uuid::Uuid;

use crate::domain::{Payment, PaymentCommand, PaymentError};

/// The `actor` of every event a reaction appends.
pub const ACTOR: &str = "payments-reactor";

pub use sluice_platform::saga::{payment_id_for_order, PAYMENT_ID_NAMESPACE};

/// The reactor of [`crate::SERVICE`], over the service's store and schemas; an
/// error when the authorization limit is misconfigured (see
/// [`crate::config::authorization_limit`]).
pub fn handler(context: &ServiceContext) -> Result<Box<dyn EventHandler>, ServiceError> {
    let authorization_limit = crate::config::authorization_limit(&context.component)?;
    tracing::info!(
        authorization_limit = %authorization_limit,
        "payments reactor authorization limit (minor units)"
    );
    Ok(Reactor::boxed(
        PaymentsReaction {
            authorization_limit,
        },
        context,
    ))
}

/// The payments step of the saga.
struct PaymentsReaction {
    authorization_limit: Amount,
}

/// The fields of `OrderPlaced` the reaction reads (the contract is
/// `schemas/orders/OrderPlaced`); the others are ignored.
#[derive(Debug, Deserialize)]
struct OrderPlaced {
    order_id: Uuid,
    currency: String,
    total_minor: i64,
}

impl Reaction for PaymentsReaction {
    type Aggregate = Payment;
    const SERVICE: &'static str = "payments";
    const ACTOR: &'static str = ACTOR;
    const LEARNS_ORDERS: bool = true;

    fn command_for(
        &self,
        event: &ConsumedEvent,
    ) -> Result<Option<(StreamId, PaymentCommand)>, HandlerError> {
        match event.event_type.as_str() {
            "OrderPlaced" => self.authorize(event).map(Some),
            "OrderCancelled" => {
                let (order_id, reason) = sluice_platform::saga::cancellation(event)?;
                let stream = StreamId::from(payment_id_for_order(order_id));
                Ok(Some((stream, PaymentCommand::Compensate { reason })))
            }
            _ => Ok(None),
        }
    }

    /// The refusals of an authorization or a compensation that mean "already done
    /// or not applicable".
    fn skip_reason(error: &PaymentError) -> Option<&'static str> {
        match error {
            PaymentError::AlreadyExists(_) => Some("payment_exists"),
            PaymentError::ZeroAmount => Some("nothing_to_authorize"),
            PaymentError::NotFound => Some("no_payment"),
            PaymentError::InvalidTransition {
                action: "compensate",
                ..
            } => Some("nothing_to_compensate"),
            PaymentError::InvalidTransition { .. }
            | PaymentError::CaptureExceedsAuthorized { .. }
            | PaymentError::RefundExceedsCaptured { .. } => None,
        }
    }
}

impl PaymentsReaction {
    /// Authorizes a placed order's total under the order's saga payment id.
    fn authorize(&self, event: &ConsumedEvent) -> Result<(StreamId, PaymentCommand), HandlerError> {
        let placed: OrderPlaced = payload(event)?;
        let invalid = |e: sluice_platform::values::ValueError| {
            HandlerError::Poison(format!("{}: {e}", event.event_type))
        };
        let payment_id = payment_id_for_order(placed.order_id);
        let command = PaymentCommand::Authorize {
            payment_id,
            order_id: placed.order_id,
            amount: Amount::new(placed.total_minor).map_err(invalid)?,
            currency: Currency::new(&placed.currency).map_err(invalid)?,
            limit: self.authorization_limit,
        };
        Ok((StreamId::from(payment_id), command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_taken_ids_and_free_orders_are_skipped() {
        assert_eq!(
            PaymentsReaction::skip_reason(&PaymentError::AlreadyExists(Uuid::nil())),
            Some("payment_exists")
        );
        assert_eq!(
            PaymentsReaction::skip_reason(&PaymentError::ZeroAmount),
            Some("nothing_to_authorize")
        );
        assert_eq!(
            PaymentsReaction::skip_reason(&PaymentError::NotFound),
            Some("no_payment")
        );
        assert_eq!(
            PaymentsReaction::skip_reason(&PaymentError::InvalidTransition {
                action: "capture",
                status: crate::domain::PaymentStatus::Declined
            }),
            None
        );
    }
}
