//! The orders reactor: the orders step of the order saga.
//!
//! - `PaymentAuthorized` → confirm the payment's order, when the payment is the
//!   order's own saga payment and covers its total;
//! - `PaymentDeclined` → cancel the payment's order, saying why, when the payment is
//!   the order's own saga payment and the order is not confirmed yet;
//! - every other event is ignored.
//!
//! A payment some client authorized for an order through `POST /payments` is not
//! the saga's ([`sluice_platform::saga`]): it confirms and cancels nothing.
//!
//! The reaction ([`Reaction`]) maps an event to its command; the platform's
//! [`Reactor`] runs it through the service's own store, in its own transaction,
//! idempotent by the causing event's id ([`sluice_platform::reactor`]).
//!
//! A refusal meaning "already done or no longer applicable" (the order was cancelled
//! or confirmed meanwhile, or is unknown here) is logged, counted in
//! `sluice_reactor_reactions_skipped_total` and skipped; a store failure is retried;
//! an event the reactor cannot read is poison.

use serde::Deserialize;
use sluice_platform::consumer::{ConsumedEvent, EventHandler, HandlerError};
use sluice_platform::reactor::{payload, Reaction, Reactor};
use sluice_platform::service::{ServiceContext, ServiceError};
use sluice_platform::store::StreamId;
use uuid::Uuid;

use crate::domain::{Order, OrderCommand, OrderError, OrderStatus};

/// The `actor` of every event a reaction appends.
pub const ACTOR: &str = "orders-reactor";
/// Longest cancel reason (the `OrderCancelled` contract: 1 to 500 characters).
const MAX_REASON_CHARS: usize = 500;

/// The reactor of [`crate::SERVICE`], over the service's store and schemas.
pub fn handler(context: &ServiceContext) -> Result<Box<dyn EventHandler>, ServiceError> {
    Ok(Reactor::boxed(OrdersReaction, context))
}

/// The orders step of the saga.
struct OrdersReaction;

/// The fields of `PaymentAuthorized` the reaction reads (the contract is
/// `schemas/payments/PaymentAuthorized`); the others are ignored.
#[derive(Debug, Deserialize)]
struct PaymentAuthorized {
    payment_id: Uuid,
    order_id: Uuid,
    amount_minor: i64,
    currency: String,
}

/// The fields of `PaymentDeclined` the reaction reads (the contract is
/// `schemas/payments/PaymentDeclined`); the others are ignored.
#[derive(Debug, Deserialize)]
struct PaymentDeclined {
    payment_id: Uuid,
    order_id: Uuid,
    reason: String,
}

impl Reaction for OrdersReaction {
    type Aggregate = Order;
    const SERVICE: &'static str = "orders";
    const ACTOR: &'static str = ACTOR;

    fn command_for(
        &self,
        event: &ConsumedEvent,
    ) -> Result<Option<(StreamId, OrderCommand)>, HandlerError> {
        let (order_id, command) = match event.event_type.as_str() {
            "PaymentAuthorized" => {
                let authorized: PaymentAuthorized = payload(event)?;
                (
                    authorized.order_id,
                    OrderCommand::ConfirmPaid {
                        payment_id: authorized.payment_id,
                        amount_minor: authorized.amount_minor,
                        currency: authorized.currency,
                    },
                )
            }
            "PaymentDeclined" => {
                let declined: PaymentDeclined = payload(event)?;
                (declined.order_id, cancel_for(&declined))
            }
            _ => return Ok(None),
        };
        Ok(Some((StreamId::from(order_id), command)))
    }

    /// The refusals of a confirm or cancel that mean "already done, no longer
    /// applicable, or not the saga's business".
    fn skip_reason(error: &OrderError) -> Option<&'static str> {
        match error {
            OrderError::NotFound => Some("order_not_found"),
            OrderError::InvalidTransition { status, .. } => Some(match status {
                OrderStatus::Confirmed => "order_confirmed",
                OrderStatus::Cancelled => "order_cancelled",
                OrderStatus::NotPlaced | OrderStatus::Placed => "invalid_transition",
            }),
            OrderError::NotSagaPayment { .. } => Some("not_saga_payment"),
            OrderError::PaymentShort { .. } => Some("payment_short"),
            OrderError::AlreadyPlaced(_)
            | OrderError::InvalidOrder(_)
            | OrderError::InvalidLine(_) => None,
        }
    }
}

/// Cancels the order of a declined payment, naming the payment and the decline.
fn cancel_for(declined: &PaymentDeclined) -> OrderCommand {
    let reason = format!(
        "payment {} declined: {}",
        declined.payment_id,
        declined.reason.trim()
    );
    OrderCommand::CancelDeclined {
        payment_id: declined.payment_id,
        reason: reason.chars().take(MAX_REASON_CHARS).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decline_cancels_with_a_bounded_reason_naming_the_payment() {
        let payment_id = Uuid::now_v7();
        let declined = |reason: &str| PaymentDeclined {
            payment_id,
            order_id: Uuid::now_v7(),
            reason: reason.to_owned(),
        };
        assert_eq!(
            cancel_for(&declined("over the limit")),
            OrderCommand::CancelDeclined {
                payment_id,
                reason: format!("payment {payment_id} declined: over the limit")
            }
        );
        let OrderCommand::CancelDeclined { reason, .. } = cancel_for(&declined(&"x".repeat(600)))
        else {
            panic!("not a cancel");
        };
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
    }

    #[test]
    fn orders_no_longer_waiting_are_skipped() {
        let cancelled = OrderError::InvalidTransition {
            action: "confirm",
            status: OrderStatus::Cancelled,
        };
        assert_eq!(
            OrdersReaction::skip_reason(&cancelled),
            Some("order_cancelled")
        );
        assert_eq!(
            OrdersReaction::skip_reason(&OrderError::NotFound),
            Some("order_not_found")
        );
        assert_eq!(
            OrdersReaction::skip_reason(&OrderError::InvalidOrder("x".into())),
            None
        );
    }
}
