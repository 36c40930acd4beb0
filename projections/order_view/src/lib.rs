//! The `order_view` projection: one denormalized row per order, joining the events
//! of the orders, payments and shipping services, queried over HTTP.
//!
//! - [`domain`]: what the view reads from each event, and its statuses (pure);
//! - [`handlers`]: the event handler, one upsert per event type;
//! - [`api`]: `GET /orders/{id}`, `GET /orders` (by customer and/or status, keyset
//!   pages), `/openapi.json`.
//!
//! # Rules
//!
//! - **Events of an order the view has not seen** (the three services publish to
//!   three topics, with no order between them: a payment or shipment event may
//!   arrive before its `OrderPlaced`) create the order's row: the row is keyed by
//!   `order_id` and upserted by whichever event comes first. Fields no event has
//!   supplied yet stay `NULL`; `order_status` is `NULL` until `OrderPlaced` arrives.
//!   Nothing waits and nothing is dead-lettered for arriving early; such events are
//!   logged (debug) and counted (`sluice_projection_events_before_order_placed_total`).
//!   A row never placed is readable by id but not listed.
//! - **One payment per row.** The row follows the first payment the view hears of.
//!   A `PaymentAuthorized` of another payment replaces it only when it was declined (a
//!   retry after a decline); the declined payment's fields are then cleared. Events of
//!   any other payment of the order are ignored, logged and counted
//!   (`sluice_projection_events_ignored_total{reason="other_payment"}`).
//! - **One shipment per row**: the first shipment the view hears of; events of other
//!   shipments of the order are ignored the same way (`reason="other_shipment"`).
//! - **Money**: `authorized_minor` and `captured_minor` are the payment's; refunds add
//!   up in `refunded_minor`; the payment is `partially_refunded` until they reach the
//!   captured amount, then `refunded`. The database refuses a capture above the
//!   authorization or refunds above the capture (the event is retried, then
//!   dead-lettered).
//! - **Timestamps** are the `recorded_at` of the event that set them; `updated_at` is
//!   the latest applied. A rebuild from the topics gives the same rows.
//! - An event type the view does not use is ignored and counted
//!   (`reason="unknown_event_type"`); a payload missing a field the view needs is
//!   poison, dead-lettered at once with the field named.
//!
//! Applying each event once and each stream in version order is the consumer
//! runtime's job (`sluice_platform::consumer`); the handler relies on it.
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod handlers;

use sluice_platform::projection::{default_handler, ProjectionService};

/// The order_view projection as the platform runs it; its event handler is
/// [`handlers::OrderViewHandler`].
pub const PROJECTION: ProjectionService = ProjectionService {
    name: "order_view",
    migrator,
    handler: default_handler::<handlers::OrderViewHandler>,
    router: api::router,
};

/// The view's own migrations (after the consumer runtime's).
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}
