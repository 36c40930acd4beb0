//! The orders write service: place, confirm and cancel orders.
//!
//! - [`domain`]: the pure order aggregate;
//! - [`api`]: the HTTP API (commands, state, audit stream, OpenAPI);
//! - [`reactor`]: the saga step: `PaymentAuthorized` → confirm, `PaymentDeclined` → cancel.
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod reactor;

use sluice_platform::avro::SchemaSource;
use sluice_platform::service::WriteService;

/// The topic this service's relay publishes to.
pub const TOPIC: &str = "orders.events";

/// The orders service as the platform runs it.
pub const SERVICE: WriteService = WriteService {
    name: "orders",
    migrator,
    schemas,
    router: api::router,
    reactor: Some(reactor::handler),
};

/// The orders store's own migrations (after the event store's).
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The Avro contracts of the orders events (`schemas/orders/<EventType>/v<N>.avsc`),
/// embedded in the binary: every version of every event type, the highest being the
/// one new events are written with.
pub fn schemas() -> Vec<SchemaSource> {
    vec![
        SchemaSource::embedded(
            "OrderPlaced",
            1,
            include_str!("../../../schemas/orders/OrderPlaced/v1.avsc"),
        ),
        SchemaSource::embedded(
            "OrderConfirmed",
            1,
            include_str!("../../../schemas/orders/OrderConfirmed/v1.avsc"),
        ),
        SchemaSource::embedded(
            "OrderCancelled",
            1,
            include_str!("../../../schemas/orders/OrderCancelled/v1.avsc"),
        ),
    ]
}
