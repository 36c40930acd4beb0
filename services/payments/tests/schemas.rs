//! Every payment event round-trips through its Avro contract: domain event → stored
//! shape → single-object encoding → decoded JSON → domain event, unchanged.

use std::collections::BTreeSet;

use sluice_payments::domain::PaymentEvent;
use sluice_platform::aggregate::{decode_payload, to_new_event};
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::values::{Amount, Currency};
use uuid::Uuid;

fn amount(minor: i64) -> Amount {
    Amount::new(minor).unwrap()
}

/// One event of each type, with realistic values (a refund with and without reason).
fn one_of_each() -> Vec<PaymentEvent> {
    let (payment_id, order_id) = (Uuid::now_v7(), Uuid::now_v7());
    let eur = Currency::new("EUR").unwrap();
    let events = vec![
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
    ];
    for event in &events {
        // No wildcard: a new event type does not compile here until it has an example.
        match event {
            PaymentEvent::PaymentAuthorized { .. }
            | PaymentEvent::PaymentDeclined { .. }
            | PaymentEvent::PaymentCaptured { .. }
            | PaymentEvent::PaymentRefunded { .. }
            | PaymentEvent::PaymentVoided { .. } => {}
        }
    }
    events
}

#[test]
fn every_payment_event_round_trips_through_its_schema() {
    let catalog = SchemaCatalog::new(sluice_payments::schemas()).unwrap();
    for event in one_of_each() {
        let new = to_new_event(&event).unwrap();
        let version = catalog
            .validate_latest(&new.event_type, &new.payload)
            .unwrap();
        let bytes = catalog
            .encode_single_object(&new.event_type, version, &new.payload)
            .unwrap();
        let decoded = catalog.decode_single_object(&bytes).unwrap();
        assert_eq!(decoded.event_type, new.event_type);
        assert_eq!(decoded.schema_version, version);
        assert_eq!(decoded.payload, new.payload, "{}", new.event_type);
        let back: PaymentEvent = decode_payload(&decoded.event_type, &decoded.payload).unwrap();
        assert_eq!(back, event);
    }
}

#[test]
fn every_payment_event_type_has_a_schema_and_every_schema_an_event_type() {
    let catalog = SchemaCatalog::new(sluice_payments::schemas()).unwrap();
    let event_types: BTreeSet<String> = one_of_each()
        .iter()
        .map(|e| to_new_event(e).unwrap().event_type)
        .collect();
    let schemas: BTreeSet<String> = catalog.event_types().map(str::to_owned).collect();
    assert_eq!(event_types, schemas);
}
