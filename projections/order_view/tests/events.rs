//! Events in, rows out: the handler against a fresh database, read back over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::consumer::HandlerError;
use support::{at, instant, placed, View};
use uuid::Uuid;

fn authorized(payment_id: Uuid, order_id: Uuid, amount: i64) -> Value {
    json!({"payment_id": payment_id, "order_id": order_id, "amount_minor": amount, "currency": "EUR"})
}

fn declined(payment_id: Uuid, order_id: Uuid) -> Value {
    json!({"payment_id": payment_id, "order_id": order_id, "amount_minor": 120_000,
           "currency": "EUR", "reason": "above the authorization limit"})
}

fn money(payment_id: Uuid, order_id: Uuid, amount: i64) -> Value {
    json!({"payment_id": payment_id, "order_id": order_id, "amount_minor": amount})
}

fn refunded(payment_id: Uuid, order_id: Uuid, amount: i64, reason: Option<&str>) -> Value {
    json!({"payment_id": payment_id, "order_id": order_id, "amount_minor": amount, "reason": reason})
}

fn shipment(shipment_id: Uuid, order_id: Uuid) -> Value {
    json!({"shipment_id": shipment_id, "order_id": order_id})
}

fn dispatched(shipment_id: Uuid, order_id: Uuid) -> Value {
    json!({"shipment_id": shipment_id, "order_id": order_id,
           "carrier": "DHL Express", "tracking_number": "JD014600006281234567"})
}

impl View {
    /// Places `order` for `cust-1` (second 0), authorizes its 2 800 with `payment`
    /// (second 1) and confirms it (second 2).
    async fn place_paid_and_confirmed(&mut self, order: Uuid, payment: Uuid) {
        self.place(order, "cust-1", 0).await;
        self.authorize(payment, order, 2800, 1).await;
        self.confirm(order, 2).await;
    }

    /// Places `order` for `cust-1` (second 0), authorizes its 2 800 with `payment`
    /// (second 1) and captures `captured` of it (second 2).
    async fn place_and_capture(&mut self, order: Uuid, payment: Uuid, captured: i64) {
        self.place(order, "cust-1", 0).await;
        self.authorize(payment, order, 2800, 1).await;
        self.capture(payment, order, captured, 2).await;
    }

    /// `PaymentAuthorized` of `amount` (EUR cents) for `order`, at second `at`.
    async fn authorize(&mut self, payment: Uuid, order: Uuid, amount: i64, at: i64) {
        let payload = authorized(payment, order, amount);
        self.feed("PaymentAuthorized", payment, payload, at).await;
    }

    /// `PaymentCaptured` of `amount` for `order`, at second `at`.
    async fn capture(&mut self, payment: Uuid, order: Uuid, amount: i64, at: i64) {
        let payload = money(payment, order, amount);
        self.feed("PaymentCaptured", payment, payload, at).await;
    }

    /// `PaymentRefunded` of `amount`, at second `at`.
    async fn refund(
        &mut self,
        payment: Uuid,
        order: Uuid,
        amount: i64,
        reason: Option<&str>,
        at: i64,
    ) {
        let payload = refunded(payment, order, amount, reason);
        self.feed("PaymentRefunded", payment, payload, at).await;
    }

    /// `PaymentDeclined` (above the authorization limit), at second `at`.
    async fn decline(&mut self, payment: Uuid, order: Uuid, at: i64) {
        let payload = declined(payment, order);
        self.feed("PaymentDeclined", payment, payload, at).await;
    }

    /// `OrderConfirmed` at second `at`.
    async fn confirm(&mut self, order: Uuid, at: i64) {
        let payload = json!({"order_id": order});
        self.feed("OrderConfirmed", order, payload, at).await;
    }

    /// A shipment event naming only the shipment and its order (`ShipmentCreated`,
    /// `ShipmentDelivered`), at second `at`.
    async fn shipment(&mut self, event_type: &str, ship: Uuid, order: Uuid, at: i64) {
        self.feed(event_type, ship, shipment(ship, order), at).await;
    }

