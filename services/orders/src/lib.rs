//! The orders write service: place, confirm and cancel orders.
//!
//! - [`domain`]: the pure order aggregate;
//! - [`api`]: the HTTP API (commands, state, audit stream, OpenAPI);
//! - [`reactor`]: the saga step: `PaymentAuthorized` → confirm, `PaymentDeclined` → cancel.
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod reactor;

sluice_platform::write_service! {
    /// The orders service as the platform runs it.
    name: "orders",
    router: api::router,
    reactor: Some(reactor::handler),
}
