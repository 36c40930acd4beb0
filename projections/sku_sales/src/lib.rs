//! The sku_sales projection: per SKU, the orders that named it, the units ordered and
//! the units in orders cancelled later. Consumes `orders.events`.
//!
//! It is the read model `docs/adding-a-projection.md` builds step by step: every code
//! block of that guide is this crate's code, which `tests/readme.rs` checks.
//!
//! - [`domain`]: the payload fields it reads, parsed (pure);
//! - [`handlers`]: applying events to the read model;
//! - [`api`]: the query API (`/skus/{sku}`, OpenAPI).
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod handlers;

use sluice_platform::consumer::EventHandler;
use sluice_platform::projection::ProjectionService;

/// The projection's registry name, also its metrics label.
pub const NAME: &str = "sku_sales";

/// The SKU sales read model as the platform runs it.
pub const PROJECTION: ProjectionService = ProjectionService {
    name: NAME,
    migrator,
    handler,
    router: api::router,
};

/// The read model's migrations (after the consumer runtime's).
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The handler the consumer runtime applies events with.
pub fn handler() -> Box<dyn EventHandler> {
    Box::new(handlers::SkuSalesHandler)
}
