//! The order aggregate: pure decisions and state evolution, no I/O.
//!
//! Lifecycle: `NotPlaced` → place → `Placed` → confirm → `Confirmed`;
//! `Placed` or `Confirmed` → cancel → `Cancelled`. Confirming twice, cancelling
//! twice, or confirming a cancelled order are refused.

use serde::{Deserialize, Serialize};
use sluice_platform::aggregate::{Aggregate, DomainError, DomainEvent, Rejection};
use sluice_platform::saga::payment_id_for_order;
use sluice_platform::values::{Amount, Currency};
use uuid::Uuid;

/// Largest number of lines one order may have.
pub const MAX_LINES: usize = 100;
/// Largest quantity of one line.
pub const MAX_QUANTITY: u32 = 10_000;

/// Longest sku, in characters (as sent, before trimming).
pub const MAX_SKU_CHARS: usize = 64;
/// Longest customer id, in characters (as sent, before trimming).
pub const MAX_CUSTOMER_ID_CHARS: usize = 100;

/// A stock keeping unit: 1 to 64 printable characters. Surrounding whitespace is
/// trimmed; the length counts characters (not bytes) as sent, as the API's
/// `maxLength` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku(String);

impl Sku {
    pub fn new(raw: &str) -> Result<Self, OrderError> {
        let s = raw.trim();
        if s.is_empty() || raw.chars().count() > MAX_SKU_CHARS || s.chars().any(char::is_control) {
            return Err(OrderError::InvalidLine(format!(
                "sku `{s}` must be 1 to {MAX_SKU_CHARS} printable characters"
            )));
        }
        Ok(Sku(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: u32,
    pub unit_price: Amount,
}

impl OrderLine {
    /// Validates a line: quantity in 1..=MAX_QUANTITY.
    pub fn new(sku: Sku, quantity: u32, unit_price: Amount) -> Result<Self, OrderError> {
        if quantity == 0 || quantity > MAX_QUANTITY {
            return Err(OrderError::InvalidLine(format!(
                "quantity of `{}` must be between 1 and {MAX_QUANTITY}, got {quantity}",
                sku.0
            )));
        }
        Ok(OrderLine {
            sku,
            quantity,
            unit_price,
        })
    }

    fn total(&self) -> Option<Amount> {
        self.unit_price.checked_mul(i64::from(self.quantity))
    }
}

/// Commands the order aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    Place {
        order_id: Uuid,
        customer_id: String,
        currency: Currency,
        lines: Vec<OrderLine>,
    },
    Confirm,
    Cancel {
        reason: String,
    },
    /// The saga's step on `PaymentAuthorized`: confirm, when the payment is the
    /// order's own saga payment ([`payment_id_for_order`]) and covers its total in
    /// its currency.
    ConfirmPaid {
        payment_id: Uuid,
        amount_minor: i64,
        currency: String,
    },
    /// The saga's step on `PaymentDeclined`: cancel, when the payment is the order's
    /// own saga payment and the order still waits for it (a confirmed order stays).
    CancelDeclined {
        payment_id: Uuid,
        reason: String,
    },
}

/// A line as recorded in `OrderPlaced`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

/// Events of the order stream (the public contract lives in `schemas/orders/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum OrderEvent {
    OrderPlaced {
        order_id: Uuid,
        customer_id: String,
        currency: String,
        lines: Vec<LineItem>,
        total_minor: i64,
    },
    OrderConfirmed {
        order_id: Uuid,
    },
    OrderCancelled {
        order_id: Uuid,
        reason: String,
    },
}

