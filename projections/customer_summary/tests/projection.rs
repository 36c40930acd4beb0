//! The customer summary end to end below the broker: events carried through the
//! services' Avro contracts are applied by the projection's handler in transactions
//! on a fresh database, and the read model is queried over HTTP on a random port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use chrono::{DateTime, Duration, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::consumer::ConsumedEvent;
use sluice_platform::testing::{assert_problem, repository_catalog, TestProjection};
use uuid::Uuid;

/// The customer summary on a fresh database, its events carried through the
/// orders and payments contracts.
struct Projection(TestProjection);

impl std::ops::Deref for Projection {
    type Target = TestProjection;

    fn deref(&self) -> &TestProjection {
        &self.0
    }
}

const ORDERS: &str = "orders.events";
const PAYMENTS: &str = "payments.events";

fn stream_type(topic: &str) -> &'static str {
    match topic {
        ORDERS => "order",
        PAYMENTS => "payment",
        _ => "shipment",
    }
}

impl Projection {
    async fn start() -> Self {
        let projection = TestProjection::start(&sluice_customer_summary::PROJECTION).await;
        Projection(projection.through(repository_catalog()))
    }

    /// An event of `stream`, next in its version order, recorded at `recorded_at`.
    fn event(
        &mut self,
        topic: &str,
        stream: Uuid,
        event_type: &str,
        payload: Value,
        recorded_at: DateTime<Utc>,
    ) -> ConsumedEvent {
        let mut event = self
            .0
            .event(topic, stream_type(topic), stream, event_type, payload);
        event.recorded_at = recorded_at;
        event
    }

    /// Builds the next event of `stream` (see [`Projection::event`]) and applies it.
    async fn feed(
        &mut self,
        topic: &str,
        stream: Uuid,
        event_type: &str,
        payload: Value,
        at: DateTime<Utc>,
    ) {
        let e = self.event(topic, stream, event_type, payload, at);
        self.apply(&e).await;
    }

    /// What no producer could send: an event type without a schema, a payload
    /// missing a field.
    fn off_contract(
        &mut self,
        topic: &str,
        stream: Uuid,
        event_type: &str,
        payload: Value,
    ) -> ConsumedEvent {
        self.0
            .off_contract(topic, stream_type(topic), stream, event_type, payload)
    }

    async fn place(&mut self, order: Uuid, customer: &str, currency: &str, at: DateTime<Utc>) {
        let payload = json!({
            "order_id": order, "customer_id": customer, "currency": currency,
            "lines": [{"sku": "BOOK-1", "quantity": 1, "unit_price_minor": 1000}],
            "total_minor": 1000
        });
        self.feed(ORDERS, order, "OrderPlaced", payload, at).await;
    }

    async fn order_event(&mut self, order: Uuid, event_type: &str) {
        let payload = match event_type {
            "OrderCancelled" => json!({"order_id": order, "reason": "changed mind"}),
            _ => json!({"order_id": order}),
        };
        self.feed(ORDERS, order, event_type, payload, t(100)).await;
    }

    /// Authorizes and captures `captured` for `order` in `currency`; returns the payment.
    async fn pay(&mut self, order: Uuid, currency: &str, captured: i64) -> Uuid {
        let payment = Uuid::now_v7();
        let authorized = json!({"payment_id": payment, "order_id": order,
                                "amount_minor": captured, "currency": currency});
        self.feed(PAYMENTS, payment, "PaymentAuthorized", authorized, t(50))
            .await;
        let captured = json!({"payment_id": payment, "order_id": order, "amount_minor": captured});
        self.feed(PAYMENTS, payment, "PaymentCaptured", captured, t(51))
            .await;
        payment
    }

    async fn refund(&mut self, payment: Uuid, order: Uuid, amount: i64) {
        let refunded = json!({"payment_id": payment, "order_id": order,
                              "amount_minor": amount, "reason": null});
        self.feed(PAYMENTS, payment, "PaymentRefunded", refunded, t(60))
            .await;
    }

    async fn customer(&self, id: &str) -> Value {
        self.get_json(&format!("/customers/{id}")).await
    }

