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
//! A reaction is a command through the service's own [`CommandHandler`], in its own
//! transaction on its own store (not the consumer's). Its idempotency key is the
//! causing event's id, so a redelivered event replays the first answer and appends
//! nothing: at-least-once delivery, effectively once. The new events carry the
//! causing event's correlation id (its id when it has none) and the causing event's
//! id as their causation id.
//!
//! A refusal meaning "already done or not applicable" (the payment id is taken, a
//! free order has nothing to authorize, a cancelled order's payment was declined or
//! never made) is logged, counted in
//! `sluice_reactor_reactions_skipped_total` and skipped; a store failure is retried;
//! an event the reactor cannot read is poison.

use futures::future::BoxFuture;
use serde::Deserialize;
use sluice_platform::aggregate::CommandHandler;
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::consumer::{ConsumedEvent, EventHandler, HandlerError};
use sluice_platform::reactor::{payload, reaction_context, settle};
use sluice_platform::store::{EventStore, StreamId};
use sluice_platform::values::{Amount, Currency};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Payment, PaymentCommand, PaymentError};

const SERVICE: &str = "payments";
/// The `actor` of every event a reaction appends.
pub const ACTOR: &str = "payments-reactor";

pub use sluice_platform::saga::{payment_id_for_order, PAYMENT_ID_NAMESPACE};

/// The reactor of [`crate::SERVICE`], over the service's store and schemas.
///
/// # Panics
///
/// At start-up, when the authorization limit is misconfigured (see
/// [`crate::config::authorization_limit`]).
pub fn handler(store: EventStore, schemas: SchemaCatalog) -> Box<dyn EventHandler> {
    let authorization_limit =
        crate::config::authorization_limit().unwrap_or_else(|e| panic!("{e}"));
    tracing::info!(
        authorization_limit = %authorization_limit,
        "payments reactor authorization limit (minor units)"
    );
    Box::new(PaymentsReactor {
        handler: CommandHandler::with_schemas(store, schemas),
        authorization_limit,
    })
}

struct PaymentsReactor {
    handler: CommandHandler<Payment>,
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

impl EventHandler for PaymentsReactor {
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

impl PaymentsReactor {
    #[tracing::instrument(
        name = "reaction",
        skip_all,
        fields(service = SERVICE, event_id = %event.event_id, event_type = %event.event_type, stream_id)
    )]
    async fn react(&self, event: &ConsumedEvent) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            "OrderPlaced" => self.authorize(event).await,
            "OrderCancelled" => self.compensate(event).await,
            _ => Ok(()),
        }
    }

    async fn authorize(&self, event: &ConsumedEvent) -> Result<(), HandlerError> {
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
        let stream = StreamId::from(payment_id);
        tracing::Span::current().record("stream_id", tracing::field::display(&stream));
        let result = self
            .handler
            .execute(&stream, &command, &reaction_context(event, ACTOR)?)
            .await;
        settle(SERVICE, event, result, skip_reason)
    }
}

impl PaymentsReactor {
    async fn compensate(&self, event: &ConsumedEvent) -> Result<(), HandlerError> {
        let (order_id, reason) = sluice_platform::saga::cancellation(event)?;
        let command = PaymentCommand::Compensate { reason };
        let stream = StreamId::from(payment_id_for_order(order_id));
        tracing::Span::current().record("stream_id", tracing::field::display(&stream));
        let result = self
            .handler
            .execute(&stream, &command, &reaction_context(event, ACTOR)?)
            .await;
        settle(SERVICE, event, result, skip_reason)
    }
}

/// The refusals of an authorization or a compensation that mean "already done or not
/// applicable".
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_taken_ids_and_free_orders_are_skipped() {
        assert_eq!(
            skip_reason(&PaymentError::AlreadyExists(Uuid::nil())),
            Some("payment_exists")
        );
        assert_eq!(
            skip_reason(&PaymentError::ZeroAmount),
            Some("nothing_to_authorize")
        );
        assert_eq!(skip_reason(&PaymentError::NotFound), Some("no_payment"));
        assert_eq!(
            skip_reason(&PaymentError::InvalidTransition {
                action: "capture",
                status: crate::domain::PaymentStatus::Declined
            }),
            None
        );
    }
}
