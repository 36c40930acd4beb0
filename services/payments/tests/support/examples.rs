//! One payment event of each type with realistic values: the examples of the
//! payments contract tests and of the repository's Avro interoperability test.

use sluice_payments::domain::PaymentEvent;
use sluice_platform::values::{Amount, Currency};
use uuid::Uuid;

fn amount(minor: i64) -> Amount {
    Amount::new(minor).unwrap()
}

/// One event of each type, with realistic values (a refund with and without reason).
pub fn one_of_each() -> Vec<PaymentEvent> {
    let (payment_id, order_id) = (Uuid::now_v7(), Uuid::now_v7());
    let eur = Currency::new("EUR").unwrap();
    vec![
        PaymentEvent::PaymentAuthorized {
            payment_id,
            order_id,
            amount_minor: amount(2500),
            currency: eur,
        },
        PaymentEvent::PaymentDeclined {
            payment_id: Uuid::now_v7(),
            order_id,
            amount_minor: amount(250_000),
            currency: Currency::new("CHF").unwrap(),
            reason: "amount 250000 is above the authorization limit of 100000".into(),
        },
        PaymentEvent::PaymentCaptured {
            payment_id,
            order_id,
            amount_minor: amount(2000),
        },
        PaymentEvent::PaymentRefunded {
            payment_id,
            order_id,
            amount_minor: amount(500),
            reason: Some("damaged in transit".into()),
        },
        PaymentEvent::PaymentRefunded {
            payment_id,
            order_id,
            amount_minor: amount(i64::MAX),
            reason: None,
        },
        PaymentEvent::PaymentVoided {
            payment_id,
            order_id,
            amount_minor: amount(2500),
            reason: "order cancelled: changed my mind".into(),
        },
    ]
}
