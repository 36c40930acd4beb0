//! The payment aggregate: pure decisions and state evolution, no I/O.
//!
//! Lifecycle: `NotAuthorized` → authorize → `Authorized`, or `Declined` when the
//! amount is above the authorization limit; `Authorized` → capture (once, at most
//! the authorized amount) → `Captured` → refund (any number of times, together at
//! most the captured amount) → `PartiallyRefunded` → … → `Refunded`. An authorized
//! payment can instead be voided (`Voided`): its authorization released.
//!
//! The saga compensates a cancelled order with [`PaymentCommand::Compensate`]: an
//! authorized payment is voided, a captured one refunded of what remains.
//!
//! Invariants: every amount an event records is greater than zero; the captured
//! amount never exceeds the authorized amount; the refunded amount never exceeds the
//! captured amount. A declined payment can be neither captured nor refunded.
//!
//! The authorization limit is configuration, not state: the edge reads it and passes
//! it in [`PaymentCommand::Authorize`], so deciding stays a pure function.

use serde::{Deserialize, Serialize};
use sluice_platform::aggregate::{Aggregate, DomainError, DomainEvent, Rejection};
use sluice_platform::values::{Amount, Currency};
use uuid::Uuid;

/// Commands the payment aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    /// Authorize `amount` for an order; declined when it is above `limit`.
    Authorize {
        payment_id: Uuid,
        order_id: Uuid,
        amount: Amount,
        currency: Currency,
        /// The largest amount authorized without declining (configuration).
        limit: Amount,
    },
    /// Capture `amount` of the authorized amount; all of it when `None`.
    Capture { amount: Option<Amount> },
    /// Give back `amount` of the captured amount.
    Refund {
        amount: Amount,
        reason: Option<String>,
    },
    /// Undo what the payment took for an order that was cancelled: void an
    /// authorization, refund what remains of a capture.
    Compensate { reason: String },
}

/// Events of the payment stream (the public contract lives in `schemas/payments/`).
///
/// Amounts and currencies are the validated value types; on the wire they are a
/// plain integer (minor units) and an ISO 4217 string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum PaymentEvent {
    PaymentAuthorized {
        payment_id: Uuid,
        order_id: Uuid,
        amount_minor: Amount,
        currency: Currency,
    },
    PaymentDeclined {
        payment_id: Uuid,
        order_id: Uuid,
        amount_minor: Amount,
        currency: Currency,
        reason: String,
    },
    PaymentCaptured {
        payment_id: Uuid,
        order_id: Uuid,
        amount_minor: Amount,
    },
    PaymentRefunded {
        payment_id: Uuid,
        order_id: Uuid,
        amount_minor: Amount,
        /// Why the money was given back, when the client said.
        reason: Option<String>,
    },
    PaymentVoided {
        payment_id: Uuid,
        order_id: Uuid,
        amount_minor: Amount,
        reason: String,
    },
}

impl DomainEvent for PaymentEvent {}

/// Why a payment command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Capture or refund of a payment that was never authorized (nor declined).
    #[error("payment not found")]
    NotFound,
    /// Authorize of a payment id that is already taken (authorized or declined).
    #[error("payment {0} already exists")]
    AlreadyExists(Uuid),
    /// Capture or refund not allowed in the payment's current status: capture of a
    /// declined or already captured payment, refund of a declined, not yet captured
    /// or fully refunded one.
    #[error("cannot {action} a payment that is {status}; {}", transition_hint(action, *status))]
    InvalidTransition {
        action: &'static str,
        status: PaymentStatus,
    },
    /// Capture of more than the authorized amount.
    #[error("cannot capture {requested}: only {authorized} was authorized")]
    CaptureExceedsAuthorized {
        requested: Amount,
        authorized: Amount,
    },
    /// Refund of more than what remains of the captured amount after earlier refunds.
    #[error(
        "cannot refund {requested}: only {remaining} of {captured} captured remains refundable"
    )]
    RefundExceedsCaptured {
        requested: Amount,
        remaining: Amount,
        captured: Amount,
    },
    /// Authorize, capture or refund of zero.
    #[error("amount_minor must be greater than zero (in minor units, e.g. cents)")]
    ZeroAmount,
}