    /// `ShipmentDispatched` with DHL, at second `at`.
    async fn dispatch(&mut self, ship: Uuid, order: Uuid, at: i64) {
        let payload = dispatched(ship, order);
        self.feed("ShipmentDispatched", ship, payload, at).await;
    }

    /// `/metrics` has a sample of `series` carrying every one of `labels`.
    async fn assert_counted(&self, series: &str, labels: &[&str]) {
        let metrics = self.get("/metrics").await.text().await.unwrap();
        let counted = metrics.lines().any(|line| {
            line.starts_with(series) && labels.iter().all(|label| line.contains(label))
        });
        assert!(counted, "{series} {labels:?} missing from\n{metrics}");
    }

    /// `GET /orders/{order}` answers 404: the view does not serve the order (yet).
    async fn assert_not_served(&self, order: Uuid) {
        let response = self.get(&format!("/orders/{order}")).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "order {order}");
    }
}

#[tokio::test]
async fn the_full_lifecycle_fills_every_field_of_one_row() {
    let mut view = View::spawn().await;
    let (order, payment, ship) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    view.place_paid_and_confirmed(order, payment).await;
    view.capture(payment, order, 2800, 3).await;
    view.shipment("ShipmentCreated", ship, order, 4).await;
    view.dispatch(ship, order, 5).await;
    view.shipment("ShipmentDelivered", ship, order, 6).await;

    let row = view.order(order).await;
    assert_eq!(row["order_id"], order.to_string());
    assert_eq!(row["customer_id"], "cust-1");
    assert_eq!(row["currency"], "EUR");
    assert_eq!(
        row["lines"],
        json!([
            { "sku": "BOOK-1", "quantity": 2, "unit_price_minor": 1250 },
            { "sku": "PEN-9", "quantity": 1, "unit_price_minor": 300 }
        ])
    );
    assert_eq!(row["total_minor"], 2800);
    assert_eq!(row["order_status"], "confirmed");
    assert_eq!(row["cancel_reason"], Value::Null);
    assert_eq!(row["payment_id"], payment.to_string());
    assert_eq!(row["payment_status"], "captured");
    assert_eq!(row["payment_currency"], "EUR");
    assert_eq!(row["authorized_minor"], 2800);
    assert_eq!(row["captured_minor"], 2800);
    assert_eq!(row["refunded_minor"], 0);
    assert_eq!(row["shipment_id"], ship.to_string());
    assert_eq!(row["shipment_status"], "delivered");
    assert_eq!(row["carrier"], "DHL Express");
    assert_eq!(row["tracking_number"], "JD014600006281234567");
    for (field, second) in [
        ("placed_at", 0),
        ("authorized_at", 1),
        ("confirmed_at", 2),
        ("captured_at", 3),
        ("shipment_created_at", 4),
        ("dispatched_at", 5),
        ("delivered_at", 6),
        ("updated_at", 6),
    ] {
        assert_eq!(instant(&row[field]), at(second), "{field}: {row}");
    }
    for field in [
        "cancelled_at",
        "declined_at",
        "refunded_at",
        "decline_reason",
    ] {
        assert_eq!(row[field], Value::Null, "{field}: {row}");
    }
}

