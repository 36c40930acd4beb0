//! The payments API over HTTP, on a random port, against its own fresh database.
//!
//! The authorization limit is the registry's (`sluice.toml`: 100 000 minor units):
//! these tests set no environment variable, as the environment is shared by every
//! test in the process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sluice_platform::testing::{
    assert_accepted_at, assert_idempotent_retry, assert_key_reuse_refused,
    assert_malformed_requests_refused, assert_problem, assert_serves_openapi_and_health,
    assert_stale_if_match_refused, assert_unknown_not_found, audit_events, event_types, get_json,
    post_created, post_json, post_json_if_match, teach_order, BadInputs, TestApp,
};
use uuid::Uuid;

const OVER_THE_LIMIT: i64 = 100_001;

/// An order the payments service has learned of, in EUR, for more than any test pays.
async fn known_order(app: &TestApp) -> Uuid {
    teach_order(app.store.pool(), "EUR", 10_000_000, &[]).await
}

fn authorize_body(order_id: Uuid, payment_id: Uuid, amount_minor: i64) -> Value {
    json!({
        "payment_id": payment_id,
        "order_id": order_id,
        "amount_minor": amount_minor,
        "currency": "EUR"
    })
}

async fn authorize(app: &TestApp, payment_id: Uuid, amount_minor: i64) -> Value {
    let order_id = known_order(app).await;
    let body = authorize_body(order_id, payment_id, amount_minor);
    post_created(app, "/payments", &body).await
}

/// `POST path` with `body`.
async fn command(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    post_json(app, path, &body).await
}

