//! Unit tests of `domain`.

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
fn authorized(minor: i64) -> Vec<PaymentEvent> {
    Payment::history(&[authorize_cmd(Uuid::now_v7(), minor)]).unwrap()
}

/// A payment authorized for 800, captured in full, then refunded `refunded`.
fn captured_then_refunded(refunded: i64) -> Vec<PaymentEvent> {
    Payment::history(&[
        authorize_cmd(Uuid::now_v7(), 800),
        capture(None),
        refund(refunded),
    ])
    .unwrap()
}

/// Given `history`, `command` is refused as not allowed in the payment's state
/// (409), saying `message`. Returns the error.
fn assert_refused(
    history: &[PaymentEvent],
    command: &PaymentCommand,
    message: &str,
) -> PaymentError {
    let error = Payment::given(history).decide(command).unwrap_err();
    assert_eq!(error.to_string(), message);
    assert_eq!(error.rejection(), Rejection::InvalidState);
    error
}

#[test]
fn authorizing_within_the_limit_records_the_authorization() {
    let id = Uuid::now_v7();
    let events = Payment::given(&[]).decide(&authorize_cmd(id, 800)).unwrap();
    assert_eq!(
        events,
        [PaymentEvent::PaymentAuthorized {
            payment_id: id,
            order_id: Uuid::nil(),
            amount_minor: amount(800),
            currency: Currency::new("EUR").unwrap(),
        }]
    );
    let payment = Payment::given(&events);
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
    let events = Payment::given(&[])
        .decide(&authorize_cmd(id, LIMIT + 1))
        .unwrap();
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
    let payment = Payment::given(&events);
    assert_eq!(payment.status, PaymentStatus::Declined);
    assert_eq!(payment.requested, amount(LIMIT + 1));
    assert_eq!(payment.authorized, Amount::ZERO);
    assert_eq!(payment.decline_reason.as_deref(), Some(reason.as_str()));
}

#[test]
fn zero_amounts_are_invalid() {
    assert_eq!(
        Payment::given(&[]).decide(&authorize_cmd(Uuid::now_v7(), 0)),
        Err(PaymentError::ZeroAmount)
    );
    let payment = Payment::given(&authorized(800));
    assert_eq!(
        payment.decide(&capture(Some(0))),
        Err(PaymentError::ZeroAmount)
    );
    let captured = Payment::history(&[authorize_cmd(Uuid::now_v7(), 800), capture(None)]).unwrap();
    assert_eq!(
        Payment::given(&captured).decide(&refund(0)),
        Err(PaymentError::ZeroAmount)
    );
    assert_eq!(PaymentError::ZeroAmount.rejection(), Rejection::Invalid);
}

#[test]
fn authorizing_a_taken_payment_id_is_refused() {
    let id = Uuid::now_v7();
    for minor in [800, LIMIT + 1] {
        let events = Payment::history(&[authorize_cmd(id, minor)]).unwrap();
        let error = Payment::given(&events)
            .decide(&authorize_cmd(id, 800))
            .unwrap_err();
        assert_eq!(error, PaymentError::AlreadyExists(id));
        assert_eq!(error.rejection(), Rejection::InvalidState);
    }
}

#[test]
fn capture_defaults_to_the_full_authorized_amount() {
    let events = Payment::given(&authorized(800))
        .decide(&capture(None))
        .unwrap();
    assert!(matches!(
        events.as_slice(),
        [PaymentEvent::PaymentCaptured { amount_minor, .. }] if *amount_minor == amount(800)
    ));
}

#[test]
fn a_partial_capture_records_the_amount_captured() {
    let id = Uuid::now_v7();
    let events = Payment::history(&[authorize_cmd(id, 800), capture(Some(500))]).unwrap();
    let payment = Payment::given(&events);
    assert_eq!(payment.status, PaymentStatus::Captured);
    assert_eq!(payment.captured, amount(500));
    assert_eq!(payment.refundable(), amount(500));
    assert_eq!(payment.payment_id, Some(id));
}

