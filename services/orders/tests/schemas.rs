//! Every order event round-trips through its Avro contract: domain event → stored
//! shape → single-object encoding → decoded JSON → domain event, unchanged.

use std::collections::BTreeSet;

use sluice_orders::domain::{LineItem, OrderEvent};
use sluice_platform::aggregate::{decode_payload, to_new_event};
use sluice_platform::avro::SchemaCatalog;
use uuid::Uuid;

/// One event of each type, with realistic values.
fn one_of_each() -> Vec<OrderEvent> {
    let order_id = Uuid::now_v7();
    let events = vec![
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
                    sku: "PEN-9 blue".into(),
                    quantity: 10_000,
                    unit_price_minor: 0,
                },
            ],
            total_minor: 2500,
        },
        OrderEvent::OrderConfirmed { order_id },
        OrderEvent::OrderCancelled {
            order_id,
            reason: "changed my mind — sorry".into(),
        },
    ];
    for event in &events {
        // No wildcard: a new event type does not compile here until it has an example.
        match event {
            OrderEvent::OrderPlaced { .. }
            | OrderEvent::OrderConfirmed { .. }
            | OrderEvent::OrderCancelled { .. } => {}
        }
    }
    events
}

#[test]
fn every_order_event_round_trips_through_its_schema() {
    let catalog = SchemaCatalog::new(sluice_orders::schemas()).unwrap();
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
        let back: OrderEvent = decode_payload(&decoded.event_type, &decoded.payload).unwrap();
        assert_eq!(back, event);
    }
}

#[test]
fn every_order_event_type_has_a_schema_and_every_schema_an_event_type() {
    let catalog = SchemaCatalog::new(sluice_orders::schemas()).unwrap();
    let event_types: BTreeSet<String> = one_of_each()
        .iter()
        .map(|e| to_new_event(e).unwrap().event_type)
        .collect();
    let schemas: BTreeSet<String> = catalog.event_types().map(str::to_owned).collect();
    assert_eq!(event_types, schemas);
}
