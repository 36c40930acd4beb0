//! The customer_summary projection: per customer, the orders they placed, confirmed
//! and cancelled, when they last ordered, and what they spent (captured minus
//! refunded) per currency. Consumes `orders.events` and `payments.events`.
//!
//! - [`domain`]: the payload fields the summary reads, parsed (pure);
//! - [`handlers`]: applying events to the read model, and the rules for events that
//!   do not fit (unknown types, payments before their order, missing fields);
//! - [`api`]: the query API (`/customers/{customer_id}`, `/customers/top`, OpenAPI).
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod handlers;

use sluice_platform::projection::{default_handler, ProjectionService};

/// The projection's registry name, also its metrics label.
pub const NAME: &str = "customer_summary";

/// The customer summary as the platform runs it: its read model's migrations (run
/// after the consumer runtime's), the handler the runtime applies events with, and
/// the query API.
pub const PROJECTION: ProjectionService = ProjectionService {
    name: NAME,
    migrator: || sqlx::migrate!("./migrations"),
    handler: default_handler::<handlers::CustomerSummaryHandler>,
    router: api::router,
};
