//! Every order event round-trips through its Avro contract: domain event → stored
//! shape → single-object encoding → decoded JSON → domain event, unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use sluice_orders::domain::{LineItem, OrderEvent};
use sluice_platform::testing::{assert_events_round_trip, assert_one_schema_per_event_type};
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
    assert_events_round_trip(sluice_orders::schemas(), &one_of_each());
}

#[test]
fn every_order_event_type_has_a_schema_and_every_schema_an_event_type() {
    assert_one_schema_per_event_type(sluice_orders::schemas(), &one_of_each());
}
