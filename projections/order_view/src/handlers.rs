//! Applies events to `order_view`: one upsert per event type (the SQL files beside
//! this module), inside the consumer runtime's transaction.
//!
//! Invariants the statements rely on, and the rules they implement:
//! - The runtime applies each event once and a stream's events in version order
//!   (an order's, a payment's, a shipment's), so refunds may simply add up. Events of
//!   different streams (and topics) arrive in any order relative to each other, so
//!   each statement touches only its own service's columns and the rest commute.
//! - **An event for an order the view has not seen** creates the row: fields it does
//!   not know stay NULL (`order_status` until `OrderPlaced` arrives). Nothing waits,
//!   nothing is lost; such events are logged at debug level and counted
//!   (`sluice_projection_events_before_order_placed_total`).
//! - A row follows one payment and one shipment (see the crate docs); events of
//!   another payment or shipment of the same order are ignored, logged and counted
//!   (`sluice_projection_events_ignored_total`, `reason="other_payment"` /
//!   `"other_shipment"`).
//! - An event type the view does not use is ignored and counted
//!   (`reason="unknown_event_type"`). A payload that breaks its contract is poison:
//!   the runtime dead-letters it at once, naming the field.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sluice_platform::consumer::{ConsumedEvent, EventHandler, HandlerError};
use sqlx::PgConnection;

use crate::domain::{OrderViewEvent, Source};

/// The projection's name, as metrics label it.
const PROJECTION: &str = "order_view";

/// The order_view event handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderViewHandler;

impl EventHandler for OrderViewHandler {
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a ConsumedEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(apply(tx, event))
    }
}

/// Why an event changed nothing.
#[derive(Debug, Clone, Copy)]
enum Ignored {
    UnknownEventType,
    OtherPayment,
    OtherShipment,
}

impl Ignored {
    fn label(self) -> &'static str {
        match self {
            Ignored::UnknownEventType => "unknown_event_type",
            Ignored::OtherPayment => "other_payment",
            Ignored::OtherShipment => "other_shipment",
        }
    }
}

#[tracing::instrument(name = "order_view.apply", skip_all, fields(
    event_type = %event.event_type,
    stream_id = %event.stream_id,
    stream_version = event.stream_version,
    order_id,
))]
async fn apply(tx: &mut PgConnection, event: &ConsumedEvent) -> Result<(), HandlerError> {
    let decoded = OrderViewEvent::decode(&event.event_type, &event.payload)
        .map_err(|e| HandlerError::Poison(e.to_string()))?;
    let Some(decoded) = decoded else {
        ignored(&event.event_type, Ignored::UnknownEventType);
        return Ok(());
    };
    tracing::Span::current().record("order_id", tracing::field::display(decoded.order_id()));
    match upsert(tx, &decoded, event.recorded_at).await? {
        None => {
            // Only payment and shipment upserts can decline to change the row.
            let reason = match decoded.source() {
                Source::Shipping => Ignored::OtherShipment,
                Source::Orders | Source::Payments => Ignored::OtherPayment,
            };
            ignored(&event.event_type, reason);
        }
        Some(false) => {
            tracing::debug!("event for an order not placed yet: row kept until it is");
            metrics::counter!(
                "sluice_projection_events_before_order_placed_total",
                "projection" => PROJECTION,
                "event_type" => event.event_type.clone(),
            )
            .increment(1);
        }
        Some(true) => {}
    }
    Ok(())
}

fn ignored(event_type: &str, reason: Ignored) {
    tracing::debug!(reason = reason.label(), "event ignored");
    metrics::counter!(
        "sluice_projection_events_ignored_total",
        "projection" => PROJECTION,
        "event_type" => event_type.to_owned(),
        "reason" => reason.label(),
    )
    .increment(1);
}

/// Runs the event's upsert. `None` when the row follows another payment or
/// shipment (nothing changed); otherwise whether the order has been placed.
async fn upsert(
    tx: &mut PgConnection,
    event: &OrderViewEvent,
    at: DateTime<Utc>,
) -> Result<Option<bool>, HandlerError> {
    use OrderViewEvent as E;
    let query = match event {
        E::OrderPlaced(e) => sqlx::query_scalar(include_str!("handlers/order_placed.sql"))
            .bind(e.order_id)
            .bind(&e.customer_id)
            .bind(&e.currency)
            .bind(sqlx::types::Json(&e.lines))
            .bind(e.total_minor)
            .bind(at),
        E::OrderConfirmed(e) => sqlx::query_scalar(include_str!("handlers/order_confirmed.sql"))
            .bind(e.order_id)
            .bind(at),
        E::OrderCancelled(e) => sqlx::query_scalar(include_str!("handlers/order_cancelled.sql"))
            .bind(e.order_id)
            .bind(&e.reason)
            .bind(at),
        E::PaymentAuthorized(e) => {
            sqlx::query_scalar(include_str!("handlers/payment_authorized.sql"))
                .bind(e.order_id)
                .bind(e.payment_id)
                .bind(e.amount_minor)
                .bind(&e.currency)
                .bind(at)
        }
        E::PaymentDeclined(e) => sqlx::query_scalar(include_str!("handlers/payment_declined.sql"))
            .bind(e.order_id)
            .bind(e.payment_id)
            .bind(&e.currency)
            .bind(&e.reason)
            .bind(at),
        E::PaymentCaptured(e) => sqlx::query_scalar(include_str!("handlers/payment_captured.sql"))
            .bind(e.order_id)
            .bind(e.payment_id)
            .bind(e.amount_minor)
            .bind(at),
        E::PaymentRefunded(e) => sqlx::query_scalar(include_str!("handlers/payment_refunded.sql"))
            .bind(e.order_id)
            .bind(e.payment_id)
            .bind(e.amount_minor)
            .bind(at),
        E::ShipmentCreated(e) => sqlx::query_scalar(include_str!("handlers/shipment_created.sql"))
            .bind(e.order_id)
            .bind(e.shipment_id)
            .bind(at),
        E::ShipmentDispatched(e) => {
            sqlx::query_scalar(include_str!("handlers/shipment_dispatched.sql"))
                .bind(e.order_id)
                .bind(e.shipment_id)
                .bind(&e.carrier)
                .bind(&e.tracking_number)
                .bind(at)
        }
        E::ShipmentDelivered(e) => {
            sqlx::query_scalar(include_str!("handlers/shipment_delivered.sql"))
                .bind(e.order_id)
                .bind(e.shipment_id)
                .bind(at)
        }
    };
    Ok(query.fetch_optional(&mut *tx).await?)
}
