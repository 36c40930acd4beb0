//! Every shipment event round-trips through its Avro contract: domain event → stored
//! shape → single-object encoding → decoded JSON → domain event, unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

#[path = "support/examples.rs"]
mod examples;

use sluice_shipping::domain::ShipmentEvent;

sluice_platform::event_contract_tests! {
    schemas: sluice_shipping::schemas,
    examples: examples::one_of_each,
    events: ShipmentEvent {
        ShipmentCreated, ShipmentDispatched, ShipmentDelivered, ShipmentCancelled
    },
}
