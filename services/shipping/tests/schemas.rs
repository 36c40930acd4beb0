//! Every shipment event round-trips through its Avro contract: domain event → stored
//! shape → single-object encoding → decoded JSON → domain event, unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use sluice_platform::testing::{assert_events_round_trip, assert_one_schema_per_event_type};
use sluice_shipping::domain::ShipmentEvent;
use uuid::Uuid;

/// One event of each type, with realistic values.
fn one_of_each() -> Vec<ShipmentEvent> {
    let (shipment_id, order_id) = (Uuid::now_v7(), Uuid::now_v7());
    let events = vec![
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
    ];
    for event in &events {
        // No wildcard: a new event type does not compile here until it has an example.
        match event {
            ShipmentEvent::ShipmentCreated { .. }
            | ShipmentEvent::ShipmentDispatched { .. }
            | ShipmentEvent::ShipmentDelivered { .. }
            | ShipmentEvent::ShipmentCancelled { .. } => {}
        }
    }
    events
}

#[test]
fn every_shipment_event_round_trips_through_its_schema() {
    assert_events_round_trip(sluice_shipping::schemas(), &one_of_each());
}

#[test]
fn every_shipment_event_type_has_a_schema_and_every_schema_an_event_type() {
    assert_one_schema_per_event_type(sluice_shipping::schemas(), &one_of_each());
}