impl DomainEvent for OrderEvent {}

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Confirm or cancel of an order that was never placed.
    #[error("order not found")]
    NotFound,
    /// Place of an order id that is already taken.
    #[error("order {0} already exists")]
    AlreadyPlaced(Uuid),
    /// Confirm or cancel not allowed in the order's current status.
    #[error("cannot {action} an order that is {status}")]
    InvalidTransition {
        action: &'static str,
        status: OrderStatus,
    },
    /// An order without lines, with too many lines, or whose total overflows.
    #[error("invalid order: {0}")]
    InvalidOrder(String),
    /// A line with a bad sku or quantity.
    #[error("invalid order line: {0}")]
    InvalidLine(String),
    /// A payment event that is not the order's own saga payment: someone else's
    /// payment for this order confirms and cancels nothing.
    #[error("payment {payment_id} is not this order's saga payment {expected}")]
    NotSagaPayment { payment_id: Uuid, expected: Uuid },
    /// The saga payment does not cover the order's total in its currency.
    #[error("payment {payment_id} of {paid_minor} {paid_currency} does not cover the order's total of {total_minor} {currency}")]
    PaymentShort {
        payment_id: Uuid,
        paid_minor: i64,
        paid_currency: String,
        total_minor: i64,
        currency: String,
    },
}

impl DomainError for OrderError {
    fn rejection(&self) -> Rejection {
        match self {
            OrderError::NotFound => Rejection::NotFound,
            OrderError::AlreadyPlaced(_) | OrderError::InvalidTransition { .. } => {
                Rejection::InvalidState
            }
            OrderError::InvalidOrder(_)
            | OrderError::InvalidLine(_)
            | OrderError::NotSagaPayment { .. }
            | OrderError::PaymentShort { .. } => Rejection::Invalid,
        }
    }
}

/// Where an order is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    #[default]
    NotPlaced,
    Placed,
    Confirmed,
    Cancelled,
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OrderStatus::NotPlaced => "not placed",
            OrderStatus::Placed => "placed",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Cancelled => "cancelled",
        })
    }
}

/// The order's state, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    pub order_id: Option<Uuid>,
    pub status: OrderStatus,
    pub customer_id: String,
    pub currency: String,
    pub lines: Vec<LineItem>,
    pub total_minor: i64,
    pub cancel_reason: Option<String>,
}

impl Aggregate for Order {
    const STREAM_TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn decide(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        match (command, self.status) {
            (
                OrderCommand::Place {
                    order_id,
                    customer_id,
                    currency,
                    lines,
                },
                OrderStatus::NotPlaced,
            ) => Ok(vec![place(*order_id, customer_id, *currency, lines)?]),
            (OrderCommand::Place { order_id, .. }, _) => Err(OrderError::AlreadyPlaced(*order_id)),
            (_, OrderStatus::NotPlaced) => Err(OrderError::NotFound),
            (OrderCommand::Confirm, OrderStatus::Placed) => Ok(vec![OrderEvent::OrderConfirmed {
                order_id: self.id(),
            }]),
            (OrderCommand::Confirm, status) => Err(OrderError::InvalidTransition {
                action: "confirm",
                status,
            }),
            (OrderCommand::Cancel { reason }, OrderStatus::Placed | OrderStatus::Confirmed) => {
                Ok(vec![OrderEvent::OrderCancelled {
                    order_id: self.id(),
                    reason: reason.clone(),
                }])
            }
            (OrderCommand::Cancel { .. }, status) => Err(OrderError::InvalidTransition {
                action: "cancel",
                status,
            }),
            (
                OrderCommand::ConfirmPaid { payment_id, .. }
                | OrderCommand::CancelDeclined { payment_id, .. },
                _,
            ) if *payment_id != payment_id_for_order(self.id()) => {
                Err(OrderError::NotSagaPayment {
                    payment_id: *payment_id,
                    expected: payment_id_for_order(self.id()),
                })
            }
            (
                OrderCommand::ConfirmPaid {
                    payment_id,
                    amount_minor,
                    currency,
                },
                OrderStatus::Placed,
            ) => {
                if *currency != self.currency || *amount_minor < self.total_minor {
                    return Err(OrderError::PaymentShort {
                        payment_id: *payment_id,
                        paid_minor: *amount_minor,
                        paid_currency: currency.clone(),
                        total_minor: self.total_minor,
                        currency: self.currency.clone(),
                    });
                }
                Ok(vec![OrderEvent::OrderConfirmed {
                    order_id: self.id(),
                }])
            }
            (OrderCommand::ConfirmPaid { .. }, status) => Err(OrderError::InvalidTransition {
                action: "confirm",
                status,
            }),
            (OrderCommand::CancelDeclined { reason, .. }, OrderStatus::Placed) => {
                Ok(vec![OrderEvent::OrderCancelled {
                    order_id: self.id(),
                    reason: reason.clone(),
                }])
            }
            (OrderCommand::CancelDeclined { .. }, status) => Err(OrderError::InvalidTransition {
                action: "cancel",
                status,
            }),
        }
    }

