//! Events as the relay publishes them decode with an Avro implementation that is not
//! ours: Python's fastavro, given nothing but the committed `.avsc`. It checks the
//! single-object header (marker, and the fingerprint it computes itself from the
//! schema's canonical form) and that the datum reads back as the stored payload.
//!
//! Needs `python3` with `fastavro` (`pip install fastavro`; `.ci/run` installs it).
//! Without them the test fails, saying so: it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::path::Path;

use serde_json::{json, Value};
use sluice::components::WRITE_SERVICES;
use sluice_orders::domain::{LineItem, OrderEvent};
use sluice_payments::domain::PaymentEvent;
use sluice_platform::aggregate::{to_new_event, DomainEvent};
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::values::{Amount, Currency};
use sluice_shipping::domain::ShipmentEvent;
use uuid::Uuid;

fn amount(minor: i64) -> Amount {
    Amount::new(minor).unwrap()
}

/// (service, event type, stored payload) for one event of every type.
fn one_of_each() -> Vec<(&'static str, sluice_platform::store::NewEvent)> {
    fn stored<E: DomainEvent>(
        service: &'static str,
        events: Vec<E>,
    ) -> Vec<(&'static str, sluice_platform::store::NewEvent)> {
        events
            .iter()
            .map(|e| (service, to_new_event(e).unwrap()))
            .collect()
    }
    let (order_id, payment_id, shipment_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let eur = Currency::new("EUR").unwrap();
    let mut all = stored(
        "orders",
        vec![
            OrderEvent::OrderPlaced {
                order_id,
                customer_id: "alice@example.com".into(),
                currency: "EUR".into(),
                lines: vec![
                    LineItem {
                        sku: "BOOK-1".into(),
                        quantity: 2,
                        unit_price_minor: 1250,
                    },
                    LineItem {
                        sku: "CAFÉ-CRÈME".into(),
                        quantity: 1,
                        unit_price_minor: 480,
                    },
                ],
                total_minor: 2980,
            },
            OrderEvent::OrderConfirmed { order_id },
            OrderEvent::OrderCancelled {
                order_id,
                reason: "changed my mind".into(),
            },
        ],
    );
    all.extend(stored(
        "payments",
        vec![
            PaymentEvent::PaymentAuthorized {
                payment_id,
                order_id,
                amount_minor: amount(2980),
                currency: eur,
            },
            PaymentEvent::PaymentDeclined {
                payment_id: Uuid::now_v7(),
                order_id,
                amount_minor: amount(250_000),
                currency: eur,
                reason: "above the authorization limit".into(),
            },
            PaymentEvent::PaymentCaptured {
                payment_id,
                order_id,
                amount_minor: amount(2980),
            },
            PaymentEvent::PaymentRefunded {
                payment_id,
                order_id,
                amount_minor: amount(480),
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
                amount_minor: amount(2_500),
                reason: "order cancelled: changed my mind".into(),
            },
        ],
    ));
    all.extend(stored(
        "shipping",
        vec![
            ShipmentEvent::ShipmentCreated {
                shipment_id,
                order_id,
            },
            ShipmentEvent::ShipmentDispatched {
                shipment_id,
                order_id,
                carrier: "DHL Express".into(),
                tracking_number: "JD014600006281234567".into(),
            },
            ShipmentEvent::ShipmentDelivered {
                shipment_id,
                order_id,
            },
            ShipmentEvent::ShipmentCancelled {
                shipment_id,
                order_id,
                reason: "order cancelled: changed my mind".into(),
            },
        ],
    ));
    all
}

#[test]
fn fastavro_decodes_every_event_type_from_its_avsc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = SchemaCatalog::new(WRITE_SERVICES.iter().flat_map(|s| (s.schemas)())).unwrap();
    let events = one_of_each();
    let covered: std::collections::BTreeSet<_> =
        events.iter().map(|(_, e)| e.event_type.as_str()).collect();
    assert_eq!(
        covered,
        catalog.event_types().collect(),
        "every event type needs an example here"
    );
    let cases: Vec<Value> = events
        .iter()
        .map(|(service, event)| {
            let (version, _) = catalog.latest(&event.event_type).unwrap();
            let bytes = catalog
                .encode_single_object(&event.event_type, version, &event.payload)
                .unwrap();
            let avsc = root
                .join("schemas")
                .join(service)
                .join(&event.event_type)
                .join(format!("v{version}.avsc"));
            json!({
                "event_type": event.event_type,
                "avsc": avsc,
                "bytes": bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "expected": event.payload,
            })
        })
        .collect();
    support::fastavro::assert_fastavro_decodes(&cases);
}
