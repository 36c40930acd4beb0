//! The ids of the reference domain's order saga, shared by the services that take
//! part in it.
//!
//! The saga derives the payment and the shipment of an order from the order's id
//! (UUIDv5 in a namespace of each), so every service knows which payment and which
//! shipment belong to an order's own saga without asking another service. A
//! reaction uses them to tell the saga's own events from stray ones: a payment that
//! some client authorized for an order confirms and cancels nothing. The HTTP APIs
//! refuse these ids to clients, so only the saga's reactors create them.
//!
//! A service whose commands name an order (a payment for it, a shipment of it)
//! checks them against what it learned of the order from the orders topic: its
//! reactor records each order in its own `known_orders` table ([`learn`], in the
//! consumer's transaction), and its API reads it back ([`known_order`]). No query
//! crosses into the orders service's database.

use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::consumer::{ConsumedEvent, HandlerError};

/// The namespace of the payment ids derived from order ids. Never change it: the
/// payments already authorized are found by it.
pub const PAYMENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0xe3b6_90fd_1f93_47c7_963b_8bcd_1f44_f0f0);

/// The namespace of the shipment ids derived from order ids. Never change it: the
/// shipments already created are found by it.
pub const SHIPMENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0xd740_c85b_c59a_47d0_9582_20df_4381_7ae1);

/// The payment the saga authorizes for an order. One order gets one saga payment,
/// however often its `OrderPlaced` is delivered.
pub fn payment_id_for_order(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&PAYMENT_ID_NAMESPACE, order_id.as_bytes())
}

/// The shipment the saga creates for an order. One order gets one saga shipment,
/// however often its `OrderConfirmed` is delivered.
pub fn shipment_id_for_order(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&SHIPMENT_ID_NAMESPACE, order_id.as_bytes())
}

/// Longest reason a compensating event carries (the `PaymentVoided` and
/// `ShipmentCancelled` contracts: 1 to 500 characters).
pub const MAX_REASON_CHARS: usize = 500;

/// The order an `OrderCancelled` cancels, and the reason a compensation of it
/// records: `order cancelled: <the order's reason>`, bounded. Poison when the event
/// lacks either field.
pub fn cancellation(event: &ConsumedEvent) -> Result<(Uuid, String), HandlerError> {
    #[derive(serde::Deserialize)]
    struct OrderCancelled {
        order_id: Uuid,
        reason: String,
    }
    let cancelled: OrderCancelled = crate::reactor::payload(event)?;
    let reason = format!("order cancelled: {}", cancelled.reason.trim());
    Ok((
        cancelled.order_id,
        reason.chars().take(MAX_REASON_CHARS).collect(),
    ))
}

/// Where an order is, as far as the orders topic has told this service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStage {
    Placed,
    Confirmed,
    Cancelled,
}

impl OrderStage {
    fn parse(stage: &str) -> Option<Self> {
        match stage {
            "placed" => Some(OrderStage::Placed),
            "confirmed" => Some(OrderStage::Confirmed),
            "cancelled" => Some(OrderStage::Cancelled),
            _ => None,
        }
    }
}

impl std::fmt::Display for OrderStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OrderStage::Placed => "placed",
            OrderStage::Confirmed => "confirmed",
            OrderStage::Cancelled => "cancelled",
        })
    }
}

/// An order as a service learned it from the orders topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownOrder {
    pub order_id: Uuid,
    pub currency: String,
    pub total_minor: i64,
    pub stage: OrderStage,
}

/// Records in `known_orders` what an orders event tells of its order, inside the
/// consumer's transaction `tx`: `OrderPlaced` adds it, `OrderConfirmed` and
/// `OrderCancelled` move it on. Any other event changes nothing. An `OrderPlaced`
/// without its fields is poison.
pub async fn learn(tx: &mut PgConnection, event: &ConsumedEvent) -> Result<(), HandlerError> {
    if event.stream_type != "order" {
        return Ok(());
    }
    let order_id = || {
        event.payload["order_id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .ok_or_else(|| {
                HandlerError::Poison(format!("{} without an order_id", event.event_type))
            })
    };
    match event.event_type.as_str() {
        "OrderPlaced" => {
            let currency = event.payload["currency"]
                .as_str()
                .and_then(|c| crate::values::Currency::new(c).ok());
            let total = event.payload["total_minor"].as_i64().filter(|t| *t >= 0);
            let (Some(currency), Some(total)) = (currency, total) else {
                return Err(HandlerError::Poison(
                    "OrderPlaced without a valid currency and total_minor".into(),
                ));
            };
            let currency = currency.to_string();
            sqlx::query(
                "INSERT INTO known_orders (order_id, currency, total_minor, stage) \
                 VALUES ($1, $2, $3, 'placed') ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(order_id()?)
            .bind(&currency)
            .bind(total)
            .execute(&mut *tx)
            .await?;
        }
        "OrderConfirmed" => {
            sqlx::query(
                "UPDATE known_orders SET stage = 'confirmed' WHERE order_id = $1 AND stage = 'placed'",
            )
            .bind(order_id()?)
            .execute(&mut *tx)
            .await?;
        }
        "OrderCancelled" => {
            sqlx::query("UPDATE known_orders SET stage = 'cancelled' WHERE order_id = $1")
                .bind(order_id()?)
                .execute(&mut *tx)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// What this service has learned of `order_id`; `None` when the orders topic has not
/// told it of the order (yet).
pub async fn known_order(pool: &PgPool, order_id: Uuid) -> Result<Option<KnownOrder>, sqlx::Error> {
    let row =
        sqlx::query("SELECT currency, total_minor, stage FROM known_orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|row| {
        Some(KnownOrder {
            order_id,
            currency: row.get(0),
            total_minor: row.get(1),
            stage: OrderStage::parse(row.get::<&str, _>(2))?,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orders_saga_ids_are_stable_distinct_per_order_and_per_kind() {
        let order = Uuid::now_v7();
        assert_eq!(payment_id_for_order(order), payment_id_for_order(order));
        assert_ne!(
            payment_id_for_order(order),
            payment_id_for_order(Uuid::now_v7())
        );
        assert_ne!(payment_id_for_order(order), shipment_id_for_order(order));
        assert_eq!(payment_id_for_order(order).get_version_num(), 5);
        assert_eq!(shipment_id_for_order(order).get_version_num(), 5);
    }
}
