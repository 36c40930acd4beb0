//! The shipping write service: create, dispatch and deliver shipments.
//!
//! - [`domain`]: the pure shipment aggregate;
//! - [`api`]: the HTTP API (commands, state, audit stream, OpenAPI);
//! - [`reactor`]: the saga step: `OrderConfirmed` → create the order's shipment.
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod reactor;

sluice_platform::write_service! {
    /// The shipping service as the platform runs it.
    name: "shipping",
    router: api::router,
    reactor: Some(reactor::handler),
}
