//! One order event of each type with realistic values: the examples of the
//! orders contract tests and of the repository's Avro interoperability test.

use sluice_orders::domain::{LineItem, OrderEvent};
use uuid::Uuid;

/// One event of each type, with realistic values.
pub fn one_of_each() -> Vec<OrderEvent> {
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
                LineItem {
                    sku: "CAFÉ-CRÈME".into(),
                    quantity: 1,
                    unit_price_minor: 480,
                },
            ],
            total_minor: 2980,
        },
        OrderEvent::OrderConfirmed { order_id },
        OrderEvent::OrderCancelled {
            order_id,
            reason: "changed my mind — sorry".into(),
        },
    ]
}
