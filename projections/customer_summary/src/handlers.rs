//! Applies orders and payments events to the customer summary tables, inside the
//! consumer runtime's transaction (which also dedupes by stream version).
//!
//! Rules for events that do not fit:
//! - **An event type the summary does not know** is ignored (`Ok`), logged at debug
//!   and counted in
//!   `sluice_projection_events_ignored_total{projection, event_type, reason}`.
//! - **A payload missing a needed field** (or with a malformed one) is
//!   [`HandlerError::Poison`] naming the field: dead-lettered at once.
//! - **A capture or refund of an order not seen yet** is parked in
//!   `pending_payments` (logged, counted in
//!   `sluice_projection_payments_parked_total{projection}`) and folded into the
//!   customer's spend in the transaction that applies the order's `OrderPlaced`. The
//!   two topics are consumed independently, so this is the normal race, not an
//!   error: nothing is lost and the consumer does not wait. A payment of an order
//!   that is never placed stays parked.
//! - **`OrderConfirmed`/`OrderCancelled` of an order without `OrderPlaced`**, and a
//!   **capture or refund of a payment without `PaymentAuthorized`**, are poison: both
//!   come from the same stream as the event they need, after it, so the earlier one
//!   was dead-lettered. Replaying that dead letter first, then this one, applies both.

use chrono::{DateTime, Utc};
use sluice_platform::consumer::{Applied, ConsumedEvent, EventHandler, HandlerError};
use sluice_platform::telemetry;
use sluice_platform::values::Currency;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, CustomerId, Movement, PaymentMovement, SummaryEvent};
use crate::NAME;

/// The customer summary's [`EventHandler`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CustomerSummaryHandler;

impl EventHandler for CustomerSummaryHandler {
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, event: &'a ConsumedEvent) -> Applied<'a> {
        Box::pin(apply(tx, event))
    }
}

#[tracing::instrument(
    name = "projection_apply",
    skip_all,
    fields(
        projection = NAME,
        event_id = %event.event_id,
        event_type = %event.event_type,
        stream_id = %event.stream_id,
        stream_version = event.stream_version.get(),
    )
)]
async fn apply(tx: &mut PgConnection, event: &ConsumedEvent) -> Result<(), HandlerError> {
    let parsed = domain::parse(&event.event_type, &event.payload)
        .map_err(|e| HandlerError::Poison(e.to_string()))?;
    let Some(parsed) = parsed else {
        tracing::debug!("event type not used by this projection: ignored");
        telemetry::projection_events_ignored(NAME, &event.event_type, "unknown_event_type", 1);
        return Ok(());
    };
    match parsed {
        SummaryEvent::OrderPlaced {
            order_id,
            customer_id,
        } => order_placed(tx, order_id, &customer_id, event.recorded_at).await,
        SummaryEvent::OrderConfirmed { order_id } => {
            order_counted(tx, event, order_id, OrderCount::Confirmed).await
        }
        SummaryEvent::OrderCancelled { order_id } => {
            order_counted(tx, event, order_id, OrderCount::Cancelled).await
        }
        SummaryEvent::PaymentAuthorized {
            payment_id,
            currency,
        } => payment_authorized(tx, payment_id, currency).await,
        SummaryEvent::PaymentDeclined => Ok(()),
        SummaryEvent::Payment(moved) => payment_moved(tx, event, &moved).await,
    }
}

