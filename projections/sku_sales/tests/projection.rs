//! The SKU sales model end to end below the broker: events shaped as the orders
//! contract are applied by the projection's handler in transactions on a fresh
//! database, and the read model is queried over HTTP on a random port. (Above the
//! broker, `tests/readme.rs` runs the guide's commands against a live `sluice up`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::consumer::ConsumedEvent;
use sluice_platform::testing::{assert_problem, repository_catalog, TestProjection};
use uuid::Uuid;

/// The SKU sales projection on a fresh database, its events carried through the
/// orders contracts.
struct Projection(TestProjection);

impl Projection {
    async fn start() -> Self {
        let projection = TestProjection::start(&sluice_sku_sales::PROJECTION).await;
        Projection(projection.through(repository_catalog()))
    }

    /// The next event of `order`'s stream.
    fn event(&mut self, order: Uuid, event_type: &str, payload: Value) -> ConsumedEvent {
        self.0
            .event("orders.events", "order", order, event_type, payload)
    }

    /// Places `order` with `lines` of (sku, quantity).
    async fn place(&mut self, order: Uuid, lines: &[(&str, i64)]) -> ConsumedEvent {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity, "unit_price_minor": 500}))
            .collect();
        let payload = json!({
            "order_id": order, "customer_id": "alice", "currency": "EUR",
            "lines": lines, "total_minor": 0
        });
        let e = self.event(order, "OrderPlaced", payload);
        self.0.apply(&e).await;
        e
    }

    async fn cancel(&mut self, order: Uuid) {
        let e = self.event(order, "OrderCancelled", cancelled(order));
        self.0.apply(&e).await;
    }

    async fn sku(&self, sku: &str) -> Value {
        self.0.get_json(&format!("/skus/{sku}")).await
    }
}

fn cancelled(order: Uuid) -> Value {
    json!({"order_id": order, "reason": "declined"})
}

#[tokio::test]
async fn orders_count_per_sku_and_cancellations_take_their_units_back() {
    let mut p = Projection::start().await;
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    // One SKU on two lines of one order counts as one order of both quantities.
    p.place(first, &[("BOOK-1", 2), ("PEN-7", 1), ("BOOK-1", 1)])
        .await;
    p.place(second, &[("BOOK-1", 4)]).await;

    let book = p.sku("BOOK-1").await;
    assert_eq!(book["orders_placed"], 2);
    assert_eq!(book["units_ordered"], 7);
    assert_eq!(book["units_cancelled"], 0);
    assert_eq!(p.sku("PEN-7").await["units_ordered"], 1);

    p.cancel(first).await;
    let book = p.sku("BOOK-1").await;
    assert_eq!(
        book["orders_placed"], 2,
        "a cancelled order was placed all the same"
    );
    assert_eq!(book["units_cancelled"], 3);
    assert_eq!(p.sku("PEN-7").await["units_cancelled"], 1);

    // A second cancellation of the same order (another path) takes nothing twice.
    let again = p.event(first, "OrderCancelled", cancelled(first));
    p.0.apply(&again).await;
    assert_eq!(p.sku("BOOK-1").await["units_cancelled"], 3);
}

#[tokio::test]
async fn an_order_applied_twice_counts_once() {
    let mut p = Projection::start().await;
    let order = Uuid::now_v7();
    let placed = p.place(order, &[("MUG-2", 3)]).await;
    // The runtime drops redeliveries by stream version; this is the handler's own
    // guard, for an event reaching it again through another path.
    p.0.apply(&placed).await;
    let mug = p.sku("MUG-2").await;
    assert_eq!(mug["orders_placed"], 1);
    assert_eq!(mug["units_ordered"], 3);
}

#[tokio::test]
async fn events_it_does_not_use_are_ignored_and_counted() {
    let mut p = Projection::start().await;
    let order = Uuid::now_v7();
    p.place(order, &[("CUP-1", 1)]).await;
    let confirmed = p.event(order, "OrderConfirmed", json!({"order_id": order}));
    p.0.apply(&confirmed).await;
    assert_eq!(p.sku("CUP-1").await["units_ordered"], 1);
    let metrics = p.0.get("/metrics").await.text().await.unwrap();
    let series = "sluice_projection_events_ignored_total{projection=\"sku_sales\",event_type=\"OrderConfirmed\",reason=\"not_used\"}";
    assert!(metrics.contains(series), "{series} missing from\n{metrics}");
}

#[tokio::test]
async fn unreadable_payloads_and_a_cancellation_without_its_order_are_poison() {
    let mut p = Projection::start().await;
    let order = Uuid::now_v7();
    // What no producer could send: the contract requires the lines.
    let missing = p.0.off_contract(
        "orders.events",
        "order",
        order,
        "OrderPlaced",
        json!({"order_id": order}),
    );
    p.0.assert_poison(&missing, "lines").await;
    let orphan = Uuid::now_v7();
    let cancel = p.event(orphan, "OrderCancelled", cancelled(orphan));
    let reason = p.0.assert_poison(&cancel, &orphan.to_string()).await;
    assert!(reason.contains("replay"), "{reason}");
    assert_eq!(
        p.0.count("skus").await,
        0,
        "a refused event changes nothing"
    );
}

#[tokio::test]
async fn the_api_answers_problems_for_bad_or_unknown_skus_and_documents_its_routes() {
    let Projection(p) = Projection::start().await;
    assert_problem(
        p.get("/skus/NEVER-1").await,
        StatusCode::NOT_FOUND,
        "NEVER-1",
    )
    .await;
    let long = "x".repeat(sluice_sku_sales::domain::MAX_SKU_CHARS + 1);
    assert_problem(
        p.get(&format!("/skus/{long}")).await,
        StatusCode::BAD_REQUEST,
        "1 to 64",
    )
    .await;
    assert_problem(
        p.get("/skus/a%0Ab").await,
        StatusCode::BAD_REQUEST,
        "printable",
    )
    .await;

    let doc: Value = p.get("/openapi.json").await.json().await.unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["/skus/{sku}"]);
    let answers = doc["paths"]["/skus/{sku}"]["get"]["responses"]
        .as_object()
        .unwrap();
    for status in ["200", "400", "404"] {
        assert!(
            answers.contains_key(status),
            "{status} undeclared: {answers:?}"
        );
    }
    assert_eq!(p.get("/health/ready").await.status(), StatusCode::OK);
}
