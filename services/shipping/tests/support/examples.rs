//! One shipment event of each type with realistic values: the examples of the
//! shipping contract tests and of the repository's Avro interoperability test.

use sluice_shipping::domain::ShipmentEvent;
use uuid::Uuid;

/// One event of each type, with realistic values.
pub fn one_of_each() -> Vec<ShipmentEvent> {
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
