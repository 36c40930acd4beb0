//! The shipping write service: create, dispatch and deliver shipments.
//!
//! - [`domain`]: the pure shipment aggregate;
//! - [`api`]: the HTTP API (commands, state, audit stream, OpenAPI);
//! - [`reactor`]: the saga step: `OrderConfirmed` → create the order's shipment.
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod reactor;

use sluice_platform::service::WriteService;

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

include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