fn transition_hint(action: &str, status: PaymentStatus) -> &'static str {
    match (action, status) {
        (_, PaymentStatus::Declined) => "a declined payment can be neither captured nor refunded",
        (_, PaymentStatus::Voided) => "its authorization was voided",
        ("compensate", _) => "nothing it took remains to give back",
        ("capture", _) => "a payment is captured only once",
        (_, PaymentStatus::Authorized) => "capture it first",
        (_, PaymentStatus::Refunded) => "everything captured has been refunded",
        _ => "see the payment's state",
    }
}

impl DomainError for PaymentError {
    fn rejection(&self) -> Rejection {
        match self {
            PaymentError::NotFound => Rejection::NotFound,
            PaymentError::AlreadyExists(_)
            | PaymentError::InvalidTransition { .. }
            | PaymentError::CaptureExceedsAuthorized { .. }
            | PaymentError::RefundExceedsCaptured { .. } => Rejection::InvalidState,
            PaymentError::ZeroAmount => Rejection::Invalid,
        }
    }
}

/// Where a payment is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    #[default]
    NotAuthorized,
    Authorized,
    Declined,
    Captured,
    PartiallyRefunded,
    /// The whole captured amount has been refunded.
    Refunded,
    /// The authorization was released before any capture.
    Voided,
}

impl std::fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PaymentStatus::NotAuthorized => "not authorized",
            PaymentStatus::Authorized => "authorized",
            PaymentStatus::Declined => "declined",
            PaymentStatus::Captured => "captured",
            PaymentStatus::PartiallyRefunded => "partially refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Voided => "voided",
        })
    }
}

/// The payment's state, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payment {
    pub payment_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub status: PaymentStatus,
    pub currency: Option<Currency>,
    /// The amount the authorization asked for (authorized or declined).
    pub requested: Amount,
    pub authorized: Amount,
    pub captured: Amount,
    pub refunded: Amount,
    pub decline_reason: Option<String>,
}

impl Aggregate for Payment {
    const STREAM_TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;

    fn decide(&self, command: &PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        match (command, self.status) {
            (
                PaymentCommand::Authorize {
                    payment_id,
                    order_id,
                    amount,
                    currency,
                    limit,
                },
                PaymentStatus::NotAuthorized,
            ) => Ok(vec![authorize(
                *payment_id,
                *order_id,
                *amount,
                *currency,
                *limit,
            )?]),
            (PaymentCommand::Authorize { payment_id, .. }, _) => {
                Err(PaymentError::AlreadyExists(*payment_id))
            }
            (_, PaymentStatus::NotAuthorized) => Err(PaymentError::NotFound),
            (PaymentCommand::Capture { amount }, PaymentStatus::Authorized) => {
                Ok(vec![self.capture(*amount)?])
            }
            (PaymentCommand::Capture { .. }, status) => Err(PaymentError::InvalidTransition {
                action: "capture",
                status,
            }),
            (
                PaymentCommand::Refund { amount, reason },
                PaymentStatus::Captured | PaymentStatus::PartiallyRefunded,
            ) => Ok(vec![self.refund(*amount, reason.clone())?]),
            (PaymentCommand::Refund { .. }, status) => Err(PaymentError::InvalidTransition {
                action: "refund",
                status,
            }),
            (PaymentCommand::Compensate { reason }, PaymentStatus::Authorized) => {
                Ok(vec![PaymentEvent::PaymentVoided {
                    payment_id: self.payment_id(),
                    order_id: self.order_id(),
                    amount_minor: self.authorized,
                    reason: reason.clone(),
                }])
            }
            (
                PaymentCommand::Compensate { reason },
                PaymentStatus::Captured | PaymentStatus::PartiallyRefunded,
            ) => Ok(vec![self.refund(self.refundable(), Some(reason.clone()))?]),
            (PaymentCommand::Compensate { .. }, status) => Err(PaymentError::InvalidTransition {
                action: "compensate",
                status,
            }),
        }
    }

