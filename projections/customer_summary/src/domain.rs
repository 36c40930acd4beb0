//! What the customer summary reads from the events: the few payload fields it needs,
//! parsed into [`SummaryEvent`]. Pure: no database, no clock.
//!
//! The wire shapes are the Avro contracts in `schemas/orders/` and
//! `schemas/payments/` in the event store's JSON form; only the fields used here are
//! read, so a newer schema version that adds fields is read as well.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sluice_platform::values::{Amount, Currency};
use uuid::Uuid;

/// Longest customer id the orders service accepts.
pub const MAX_CUSTOMER_ID_CHARS: usize = 100;

/// A customer as the orders service identifies them: 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerId(String);

impl CustomerId {
    pub fn new(id: &str) -> Result<Self, InvalidCustomerId> {
        let chars = id.chars().count();
        if chars == 0 || chars > MAX_CUSTOMER_ID_CHARS {
            return Err(InvalidCustomerId(chars));
        }
        Ok(CustomerId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A customer id of the wrong length (the number of characters it has).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a customer id has 1 to {MAX_CUSTOMER_ID_CHARS} characters, this one has {0}")]
pub struct InvalidCustomerId(pub usize);

/// Money moving for a payment; both count towards what a customer spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    /// `PaymentCaptured`: adds to the spend.
    Captured,
    /// `PaymentRefunded`: subtracts from the spend.
    Refunded,
}

impl Movement {
    /// The name stored in `pending_payments.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Movement::Captured => "captured",
            Movement::Refunded => "refunded",
        }
    }
}

/// An event the customer summary acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SummaryEvent {
    OrderPlaced {
        order_id: Uuid,
        customer_id: CustomerId,
    },
    OrderConfirmed {
        order_id: Uuid,
    },
    OrderCancelled {
        order_id: Uuid,
    },
    /// Records the payment's currency: its captures and refunds do not repeat it.
    PaymentAuthorized {
        payment_id: Uuid,
        currency: Currency,
    },
    /// `PaymentDeclined`: known, and changes nothing (no money moved).
    PaymentDeclined,
    /// `PaymentCaptured` or `PaymentRefunded`.
    Payment(PaymentMovement),
}

/// A capture or refund: money of one payment, for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMovement {
    pub movement: Movement,
    pub payment_id: Uuid,
    pub order_id: Uuid,
    /// Greater than zero, in minor units of the payment's currency.
    pub amount: Amount,
}

/// A payload the summary cannot read: a missing or malformed field. Applying the
/// event can never succeed, so it is poison.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event_type} payload: {fault}")]
pub struct PayloadError {
    pub event_type: String,
    #[source]
    pub fault: PayloadFault,
}

/// What is wrong with a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadFault {
    /// A field is missing or of the wrong type: serde's message, which names it
    /// (``missing field `customer_id` ``).
    #[error("{0}")]
    Shape(String),
    /// The customer id is of the wrong length.
    #[error("customer_id: {0}")]
    CustomerId(#[from] InvalidCustomerId),
    /// A capture or refund of nothing.
    #[error("amount_minor: must be greater than zero")]
    ZeroAmount,
}

#[derive(Deserialize)]
struct OrderPlacedWire {
    order_id: Uuid,
    customer_id: String,
}

#[derive(Deserialize)]
struct OrderWire {
    order_id: Uuid,
}

#[derive(Deserialize)]
struct AuthorizedWire {
    payment_id: Uuid,
    currency: Currency,
}

#[derive(Deserialize)]
struct MovementWire {
    payment_id: Uuid,
    order_id: Uuid,
    amount_minor: Amount,
}

