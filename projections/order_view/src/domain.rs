//! What the view takes from each event, and the statuses it shows: pure, no I/O.
//!
//! Payloads are the services' events in the event store's JSON shape (the Avro
//! contracts in `schemas/`). They are read into this crate's own types, never the
//! services' domain types: the contract is the schema, not another crate's code.
//! Fields the view does not use are ignored, so a newer schema version that adds an
//! optional field needs no change here.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event the view applies, with the fields it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderViewEvent {
    OrderPlaced(OrderPlaced),
    OrderConfirmed(OrderConfirmed),
    OrderCancelled(OrderCancelled),
    PaymentAuthorized(PaymentAuthorized),
    PaymentDeclined(PaymentDeclined),
    PaymentCaptured(PaymentCaptured),
    PaymentRefunded(PaymentRefunded),
    PaymentVoided(PaymentVoided),
    ShipmentCreated(ShipmentCreated),
    ShipmentDispatched(ShipmentDispatched),
    ShipmentDelivered(ShipmentDelivered),
    ShipmentCancelled(ShipmentCancelled),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: String,
    pub currency: String,
    pub lines: Vec<Line>,
    pub total_minor: i64,
}

/// One order line, stored as it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Line {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderConfirmed {
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentAuthorized {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentDeclined {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub currency: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentCaptured {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentRefunded {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentVoided {
    pub payment_id: Uuid,
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShipmentCreated {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShipmentDispatched {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShipmentDelivered {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShipmentCancelled {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
}

/// Why a payload cannot be applied. Retrying cannot help: the event is poison.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A field is missing or has the wrong type (serde names the field).
    #[error("{event_type} payload: {source}")]
    Shape {
        event_type: &'static str,
        source: serde_json::Error,
    },
    /// A field is there but breaks the contract (e.g. an amount that is not positive).
    #[error("{event_type} payload: `{field}` {problem}")]
    Invalid {
        event_type: &'static str,
        field: &'static str,
        problem: String,
    },
}

impl OrderViewEvent {
    /// Reads an event the view applies; `Ok(None)` for an event type it does not use.
    pub fn decode(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Option<Self>, DecodeError> {
        use OrderViewEvent as E;
        let event = match event_type {
            "OrderPlaced" => {
                let e: OrderPlaced = parse("OrderPlaced", payload)?;
                check(
                    "OrderPlaced",
                    "total_minor",
                    e.total_minor >= 0,
                    format_args!("must not be negative, got {}", e.total_minor),
                )?;
                E::OrderPlaced(e)
            }
            "OrderConfirmed" => E::OrderConfirmed(parse("OrderConfirmed", payload)?),
            "OrderCancelled" => E::OrderCancelled(parse("OrderCancelled", payload)?),
            "PaymentAuthorized" => paid("PaymentAuthorized", payload, E::PaymentAuthorized, |e| {
                e.amount_minor
            })?,
            "PaymentDeclined" => E::PaymentDeclined(parse("PaymentDeclined", payload)?),
            "PaymentCaptured" => paid("PaymentCaptured", payload, E::PaymentCaptured, |e| {
                e.amount_minor
            })?,
            "PaymentRefunded" => paid("PaymentRefunded", payload, E::PaymentRefunded, |e| {
                e.amount_minor
            })?,
            "PaymentVoided" => E::PaymentVoided(parse("PaymentVoided", payload)?),
            "ShipmentCreated" => E::ShipmentCreated(parse("ShipmentCreated", payload)?),
            "ShipmentDispatched" => E::ShipmentDispatched(parse("ShipmentDispatched", payload)?),
            "ShipmentDelivered" => E::ShipmentDelivered(parse("ShipmentDelivered", payload)?),
            "ShipmentCancelled" => E::ShipmentCancelled(parse("ShipmentCancelled", payload)?),
            _ => return Ok(None),
        };
        Ok(Some(event))
    }

    /// The service that recorded the event.
    pub fn source(&self) -> Source {
        use OrderViewEvent as E;
        match self {
            E::OrderPlaced(_) | E::OrderConfirmed(_) | E::OrderCancelled(_) => Source::Orders,
            E::PaymentAuthorized(_)
            | E::PaymentDeclined(_)
            | E::PaymentCaptured(_)
            | E::PaymentRefunded(_)
            | E::PaymentVoided(_) => Source::Payments,
            E::ShipmentCreated(_)
            | E::ShipmentDispatched(_)
            | E::ShipmentDelivered(_)
            | E::ShipmentCancelled(_) => Source::Shipping,
        }
    }

    /// The order the event belongs to: the row it changes.
    pub fn order_id(&self) -> Uuid {
        match self {
            OrderViewEvent::OrderPlaced(e) => e.order_id,
            OrderViewEvent::OrderConfirmed(e) => e.order_id,
            OrderViewEvent::OrderCancelled(e) => e.order_id,
            OrderViewEvent::PaymentAuthorized(e) => e.order_id,
            OrderViewEvent::PaymentDeclined(e) => e.order_id,
            OrderViewEvent::PaymentCaptured(e) => e.order_id,
            OrderViewEvent::PaymentRefunded(e) => e.order_id,
            OrderViewEvent::PaymentVoided(e) => e.order_id,
            OrderViewEvent::ShipmentCreated(e) => e.order_id,
            OrderViewEvent::ShipmentDispatched(e) => e.order_id,
            OrderViewEvent::ShipmentDelivered(e) => e.order_id,
            OrderViewEvent::ShipmentCancelled(e) => e.order_id,
        }
    }
}

/// The service an event comes from; each owns its own columns of the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Orders,
    Payments,
    Shipping,
}

fn parse<T: DeserializeOwned>(
    event_type: &'static str,
    payload: &serde_json::Value,
) -> Result<T, DecodeError> {
    T::deserialize(payload).map_err(|source| DecodeError::Shape { event_type, source })
}

/// Reads a payment event of `event_type` (into `event`) whose `amount` must be
/// greater than zero.
fn paid<T: DeserializeOwned>(
    event_type: &'static str,
    payload: &serde_json::Value,
    event: fn(T) -> OrderViewEvent,
    amount: fn(&T) -> i64,
) -> Result<OrderViewEvent, DecodeError> {
    let e: T = parse(event_type, payload)?;
    let value = amount(&e);
    check(
        event_type,
        "amount_minor",
        value > 0,
        format_args!("must be greater than zero, got {value}"),
    )?;
    Ok(event(e))
}

/// [`DecodeError::Invalid`] naming `field` with `problem`, unless `holds`.
fn check(
    event_type: &'static str,
    field: &'static str,
    holds: bool,
    problem: fmt::Arguments<'_>,
) -> Result<(), DecodeError> {
    if holds {
        Ok(())
    } else {
        Err(DecodeError::Invalid {
            event_type,
            field,
            problem: problem.to_string(),
        })
    }
}

/// An unknown status name (a query parameter or a stored value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of {expected}")]
pub struct UnknownStatus {
    pub value: String,
    /// The names it could have been, e.g. "`placed`, `confirmed`, `cancelled`".
    pub expected: String,
}

/// Declares a status enum stored and shown as snake_case text.
macro_rules! status {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, as the API and the database spell them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus {
                        value: s.to_owned(),
                        expected: [$(concat!("`", $text, "`")),+].join(", "),
                    }),
                }
            }
        }
    };
}

status! {
    /// Where the order is, as the orders service said.
    OrderStatus {
        Placed => "placed",
        Confirmed => "confirmed",
        Cancelled => "cancelled",
    }
}

status! {
    /// Where the order's payment is, as the payments service said.
    PaymentStatus {
        Authorized => "authorized",
        Declined => "declined",
        Captured => "captured",
        /// Part of the captured amount was refunded.
        PartiallyRefunded => "partially_refunded",
        /// The whole captured amount was refunded.
        Refunded => "refunded",
        /// The authorization was released before any capture.
        Voided => "voided",
    }
}

status! {
    /// Where the order's shipment is, as the shipping service said.
    ShipmentStatus {
        Created => "created",
        Dispatched => "dispatched",
        Delivered => "delivered",
        /// Called off before dispatch.
        Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_event_type_the_view_does_not_use_decodes_to_none() {
        let decoded = OrderViewEvent::decode("InvoiceIssued", &json!({"x": 1})).unwrap();
        assert_eq!(decoded, None);
    }

    #[test]
    fn a_missing_field_is_named() {
        let order_id = Uuid::now_v7();
        let err = OrderViewEvent::decode(
            "OrderPlaced",
            &json!({"order_id": order_id, "currency": "EUR", "lines": [], "total_minor": 0}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("customer_id"), "{err}");
    }

    #[test]
    fn a_malformed_order_id_is_named() {
        let err = OrderViewEvent::decode("OrderConfirmed", &json!({"order_id": "nope"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OrderConfirmed"), "{err}");
    }

    #[test]
    fn a_non_positive_amount_is_refused() {
        let err = OrderViewEvent::decode(
            "PaymentRefunded",
            &json!({"payment_id": Uuid::now_v7(), "order_id": Uuid::now_v7(),
                    "amount_minor": 0, "reason": null}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("amount_minor"), "{err}");
    }

    #[test]
    fn fields_the_view_does_not_use_are_ignored() {
        let order_id = Uuid::now_v7();
        let decoded = OrderViewEvent::decode(
            "OrderConfirmed",
            &json!({"order_id": order_id, "confirmed_by": "a newer schema"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(decoded.order_id(), order_id);
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in PaymentStatus::ALL {
            assert_eq!(s.as_str().parse::<PaymentStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        let err = "shipped".parse::<OrderStatus>().unwrap_err().to_string();
        assert!(err.contains("`placed`"), "{err}");
    }
}
