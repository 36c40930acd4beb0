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
            (OrderCommand::Confirm, OrderStatus::Placed) => Ok(self.confirmation()),
            (OrderCommand::Confirm, status) => Err(OrderError::InvalidTransition {
                action: "confirm",
                status,
            }),
            (OrderCommand::Cancel { reason }, OrderStatus::Placed | OrderStatus::Confirmed) => {
                Ok(self.cancellation(reason))
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
                Ok(self.confirmation())
            }
            (OrderCommand::ConfirmPaid { .. }, status) => Err(OrderError::InvalidTransition {
                action: "confirm",
                status,
            }),
            (OrderCommand::CancelDeclined { reason, .. }, OrderStatus::Placed) => {
                Ok(self.cancellation(reason))
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

    /// What confirming the order records, by hand or on its saga payment.
    fn confirmation(&self) -> Vec<OrderEvent> {
        vec![OrderEvent::OrderConfirmed {
            order_id: self.id(),
        }]
    }

    /// What cancelling the order for `reason` records, by hand or on its saga
    /// payment's decline.
    fn cancellation(&self, reason: &str) -> Vec<OrderEvent> {
        vec![OrderEvent::OrderCancelled {
            order_id: self.id(),
            reason: reason.to_owned(),
        }]
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
mod tests;