#[test]
fn capturing_more_than_authorized_is_refused() {
    assert_refused(
        &authorized(800),
        &capture(Some(801)),
        "cannot capture 801: only 800 was authorized",
    );
}

#[test]
fn a_payment_is_captured_only_once() {
    let events =
        Payment::history(&[authorize_cmd(Uuid::now_v7(), 800), capture(Some(300))]).unwrap();
    let error = assert_refused(
        &events,
        &capture(Some(100)),
        "cannot capture a payment that is captured; a payment is captured only once",
    );
    assert_eq!(
        error,
        PaymentError::InvalidTransition {
            action: "capture",
            status: PaymentStatus::Captured
        }
    );
}

#[test]
fn a_declined_payment_can_be_neither_captured_nor_refunded() {
    let declined =
        Payment::given(&Payment::history(&[authorize_cmd(Uuid::now_v7(), LIMIT + 1)]).unwrap());
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
    assert_refused(
        &authorized(800),
        &refund(100),
        "cannot refund a payment that is authorized; capture it first",
    );
}

#[test]
fn refunds_accumulate_up_to_the_captured_amount() {
    let id = Uuid::now_v7();
    let mut events =
        Payment::history(&[authorize_cmd(id, 800), capture(None), refund(500)]).unwrap();
    let payment = Payment::given(&events);
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
    let payment = Payment::given(&events);
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
    let events = captured_then_refunded(500);
    let error = assert_refused(
        &events,
        &refund(500),
        "cannot refund 500: only 300 of 800 captured remains refundable",
    );
    assert_eq!(
        error,
        PaymentError::RefundExceedsCaptured {
            requested: amount(500),
            remaining: amount(300),
            captured: amount(800),
        }
    );
}

#[test]
fn refunds_are_bounded_by_the_captured_not_the_authorized_amount() {
    let events =
        Payment::history(&[authorize_cmd(Uuid::now_v7(), 800), capture(Some(300))]).unwrap();
    assert!(matches!(
        Payment::given(&events).decide(&refund(301)),
        Err(PaymentError::RefundExceedsCaptured { .. })
    ));
    assert!(Payment::given(&events).decide(&refund(300)).is_ok());
}

#[test]
fn compensation_voids_an_authorization_and_refunds_what_remains_of_a_capture() {
    let reason = || PaymentCommand::Compensate {
        reason: "order cancelled".into(),
    };
    let mut history = authorized(800);
    let voided = Payment::given(&history).decide(&reason()).unwrap();
    assert!(matches!(
        voided[..],
        [PaymentEvent::PaymentVoided { amount_minor, .. }] if amount_minor == amount(800)
    ));
    let mut after_void = history.clone();
    after_void.extend(voided);
    assert_eq!(Payment::given(&after_void).status, PaymentStatus::Voided);
    assert!(Payment::given(&after_void).decide(&capture(None)).is_err());
    assert!(Payment::given(&after_void).decide(&reason()).is_err());

    history.extend(Payment::given(&history).decide(&capture(None)).unwrap());
    history.extend(Payment::given(&history).decide(&refund(300)).unwrap());
    let refunded = Payment::given(&history).decide(&reason()).unwrap();
    assert!(matches!(
        refunded[..],
        [PaymentEvent::PaymentRefunded { amount_minor, .. }] if amount_minor == amount(500)
    ));
    history.extend(refunded);
    assert_eq!(Payment::given(&history).status, PaymentStatus::Refunded);
    assert!(matches!(
        Payment::given(&history).decide(&reason()),
        Err(PaymentError::InvalidTransition {
            action: "compensate",
            ..
        })
    ));
}

#[test]
fn commands_on_an_unknown_payment_are_not_found() {
    for command in [capture(None), refund(1)] {
        let error = Payment::given(&[]).decide(&command).unwrap_err();
        assert_eq!(error, PaymentError::NotFound);
        assert_eq!(error.rejection(), Rejection::NotFound);
    }
}

#[test]
fn events_are_stored_as_their_type_and_named_fields() {
    let events = captured_then_refunded(800);
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
