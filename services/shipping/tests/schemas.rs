//! Every shipment event round-trips through its Avro contract: domain event → stored
//! shape → single-object encoding → decoded JSON → domain event, unchanged.

use std::collections::BTreeSet;

use sluice_platform::aggregate::{decode_payload, to_new_event};
use sluice_platform::avro::SchemaCatalog;
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
    let catalog = SchemaCatalog::new(sluice_shipping::schemas()).unwrap();
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
        let back: ShipmentEvent = decode_payload(&decoded.event_type, &decoded.payload).unwrap();
        assert_eq!(back, event);
    }
}

#[test]
fn every_shipment_event_type_has_a_schema_and_every_schema_an_event_type() {
    let catalog = SchemaCatalog::new(sluice_shipping::schemas()).unwrap();
    let event_types: BTreeSet<String> = one_of_each()
        .iter()
        .map(|e| to_new_event(e).unwrap().event_type)
        .collect();
    let schemas: BTreeSet<String> = catalog.event_types().map(str::to_owned).collect();
    assert_eq!(event_types, schemas);
}
