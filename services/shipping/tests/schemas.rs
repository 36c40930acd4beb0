//! Every shipment event round-trips through its Avro contract: domain event → stored
//! shape → single-object encoding → decoded JSON → domain event, unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use sluice_shipping::domain::ShipmentEvent;
use uuid::Uuid;

/// One event of each type, with realistic values.
fn one_of_each() -> Vec<ShipmentEvent> {
    let (shipment_id, order_id) = (Uuid::now_v7(), Uuid::now_v7());
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
    ]
}

sluice_platform::event_contract_tests! {
    schemas: sluice_shipping::schemas,
    examples: one_of_each,
    events: ShipmentEvent {
        ShipmentCreated, ShipmentDispatched, ShipmentDelivered, ShipmentCancelled
    },
}
