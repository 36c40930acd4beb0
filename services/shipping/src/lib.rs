//! The shipping write service: create, dispatch and deliver shipments.
//!
//! - [`domain`]: the pure shipment aggregate;
//! - [`api`]: the HTTP API (commands, state, audit stream, OpenAPI);
//! - [`reactor`]: the saga step: `OrderConfirmed` → create the order's shipment.
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod reactor;

use sluice_platform::avro::SchemaSource;
use sluice_platform::service::WriteService;

/// The topic this service's relay publishes to.
pub const TOPIC: &str = "shipping.events";

/// The shipping service as the platform runs it.
pub const SERVICE: WriteService = WriteService {
    name: "shipping",
    migrator,
    schemas,
    router: api::router,
    reactor: Some(reactor::handler),
};

/// The shipping store's own migrations (after the event store's).
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The Avro contracts of the shipping events (`schemas/shipping/<EventType>/v<N>.avsc`),
/// embedded in the binary: every version of every event type, the highest being the
/// one new events are written with.
pub fn schemas() -> Vec<SchemaSource> {
    vec![
        SchemaSource::embedded(
            "ShipmentCreated",
            1,
            include_str!("../../../schemas/shipping/ShipmentCreated/v1.avsc"),
        ),
        SchemaSource::embedded(
            "ShipmentDispatched",
            1,
            include_str!("../../../schemas/shipping/ShipmentDispatched/v1.avsc"),
        ),
        SchemaSource::embedded(
            "ShipmentDelivered",
            1,
            include_str!("../../../schemas/shipping/ShipmentDelivered/v1.avsc"),
        ),
        SchemaSource::embedded(
            "ShipmentCancelled",
            1,
            include_str!("../../../schemas/shipping/ShipmentCancelled/v1.avsc"),
        ),
    ]
}
