//! The orders write service: place, confirm and cancel orders.
//!
//! - [`domain`]: the pure order aggregate;
//! - [`api`]: the HTTP API (commands, state, audit stream, OpenAPI);
//! - [`reactor`]: the saga step: `PaymentAuthorized` → confirm, `PaymentDeclined` → cancel.
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod reactor;

use sluice_platform::service::WriteService;

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

include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