    async fn top(&self, query: &str) -> Vec<(String, i64)> {
        let body = self.get_json(&format!("/customers/top?{query}")).await;
        body["customers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["customer_id"].as_str().unwrap().to_owned(),
                    c["spent_minor"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

/// A fixed instant plus `minutes`.
fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn spend(summary: &Value, currency: &str) -> (i64, i64, i64) {
    let entry = summary["spend"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["currency"] == currency)
        .unwrap_or_else(|| panic!("no {currency} spend in {summary}"));
    (
        entry["captured_minor"].as_i64().unwrap(),
        entry["refunded_minor"].as_i64().unwrap(),
        entry["spent_minor"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn orders_placed_confirmed_and_cancelled_are_counted_per_customer() {
    let mut p = Projection::start().await;
    let (a, b, c, other) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    // Orders of one customer arrive from different partitions, not in time order.
    p.place(b, "alice", "EUR", t(20)).await;
    p.place(a, "alice", "EUR", t(10)).await;
    p.place(c, "alice", "EUR", t(5)).await;
    p.place(other, "bob", "EUR", t(30)).await;
    p.order_event(a, "OrderConfirmed").await;
    p.order_event(b, "OrderConfirmed").await;
    p.order_event(b, "OrderCancelled").await;
    p.order_event(c, "OrderCancelled").await;

    let alice = p.customer("alice").await;
    assert_eq!(alice["customer_id"], "alice");
    assert_eq!(alice["orders_placed"], 3);
    assert_eq!(alice["orders_confirmed"], 2);
    assert_eq!(alice["orders_cancelled"], 2);
    let last: DateTime<Utc> = alice["last_order_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(last, t(20), "the latest order, whatever the arrival order");
    assert_eq!(alice["spend"], json!([]));
    let bob = p.customer("bob").await;
    assert_eq!(bob["orders_placed"], 1);
    assert_eq!(bob["orders_confirmed"], 0);
}

#[tokio::test]
async fn spend_is_captured_minus_refunded() {
    let mut p = Projection::start().await;
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    p.place(first, "carol", "EUR", t(0)).await;
    p.place(second, "carol", "EUR", t(1)).await;
    let pay1 = p.pay(first, "EUR", 5_000).await;
    p.pay(second, "EUR", 2_500).await;
    p.refund(pay1, first, 700).await;
    p.refund(pay1, first, 300).await;
    // A declined authorization moves no money.
    let declined = Uuid::now_v7();
    let payload = json!({"payment_id": declined, "order_id": second, "amount_minor": 99_999,
                         "currency": "EUR", "reason": "above limit"});
    p.feed(PAYMENTS, declined, "PaymentDeclined", payload, t(2))
        .await;

    let carol = p.customer("carol").await;
    assert_eq!(spend(&carol, "EUR"), (7_500, 1_000, 6_500));
    assert_eq!(carol["spend"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn payments_before_their_order_are_parked_then_folded_in() {
    let mut p = Projection::start().await;
    let order = Uuid::now_v7();
    let payment = p.pay(order, "EUR", 4_000).await;
    p.refund(payment, order, 1_500).await;
    assert_eq!(p.count("pending_payments").await, 2, "parked, not lost");
    let metrics = p.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains("sluice_projection_payments_parked_total{projection=\"customer_summary\"}"),
        "{metrics}"
    );
    assert_eq!(p.count("customer_spend").await, 0);
    assert_problem(
        p.get("/customers/dave").await,
        StatusCode::NOT_FOUND,
        "dave",
    )
    .await;

    p.place(order, "dave", "EUR", t(0)).await;
    assert_eq!(
        p.count("pending_payments").await,
        0,
        "folded in with the order"
    );
    let dave = p.customer("dave").await;
    assert_eq!(spend(&dave, "EUR"), (4_000, 1_500, 2_500));
    assert_eq!(dave["orders_placed"], 1);

    // Later money of the same order goes straight to the customer.
    p.refund(payment, order, 500).await;
    assert_eq!(
        spend(&p.customer("dave").await, "EUR"),
        (4_000, 2_000, 2_000)
    );
}

#[tokio::test]
async fn parked_payments_of_other_orders_stay_parked() {
    let mut p = Projection::start().await;
    let (placed, unplaced) = (Uuid::now_v7(), Uuid::now_v7());
    p.pay(placed, "EUR", 100).await;
    p.pay(unplaced, "EUR", 200).await;
    p.place(placed, "erin", "EUR", t(0)).await;
    assert_eq!(spend(&p.customer("erin").await, "EUR"), (100, 0, 100));
    assert_eq!(p.count("pending_payments").await, 1);
}

#[tokio::test]
async fn spend_is_kept_per_currency_of_the_payment() {
    let mut p = Projection::start().await;
    let (eur, usd, early) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    p.place(eur, "frank", "EUR", t(0)).await;
    p.place(usd, "frank", "USD", t(1)).await;
    p.pay(eur, "EUR", 1_000).await;
    let usd_payment = p.pay(usd, "USD", 3_000).await;
    p.refund(usd_payment, usd, 1_000).await;
    // A parked payment keeps its own currency through the fold.
    p.pay(early, "GBP", 800).await;
    p.place(early, "frank", "GBP", t(2)).await;

    let frank = p.customer("frank").await;
    let currencies: Vec<&str> = frank["spend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["currency"].as_str().unwrap())
        .collect();
    assert_eq!(currencies, ["EUR", "GBP", "USD"]);
    assert_eq!(spend(&frank, "EUR"), (1_000, 0, 1_000));
    assert_eq!(spend(&frank, "USD"), (3_000, 1_000, 2_000));
    assert_eq!(spend(&frank, "GBP"), (800, 0, 800));
}

#[tokio::test]
async fn top_customers_are_ordered_by_spend_then_id() {
    let mut p = Projection::start().await;
    for (customer, currency, amount, refund) in [
        ("zoe", "EUR", 5_000, 0),
        ("amy", "EUR", 3_000, 0),
        ("ben", "EUR", 4_000, 1_000), // spent 3 000: ties with amy
        ("cat", "EUR", 9_000, 0),
        ("dan", "USD", 99_000, 0), // another currency: not on the EUR list
    ] {
        let order = Uuid::now_v7();
        p.place(order, customer, currency, t(0)).await;
        let payment = p.pay(order, currency, amount).await;
        if refund > 0 {
            p.refund(payment, order, refund).await;
        }
    }
    let expected = vec![
        ("cat".to_owned(), 9_000),
        ("zoe".to_owned(), 5_000),
        ("amy".to_owned(), 3_000),
        ("ben".to_owned(), 3_000),
    ];
    assert_eq!(p.top("currency=EUR").await, expected);
    assert_eq!(p.top("currency=EUR&limit=100").await, expected);
    assert_eq!(p.top("currency=EUR&limit=3").await, expected[..3]);
    assert_eq!(
        p.top("currency=USD&limit=1").await,
        [("dan".to_owned(), 99_000)]
    );
    assert_eq!(p.top("currency=JPY").await, []);

    let body: Value = p
        .get("/customers/top?currency=EUR&limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"currency": "EUR", "customers": [{"customer_id": "cat", "captured_minor": 9000,
               "refunded_minor": 0, "spent_minor": 9000, "orders_placed": 1}]})
    );
}

#[tokio::test]
async fn bad_query_parameters_are_400_problems() {
    let p = Projection::start().await;
    let bad = StatusCode::BAD_REQUEST;
    assert_problem(p.get("/customers/top").await, bad, "currency").await;
    assert_problem(p.get("/customers/top?limit=5").await, bad, "currency").await;
    for currency in ["eur", "EURO", "E1R", ""] {
        let response = p.get(&format!("/customers/top?currency={currency}")).await;
        assert_problem(response, bad, "currency").await;
    }
    for limit in ["0", "101", "-3", "ten", ""] {
        let response = p
            .get(&format!("/customers/top?currency=EUR&limit={limit}"))
            .await;
        assert_problem(response, bad, "limit").await;
    }
    assert_problem(
        p.get("/customers/top?currency=EUR&sort=asc").await,
        bad,
        "sort",
    )
    .await;
    let long = "x".repeat(101);
    assert_problem(
        p.get(&format!("/customers/{long}")).await,
        bad,
        "customer id",
    )
    .await;
    // No PostgreSQL text holds NUL: refused, not a database error.
    assert_problem(p.get("/customers/a%00b").await, bad, "NUL").await;
}

#[tokio::test]
async fn unknown_customers_are_404_and_top_is_not_a_customer_id() {
    let mut p = Projection::start().await;
    assert_problem(
        p.get("/customers/nobody").await,
        StatusCode::NOT_FOUND,
        "nobody",
    )
    .await;
    // `/customers/top` is the top list even once a customer is called `top`; the
    // customer is read with the path segment percent-encoded.
    p.place(Uuid::now_v7(), "top", "EUR", t(0)).await;
    assert_problem(
        p.get("/customers/top").await,
        StatusCode::BAD_REQUEST,
        "currency",
    )
    .await;
    assert_eq!(p.customer("%74op").await["customer_id"], "top");
    // Any characters an id may hold are read back percent-decoded.
    p.place(Uuid::now_v7(), "acme/42 ü", "EUR", t(0)).await;
    assert_eq!(p.customer("acme%2F42%20%C3%BC").await["orders_placed"], 1);
}

#[tokio::test]
async fn unknown_event_types_are_ignored() {
    let mut p = Projection::start().await;
    let shipment = Uuid::now_v7();
    let created = json!({"shipment_id": shipment, "order_id": Uuid::now_v7()});
    let e = p.event(
        "shipping.events",
        shipment,
        "ShipmentCreated",
        created,
        t(0),
    );
    p.try_apply(&e).await.expect("ignored, not an error");
    let order = Uuid::now_v7();
    let e = p.off_contract(ORDERS, order, "OrderGiftWrapped", json!({}));
    p.try_apply(&e).await.expect("ignored, not an error");
    for table in [
        "customers",
        "customer_spend",
        "order_customers",
        "pending_payments",
    ] {
        assert_eq!(p.count(table).await, 0, "{table}");
    }
    let metrics = p.get("/metrics").await.text().await.unwrap();
    for event_type in ["ShipmentCreated", "OrderGiftWrapped"] {
        let series = format!(
            "sluice_projection_events_ignored_total{{projection=\"customer_summary\",event_type=\"{event_type}\",reason=\"unknown_event_type\"}}"
        );
        assert!(
            metrics.contains(&series),
            "{series} missing from\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_payload_missing_a_field_is_poison_naming_it() {
    let mut p = Projection::start().await;
    let order = Uuid::now_v7();
    let no_customer = json!({"order_id": order, "currency": "EUR", "lines": [], "total_minor": 0});
    let e = p.off_contract(ORDERS, order, "OrderPlaced", no_customer);
    p.assert_poison(&e, "customer_id").await;
    let payment = Uuid::now_v7();
    let no_amount = json!({"payment_id": payment, "order_id": order});
    let e = p.off_contract(PAYMENTS, payment, "PaymentCaptured", no_amount);
    p.assert_poison(&e, "amount_minor").await;
}

#[tokio::test]
async fn events_needing_an_unapplied_earlier_event_are_poison() {
    let mut p = Projection::start().await;
    let order = Uuid::now_v7();
    let confirmed = json!({"order_id": order});
    let e = p.event(ORDERS, order, "OrderConfirmed", confirmed, t(0));
    p.assert_poison(&e, "OrderPlaced").await;
    let payment = Uuid::now_v7();
    let captured = json!({"payment_id": payment, "order_id": order, "amount_minor": 10});
    let e = p.event(PAYMENTS, payment, "PaymentCaptured", captured, t(0));
    p.assert_poison(&e, "PaymentAuthorized").await;
}

#[tokio::test]
async fn an_order_placed_twice_is_counted_once() {
    let mut p = Projection::start().await;
    let order = Uuid::now_v7();
    p.place(order, "gus", "EUR", t(0)).await;
    let again = json!({"order_id": order, "customer_id": "gus", "currency": "EUR",
                       "lines": [], "total_minor": 0});
    p.feed(ORDERS, order, "OrderPlaced", again, t(9)).await;
    let gus = p.customer("gus").await;
    assert_eq!(gus["orders_placed"], 1);
    let last: DateTime<Utc> = gus["last_order_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(last, t(0));
}

#[tokio::test]
async fn the_openapi_document_lists_both_queries() {
    let p = Projection::start().await;
    let response = p.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["paths"]["/customers/{customer_id}"]["get"].is_object());
    let params = doc["paths"]["/customers/top"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let currency = params.iter().find(|p| p["name"] == "currency").unwrap();
    assert_eq!(currency["required"], true);
}
