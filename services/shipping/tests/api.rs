//! The shipping API over HTTP, on a random port, against its own fresh database.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::testing::{
    assert_accepted_at, assert_idempotent_retry, assert_key_reuse_refused,
    assert_malformed_requests_refused, assert_problem, assert_serves_openapi_and_health,
    assert_stale_if_match_refused, assert_unknown_not_found, event_types, get_json, post_created,
    post_json, post_json_if_match, teach_order, BadInputs, TestApp,
};
use uuid::Uuid;

/// An order the shipping service has learned of from the orders topic, confirmed.
async fn confirmed_order(app: &TestApp) -> Uuid {
    teach_order(app.store.pool(), "EUR", 2_500, &["OrderConfirmed"]).await
}

fn dispatch_body() -> Value {
    json!({ "carrier": "DHL Express", "tracking_number": "JD014600006281" })
}

async fn create(app: &TestApp, shipment_id: Uuid, order_id: Uuid) -> Value {
    let body = json!({ "shipment_id": shipment_id, "order_id": order_id });
    post_created(app, "/shipments", &body).await
}

/// `POST /shipments/{id}/{action}` with `body`.
async fn command(app: &TestApp, id: Uuid, action: &str, body: Value) -> reqwest::Response {
    post_json(app, &format!("/shipments/{id}/{action}"), &body).await
}

#[tokio::test]
async fn create_dispatch_deliver_and_read_a_shipment() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let (id, order_id) = (Uuid::now_v7(), confirmed_order(&app).await);

    let created = create(&app, id, order_id).await;
    assert_eq!(created["stream_id"], id.to_string());
    assert_eq!(created["stream_version"], 1);
    assert_eq!(created["event_ids"].as_array().unwrap().len(), 1);
    assert_eq!(created["replayed"], false);

    let state = get_json(&app, &format!("/shipments/{id}")).await;
    assert_eq!(state["status"], "created");
    assert_eq!(state["order_id"], order_id.to_string());
    assert_eq!(state["carrier"], Value::Null);
    assert_eq!(state["tracking_number"], Value::Null);

    let untrimmed = json!({ "carrier": "  DHL Express ", "tracking_number": "JD014600006281" });
    let dispatch = format!("/shipments/{id}/dispatch");
    let dispatched = post_json_if_match(&app, &dispatch, 1, &untrimmed).await;
    let dispatched = assert_accepted_at(dispatched, 2).await;

    let deliver = format!("/shipments/{id}/deliver");
    let delivered = post_json_if_match(&app, &deliver, 2, &json!({})).await;
    let delivered = assert_accepted_at(delivered, 3).await;

    let state = get_json(&app, &format!("/shipments/{id}")).await;
    assert_eq!(state["shipment_id"], id.to_string());
    assert_eq!(state["order_id"], order_id.to_string());
    assert_eq!(state["status"], "delivered");
    assert_eq!(state["carrier"], "DHL Express");
    assert_eq!(state["tracking_number"], "JD014600006281");
    assert_eq!(state["stream_version"], 3);

    let audit = get_json(&app, &format!("/shipments/{id}/events")).await;
    assert_eq!(audit["stream_id"], id.to_string());
    let events = audit["events"].as_array().unwrap();
    assert_eq!(
        event_types(events),
        ["ShipmentCreated", "ShipmentDispatched", "ShipmentDelivered"]
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["stream_type"], "shipment");
        assert_eq!(event["stream_version"], i + 1);
        assert_eq!(event["payload"]["shipment_id"], id.to_string());
        assert_eq!(event["payload"]["order_id"], order_id.to_string());
        assert!(event["metadata"]["correlation_id"].is_string());
    }
    assert_eq!(events[0]["event_id"], created["event_ids"][0]);
    assert_eq!(events[1]["event_id"], dispatched["event_ids"][0]);
    assert_eq!(events[2]["event_id"], delivered["event_ids"][0]);
    assert_eq!(
        events[1]["payload"],
        json!({
            "shipment_id": id, "order_id": order_id,
            "carrier": "DHL Express", "tracking_number": "JD014600006281"
        })
    );
    assert_eq!(app.event_count().await, 3);
    app.stop().await;
}

