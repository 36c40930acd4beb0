//! What the SKU sales model reads from the events: the few payload fields it needs,
//! parsed into [`SalesEvent`]. Pure: no database, no clock.
//!
//! The wire shapes are the Avro contracts in `schemas/orders/` in the event store's
//! JSON form; only the fields used here are read, so a newer schema version that
//! adds fields is read as well.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use uuid::Uuid;

/// Longest SKU the orders service accepts, in characters.
pub const MAX_SKU_CHARS: usize = 64;

/// An event the SKU sales model acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SalesEvent {
    /// Quantities summed per SKU (an order may name a SKU on two lines).
    OrderPlaced {
        order_id: Uuid,
        lines: Vec<(String, i64)>,
    },
    OrderCancelled {
        order_id: Uuid,
    },
}

/// A payload the model cannot read: a missing or malformed field. Applying the
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
    /// (``missing field `lines` ``).
    #[error("{0}")]
    Shape(String),
    /// An order line of no quantity, or a negative one.
    #[error("lines: quantity {quantity} of {sku}")]
    Quantity { sku: String, quantity: i64 },
}

#[derive(Deserialize)]
struct OrderPlacedWire {
    order_id: Uuid,
    lines: Vec<LineWire>,
}

#[derive(Deserialize)]
struct LineWire {
    sku: String,
    quantity: i64,
}

#[derive(Deserialize)]
struct OrderWire {
    order_id: Uuid,
}

/// Parses an event by its type. `Ok(None)` for an event type the model does not
/// use (`OrderConfirmed`, or a new one): the caller ignores it.
pub fn parse(
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<Option<SalesEvent>, PayloadError> {
    let fail = |fault: PayloadFault| PayloadError {
        event_type: event_type.to_owned(),
        fault,
    };
    let event = match event_type {
        "OrderPlaced" => {
            let w: OrderPlacedWire = read(payload).map_err(fail)?;
            let mut lines: BTreeMap<String, i64> = BTreeMap::new();
            for l in w.lines {
                if l.quantity < 1 {
                    return Err(fail(PayloadFault::Quantity {
                        sku: l.sku,
                        quantity: l.quantity,
                    }));
                }
                *lines.entry(l.sku).or_default() += l.quantity;
            }
            SalesEvent::OrderPlaced {
                order_id: w.order_id,
                lines: lines.into_iter().collect(),
            }
        }
        "OrderCancelled" => SalesEvent::OrderCancelled {
            order_id: read::<OrderWire>(payload).map_err(fail)?.order_id,
        },
        _ => return Ok(None),
    };
    Ok(Some(event))
}

fn read<T: DeserializeOwned>(payload: &serde_json::Value) -> Result<T, PayloadFault> {
    T::deserialize(payload).map_err(|e| PayloadFault::Shape(e.to_string()))
}

/// A SKU no order can name: the number of characters it has, and whether one is
/// a control character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a SKU has 1 to {MAX_SKU_CHARS} printable characters, this one has {chars}{}",
    if *.control { ", one a control character" } else { "" })]
pub struct InvalidSku {
    pub chars: usize,
    pub control: bool,
}

/// A SKU as a query names it: 1 to [`MAX_SKU_CHARS`] characters, none a control
/// character (the orders service refuses those, so no such SKU is ever stored).
pub fn check_sku(sku: &str) -> Result<&str, InvalidSku> {
    let chars = sku.chars().count();
    let control = sku.chars().any(char::is_control);
    if chars == 0 || chars > MAX_SKU_CHARS || control {
        return Err(InvalidSku { chars, control });
    }
    Ok(sku)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_placed_sums_the_quantities_per_sku() {
        let order_id = Uuid::now_v7();
        let event = parse(
            "OrderPlaced",
            &json!({"order_id": order_id, "customer_id": "c-1", "currency": "EUR",
                    "lines": [{"sku": "B", "quantity": 2, "unit_price_minor": 100},
                              {"sku": "A", "quantity": 1, "unit_price_minor": 300},
                              {"sku": "B", "quantity": 3, "unit_price_minor": 100}],
                    "total_minor": 800}),
        )
        .unwrap();
        assert_eq!(
            event,
            Some(SalesEvent::OrderPlaced {
                order_id,
                lines: vec![("A".to_owned(), 1), ("B".to_owned(), 5)],
            })
        );
    }

    #[test]
    fn a_missing_or_malformed_field_is_named() {
        let err = parse("OrderPlaced", &json!({"order_id": Uuid::now_v7()})).unwrap_err();
        assert!(err.to_string().starts_with("OrderPlaced payload:"), "{err}");
        assert!(err.to_string().contains("lines"), "{err}");
        let err = parse("OrderCancelled", &json!({"order_id": "not-a-uuid"})).unwrap_err();
        assert!(
            err.to_string().starts_with("OrderCancelled payload:"),
            "{err}"
        );
        let err = parse(
            "OrderPlaced",
            &json!({"order_id": Uuid::now_v7(), "lines": [{"sku": "A", "quantity": 0}]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("quantity"), "{err}");
    }

    #[test]
    fn event_types_it_does_not_use_are_not_errors() {
        assert_eq!(parse("OrderConfirmed", &json!({})), Ok(None));
        assert_eq!(parse("PaymentCaptured", &json!(null)), Ok(None));
    }

    #[test]
    fn a_sku_is_one_to_sixty_four_printable_characters() {
        assert_eq!(check_sku("BOOK-1"), Ok("BOOK-1"));
        assert!(check_sku(&"x".repeat(MAX_SKU_CHARS)).is_ok());
        for bad in [
            String::new(),
            "x".repeat(MAX_SKU_CHARS + 1),
            "a\nb".to_owned(),
        ] {
            assert!(check_sku(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_sku("a\nb").unwrap_err().to_string(),
            "a SKU has 1 to 64 printable characters, this one has 3, one a control character"
        );
    }
}
