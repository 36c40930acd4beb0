//! The orders write service: place, confirm and cancel orders.
//!
//! - [`domain`]: the pure order aggregate;
//! - [`api`]: the HTTP API (commands, state, audit stream, OpenAPI).
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;

use sluice_platform::service::WriteService;

/// The orders service as the platform runs it.
pub const SERVICE: WriteService = WriteService {
    name: "orders",
    migrator,
    router: api::router,
};

/// The orders store's own migrations (after the event store's).
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}
