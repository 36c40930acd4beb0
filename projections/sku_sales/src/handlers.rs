//! Applies orders events to the SKU sales tables, inside the consumer runtime's
//! transaction (which also drops redelivered events by stream version and holds a
//! stream's events after a gap).
//!
//! Rules for events that do not fit:
//! - **An event type the model does not use** (`OrderConfirmed`, a new one) is
//!   ignored (`Ok`) and counted in
//!   `sluice_projection_events_ignored_total{projection, event_type, reason}`.
//! - **A payload missing a needed field** is [`HandlerError::Poison`] naming it.
//! - **An `OrderCancelled` whose `OrderPlaced` was never applied** is poison: both
//!   are of one stream, so the earlier one was dead-lettered; replay it first.
//! - **An order counted already** (an `OrderPlaced` reaching the handler a second
//!   time through another path: positions rebuilt, a dead letter replayed) changes
//!   nothing: each order is counted once, keyed by its id.

use chrono::{DateTime, Utc};
use sluice_platform::consumer::{Applied, ConsumedEvent, EventHandler, HandlerError};
use sluice_platform::telemetry;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, SalesEvent};
use crate::NAME;

/// The SKU sales model's [`EventHandler`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SkuSalesHandler;

impl EventHandler for SkuSalesHandler {
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, event: &'a ConsumedEvent) -> Applied<'a> {
        Box::pin(apply(tx, event))
    }
}

async fn apply(tx: &mut PgConnection, event: &ConsumedEvent) -> Result<(), HandlerError> {
    let parsed = domain::parse(&event.event_type, &event.payload)
        .map_err(|e| HandlerError::Poison(e.to_string()))?;
    let Some(parsed) = parsed else {
        // OrderConfirmed and the rest of orders.events: not used here.
        telemetry::projection_events_ignored(NAME, &event.event_type, "not_used", 1);
        return Ok(());
    };
    match parsed {
        SalesEvent::OrderPlaced { order_id, lines } => {
            order_placed(tx, order_id, &lines, event.recorded_at).await
        }
        SalesEvent::OrderCancelled { order_id } => order_cancelled(tx, event, order_id).await,
    }
}

async fn order_placed(
    tx: &mut PgConnection,
    order_id: Uuid,
    lines: &[(String, i64)],
    recorded_at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let recorded = sqlx::query(
        "INSERT INTO orders (order_id, placed_at) VALUES ($1, $2) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(recorded_at)
    .execute(&mut *tx)
    .await?;
    if recorded.rows_affected() == 0 {
        tracing::warn!(%order_id, "order already counted: OrderPlaced skipped");
        return Ok(());
    }
    for (sku, quantity) in lines {
        sqlx::query(
            "INSERT INTO skus (sku, orders_placed, units_ordered, last_ordered_at) \
             VALUES ($1, 1, $2, $3) \
             ON CONFLICT (sku) DO UPDATE \
             SET orders_placed = skus.orders_placed + 1, \
                 units_ordered = skus.units_ordered + EXCLUDED.units_ordered, \
                 last_ordered_at = GREATEST(skus.last_ordered_at, EXCLUDED.last_ordered_at)",
        )
        .bind(sku)
        .bind(quantity)
        .bind(recorded_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO order_lines (order_id, sku, quantity) VALUES ($1, $2, $3)")
            .bind(order_id)
            .bind(sku)
            .bind(quantity)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

async fn order_cancelled(
    tx: &mut PgConnection,
    event: &ConsumedEvent,
    order_id: Uuid,
) -> Result<(), HandlerError> {
    let cancelled = sqlx::query(
        "UPDATE orders SET cancelled_at = $2 WHERE order_id = $1 AND cancelled_at IS NULL",
    )
    .bind(order_id)
    .bind(event.recorded_at)
    .execute(&mut *tx)
    .await?;
    if cancelled.rows_affected() == 0 {
        let known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM orders WHERE order_id = $1)")
                .bind(order_id)
                .fetch_one(&mut *tx)
                .await?;
        if known {
            return Ok(()); // cancelled already
        }
        return Err(HandlerError::Poison(format!(
            "OrderCancelled of order {order_id}, whose OrderPlaced was never applied \
             (dead-lettered?): replay that first"
        )));
    }
    sqlx::query(
        "UPDATE skus s SET units_cancelled = s.units_cancelled + l.quantity \
           FROM order_lines l WHERE l.order_id = $1 AND s.sku = l.sku",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