#[tokio::test]
async fn a_shipment_id_is_generated_when_absent() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let body = json!({ "order_id": confirmed_order(&app).await });
    let created = post_created(&app, "/shipments", &body).await;
    let id = Uuid::parse_str(created["stream_id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    let state = get_json(&app, &format!("/shipments/{id}")).await;
    assert_eq!(state["shipment_id"], id.to_string());
    app.stop().await;
}

#[tokio::test]
async fn commands_not_allowed_in_the_current_state_are_conflicts() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let id = Uuid::now_v7();
    create(&app, id, confirmed_order(&app).await).await;

    let early = command(&app, id, "deliver", json!({})).await;
    assert_problem(
        early,
        StatusCode::CONFLICT,
        "cannot deliver a shipment whose status is `created`",
    )
    .await;
    assert_eq!(app.event_count().await, 1);

    let dispatched = command(&app, id, "dispatch", dispatch_body()).await;
    assert_eq!(dispatched.status(), StatusCode::OK);
    let twice = command(&app, id, "dispatch", dispatch_body()).await;
    assert_problem(
        twice,
        StatusCode::CONFLICT,
        "cannot dispatch a shipment whose status is `dispatched`",
    )
    .await;
    assert_eq!(app.event_count().await, 2);

    let delivered = command(&app, id, "deliver", json!({})).await;
    assert_eq!(delivered.status(), StatusCode::OK);
    let after = command(&app, id, "dispatch", dispatch_body()).await;
    assert_problem(
        after,
        StatusCode::CONFLICT,
        "cannot dispatch a shipment whose status is `delivered`",
    )
    .await;
    let again = command(&app, id, "deliver", json!({})).await;
    assert_problem(again, StatusCode::CONFLICT, "cannot deliver").await;

    let body = json!({ "shipment_id": id, "order_id": confirmed_order(&app).await });
    let recreate = post_json(&app, "/shipments", &body).await;
    assert_problem(recreate, StatusCode::CONFLICT, "already exists").await;
    assert_eq!(app.event_count().await, 3);
    app.stop().await;
}

#[tokio::test]
async fn a_stale_if_match_is_a_conflict() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let id = Uuid::now_v7();
    create(&app, id, confirmed_order(&app).await).await;
    let dispatched = command(&app, id, "dispatch", dispatch_body()).await;
    assert_eq!(dispatched.status(), StatusCode::OK);
    let deliver = format!("/shipments/{id}/deliver");
    assert_stale_if_match_refused(&app, &deliver, &json!({}), 2).await;
    let state = get_json(&app, &format!("/shipments/{id}")).await;
    assert_eq!(state["status"], "dispatched");
    app.stop().await;
}

#[tokio::test]
async fn a_retried_command_with_the_same_idempotency_key_appends_nothing() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    // No shipment id: the retry must not create a second shipment.
    let body = json!({ "order_id": confirmed_order(&app).await });
    let first = assert_idempotent_retry(
        &app,
        "/shipments",
        "create-123",
        &body,
        StatusCode::CREATED,
        1,
    )
    .await;
    let other = json!({ "order_id": confirmed_order(&app).await });
    assert_key_reuse_refused(&app, "/shipments", "create-123", &other, 1).await;

    // Retried dispatch and deliver return their first answers even though doing
    // either again would now be refused.
    let id = first["stream_id"].as_str().unwrap();
    let dispatch = format!("/shipments/{id}/dispatch");
    assert_idempotent_retry(
        &app,
        &dispatch,
        "dispatch-123",
        &dispatch_body(),
        StatusCode::OK,
        2,
    )
    .await;
    let deliver = format!("/shipments/{id}/deliver");
    assert_idempotent_retry(&app, &deliver, "deliver-123", &json!({}), StatusCode::OK, 3).await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_shipments_are_not_found() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let commands = [("dispatch", dispatch_body()), ("deliver", json!({}))];
    assert_unknown_not_found(&app, "/shipments", "shipment", &commands).await;
    app.stop().await;
}

