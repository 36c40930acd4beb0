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
//! A reaction is a command through the service's own [`CommandHandler`], in its own
//! transaction on its own store (not the consumer's). Its idempotency key is the
//! causing event's id, so a redelivered event replays the first answer and appends
//! nothing: at-least-once delivery, effectively once. The new events carry the
//! causing event's correlation id (its id when it has none) and the causing event's
//! id as their causation id.
//!
//! A refusal meaning "already done or no longer applicable" (the order was cancelled
//! or confirmed meanwhile, or is unknown here) is logged, counted in
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

use crate::domain::{Order, OrderCommand, OrderError, OrderStatus};

const SERVICE: &str = "orders";
/// The `actor` of every event a reaction appends.
pub const ACTOR: &str = "orders-reactor";
/// Longest cancel reason (the `OrderCancelled` contract: 1 to 500 characters).
const MAX_REASON_CHARS: usize = 500;

/// The reactor of [`crate::SERVICE`], over the service's store and schemas.
pub fn handler(store: EventStore, schemas: SchemaCatalog) -> Box<dyn EventHandler> {
    Box::new(OrdersReactor {
        handler: CommandHandler::with_schemas(store, schemas),
    })
}

struct OrdersReactor {
    handler: CommandHandler<Order>,
}

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

impl EventHandler for OrdersReactor {
    fn apply<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        event: &'a ConsumedEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.react(event))
    }
}

impl OrdersReactor {
    #[tracing::instrument(
        name = "reaction",
        skip_all,
        fields(service = SERVICE, event_id = %event.event_id, event_type = %event.event_type, stream_id)
    )]
    async fn react(&self, event: &ConsumedEvent) -> Result<(), HandlerError> {
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
            _ => return Ok(()),
        };
        let stream = StreamId::from(order_id);
        tracing::Span::current().record("stream_id", tracing::field::display(&stream));
        let result = self
            .handler
            .execute(&stream, &command, &reaction_context(event, ACTOR)?)
            .await;
        settle(SERVICE, event, result, skip_reason)
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
        OrderError::AlreadyPlaced(_) | OrderError::InvalidOrder(_) | OrderError::InvalidLine(_) => {
            None
        }
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
        assert_eq!(skip_reason(&cancelled), Some("order_cancelled"));
        assert_eq!(skip_reason(&OrderError::NotFound), Some("order_not_found"));
        assert_eq!(skip_reason(&OrderError::InvalidOrder("x".into())), None);
    }
}
