//! The payments write service: authorize, capture and refund payments.
//!
//! - [`domain`]: the pure payment aggregate;
//! - [`api`]: the HTTP API (commands, state, audit stream, OpenAPI);
//! - [`config`]: the authorization limit from the environment;
//! - [`reactor`]: the saga steps: `OrderPlaced` → authorize (or decline) its
//!   payment; `OrderCancelled` → void (or refund) it.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod domain;
pub mod reactor;

use sluice_platform::avro::SchemaSource;
use sluice_platform::service::WriteService;

/// The topic this service's relay publishes to.
pub const TOPIC: &str = "payments.events";

/// The payments service as the platform runs it.
pub const SERVICE: WriteService = WriteService {
    name: "payments",
    migrator,
    schemas,
    router: api::router,
    reactor: Some(reactor::handler),
};

/// The payments store's own migrations (after the event store's).
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The Avro contracts of the payments events (`schemas/payments/<EventType>/v<N>.avsc`),
/// embedded in the binary: every version of every event type, the highest being the
/// one new events are written with.
pub fn schemas() -> Vec<SchemaSource> {
    vec![
        SchemaSource::embedded(
            "PaymentAuthorized",
            1,
            include_str!("../../../schemas/payments/PaymentAuthorized/v1.avsc"),
        ),
        SchemaSource::embedded(
            "PaymentDeclined",
            1,
            include_str!("../../../schemas/payments/PaymentDeclined/v1.avsc"),
        ),
        SchemaSource::embedded(
            "PaymentCaptured",
            1,
            include_str!("../../../schemas/payments/PaymentCaptured/v1.avsc"),
        ),
        SchemaSource::embedded(
            "PaymentRefunded",
            1,
            include_str!("../../../schemas/payments/PaymentRefunded/v1.avsc"),
        ),
        SchemaSource::embedded(
            "PaymentVoided",
            1,
            include_str!("../../../schemas/payments/PaymentVoided/v1.avsc"),
        ),
    ]
}
