//! Every order event round-trips through its Avro contract: domain event → stored
//! shape → single-object encoding → decoded JSON → domain event, unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use sluice_orders::domain::{LineItem, OrderEvent};
use uuid::Uuid;

/// One event of each type, with realistic values.
fn one_of_each() -> Vec<OrderEvent> {
    let order_id = Uuid::now_v7();
    vec![
        OrderEvent::OrderPlaced {
            order_id,
            customer_id: "alice@example.com".into(),
            currency: "EUR".into(),
            lines: vec![
                LineItem {
                    sku: "BOOK-1".into(),
                    quantity: 2,
                    unit_price_minor: 1250,
                },
                LineItem {
                    sku: "PEN-9 blue".into(),
                    quantity: 10_000,
                    unit_price_minor: 0,
                },
            ],
            total_minor: 2500,
        },
        OrderEvent::OrderConfirmed { order_id },
        OrderEvent::OrderCancelled {
            order_id,
            reason: "changed my mind — sorry".into(),
        },
    ]
}

sluice_platform::event_contract_tests! {
    schemas: sluice_orders::schemas,
    examples: one_of_each,
    events: OrderEvent { OrderPlaced, OrderConfirmed, OrderCancelled },
}