    fn evolve(mut self, event: &OrderEvent) -> Self {
        match event {
            OrderEvent::OrderPlaced {
                order_id,
                customer_id,
                currency,
                lines,
                total_minor,
            } => {
                self.order_id = Some(*order_id);
                self.status = OrderStatus::Placed;
                self.customer_id = customer_id.clone();
                self.currency = currency.clone();
                self.lines = lines.clone();
                self.total_minor = *total_minor;
            }
            OrderEvent::OrderConfirmed { .. } => self.status = OrderStatus::Confirmed,
            OrderEvent::OrderCancelled { reason, .. } => {
                self.status = OrderStatus::Cancelled;
                self.cancel_reason = Some(reason.clone());
            }
        }
        self
    }
}

impl Order {
    fn id(&self) -> Uuid {
        self.order_id.unwrap_or_default()
    }
}

fn place(
    order_id: Uuid,
    customer_id: &str,
    currency: Currency,
    lines: &[OrderLine],
) -> Result<OrderEvent, OrderError> {
    if lines.is_empty() {
        return Err(OrderError::InvalidOrder(
            "an order needs at least one line".into(),
        ));
    }
    if lines.len() > MAX_LINES {
        return Err(OrderError::InvalidOrder(format!(
            "an order may have at most {MAX_LINES} lines, got {}",
            lines.len()
        )));
    }
    // Characters as sent, as the API's `maxLength` counts them; stored trimmed.
    let trimmed = customer_id.trim();
    if trimmed.is_empty() || customer_id.chars().count() > MAX_CUSTOMER_ID_CHARS {
        return Err(OrderError::InvalidOrder(format!(
            "customer_id must be 1 to {MAX_CUSTOMER_ID_CHARS} characters, not all whitespace"
        )));
    }
    let customer_id = trimmed;
    let total = lines
        .iter()
        .try_fold(Amount::ZERO, |sum, line| {
            line.total().and_then(|t| sum.checked_add(t))
        })
        .ok_or_else(|| OrderError::InvalidOrder("the order total is too large".into()))?;
    Ok(OrderEvent::OrderPlaced {
        order_id,
        customer_id: customer_id.to_owned(),
        currency: currency.to_string(),
        lines: lines
            .iter()
            .map(|l| LineItem {
                sku: l.sku.as_str().to_owned(),
                // MAX_QUANTITY keeps this in range.
                quantity: i32::try_from(l.quantity).unwrap_or(i32::MAX),
                unit_price_minor: l.unit_price.minor(),
            })
            .collect(),
        total_minor: total.minor(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: u32, price: i64) -> OrderLine {
        OrderLine::new(
            Sku::new(sku).unwrap(),
            quantity,
            Amount::new(price).unwrap(),
        )
        .unwrap()
    }

    fn place_cmd(id: Uuid) -> OrderCommand {
        OrderCommand::Place {
            order_id: id,
            customer_id: "c-1".into(),
            currency: Currency::new("EUR").unwrap(),
            lines: vec![line("A", 2, 250), line("B", 1, 1000)],
        }
    }

    /// Given events, when a command, then the events it produces (or its error).
    fn given(events: &[OrderEvent]) -> Order {
        events.iter().fold(Order::default(), Order::evolve)
    }

    #[test]
    fn placing_an_order_records_lines_and_total() {
        let id = Uuid::now_v7();
        let events = given(&[]).decide(&place_cmd(id)).unwrap();
        let [OrderEvent::OrderPlaced {
            total_minor, lines, ..
        }] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert_eq!(*total_minor, 1500);
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn placing_twice_is_refused() {
        let id = Uuid::now_v7();
        let placed = given(&[]).decide(&place_cmd(id)).unwrap();
        assert_eq!(
            given(&placed).decide(&place_cmd(id)),
            Err(OrderError::AlreadyPlaced(id))
        );
    }

    #[test]
    fn an_order_without_lines_is_invalid() {
        let cmd = OrderCommand::Place {
            order_id: Uuid::now_v7(),
            customer_id: "c".into(),
            currency: Currency::new("EUR").unwrap(),
            lines: vec![],
        };
        assert!(matches!(
            given(&[]).decide(&cmd),
            Err(OrderError::InvalidOrder(_))
        ));
    }

    #[test]
    fn skus_are_counted_in_characters_not_bytes() {
        // 64 two-byte characters: 128 bytes, within the 64 characters the API declares.
        assert_eq!(
            Sku::new(&"é".repeat(MAX_SKU_CHARS)).unwrap().as_str(),
            "é".repeat(MAX_SKU_CHARS)
        );
        assert_eq!(Sku::new(" A-1\t").unwrap().as_str(), "A-1");
        for bad in [
            "".to_owned(),
            " \t ".to_owned(),
            "A\u{7}1".to_owned(),
            "é".repeat(MAX_SKU_CHARS + 1),
            format!(" {}", "x".repeat(MAX_SKU_CHARS)),
        ] {
            assert!(Sku::new(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn customer_ids_are_counted_in_characters_not_bytes() {
        let place_for = |customer_id: &str| OrderCommand::Place {
            order_id: Uuid::now_v7(),
            customer_id: customer_id.into(),
            currency: Currency::new("EUR").unwrap(),
            lines: vec![line("A", 1, 1)],
        };
        let long = "ü".repeat(MAX_CUSTOMER_ID_CHARS);
        let [OrderEvent::OrderPlaced { customer_id, .. }] =
            &given(&[]).decide(&place_for(&long)).unwrap()[..]
        else {
            panic!("placed")
        };
        assert_eq!(customer_id, &long);
        for bad in [
            "   ".to_owned(),
            "ü".repeat(MAX_CUSTOMER_ID_CHARS + 1),
            format!("{long} "),
        ] {
            assert!(
                matches!(
                    given(&[]).decide(&place_for(&bad)),
                    Err(OrderError::InvalidOrder(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn zero_quantity_lines_are_invalid() {
        assert!(OrderLine::new(Sku::new("A").unwrap(), 0, Amount::ZERO).is_err());
        assert!(Sku::new(" ").is_err());
    }

    #[test]
    fn overflowing_totals_are_invalid() {
        let cmd = OrderCommand::Place {
            order_id: Uuid::now_v7(),
            customer_id: "c".into(),
            currency: Currency::new("EUR").unwrap(),
            lines: vec![line("A", MAX_QUANTITY, i64::MAX / 2)],
        };
        assert!(matches!(
            given(&[]).decide(&cmd),
            Err(OrderError::InvalidOrder(_))
        ));
    }

    #[test]
    fn a_placed_order_can_be_confirmed_once() {
        let id = Uuid::now_v7();
        let mut history = given(&[]).decide(&place_cmd(id)).unwrap();
        let confirmed = given(&history).decide(&OrderCommand::Confirm).unwrap();
        assert_eq!(confirmed, [OrderEvent::OrderConfirmed { order_id: id }]);
        history.extend(confirmed);
        assert_eq!(given(&history).status, OrderStatus::Confirmed);
        assert!(matches!(
            given(&history).decide(&OrderCommand::Confirm),
            Err(OrderError::InvalidTransition {
                action: "confirm",
                ..
            })
        ));
    }

    #[test]
    fn a_cancelled_order_cannot_be_confirmed_or_cancelled_again() {
        let id = Uuid::now_v7();
        let mut history = given(&[]).decide(&place_cmd(id)).unwrap();
        history.extend(
            given(&history)
                .decide(&OrderCommand::Cancel {
                    reason: "changed mind".into(),
                })
                .unwrap(),
        );
        let order = given(&history);
        assert_eq!(order.status, OrderStatus::Cancelled);
        assert_eq!(order.cancel_reason.as_deref(), Some("changed mind"));
        assert_eq!(
            order.decide(&OrderCommand::Confirm),
            Err(OrderError::InvalidTransition {
                action: "confirm",
                status: OrderStatus::Cancelled
            })
        );
        assert!(order
            .decide(&OrderCommand::Cancel { reason: "x".into() })
            .is_err());
    }

    #[test]
    fn a_confirmed_order_can_still_be_cancelled() {
        let id = Uuid::now_v7();
        let mut history = given(&[]).decide(&place_cmd(id)).unwrap();
        history.extend(given(&history).decide(&OrderCommand::Confirm).unwrap());
        let events = given(&history)
            .decide(&OrderCommand::Cancel {
                reason: "out of stock".into(),
            })
            .unwrap();
        assert!(matches!(events[0], OrderEvent::OrderCancelled { .. }));
    }

    fn paid(payment_id: Uuid, amount_minor: i64, currency: &str) -> OrderCommand {
        OrderCommand::ConfirmPaid {
            payment_id,
            amount_minor,
            currency: currency.into(),
        }
    }

    fn declined(payment_id: Uuid) -> OrderCommand {
        OrderCommand::CancelDeclined {
            payment_id,
            reason: "over the limit".into(),
        }
    }

    #[test]
    fn only_the_orders_own_saga_payment_covering_its_total_confirms_it() {
        let id = Uuid::now_v7();
        let history = given(&[]).decide(&place_cmd(id)).unwrap();
        let order = given(&history);
        let total = order.total_minor;
        let saga = payment_id_for_order(id);
        let stray = Uuid::now_v7();
        assert_eq!(
            order.decide(&paid(stray, total, "EUR")),
            Err(OrderError::NotSagaPayment {
                payment_id: stray,
                expected: saga
            })
        );
        assert!(matches!(
            order.decide(&paid(saga, total - 1, "EUR")),
            Err(OrderError::PaymentShort { .. })
        ));
        assert!(matches!(
            order.decide(&paid(saga, total, "USD")),
            Err(OrderError::PaymentShort { .. })
        ));
        assert_eq!(
            order.decide(&paid(saga, total, "EUR")),
            Ok(vec![OrderEvent::OrderConfirmed { order_id: id }])
        );
    }

    #[test]
    fn only_the_orders_own_saga_decline_cancels_it_and_only_before_it_is_confirmed() {
        let id = Uuid::now_v7();
        let mut history = given(&[]).decide(&place_cmd(id)).unwrap();
        let saga = payment_id_for_order(id);
        assert!(matches!(
            given(&history).decide(&declined(Uuid::now_v7())),
            Err(OrderError::NotSagaPayment { .. })
        ));
        assert!(matches!(
            given(&history).decide(&declined(saga)).unwrap()[..],
            [OrderEvent::OrderCancelled { .. }]
        ));
        history.extend(given(&history).decide(&OrderCommand::Confirm).unwrap());
        assert_eq!(
            given(&history).decide(&declined(saga)),
            Err(OrderError::InvalidTransition {
                action: "cancel",
                status: OrderStatus::Confirmed
            })
        );
    }

    #[test]
    fn commands_on_an_unknown_order_are_not_found() {
        assert_eq!(
            given(&[]).decide(&OrderCommand::Confirm),
            Err(OrderError::NotFound)
        );
    }
}