/// Parses an event by its type. `Ok(None)` for an event type the summary does not
/// know (another topic's, or a new one): the caller ignores it.
pub fn parse(
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<Option<SummaryEvent>, PayloadError> {
    let fail = |fault: PayloadFault| PayloadError {
        event_type: event_type.to_owned(),
        fault,
    };
    let event = match event_type {
        "OrderPlaced" => {
            let w: OrderPlacedWire = read(payload).map_err(fail)?;
            let customer_id = CustomerId::new(&w.customer_id).map_err(|e| fail(e.into()))?;
            SummaryEvent::OrderPlaced {
                order_id: w.order_id,
                customer_id,
            }
        }
        "OrderConfirmed" => SummaryEvent::OrderConfirmed {
            order_id: read::<OrderWire>(payload).map_err(fail)?.order_id,
        },
        "OrderCancelled" => SummaryEvent::OrderCancelled {
            order_id: read::<OrderWire>(payload).map_err(fail)?.order_id,
        },
        "PaymentAuthorized" => {
            let w: AuthorizedWire = read(payload).map_err(fail)?;
            SummaryEvent::PaymentAuthorized {
                payment_id: w.payment_id,
                currency: w.currency,
            }
        }
        "PaymentDeclined" => SummaryEvent::PaymentDeclined,
        "PaymentCaptured" => movement(Movement::Captured, payload).map_err(fail)?,
        "PaymentRefunded" => movement(Movement::Refunded, payload).map_err(fail)?,
        _ => return Ok(None),
    };
    Ok(Some(event))
}

fn movement(movement: Movement, payload: &serde_json::Value) -> Result<SummaryEvent, PayloadFault> {
    let w: MovementWire = read(payload)?;
    if w.amount_minor == Amount::ZERO {
        return Err(PayloadFault::ZeroAmount);
    }
    Ok(SummaryEvent::Payment(PaymentMovement {
        movement,
        payment_id: w.payment_id,
        order_id: w.order_id,
        amount: w.amount_minor,
    }))
}

fn read<T: DeserializeOwned>(payload: &serde_json::Value) -> Result<T, PayloadFault> {
    T::deserialize(payload).map_err(|e| PayloadFault::Shape(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_placed_reads_the_order_and_customer() {
        let order_id = Uuid::now_v7();
        let event = parse(
            "OrderPlaced",
            &json!({"order_id": order_id, "customer_id": "c-1", "currency": "EUR",
                    "lines": [], "total_minor": 0}),
        )
        .unwrap();
        assert_eq!(
            event,
            Some(SummaryEvent::OrderPlaced {
                order_id,
                customer_id: CustomerId::new("c-1").unwrap(),
            })
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = parse("OrderPlaced", &json!({"order_id": Uuid::now_v7()})).unwrap_err();
        assert!(err.to_string().starts_with("OrderPlaced payload:"), "{err}");
        assert!(err.to_string().contains("customer_id"), "{err}");
        let err = parse(
            "PaymentCaptured",
            &json!({"payment_id": Uuid::now_v7(), "order_id": Uuid::now_v7()}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("amount_minor"), "{err}");
    }

    #[test]
    fn malformed_values_are_refused() {
        let ids = json!({"payment_id": Uuid::now_v7(), "order_id": Uuid::now_v7()});
        let with = |k: &str, v: serde_json::Value| {
            let mut p = ids.clone();
            p[k] = v;
            p
        };
        assert!(parse("PaymentRefunded", &with("amount_minor", json!(-5))).is_err());
        assert!(parse("PaymentRefunded", &with("amount_minor", json!(0))).is_err());
        assert!(parse("PaymentAuthorized", &with("currency", json!("eur"))).is_err());
        assert!(parse("OrderConfirmed", &json!({"order_id": "not-a-uuid"})).is_err());
        let long = "x".repeat(MAX_CUSTOMER_ID_CHARS + 1);
        let err = parse(
            "OrderPlaced",
            &json!({"order_id": Uuid::now_v7(), "customer_id": long}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("customer_id"), "{err}");
    }

    #[test]
    fn refunds_are_read_with_or_without_a_reason() {
        let (payment_id, order_id) = (Uuid::now_v7(), Uuid::now_v7());
        for reason in [json!(null), json!("damaged")] {
            let event = parse(
                "PaymentRefunded",
                &json!({"payment_id": payment_id, "order_id": order_id,
                        "amount_minor": 250, "reason": reason}),
            )
            .unwrap();
            assert_eq!(
                event,
                Some(SummaryEvent::Payment(PaymentMovement {
                    movement: Movement::Refunded,
                    payment_id,
                    order_id,
                    amount: Amount::new(250).unwrap(),
                }))
            );
        }
    }

    #[test]
    fn unknown_event_types_are_not_errors() {
        assert_eq!(parse("ShipmentCreated", &json!({})), Ok(None));
        assert_eq!(parse("OrderPlaced2", &json!(null)), Ok(None));
    }
}