#[tokio::test]
async fn events_arriving_before_order_placed_end_in_the_same_row() {
    let mut view = View::spawn().await;
    let (order, payment, ship) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    // Shipping and payments topics overtake the orders topic.
    view.shipment("ShipmentCreated", ship, order, 4).await;
    view.authorize(payment, order, 2800, 1).await;
    // The row holds what arrived, but it is not an order until its OrderPlaced is
    // in: neither served nor listed (it has no customer, status or placing time).
    let held = view.rows().await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["order_status"], Value::Null, "{held:?}");
    assert_eq!(held[0]["payment_status"], "authorized");
    assert_eq!(held[0]["shipment_status"], "created");
    view.assert_not_served(order).await;
    let listed = view.get_ok("/orders").await;
    assert_eq!(listed["orders"], json!([]), "{listed}");
    view.assert_counted(
        "sluice_projection_events_before_order_placed_total",
        &[r#"event_type="ShipmentCreated""#],
    )
    .await;

    view.place(order, "cust-early", 0).await;
    view.confirm(order, 2).await;

    let row = view.order(order).await;
    assert_eq!(row["order_status"], "confirmed");
    assert_eq!(row["customer_id"], "cust-early");
    assert_eq!(row["total_minor"], 2800);
    assert_eq!(row["payment_status"], "authorized");
    assert_eq!(row["authorized_minor"], 2800);
    assert_eq!(row["shipment_status"], "created");
    assert_eq!(instant(&row["placed_at"]), at(0));
    assert_eq!(instant(&row["authorized_at"]), at(1));
    // The latest event by recorded time, whatever the arrival order.
    assert_eq!(instant(&row["updated_at"]), at(4));
    let listed = view.get_ok("/orders?customer_id=cust-early").await;
    assert_eq!(listed["orders"][0]["order_id"], order.to_string());
}

#[tokio::test]
async fn refunds_add_up_until_the_payment_is_refunded() {
    let mut view = View::spawn().await;
    let (order, payment) = (Uuid::now_v7(), Uuid::now_v7());
    view.place_and_capture(order, payment, 2500).await;

    view.refund(payment, order, 1000, Some("damaged"), 3).await;
    let row = view.order(order).await;
    assert_eq!(row["payment_status"], "partially_refunded");
    assert_eq!(row["refunded_minor"], 1000);

    view.refund(payment, order, 700, None, 4).await;
    let row = view.order(order).await;
    assert_eq!(row["payment_status"], "partially_refunded");
    assert_eq!(row["refunded_minor"], 1700);
    assert_eq!(instant(&row["refunded_at"]), at(4));

    view.refund(payment, order, 800, None, 5).await;
    let row = view.order(order).await;
    assert_eq!(row["payment_status"], "refunded");
    assert_eq!(row["refunded_minor"], 2500);
    assert_eq!(row["captured_minor"], 2500);
    assert_eq!(row["authorized_minor"], 2800);
}

#[tokio::test]
async fn a_declined_payment_and_the_cancelled_order_show_in_one_row() {
    let mut view = View::spawn().await;
    let (order, payment) = (Uuid::now_v7(), Uuid::now_v7());
    view.place(order, "cust-1", 0).await;
    view.decline(payment, order, 1).await;
    let reason = json!({"order_id": order, "reason": "payment declined"});
    view.feed("OrderCancelled", order, reason, 2).await;

    let row = view.order(order).await;
    assert_eq!(row["order_status"], "cancelled");
    assert_eq!(row["cancel_reason"], "payment declined");
    assert_eq!(row["payment_status"], "declined");
    assert_eq!(row["decline_reason"], "above the authorization limit");
    assert_eq!(row["authorized_minor"], Value::Null);
    assert_eq!(row["shipment_status"], Value::Null);
    assert_eq!(instant(&row["declined_at"]), at(1));
    assert_eq!(instant(&row["cancelled_at"]), at(2));
    assert_eq!(row["confirmed_at"], Value::Null);
}

#[tokio::test]
async fn a_retry_after_a_decline_replaces_the_payment_and_other_payments_are_ignored() {
    let mut view = View::spawn().await;
    let order = Uuid::now_v7();
    let (first, retry, stray) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    view.place(order, "cust-1", 0).await;
    view.decline(first, order, 1).await;
    view.authorize(retry, order, 2800, 2).await;
    // Another payment of the same order while this one stands: ignored, and so are
    // its later events.
    view.authorize(stray, order, 999, 3).await;
    view.capture(stray, order, 999, 4).await;

    let row = view.order(order).await;
    assert_eq!(row["payment_id"], retry.to_string());
    assert_eq!(row["payment_status"], "authorized");
    assert_eq!(row["authorized_minor"], 2800);
    assert_eq!(row["captured_minor"], Value::Null);
    assert_eq!(row["decline_reason"], Value::Null);
    assert_eq!(row["declined_at"], Value::Null);
    assert_eq!(instant(&row["updated_at"]), at(2));
}