    fn evolve(mut self, event: &PaymentEvent) -> Self {
        match event {
            PaymentEvent::PaymentAuthorized {
                payment_id,
                order_id,
                amount_minor,
                currency,
            } => {
                self.open(*payment_id, *order_id, *currency, *amount_minor);
                self.status = PaymentStatus::Authorized;
                self.authorized = *amount_minor;
            }
            PaymentEvent::PaymentDeclined {
                payment_id,
                order_id,
                amount_minor,
                currency,
                reason,
            } => {
                self.open(*payment_id, *order_id, *currency, *amount_minor);
                self.status = PaymentStatus::Declined;
                self.decline_reason = Some(reason.clone());
            }
            PaymentEvent::PaymentCaptured { amount_minor, .. } => {
                self.status = PaymentStatus::Captured;
                self.captured = *amount_minor;
            }
            PaymentEvent::PaymentVoided { .. } => self.status = PaymentStatus::Voided,
            PaymentEvent::PaymentRefunded { amount_minor, .. } => {
                // `decide` keeps refunds within the captured amount, so the sum fits.
                self.refunded = self
                    .refunded
                    .checked_add(*amount_minor)
                    .unwrap_or(self.captured);
                self.status = if self.refunded >= self.captured {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::PartiallyRefunded
                };
            }
        }
        self
    }
}

impl Payment {
    /// What the first event of a payment, authorized or declined, records alike:
    /// its ids, its currency and the amount asked for.
    fn open(&mut self, payment_id: Uuid, order_id: Uuid, currency: Currency, requested: Amount) {
        self.payment_id = Some(payment_id);
        self.order_id = Some(order_id);
        self.currency = Some(currency);
        self.requested = requested;
    }

    /// What may still be refunded: captured minus refunded so far.
    pub fn refundable(&self) -> Amount {
        self.captured.saturating_sub(self.refunded)
    }

    fn payment_id(&self) -> Uuid {
        self.payment_id.unwrap_or_default()
    }

    fn order_id(&self) -> Uuid {
        self.order_id.unwrap_or_default()
    }

    fn capture(&self, amount: Option<Amount>) -> Result<PaymentEvent, PaymentError> {
        let amount = amount.unwrap_or(self.authorized);
        if amount == Amount::ZERO {
            return Err(PaymentError::ZeroAmount);
        }
        if amount > self.authorized {
            return Err(PaymentError::CaptureExceedsAuthorized {
                requested: amount,
                authorized: self.authorized,
            });
        }
        Ok(PaymentEvent::PaymentCaptured {
            payment_id: self.payment_id(),
            order_id: self.order_id(),
            amount_minor: amount,
        })
    }

    fn refund(&self, amount: Amount, reason: Option<String>) -> Result<PaymentEvent, PaymentError> {
        if amount == Amount::ZERO {
            return Err(PaymentError::ZeroAmount);
        }
        let remaining = self.refundable();
        if amount > remaining {
            return Err(PaymentError::RefundExceedsCaptured {
                requested: amount,
                remaining,
                captured: self.captured,
            });
        }
        Ok(PaymentEvent::PaymentRefunded {
            payment_id: self.payment_id(),
            order_id: self.order_id(),
            amount_minor: amount,
            reason,
        })
    }
}

/// The deterministic decline rule: an amount above the limit is declined.
fn authorize(
    payment_id: Uuid,
    order_id: Uuid,
    amount: Amount,
    currency: Currency,
    limit: Amount,
) -> Result<PaymentEvent, PaymentError> {
    if amount == Amount::ZERO {
        return Err(PaymentError::ZeroAmount);
    }
    if amount > limit {
        return Ok(PaymentEvent::PaymentDeclined {
            payment_id,
            order_id,
            amount_minor: amount,
            currency,
            reason: format!("amount {amount} exceeds the authorization limit of {limit}"),
        });
    }
    Ok(PaymentEvent::PaymentAuthorized {
        payment_id,
        order_id,
        amount_minor: amount,
        currency,
    })
}

#[cfg(test)]
mod tests;
