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
                self.payment_id = Some(*payment_id);
                self.order_id = Some(*order_id);
                self.status = PaymentStatus::Authorized;
                self.currency = Some(*currency);
                self.requested = *amount_minor;
                self.authorized = *amount_minor;
            }
            PaymentEvent::PaymentDeclined {
                payment_id,
                order_id,
                amount_minor,
                currency,
                reason,
            } => {
                self.payment_id = Some(*payment_id);
                self.order_id = Some(*order_id);
                self.status = PaymentStatus::Declined;
                self.currency = Some(*currency);
                self.requested = *amount_minor;
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
mod tests {
    use super::*;
    use sluice_platform::aggregate::to_new_event;

    const LIMIT: i64 = 100_000;

    fn amount(minor: i64) -> Amount {
        Amount::new(minor).unwrap()
    }

    fn authorize_cmd(payment_id: Uuid, minor: i64) -> PaymentCommand {
        PaymentCommand::Authorize {
            payment_id,
            order_id: Uuid::nil(),
            amount: amount(minor),
            currency: Currency::new("EUR").unwrap(),
            limit: amount(LIMIT),
        }
    }

    fn capture(minor: Option<i64>) -> PaymentCommand {
        PaymentCommand::Capture {
            amount: minor.map(amount),
        }
    }

    fn refund(minor: i64) -> PaymentCommand {
        PaymentCommand::Refund {
            amount: amount(minor),
            reason: None,
        }
    }

    /// Given events, when a command, then the events it produces (or its error).
    fn given(events: &[PaymentEvent]) -> Payment {
        events.iter().fold(Payment::default(), Payment::evolve)
    }

    /// Runs commands one after the other, each on the state the previous left, and
    /// returns the history; panics if one is refused.
    fn history(commands: &[PaymentCommand]) -> Vec<PaymentEvent> {
        commands.iter().fold(Vec::new(), |mut events, command| {
            let decided = given(&events).decide(command).unwrap();
            events.extend(decided);
            events
        })
    }

    fn authorized(minor: i64) -> Vec<PaymentEvent> {
        history(&[authorize_cmd(Uuid::now_v7(), minor)])
    }

    #[test]
    fn authorizing_within_the_limit_records_the_authorization() {
        let id = Uuid::now_v7();
        let events = given(&[]).decide(&authorize_cmd(id, 800)).unwrap();
        assert_eq!(
            events,
            [PaymentEvent::PaymentAuthorized {
                payment_id: id,
                order_id: Uuid::nil(),
                amount_minor: amount(800),
                currency: Currency::new("EUR").unwrap(),
            }]
        );
        let payment = given(&events);
        assert_eq!(payment.status, PaymentStatus::Authorized);
        assert_eq!(payment.authorized, amount(800));
    }

    #[test]
    fn an_amount_at_the_limit_is_authorized() {
        let events = authorized(LIMIT);
        assert!(matches!(events[0], PaymentEvent::PaymentAuthorized { .. }));
    }

    #[test]
    fn an_amount_above_the_limit_is_declined_with_a_reason() {
        let id = Uuid::now_v7();
        let events = given(&[]).decide(&authorize_cmd(id, LIMIT + 1)).unwrap();
        let [PaymentEvent::PaymentDeclined {
            payment_id,
            amount_minor,
            reason,
            ..
        }] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert_eq!(*payment_id, id);
        assert_eq!(*amount_minor, amount(LIMIT + 1));
        assert_eq!(
            reason,
            "amount 100001 exceeds the authorization limit of 100000"
        );
        let payment = given(&events);
        assert_eq!(payment.status, PaymentStatus::Declined);
        assert_eq!(payment.requested, amount(LIMIT + 1));
        assert_eq!(payment.authorized, Amount::ZERO);
        assert_eq!(payment.decline_reason.as_deref(), Some(reason.as_str()));
    }

    #[test]
    fn zero_amounts_are_invalid() {
        assert_eq!(
            given(&[]).decide(&authorize_cmd(Uuid::now_v7(), 0)),
            Err(PaymentError::ZeroAmount)
        );
        let payment = given(&authorized(800));
        assert_eq!(
            payment.decide(&capture(Some(0))),
            Err(PaymentError::ZeroAmount)
        );
        let captured = history(&[authorize_cmd(Uuid::now_v7(), 800), capture(None)]);
        assert_eq!(
            given(&captured).decide(&refund(0)),
            Err(PaymentError::ZeroAmount)
        );
        assert_eq!(PaymentError::ZeroAmount.rejection(), Rejection::Invalid);
    }

    #[test]
    fn authorizing_a_taken_payment_id_is_refused() {
        let id = Uuid::now_v7();
        for minor in [800, LIMIT + 1] {
            let events = history(&[authorize_cmd(id, minor)]);
            let error = given(&events).decide(&authorize_cmd(id, 800)).unwrap_err();
            assert_eq!(error, PaymentError::AlreadyExists(id));
            assert_eq!(error.rejection(), Rejection::InvalidState);
        }
    }

    #[test]
    fn capture_defaults_to_the_full_authorized_amount() {
        let events = given(&authorized(800)).decide(&capture(None)).unwrap();
        assert!(matches!(
            events.as_slice(),
            [PaymentEvent::PaymentCaptured { amount_minor, .. }] if *amount_minor == amount(800)
        ));
    }

    #[test]
    fn a_partial_capture_records_the_amount_captured() {
        let id = Uuid::now_v7();
        let events = history(&[authorize_cmd(id, 800), capture(Some(500))]);
        let payment = given(&events);
        assert_eq!(payment.status, PaymentStatus::Captured);
        assert_eq!(payment.captured, amount(500));
        assert_eq!(payment.refundable(), amount(500));
        assert_eq!(payment.payment_id, Some(id));
    }

    #[test]
    fn capturing_more_than_authorized_is_refused() {
        let error = given(&authorized(800))
            .decide(&capture(Some(801)))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot capture 801: only 800 was authorized"
        );
        assert_eq!(error.rejection(), Rejection::InvalidState);
    }

    #[test]
    fn a_payment_is_captured_only_once() {
        let events = history(&[authorize_cmd(Uuid::now_v7(), 800), capture(Some(300))]);
        let error = given(&events).decide(&capture(Some(100))).unwrap_err();
        assert_eq!(
            error,
            PaymentError::InvalidTransition {
                action: "capture",
                status: PaymentStatus::Captured
            }
        );
        assert_eq!(
            error.to_string(),
            "cannot capture a payment that is captured; a payment is captured only once"
        );
    }

    #[test]
    fn a_declined_payment_can_be_neither_captured_nor_refunded() {
        let declined = given(&history(&[authorize_cmd(Uuid::now_v7(), LIMIT + 1)]));
        for (command, action) in [(capture(None), "capture"), (refund(1), "refund")] {
            let error = declined.decide(&command).unwrap_err();
            assert_eq!(
                error,
                PaymentError::InvalidTransition {
                    action,
                    status: PaymentStatus::Declined
                }
            );
            assert_eq!(error.rejection(), Rejection::InvalidState);
            assert!(error.to_string().contains("declined"), "{error}");
        }
    }

    #[test]
    fn refunding_before_capture_is_refused() {
        let error = given(&authorized(800)).decide(&refund(100)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot refund a payment that is authorized; capture it first"
        );
        assert_eq!(error.rejection(), Rejection::InvalidState);
    }

    #[test]
    fn refunds_accumulate_up_to_the_captured_amount() {
        let id = Uuid::now_v7();
        let mut events = history(&[authorize_cmd(id, 800), capture(None), refund(500)]);
        let payment = given(&events);
        assert_eq!(payment.status, PaymentStatus::PartiallyRefunded);
        assert_eq!(payment.refunded, amount(500));
        assert_eq!(payment.refundable(), amount(300));

        let rest = payment
            .decide(&PaymentCommand::Refund {
                amount: amount(300),
                reason: Some("returned".into()),
            })
            .unwrap();
        assert_eq!(
            rest,
            [PaymentEvent::PaymentRefunded {
                payment_id: id,
                order_id: Uuid::nil(),
                amount_minor: amount(300),
                reason: Some("returned".into()),
            }]
        );
        events.extend(rest);
        let payment = given(&events);
        assert_eq!(payment.status, PaymentStatus::Refunded);
        assert_eq!(payment.refunded, amount(800));
        assert_eq!(payment.refundable(), Amount::ZERO);
        assert_eq!(
            payment.decide(&refund(1)).unwrap_err().to_string(),
            "cannot refund a payment that is refunded; everything captured has been refunded"
        );
        assert!(payment.decide(&capture(None)).is_err());
    }

    #[test]
    fn refunding_more_than_remains_is_refused() {
        let events = history(&[
            authorize_cmd(Uuid::now_v7(), 800),
            capture(None),
            refund(500),
        ]);
        let error = given(&events).decide(&refund(500)).unwrap_err();
        assert_eq!(
            error,
            PaymentError::RefundExceedsCaptured {
                requested: amount(500),
                remaining: amount(300),
                captured: amount(800),
            }
        );
        assert_eq!(
            error.to_string(),
            "cannot refund 500: only 300 of 800 captured remains refundable"
        );
        assert_eq!(error.rejection(), Rejection::InvalidState);
    }

    #[test]
    fn refunds_are_bounded_by_the_captured_not_the_authorized_amount() {
        let events = history(&[authorize_cmd(Uuid::now_v7(), 800), capture(Some(300))]);
        assert!(matches!(
            given(&events).decide(&refund(301)),
            Err(PaymentError::RefundExceedsCaptured { .. })
        ));
        assert!(given(&events).decide(&refund(300)).is_ok());
    }

    #[test]
    fn compensation_voids_an_authorization_and_refunds_what_remains_of_a_capture() {
        let reason = || PaymentCommand::Compensate {
            reason: "order cancelled".into(),
        };
        let mut history = authorized(800);
        let voided = given(&history).decide(&reason()).unwrap();
        assert!(matches!(
            voided[..],
            [PaymentEvent::PaymentVoided { amount_minor, .. }] if amount_minor == amount(800)
        ));
        let mut after_void = history.clone();
        after_void.extend(voided);
        assert_eq!(given(&after_void).status, PaymentStatus::Voided);
        assert!(given(&after_void).decide(&capture(None)).is_err());
        assert!(given(&after_void).decide(&reason()).is_err());

        history.extend(given(&history).decide(&capture(None)).unwrap());
        history.extend(given(&history).decide(&refund(300)).unwrap());
        let refunded = given(&history).decide(&reason()).unwrap();
        assert!(matches!(
            refunded[..],
            [PaymentEvent::PaymentRefunded { amount_minor, .. }] if amount_minor == amount(500)
        ));
        history.extend(refunded);
        assert_eq!(given(&history).status, PaymentStatus::Refunded);
        assert!(matches!(
            given(&history).decide(&reason()),
            Err(PaymentError::InvalidTransition {
                action: "compensate",
                ..
            })
        ));
    }

    #[test]
    fn commands_on_an_unknown_payment_are_not_found() {
        for command in [capture(None), refund(1)] {
            let error = given(&[]).decide(&command).unwrap_err();
            assert_eq!(error, PaymentError::NotFound);
            assert_eq!(error.rejection(), Rejection::NotFound);
        }
    }

    #[test]
    fn events_are_stored_as_their_type_and_named_fields() {
        let events = history(&[
            authorize_cmd(Uuid::now_v7(), 800),
            capture(None),
            refund(800),
        ]);
        let stored: Vec<_> = events.iter().map(|e| to_new_event(e).unwrap()).collect();
        let types: Vec<&str> = stored.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            ["PaymentAuthorized", "PaymentCaptured", "PaymentRefunded"]
        );
        assert_eq!(stored[0].payload["amount_minor"], 800);
        assert_eq!(stored[0].payload["currency"], "EUR");
        assert_eq!(stored[2].payload["reason"], serde_json::Value::Null);
    }
}