/// The event types of a payment's stream, in order.
async fn payment_event_types(app: &TestApp, payment_id: Uuid) -> Vec<String> {
    let events = audit_events(app, &format!("/payments/{payment_id}/events")).await;
    event_types(&events)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn authorize_capture_and_refund_a_payment_in_two_parts() {
    let app = TestApp::spawn(&sluice_payments::SERVICE).await;
    let payment_id = Uuid::now_v7();

    let authorized = authorize(&app, payment_id, 800).await;
    assert_eq!(authorized["stream_id"], payment_id.to_string());
    assert_eq!(authorized["stream_version"], 1);
    assert_eq!(authorized["replayed"], false);

    let capture = format!("/payments/{payment_id}/capture");
    let captured = post_json_if_match(&app, &capture, 1, &json!({})).await;
    assert_accepted_at(captured, 2).await;

    let path = format!("/payments/{payment_id}/refund");
    let partial = command(
        &app,
        &path,
        json!({ "amount_minor": 500, "reason": "one item returned" }),
    )
    .await;
    assert_eq!(partial.status(), StatusCode::OK);
    let state = get_json(&app, &format!("/payments/{payment_id}")).await;
    assert_eq!(state["status"], "partially_refunded");
    assert_eq!(state["captured_minor"], 800);
    assert_eq!(state["refunded_minor"], 500);
    assert_eq!(state["refundable_minor"], 300);

    let rest = command(&app, &path, json!({ "amount_minor": 300 })).await;
    assert_eq!(rest.status(), StatusCode::OK);
    let rest: Value = rest.json().await.unwrap();
    assert_eq!(rest["stream_version"], 4);

    let state = get_json(&app, &format!("/payments/{payment_id}")).await;
    assert_eq!(state["payment_id"], payment_id.to_string());
    assert_eq!(state["status"], "refunded");
    assert_eq!(state["currency"], "EUR");
    assert_eq!(state["amount_minor"], 800);
    assert_eq!(state["authorized_minor"], 800);
    assert_eq!(state["captured_minor"], 800);
    assert_eq!(state["refunded_minor"], 800);
    assert_eq!(state["refundable_minor"], 0);
    assert_eq!(state["decline_reason"], Value::Null);
    assert_eq!(state["stream_version"], 4);

    let events = audit_events(&app, &format!("/payments/{payment_id}/events")).await;
    assert_eq!(
        event_types(&events),
        [
            "PaymentAuthorized",
            "PaymentCaptured",
            "PaymentRefunded",
            "PaymentRefunded"
        ]
    );
    assert!(events.iter().all(|e| e["stream_type"] == "payment"));
    assert_eq!(events[1]["payload"]["amount_minor"], 800);
    assert_eq!(events[2]["payload"]["reason"], "one item returned");
    assert_eq!(events[3]["event_id"], rest["event_ids"][0]);
    assert_eq!(events[0]["payload"]["order_id"], state["order_id"]);
    assert!(events[0]["metadata"]["correlation_id"].is_string());

    // Nothing is left to refund, nor to capture.
    let again = command(&app, &path, json!({ "amount_minor": 1 })).await;
    assert_problem(
        again,
        StatusCode::CONFLICT,
        "cannot refund a payment that is refunded",
    )
    .await;
    let twice = command(&app, &capture, json!({})).await;
    assert_problem(twice, StatusCode::CONFLICT, "captured only once").await;
    assert_eq!(app.event_count().await, 4);
    app.stop().await;
}

#[tokio::test]
async fn a_partial_capture_bounds_the_refunds() {
    let app = TestApp::spawn(&sluice_payments::SERVICE).await;
    let payment_id = Uuid::now_v7();
    authorize(&app, payment_id, 800).await;

    let capture_path = format!("/payments/{payment_id}/capture");
    let too_much = command(&app, &capture_path, json!({ "amount_minor": 801 })).await;
    assert_problem(
        too_much,
        StatusCode::CONFLICT,
        "cannot capture 801: only 800 was authorized",
    )
    .await;
    let captured = command(&app, &capture_path, json!({ "amount_minor": 300 })).await;
    assert_eq!(captured.status(), StatusCode::OK);

    let state = get_json(&app, &format!("/payments/{payment_id}")).await;
    assert_eq!(state["status"], "captured");
    assert_eq!(state["authorized_minor"], 800);
    assert_eq!(state["captured_minor"], 300);

    let refund = command(
        &app,
        &format!("/payments/{payment_id}/refund"),
        json!({ "amount_minor": 301 }),
    )
    .await;
    assert_problem(
        refund,
        StatusCode::CONFLICT,
        "only 300 of 300 captured remains refundable",
    )
    .await;
    assert_eq!(app.event_count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn an_amount_over_the_limit_is_declined_and_cannot_be_captured_or_refunded() {
    let app = TestApp::spawn(&sluice_payments::SERVICE).await;
    let payment_id = Uuid::now_v7();

    let declined = authorize(&app, payment_id, OVER_THE_LIMIT).await;
    assert_eq!(declined["stream_version"], 1);
    assert_eq!(
        payment_event_types(&app, payment_id).await,
        ["PaymentDeclined"]
    );

    let state = get_json(&app, &format!("/payments/{payment_id}")).await;
    assert_eq!(state["status"], "declined");
    assert_eq!(state["amount_minor"], OVER_THE_LIMIT);
    assert_eq!(state["authorized_minor"], 0);
    assert_eq!(
        state["decline_reason"],
        "amount 100001 exceeds the authorization limit of 100000"
    );

    let capture = command(&app, &format!("/payments/{payment_id}/capture"), json!({})).await;
    assert_problem(
        capture,
        StatusCode::CONFLICT,
        "cannot capture a payment that is declined",
    )
    .await;
    let refund = command(
        &app,
        &format!("/payments/{payment_id}/refund"),
        json!({ "amount_minor": 1 }),
    )
    .await;
    assert_problem(
        refund,
        StatusCode::CONFLICT,
        "cannot refund a payment that is declined",
    )
    .await;

    // An amount at the limit is authorized.
    let at_limit = Uuid::now_v7();
    authorize(&app, at_limit, 100_000).await;
    assert_eq!(
        payment_event_types(&app, at_limit).await,
        ["PaymentAuthorized"]
    );
    assert_eq!(app.event_count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn refunding_more_than_was_captured_is_refused_and_appends_nothing() {
    let app = TestApp::spawn(&sluice_payments::SERVICE).await;
    let payment_id = Uuid::now_v7();
    authorize(&app, payment_id, 800).await;
    let path = format!("/payments/{payment_id}/refund");

    let before_capture = command(&app, &path, json!({ "amount_minor": 100 })).await;
    assert_problem(before_capture, StatusCode::CONFLICT, "capture it first").await;
    assert_eq!(app.event_count().await, 1);

    command(&app, &format!("/payments/{payment_id}/capture"), json!({})).await;
    let first = command(&app, &path, json!({ "amount_minor": 500 })).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(app.event_count().await, 3);

    let too_much = command(&app, &path, json!({ "amount_minor": 500 })).await;
    assert_problem(
        too_much,
        StatusCode::CONFLICT,
        "cannot refund 500: only 300 of 800 captured remains refundable",
    )
    .await;
    assert_eq!(app.event_count().await, 3);
    let state = get_json(&app, &format!("/payments/{payment_id}")).await;
    assert_eq!(state["refunded_minor"], 500);
    app.stop().await;
}

#[tokio::test]
async fn a_retried_command_with_the_same_idempotency_key_appends_nothing() {
    let app = TestApp::spawn(&sluice_payments::SERVICE).await;
    // No payment id: the server generates one, and the retry must still match.
    let order_id = teach_order(app.store.pool(), "USD", 5_000, &[]).await;
    let body = json!({ "order_id": order_id, "amount_minor": 800, "currency": "USD" });
    let first = assert_idempotent_retry(
        &app,
        "/payments",
        "authorize-123",
        &body,
        StatusCode::CREATED,
        1,
    )
    .await;
    let other = json!({ "order_id": order_id, "amount_minor": 900, "currency": "USD" });
    assert_key_reuse_refused(&app, "/payments", "authorize-123", &other, 1).await;

    // A retried capture and refund return their first answers, although capturing
    // again would now be refused.
    let id = first["stream_id"].as_str().unwrap();
    let capture = format!("/payments/{id}/capture");
    assert_idempotent_retry(&app, &capture, "capture-123", &json!({}), StatusCode::OK, 2).await;
    let refund = format!("/payments/{id}/refund");
    let body = json!({ "amount_minor": 800 });
    assert_idempotent_retry(&app, &refund, "refund-123", &body, StatusCode::OK, 3).await;
    app.stop().await;
}

#[tokio::test]
async fn authorizing_a_taken_payment_id_and_stale_versions_are_conflicts() {
    let app = TestApp::spawn(&sluice_payments::SERVICE).await;
    let id = Uuid::now_v7();
    authorize(&app, id, 800).await;
    let order_id = known_order(&app).await;
    let again = command(&app, "/payments", authorize_body(order_id, id, 800)).await;
    assert_problem(again, StatusCode::CONFLICT, "already exists").await;

    command(
        &app,
        &format!("/payments/{id}/capture"),
        json!({ "amount_minor": 100 }),
    )
    .await;
    let refund = format!("/payments/{id}/refund");
    assert_stale_if_match_refused(&app, &refund, &json!({ "amount_minor": 50 }), 2).await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_payments_are_not_found() {
    let app = TestApp::spawn(&sluice_payments::SERVICE).await;
    let commands = [
        ("capture", json!({})),
        ("refund", json!({ "amount_minor": 1 })),
    ];
    assert_unknown_not_found(&app, "/payments", "payment", &commands).await;
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_problem_and_appends_nothing() {
    let app = TestApp::spawn(&sluice_payments::SERVICE).await;
    let client = Client::new();
    let order_id = known_order(&app).await;
    BadInputs::around(
        &app,
        "/payments",
        authorize_body(order_id, Uuid::now_v7(), 800),
    )
    .invalid(|b| b["amount_minor"] = json!(-5), "amount_minor")
    .invalid(|b| b["amount_minor"] = json!(0), "amount_minor")
    .invalid(|b| b["amount_minor"] = json!(12.5), "amount_minor")
    .without("amount_minor")
    .without("order_id")
    .invalid(|b| b["currency"] = json!("euro"), "currency")
    .invalid(|b| b["currency"] = json!("eur"), "currency")
    .invalid(|b| b["payment_id"] = json!("not-a-uuid"), "payment_id")
    .invalid(|b| b["order_id"] = json!(42), "order_id")
    .assert_refused()
    .await;

    // Capture and refund bodies are checked before the payment is looked up.
    let id = Uuid::now_v7();
    let capture = format!("/payments/{id}/capture");
    let refund = format!("/payments/{id}/refund");
    BadInputs::around(&app, &capture, json!({ "amount_minor": 1 }))
        .invalid(|b| b["amount_minor"] = json!(0), "amount_minor")
        .invalid(|b| b["amount_minor"] = json!(-1), "amount_minor")
        .assert_refused()
        .await;
    BadInputs::around(
        &app,
        &refund,
        json!({ "amount_minor": 1, "reason": "damaged" }),
    )
    .without("amount_minor")
    .invalid(|b| b["amount_minor"] = json!(0), "amount_minor")
    .invalid(|b| b["amount_minor"] = json!(-300), "amount_minor")
    .invalid(|b| b["reason"] = json!(" "), "reason")
    .invalid(|b| b["amount_minor"] = json!("ten"), "amount_minor")
    .assert_refused()
    .await;
    let no_body = client.post(app.url(&capture)).send().await.unwrap();
    assert_problem(no_body, StatusCode::UNSUPPORTED_MEDIA_TYPE, "content-type").await;
    assert_malformed_requests_refused(&app, "/payments", &["capture", "refund"]).await;
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn serves_openapi_and_health() {
    let app = TestApp::spawn(&sluice_payments::SERVICE).await;
    assert_serves_openapi_and_health(
        &app,
        "/payments",
        &["capture", "refund"],
        &[
            "AuthorizePayment",
            "CapturePayment",
            "RefundPayment",
            "PaymentState",
            "Problem",
        ],
    )
    .await;
    app.stop().await;
}

/// A payment names an order: it must be one the service learned of from the orders
/// topic, not cancelled, in its currency, for at most its total, and not under the
/// id the saga reserves for the order's own payment. Each refusal appends nothing.
#[tokio::test]
async fn a_payment_is_checked_against_what_payments_learned_of_its_order() {
    let app = TestApp::spawn(&sluice_payments::SERVICE).await;
    let pool = app.store.pool();
    let order = teach_order(pool, "EUR", 2_500, &[]).await;
    let cancelled = teach_order(pool, "EUR", 2_500, &["OrderCancelled"]).await;
    let body = |order_id: Uuid, payment_id: Option<Uuid>, amount: i64, currency: &str| json!({ "payment_id": payment_id, "order_id": order_id, "amount_minor": amount, "currency": currency });
    let refused = [
        (
            body(Uuid::now_v7(), None, 100, "EUR"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not known to payments",
        ),
        (
            body(cancelled, None, 100, "EUR"),
            StatusCode::CONFLICT,
            "is cancelled",
        ),
        (
            body(order, None, 100, "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "is in EUR",
        ),
        (
            body(order, None, 2_501, "EUR"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "exceeds the total",
        ),
        (
            body(
                order,
                Some(sluice_platform::saga::payment_id_for_order(order)),
                2_500,
                "EUR",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved for the saga",
        ),
    ];
    for (body, status, needle) in refused {
        let response = command(&app, "/payments", body).await;
        assert_problem(response, status, needle).await;
    }
    assert_eq!(app.event_count().await, 0);
    let accepted = command(&app, "/payments", body(order, None, 2_500, "EUR")).await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}