/// Counts the order for its customer, records who placed it, and folds in the
/// payments parked while it was unknown.
async fn order_placed(
    tx: &mut PgConnection,
    order_id: Uuid,
    customer_id: &CustomerId,
    recorded_at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    sqlx::query(include_str!("handlers/customer_created.sql"))
        .bind(customer_id.as_str())
        .bind(recorded_at)
        .execute(&mut *tx)
        .await?;
    let recorded = sqlx::query(include_str!("handlers/order_customer.sql"))
        .bind(order_id)
        .bind(customer_id.as_str())
        .execute(&mut *tx)
        .await?;
    if recorded.rows_affected() == 0 {
        // The runtime drops redelivered events by stream version; this guards the
        // counts should one slip through another way (a rebuilt position table).
        tracing::warn!(%order_id, "order already counted: OrderPlaced skipped");
        return Ok(());
    }
    sqlx::query(include_str!("handlers/order_placed.sql"))
        .bind(customer_id.as_str())
        .bind(recorded_at)
        .execute(&mut *tx)
        .await?;
    let folded = sqlx::query(include_str!("handlers/fold_pending_payments.sql"))
        .bind(order_id)
        .bind(customer_id.as_str())
        .execute(&mut *tx)
        .await?;
    if folded.rows_affected() > 0 {
        tracing::info!(%order_id, currencies = folded.rows_affected(), "parked payments folded in");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum OrderCount {
    Confirmed,
    Cancelled,
}

/// Adds a confirmed or cancelled order to its customer's counts.
async fn order_counted(
    tx: &mut PgConnection,
    event: &ConsumedEvent,
    order_id: Uuid,
    count: OrderCount,
) -> Result<(), HandlerError> {
    // Two fixed statements: a column name is never built from a value.
    let statement = match count {
        OrderCount::Confirmed => include_str!("handlers/order_confirmed.sql"),
        OrderCount::Cancelled => include_str!("handlers/order_cancelled.sql"),
    };
    let updated = sqlx::query(statement)
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(HandlerError::Poison(format!(
            "{} of order {order_id}, whose OrderPlaced was never applied \
             (dead-lettered?): replay that first",
            event.event_type
        )));
    }
    Ok(())
}

async fn payment_authorized(
    tx: &mut PgConnection,
    payment_id: Uuid,
    currency: Currency,
) -> Result<(), HandlerError> {
    sqlx::query(include_str!("handlers/payment_authorized.sql"))
        .bind(payment_id)
        .bind(currency.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Adds a capture or refund to the spend of the order's customer, in the payment's
/// currency; parks it when the order is not known yet.
async fn payment_moved(
    tx: &mut PgConnection,
    event: &ConsumedEvent,
    moved: &PaymentMovement,
) -> Result<(), HandlerError> {
    let (payment_id, order_id) = (moved.payment_id, moved.order_id);
    let currency: Option<String> =
        sqlx::query_scalar("SELECT currency FROM payments WHERE payment_id = $1")
            .bind(payment_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(currency) = currency else {
        return Err(HandlerError::Poison(format!(
            "{} of payment {payment_id}, whose PaymentAuthorized was never applied \
             (dead-lettered?): replay that first",
            event.event_type
        )));
    };
    let customer: Option<String> =
        sqlx::query_scalar("SELECT customer_id FROM order_customers WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(customer) = customer else {
        return park(tx, event, moved, &currency).await;
    };
    let (captured, refunded) = match moved.movement {
        Movement::Captured => (moved.amount.minor(), 0),
        Movement::Refunded => (0, moved.amount.minor()),
    };
    // The row first, then the sums (see spend_row.sql).
    sqlx::query(include_str!("handlers/spend_row.sql"))
        .bind(&customer)
        .bind(&currency)
        .execute(&mut *tx)
        .await?;
    sqlx::query(include_str!("handlers/spend_added.sql"))
        .bind(&customer)
        .bind(&currency)
        .bind(captured)
        .bind(refunded)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn park(
    tx: &mut PgConnection,
    event: &ConsumedEvent,
    moved: &PaymentMovement,
    currency: &str,
) -> Result<(), HandlerError> {
    sqlx::query(include_str!("handlers/payment_parked.sql"))
        .bind(event.event_id)
        .bind(moved.order_id)
        .bind(moved.payment_id)
        .bind(moved.movement.as_str())
        .bind(moved.amount.minor())
        .bind(currency)
        .bind(event.recorded_at)
        .execute(&mut *tx)
        .await?;
    tracing::info!(order_id = %moved.order_id, "payment of an order not seen yet: parked until its OrderPlaced");
    telemetry::projection_payments_parked(NAME);
    Ok(())
}
