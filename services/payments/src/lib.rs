//! The payments write service: authorize, capture and refund payments.
//!
//! - [`domain`]: the pure payment aggregate;
//! - [`api`]: the HTTP API (commands, state, audit stream, OpenAPI).
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;

use sluice_platform::service::WriteService;

/// The payments service as the platform runs it.
pub const SERVICE: WriteService = WriteService {
    name: "payments",
    migrator,
    router: api::router,
};

/// The payments store's own migrations (after the event store's).
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}