#[tokio::test]
async fn bad_create_input_is_a_problem_and_appends_nothing() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let order_id = confirmed_order(&app).await;
    let valid = json!({ "shipment_id": Uuid::now_v7(), "order_id": order_id });
    BadInputs::around(&app, "/shipments", valid)
        .without("order_id")
        .invalid(|b| b["order_id"] = json!("not-a-uuid"), "order_id")
        .invalid(|b| b["order_id"] = json!(42), "order_id")
        .invalid(
            |b| b["order_id"] = json!(Uuid::nil()),
            "order_id: must not be the nil UUID",
        )
        .invalid(|b| b["shipment_id"] = json!("12345"), "shipment_id")
        .assert_refused()
        .await;
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_dispatch_input_is_a_problem_and_appends_nothing() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let id = Uuid::now_v7();
    create(&app, id, confirmed_order(&app).await).await;
    BadInputs::around(&app, format!("/shipments/{id}/dispatch"), dispatch_body())
        .without("carrier")
        .without("tracking_number")
        .invalid(|b| b["carrier"] = json!(""), "carrier")
        .invalid(|b| b["carrier"] = json!("   "), "carrier")
        .invalid(|b| b["carrier"] = json!("x".repeat(101)), "carrier")
        .invalid(|b| b["carrier"] = json!(7), "carrier")
        .invalid(|b| b["tracking_number"] = json!(""), "tracking_number")
        .invalid(
            |b| b["tracking_number"] = json!("1Z 999"),
            "tracking_number: must be printable characters without whitespace",
        )
        .invalid(
            |b| b["tracking_number"] = json!("1Z\u{1}999"),
            "tracking_number",
        )
        .invalid(
            |b| b["tracking_number"] = json!("x".repeat(101)),
            "tracking_number",
        )
        .invalid(|b| b["tracking_number"] = Value::Null, "tracking_number")
        .assert_refused()
        .await;
    let state = get_json(&app, &format!("/shipments/{id}")).await;
    assert_eq!(state["status"], "created");
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn bad_paths_headers_and_deliver_bodies_are_problems() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let id = Uuid::now_v7();
    create(&app, id, confirmed_order(&app).await).await;
    assert_eq!(
        command(&app, id, "dispatch", dispatch_body())
            .await
            .status(),
        StatusCode::OK
    );
    assert_malformed_requests_refused(&app, "/shipments", &["dispatch", "deliver"]).await;
    BadInputs::around(&app, format!("/shipments/{id}/deliver"), json!({}))
        .invalid(
            |b| b["signed_by"] = json!("Ada"),
            "unknown field `signed_by`",
        )
        .assert_refused()
        .await;
    assert_eq!(app.event_count().await, 2);
    let state = get_json(&app, &format!("/shipments/{id}")).await;
    assert_eq!(state["status"], "dispatched");
    app.stop().await;
}

#[tokio::test]
async fn serves_openapi_and_health() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let doc = assert_serves_openapi_and_health(
        &app,
        "/shipments",
        &["dispatch", "deliver"],
        &["ShipmentStatus", "Problem"],
    )
    .await;
    assert_eq!(
        doc["components"]["schemas"]["ShipmentStatus"]["enum"],
        json!(["created", "dispatched", "delivered", "cancelled"])
    );
    app.stop().await;
}

#[tokio::test]
async fn a_shipment_is_checked_against_what_shipping_learned_of_its_order() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let pool = app.store.pool();
    let placed = teach_order(pool, "EUR", 2_500, &[]).await;
    let cancelled = teach_order(pool, "EUR", 2_500, &["OrderConfirmed", "OrderCancelled"]).await;
    let confirmed = confirmed_order(&app).await;
    let saga = sluice_platform::saga::shipment_id_for_order(confirmed);
    let refused = [
        (
            json!({ "order_id": Uuid::now_v7() }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not known to shipping",
        ),
        (
            json!({ "order_id": placed }),
            StatusCode::CONFLICT,
            "is placed",
        ),
        (
            json!({ "order_id": cancelled }),
            StatusCode::CONFLICT,
            "is cancelled",
        ),
        (
            json!({ "shipment_id": saga, "order_id": confirmed }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved for the saga",
        ),
    ];
    for (body, status, needle) in refused {
        let response = post_json(&app, "/shipments", &body).await;
        assert_problem(response, status, needle).await;
    }
    assert_eq!(app.event_count().await, 0);
    create(&app, Uuid::now_v7(), confirmed).await;
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}