#[tokio::test]
async fn a_decline_after_the_authorization_of_another_payment_is_ignored() {
    // The two payments' streams may arrive in either order: the result is the same.
    let mut view = View::spawn().await;
    let order = Uuid::now_v7();
    let (declined_one, authorized_one) = (Uuid::now_v7(), Uuid::now_v7());
    view.place(order, "cust-1", 0).await;
    view.authorize(authorized_one, order, 2800, 2).await;
    view.decline(declined_one, order, 1).await;
    let row = view.order(order).await;
    assert_eq!(row["payment_id"], authorized_one.to_string());
    assert_eq!(row["payment_status"], "authorized");
}

#[tokio::test]
async fn a_second_shipment_of_an_order_is_ignored() {
    let mut view = View::spawn().await;
    let (order, ship, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    view.place(order, "cust-1", 0).await;
    view.shipment("ShipmentCreated", ship, order, 1).await;
    view.shipment("ShipmentCreated", other, order, 2).await;
    view.dispatch(other, order, 3).await;
    let row = view.order(order).await;
    assert_eq!(row["shipment_id"], ship.to_string());
    assert_eq!(row["shipment_status"], "created");
    assert_eq!(row["carrier"], Value::Null);
}

#[tokio::test]
async fn an_unknown_event_type_is_ignored_and_counted() {
    let mut view = View::spawn().await;
    let order = Uuid::now_v7();
    let event = view.event("OrderGiftWrapped", order, json!({"order_id": order}), 0);
    view.apply(&event).await;

    view.assert_not_served(order).await;
    view.assert_counted(
        "sluice_projection_events_ignored_total",
        &[
            r#"event_type="OrderGiftWrapped""#,
            r#"reason="unknown_event_type""#,
            r#"projection="order_view""#,
        ],
    )
    .await;
}

#[tokio::test]
async fn a_payload_missing_a_field_is_poison_naming_the_field() {
    let mut view = View::spawn().await;
    let order = Uuid::now_v7();
    let mut event = view.event("OrderPlaced", order, support::placed(order, "c"), 0);
    event.payload.as_object_mut().unwrap().remove("customer_id");
    match view.try_apply(&event).await {
        Err(HandlerError::Poison(detail)) => {
            assert!(detail.contains("customer_id"), "{detail}");
            assert!(detail.contains("OrderPlaced"), "{detail}");
        }
        other => panic!("expected poison, got {other:?}"),
    }
    view.assert_not_served(order).await;
}

#[tokio::test]
async fn the_database_refuses_a_refund_above_the_capture() {
    let mut view = View::spawn().await;
    let (order, payment) = (Uuid::now_v7(), Uuid::now_v7());
    view.place_and_capture(order, payment, 1000).await;
    let event = view.event(
        "PaymentRefunded",
        payment,
        refunded(payment, order, 1001, None),
        3,
    );
    let result = view.try_apply(&event).await;
    assert!(
        matches!(result, Err(HandlerError::Database(_))),
        "{result:?}"
    );
    let row = view.order(order).await;
    assert_eq!(row["refunded_minor"], 0);
    assert_eq!(row["payment_status"], "captured");
}

#[tokio::test]
async fn a_batch_applied_set_wise_equals_the_same_events_one_by_one() {
    let mut one_by_one = View::spawn().await;
    let set_wise = View::spawn().await;
    let mut events = Vec::new();
    for i in 0..6i64 {
        let (order, payment, ship) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let t = i * 100;
        // Interleaved as the topics would deliver them: several events of one stream
        // (refunds that add up) and events for the order before OrderPlaced.
        events.push(one_by_one.event(
            "PaymentAuthorized",
            payment,
            authorized(payment, order, 2800),
            t + 1,
        ));
        events.push(one_by_one.event(
            "OrderPlaced",
            order,
            placed(order, &format!("batch-{}", i % 2)),
            t,
        ));
        events.push(one_by_one.event("OrderConfirmed", order, json!({"order_id": order}), t + 2));
        events.push(one_by_one.event(
            "PaymentCaptured",
            payment,
            money(payment, order, 2800),
            t + 3,
        ));
        events.push(one_by_one.event("ShipmentCreated", ship, shipment(ship, order), t + 4));
        if i % 2 == 0 {
            events.push(one_by_one.event(
                "PaymentRefunded",
                payment,
                refunded(payment, order, 800, None),
                t + 5,
            ));
            events.push(one_by_one.event(
                "PaymentRefunded",
                payment,
                refunded(payment, order, 2000, Some("damaged")),
                t + 6,
            ));
            events.push(one_by_one.event(
                "ShipmentDispatched",
                ship,
                dispatched(ship, order),
                t + 7,
            ));
            events.push(one_by_one.event("ShipmentDelivered", ship, shipment(ship, order), t + 8));
        } else {
            events.push(one_by_one.event(
                "OrderCancelled",
                order,
                json!({"order_id": order, "reason": "customer"}),
                t + 9,
            ));
        }
    }
    for event in &events {
        one_by_one.apply(event).await;
    }
    set_wise
        .try_apply_batch(&events)
        .await
        .expect("the batch applies set-wise");
    let (expected, actual) = (one_by_one.rows().await, set_wise.rows().await);
    assert_eq!(expected.len(), 6);
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn two_payments_of_one_order_in_one_round_are_refused_set_wise_for_the_runtime_to_redo() {
    let mut view = View::spawn().await;
    let (order, first, second) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let events = vec![
        view.event("OrderPlaced", order, placed(order, "two-payments"), 0),
        view.event("PaymentDeclined", first, declined(first, order), 1),
        view.event("PaymentDeclined", second, declined(second, order), 2),
    ];
    assert!(
        view.try_apply_batch(&events).await.is_err(),
        "one statement cannot update a row twice"
    );
    assert!(
        view.rows().await.is_empty(),
        "nothing of the refused batch stays"
    );
    // Event by event (the runtime's careful path) they apply.
    for event in &events {
        view.apply(event).await;
    }
    assert_eq!(view.order(order).await["payment_status"], "declined");
}

#[tokio::test]
async fn a_cancelled_orders_voided_payment_and_called_off_shipment_show_in_its_row() {
    let mut view = View::spawn().await;
    let (order, payment, ship) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    view.place_paid_and_confirmed(order, payment).await;
    view.shipment("ShipmentCreated", ship, order, 3).await;
    view.feed(
        "OrderCancelled",
        order,
        json!({"order_id": order, "reason": "changed my mind"}),
        4,
    )
    .await;
    view.feed(
        "PaymentVoided",
        payment,
        json!({"payment_id": payment, "order_id": order, "amount_minor": 2800,
               "reason": "order cancelled: changed my mind"}),
        5,
    )
    .await;
    view.feed(
        "ShipmentCancelled",
        ship,
        json!({"shipment_id": ship, "order_id": order,
               "reason": "order cancelled: changed my mind"}),
        6,
    )
    .await;

    let row = view.order(order).await;
    assert_eq!(row["order_status"], "cancelled", "{row}");
    assert_eq!(row["payment_status"], "voided", "{row}");
    assert_eq!(row["shipment_status"], "cancelled", "{row}");
    assert_eq!(instant(&row["voided_at"]), at(5));
    assert_eq!(instant(&row["shipment_cancelled_at"]), at(6));
    assert_eq!(instant(&row["updated_at"]), at(6));
}
