//! The payments write service: authorize, capture and refund payments.
//!
//! - [`domain`]: the pure payment aggregate;
//! - [`api`]: the HTTP API (commands, state, audit stream, OpenAPI);
//! - [`config`]: the authorization limit, from `sluice.toml` or the environment;
//! - [`reactor`]: the saga steps: `OrderPlaced` → authorize (or decline) its
//!   payment; `OrderCancelled` → void (or refund) it.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod domain;
pub mod reactor;

use sluice_platform::service::WriteService;

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

include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
