//! The shipping API over HTTP, on a random port, against its own fresh database.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sluice_platform::testing::{
    assert_idempotent_retry, assert_key_reuse_refused, assert_problem, teach_order, TestApp,
};
use uuid::Uuid;

/// An order the shipping service has learned of from the orders topic, confirmed.
async fn confirmed_order(app: &TestApp) -> Uuid {
    teach_order(app.store.pool(), "EUR", 2_500, &["OrderConfirmed"]).await
}

fn dispatch_body() -> Value {
    json!({ "carrier": "DHL Express", "tracking_number": "JD014600006281" })
}

async fn create(client: &Client, app: &TestApp, shipment_id: Uuid, order_id: Uuid) -> Value {
    let response = client
        .post(app.url("/shipments"))
        .json(&json!({ "shipment_id": shipment_id, "order_id": order_id }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn command(
    client: &Client,
    app: &TestApp,
    id: Uuid,
    action: &str,
    body: Value,
) -> reqwest::Response {
    client
        .post(app.url(&format!("/shipments/{id}/{action}")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get_json(client: &Client, app: &TestApp, path: &str) -> Value {
    let response = client.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn create_dispatch_deliver_and_read_a_shipment() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let client = Client::new();
    let (id, order_id) = (Uuid::now_v7(), confirmed_order(&app).await);

    let created = create(&client, &app, id, order_id).await;
    assert_eq!(created["stream_id"], id.to_string());
    assert_eq!(created["stream_version"], 1);
    assert_eq!(created["event_ids"].as_array().unwrap().len(), 1);
    assert_eq!(created["replayed"], false);

    let state = get_json(&client, &app, &format!("/shipments/{id}")).await;
    assert_eq!(state["status"], "created");
    assert_eq!(state["order_id"], order_id.to_string());
    assert_eq!(state["carrier"], Value::Null);
    assert_eq!(state["tracking_number"], Value::Null);

    let dispatched = client
        .post(app.url(&format!("/shipments/{id}/dispatch")))
        .header("If-Match", "\"1\"")
        .json(&json!({ "carrier": "  DHL Express ", "tracking_number": "JD014600006281" }))
        .send()
        .await
        .unwrap();
    assert_eq!(dispatched.status(), StatusCode::OK);
    assert_eq!(dispatched.headers()["etag"], "\"2\"");
    let dispatched: Value = dispatched.json().await.unwrap();
    assert_eq!(dispatched["stream_version"], 2);

    let delivered = client
        .post(app.url(&format!("/shipments/{id}/deliver")))
        .header("If-Match", "\"2\"")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), StatusCode::OK);
    assert_eq!(delivered.headers()["etag"], "\"3\"");
    let delivered: Value = delivered.json().await.unwrap();

    let state = get_json(&client, &app, &format!("/shipments/{id}")).await;
    assert_eq!(state["shipment_id"], id.to_string());
    assert_eq!(state["order_id"], order_id.to_string());
    assert_eq!(state["status"], "delivered");
    assert_eq!(state["carrier"], "DHL Express");
    assert_eq!(state["tracking_number"], "JD014600006281");
    assert_eq!(state["stream_version"], 3);

    let audit = get_json(&client, &app, &format!("/shipments/{id}/events")).await;
    assert_eq!(audit["stream_id"], id.to_string());
    let events = audit["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
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
    let client = Client::new();
    let response = client
        .post(app.url("/shipments"))
        .json(&json!({ "order_id": confirmed_order(&app).await }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let id = Uuid::parse_str(created["stream_id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    let state = get_json(&client, &app, &format!("/shipments/{id}")).await;
    assert_eq!(state["shipment_id"], id.to_string());
    app.stop().await;
}

#[tokio::test]
async fn commands_not_allowed_in_the_current_state_are_conflicts() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let client = Client::new();
    let id = Uuid::now_v7();
    create(&client, &app, id, confirmed_order(&app).await).await;

    let early = command(&client, &app, id, "deliver", json!({})).await;
    assert_problem(
        early,
        StatusCode::CONFLICT,
        "cannot deliver a shipment whose status is `created`",
    )
    .await;
    assert_eq!(app.event_count().await, 1);

    let dispatched = command(&client, &app, id, "dispatch", dispatch_body()).await;
    assert_eq!(dispatched.status(), StatusCode::OK);
    let twice = command(&client, &app, id, "dispatch", dispatch_body()).await;
    assert_problem(
        twice,
        StatusCode::CONFLICT,
        "cannot dispatch a shipment whose status is `dispatched`",
    )
    .await;
    assert_eq!(app.event_count().await, 2);

    let delivered = command(&client, &app, id, "deliver", json!({})).await;
    assert_eq!(delivered.status(), StatusCode::OK);
    let after = command(&client, &app, id, "dispatch", dispatch_body()).await;
    assert_problem(
        after,
        StatusCode::CONFLICT,
        "cannot dispatch a shipment whose status is `delivered`",
    )
    .await;
    let again = command(&client, &app, id, "deliver", json!({})).await;
    assert_problem(again, StatusCode::CONFLICT, "cannot deliver").await;

    let recreate = client
        .post(app.url("/shipments"))
        .json(&json!({ "shipment_id": id, "order_id": confirmed_order(&app).await }))
        .send()
        .await
        .unwrap();
    assert_problem(recreate, StatusCode::CONFLICT, "already exists").await;
    assert_eq!(app.event_count().await, 3);
    app.stop().await;
}

#[tokio::test]
async fn a_stale_if_match_is_a_conflict() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let client = Client::new();
    let id = Uuid::now_v7();
    create(&client, &app, id, confirmed_order(&app).await).await;
    let dispatched = command(&client, &app, id, "dispatch", dispatch_body()).await;
    assert_eq!(dispatched.status(), StatusCode::OK);
    let stale = client
        .post(app.url(&format!("/shipments/{id}/deliver")))
        .header("If-Match", "\"1\"")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(stale, StatusCode::CONFLICT, "version 1").await;
    assert_eq!(app.event_count().await, 2);
    let state = get_json(&client, &app, &format!("/shipments/{id}")).await;
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
    let client = Client::new();
    let id = Uuid::now_v7();
    let dispatch = command(&client, &app, id, "dispatch", dispatch_body()).await;
    assert_problem(dispatch, StatusCode::NOT_FOUND, "shipment not found").await;
    let deliver = command(&client, &app, id, "deliver", json!({})).await;
    assert_problem(deliver, StatusCode::NOT_FOUND, "shipment not found").await;
    let get = client
        .get(app.url(&format!("/shipments/{id}")))
        .send()
        .await
        .unwrap();
    assert_problem(get, StatusCode::NOT_FOUND, &id.to_string()).await;
    let events = client
        .get(app.url(&format!("/shipments/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_problem(
        events,
        StatusCode::NOT_FOUND,
        &format!("shipment {id} not found"),
    )
    .await;
    let nowhere = client.get(app.url("/nowhere")).send().await.unwrap();
    assert_problem(nowhere, StatusCode::NOT_FOUND, "no such resource").await;
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_create_input_is_a_problem_and_appends_nothing() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let client = Client::new();
    let order_id = confirmed_order(&app).await;
    let body = |mutate: fn(&mut Value)| {
        let mut body = json!({ "shipment_id": Uuid::now_v7(), "order_id": order_id });
        mutate(&mut body);
        body.to_string()
    };
    let cases: Vec<(String, &str, StatusCode, &str)> = vec![
        (
            "{\"order_id\": ".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "json",
        ),
        (
            body(|_| {}),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type",
        ),
        (
            body(|b| b["colour"] = json!("red")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `colour`",
        ),
        (
            body(|b| {
                b.as_object_mut().unwrap().remove("order_id");
            }),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `order_id`",
        ),
        (
            body(|b| b["order_id"] = json!("not-a-uuid")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "order_id",
        ),
        (
            body(|b| b["order_id"] = json!(42)),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "order_id",
        ),
        (
            body(|b| b["order_id"] = json!(Uuid::nil())),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "order_id: must not be the nil UUID",
        ),
        (
            body(|b| b["shipment_id"] = json!("12345")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "shipment_id",
        ),
        (
            body(|b| b["padding"] = json!("x".repeat(100 * 1024))),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit",
        ),
    ];
    for (body, content_type, status, needle) in cases {
        let response = client
            .post(app.url("/shipments"))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            status,
            "body: {}",
            &body[..body.len().min(200)]
        );
        assert_problem(response, status, needle).await;
    }
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_dispatch_input_is_a_problem_and_appends_nothing() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let client = Client::new();
    let id = Uuid::now_v7();
    create(&client, &app, id, confirmed_order(&app).await).await;
    let body = |mutate: fn(&mut Value)| {
        let mut body = dispatch_body();
        mutate(&mut body);
        body.to_string()
    };
    let cases: Vec<(String, &str, StatusCode, &str)> = vec![
        (
            "{\"carrier\": ".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "json",
        ),
        (
            body(|_| {}),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type",
        ),
        (
            body(|b| b["eta"] = json!("tomorrow")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `eta`",
        ),
        (
            body(|b| {
                b.as_object_mut().unwrap().remove("carrier");
            }),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `carrier`",
        ),
        (
            body(|b| {
                b.as_object_mut().unwrap().remove("tracking_number");
            }),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `tracking_number`",
        ),
        (
            body(|b| b["carrier"] = json!("")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "carrier",
        ),
        (
            body(|b| b["carrier"] = json!("   ")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "carrier",
        ),
        (
            body(|b| b["carrier"] = json!("x".repeat(101))),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "carrier",
        ),
        (
            body(|b| b["carrier"] = json!(7)),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "carrier",
        ),
        (
            body(|b| b["tracking_number"] = json!("")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "tracking_number",
        ),
        (
            body(|b| b["tracking_number"] = json!("1Z 999")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "tracking_number: must be printable characters without whitespace",
        ),
        (
            body(|b| b["tracking_number"] = json!("1Z\u{1}999")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "tracking_number",
        ),
        (
            body(|b| b["tracking_number"] = json!("x".repeat(101))),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "tracking_number",
        ),
        (
            body(|b| b["tracking_number"] = Value::Null),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "tracking_number",
        ),
        (
            body(|b| b["carrier"] = json!("x".repeat(100 * 1024))),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit",
        ),
    ];
    for (body, content_type, status, needle) in cases {
        let response = client
            .post(app.url(&format!("/shipments/{id}/dispatch")))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            status,
            "body: {}",
            &body[..body.len().min(200)]
        );
        assert_problem(response, status, needle).await;
    }
    let state = get_json(&client, &app, &format!("/shipments/{id}")).await;
    assert_eq!(state["status"], "created");
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn bad_paths_headers_and_deliver_bodies_are_problems() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let client = Client::new();
    let id = Uuid::now_v7();
    create(&client, &app, id, confirmed_order(&app).await).await;
    assert_eq!(
        command(&client, &app, id, "dispatch", dispatch_body())
            .await
            .status(),
        StatusCode::OK
    );

    for path in ["/shipments/12345/dispatch", "/shipments/12345/deliver"] {
        let bad_id = client
            .post(app.url(path))
            .json(&dispatch_body())
            .send()
            .await
            .unwrap();
        assert_problem(bad_id, StatusCode::BAD_REQUEST, "not a valid id").await;
    }
    for path in ["/shipments/12345", "/shipments/12345/events"] {
        let bad_id = client.get(app.url(path)).send().await.unwrap();
        assert_problem(bad_id, StatusCode::BAD_REQUEST, "not a valid id").await;
    }
    let bad_if_match = client
        .post(app.url(&format!("/shipments/{id}/deliver")))
        .header("If-Match", "latest")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(bad_if_match, StatusCode::BAD_REQUEST, "If-Match").await;
    let deliver_with_fields =
        command(&client, &app, id, "deliver", json!({ "signed_by": "Ada" })).await;
    assert_problem(
        deliver_with_fields,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown field `signed_by`",
    )
    .await;
    let deliver_as_text = client
        .post(app.url(&format!("/shipments/{id}/deliver")))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(
        deliver_as_text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "content-type",
    )
    .await;
    let wrong_method = client.delete(app.url("/shipments")).send().await.unwrap();
    assert_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method").await;

    assert_eq!(app.event_count().await, 2);
    let state = get_json(&client, &app, &format!("/shipments/{id}")).await;
    assert_eq!(state["status"], "dispatched");
    app.stop().await;
}

#[tokio::test]
async fn serves_openapi_and_health() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let client = Client::new();
    let doc = get_json(&client, &app, "/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/shipments",
        "/shipments/{id}/dispatch",
        "/shipments/{id}/deliver",
        "/shipments/{id}",
        "/shipments/{id}/events",
    ] {
        assert!(doc["paths"][path].is_object(), "missing {path}");
    }
    assert_eq!(
        doc["components"]["schemas"]["ShipmentStatus"]["enum"],
        json!(["created", "dispatched", "delivered", "cancelled"])
    );
    for path in ["/health/live", "/health/ready"] {
        let r = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
}

/// A shipment names an order: it must be one the service learned of from the orders
/// topic, and confirmed, and not under the id the saga reserves for the order's own
/// shipment. Each refusal appends nothing.
#[tokio::test]
async fn a_shipment_is_checked_against_what_shipping_learned_of_its_order() {
    let app = TestApp::spawn(&sluice_shipping::SERVICE).await;
    let client = Client::new();
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
        let response = client
            .post(app.url("/shipments"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(response, status, needle).await;
    }
    assert_eq!(app.event_count().await, 0);
    create(&client, &app, Uuid::now_v7(), confirmed).await;
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}
