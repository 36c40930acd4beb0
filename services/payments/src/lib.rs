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

sluice_platform::write_service! {
    /// The payments service as the platform runs it.
    name: "payments",
    router: api::router,
    reactor: Some(reactor::handler),
}
