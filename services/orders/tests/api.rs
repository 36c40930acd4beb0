//! The orders API over HTTP, on a random port, against its own fresh database.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sluice_platform::testing::{
    assert_accepted_at, assert_idempotent_retry, assert_key_reuse_refused,
    assert_malformed_requests_refused, assert_problem, assert_serves_openapi_and_health,
    assert_stale_if_match_refused, assert_unknown_not_found, audit_events, event_types, get_json,
    get_text, post_created, post_json, post_json_if_match, BadInputs, TestApp,
};
use sqlx::Connection;
use uuid::Uuid;

fn order_body(order_id: Uuid) -> Value {
    json!({
        "order_id": order_id,
        "customer_id": "cust-1",
        "currency": "EUR",
        "lines": [
            { "sku": "BOOK-1", "quantity": 2, "unit_price_minor": 1250 },
            { "sku": "PEN-9", "quantity": 1, "unit_price_minor": 300 }
        ]
    })
}

async fn place(app: &TestApp, order_id: Uuid) -> Value {
    post_created(app, "/orders", &order_body(order_id)).await
}

#[tokio::test]
async fn place_confirm_and_read_an_order() {
    let app = TestApp::spawn(&sluice_orders::SERVICE).await;
    let order_id = Uuid::now_v7();

    let placed = place(&app, order_id).await;
    assert_eq!(placed["stream_id"], order_id.to_string());
    assert_eq!(placed["stream_version"], 1);
    assert_eq!(placed["event_ids"].as_array().unwrap().len(), 1);
    assert_eq!(placed["replayed"], false);

    let confirm = format!("/orders/{order_id}/confirm");
    let confirmed = post_json_if_match(&app, &confirm, 1, &json!({})).await;
    let confirmed = assert_accepted_at(confirmed, 2).await;

    let state = get_json(&app, &format!("/orders/{order_id}")).await;
    assert_eq!(state["status"], "confirmed");
    assert_eq!(state["total_minor"], 2 * 1250 + 300);
    assert_eq!(state["customer_id"], "cust-1");
    assert_eq!(state["stream_version"], 2);

    let events = audit_events(&app, &format!("/orders/{order_id}/events")).await;
    assert_eq!(event_types(&events), ["OrderPlaced", "OrderConfirmed"]);
    assert_eq!(events[1]["event_id"], confirmed["event_ids"][0]);
    assert!(events[0]["metadata"]["correlation_id"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn a_retried_command_with_the_same_idempotency_key_appends_nothing() {
    let app = TestApp::spawn(&sluice_orders::SERVICE).await;
    // No order id: the server generates one, and the retry must still match.
    let body = json!({
        "customer_id": "cust-2", "currency": "USD",
        "lines": [{ "sku": "A", "quantity": 1, "unit_price_minor": 100 }]
    });
    let first =
        assert_idempotent_retry(&app, "/orders", "place-123", &body, StatusCode::CREATED, 1).await;
    let mut other = body.clone();
    other["customer_id"] = json!("cust-3");
    assert_key_reuse_refused(&app, "/orders", "place-123", &other, 1).await;

    // A retried confirm returns its first answer even though confirming again
    // would now be refused.
    let id = first["stream_id"].as_str().unwrap();
    let confirm = format!("/orders/{id}/confirm");
    assert_idempotent_retry(&app, &confirm, "confirm-123", &json!({}), StatusCode::OK, 2).await;
    app.stop().await;
}

#[tokio::test]
async fn a_stale_if_match_is_a_conflict() {
    let app = TestApp::spawn(&sluice_orders::SERVICE).await;
    let id = Uuid::now_v7();
    place(&app, id).await;
    post_json(&app, &format!("/orders/{id}/confirm"), &json!({})).await;
    let cancel = format!("/orders/{id}/cancel");
    assert_stale_if_match_refused(&app, &cancel, &json!({ "reason": "too slow" }), 2).await;
    app.stop().await;
}

#[tokio::test]
async fn commands_not_allowed_in_the_current_state_are_conflicts() {
    let app = TestApp::spawn(&sluice_orders::SERVICE).await;
    let id = Uuid::now_v7();
    place(&app, id).await;
    let reason = json!({ "reason": "changed my mind" });
    let cancel = post_json(&app, &format!("/orders/{id}/cancel"), &reason).await;
    assert_eq!(cancel.status(), StatusCode::OK);
    let confirm = post_json(&app, &format!("/orders/{id}/confirm"), &json!({})).await;
    assert_problem(
        confirm,
        StatusCode::CONFLICT,
        "cannot confirm an order that is cancelled",
    )
    .await;
    let again = post_json(&app, "/orders", &order_body(id)).await;
    assert_problem(again, StatusCode::CONFLICT, "already exists").await;
    assert_eq!(app.event_count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn unknown_orders_are_not_found() {
    let app = TestApp::spawn(&sluice_orders::SERVICE).await;
    let commands = [
        ("confirm", json!({})),
        ("cancel", json!({ "reason": "changed my mind" })),
    ];
    assert_unknown_not_found(&app, "/orders", "order", &commands).await;
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_problem_and_appends_nothing() {
    let app = TestApp::spawn(&sluice_orders::SERVICE).await;
    BadInputs::around(&app, "/orders", order_body(Uuid::now_v7()))
        .invalid(
            |b| b["lines"][0]["quantity"] = json!(-2),
            "lines[0].quantity",
        )
        .invalid(
            |b| b["lines"][1]["quantity"] = json!(0),
            "lines[1].quantity",
        )
        .invalid(
            |b| {
                b["lines"][0].as_object_mut().unwrap().remove("quantity");
            },
            "missing field `quantity`",
        )
        .invalid(
            |b| b["lines"][0]["unit_price_minor"] = json!(-1),
            "unit_price_minor",
        )
        .invalid(|b| b["currency"] = json!("euro"), "currency")
        .invalid(|b| b["lines"] = json!([]), "at least one line")
        .invalid(|b| b["order_id"] = json!("not-a-uuid"), "order_id")
        .invalid(|b| b["customer_id"] = json!(" "), "customer_id")
        .case(
            |b| b["customer_id"] = json!("x".repeat(100 * 1024)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit",
        )
        .assert_refused()
        .await;
    BadInputs::around(
        &app,
        format!("/orders/{}/cancel", Uuid::now_v7()),
        json!({ "reason": "changed my mind" }),
    )
    .invalid(|b| b["reason"] = json!(""), "reason")
    .assert_refused()
    .await;
    assert_malformed_requests_refused(&app, "/orders", &["confirm", "cancel"]).await;
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn serves_openapi_health_and_metrics() {
    let app = TestApp::spawn(&sluice_orders::SERVICE).await;
    assert_serves_openapi_and_health(
        &app,
        "/orders",
        &["confirm", "cancel"],
        &["PlaceOrder", "OrderState", "Problem"],
    )
    .await;
    place(&app, Uuid::now_v7()).await;
    let metrics = get_text(&app, "/metrics").await;
    for series in [
        "sluice_commands_total{",
        "outcome=\"accepted\"",
        "sluice_events_appended_total{stream_type=\"order\"}",
        "sluice_http_requests_total{",
        "route=\"/orders\"",
    ] {
        assert!(
            metrics.contains(series),
            "/metrics lacks {series}:\n{metrics}"
        );
    }
    app.stop().await;
}

/// Waits until a backend of `app`'s database waits on a lock while running a
/// statement that matches `pattern` (SQL `LIKE`). Watched as the administrator: only
/// it sees every role's statements.
async fn wait_lock_waiter(app: &TestApp, pattern: &str) {
    let mut watcher = sqlx::PgConnection::connect(&sluice_platform::testing::admin_url())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND wait_event_type = 'Lock' AND query LIKE $2",
        )
        .bind(&app.db.spec.name)
        .bind(pattern)
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no statement like `{pattern}` ever waited on a lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Two identical keyed cancels, interleaved so that the second looks its key up
/// before the first commits and loads the stream after: the second must replay the
/// first answer, not decide again on the cancelled order and answer 409.
#[tokio::test]
async fn a_keyed_retry_that_loads_after_the_first_commit_replays_it() {
    let app = TestApp::spawn(&sluice_orders::SERVICE).await;
    let client = Client::new();
    let id = Uuid::now_v7();
    place(&app, id).await;
    let owner = sluice_platform::db::pool_with(app.db.owner_options(), 3)
        .await
        .unwrap();
    let cancel = |client: Client, url: String| async move {
        let response = client
            .post(url)
            .header("Idempotency-Key", "cancel-once")
            .json(&json!({ "reason": "changed my mind" }))
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    let url = app.url(&format!("/orders/{id}/cancel"));

    // The first cancel appends its event and stops at recording its key.
    let mut keys = owner.begin().await.unwrap();
    sqlx::query("LOCK TABLE idempotency_keys IN EXCLUSIVE MODE")
        .execute(&mut *keys)
        .await
        .unwrap();
    let first = tokio::spawn(cancel(client.clone(), url.clone()));
    wait_lock_waiter(&app, "INSERT INTO idempotency_keys%").await;
    // A lock request on `events` queues behind the first cancel's insert, and any
    // read of `events` queues behind that request: it is granted (and released at
    // once) only after the first cancel commits.
    let gate = tokio::spawn({
        let owner = owner.clone();
        async move {
            sqlx::raw_sql("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE; COMMIT")
                .execute(&owner)
                .await
                .unwrap();
        }
    });
    wait_lock_waiter(&app, "BEGIN; LOCK TABLE events%").await;
    // The second cancel finds no key yet, and its load of the stream waits.
    let second = tokio::spawn(cancel(client.clone(), url));
    wait_lock_waiter(&app, "%FROM events WHERE stream_id%").await;
    keys.commit().await.unwrap();

    let (status, first) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["replayed"], false);
    gate.await.unwrap();
    let (status, second) = second.await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "the retry decided again instead of replaying: {second}"
    );
    assert_eq!(second["replayed"], true);
    assert_eq!(second["event_ids"], first["event_ids"]);
    assert_eq!(app.event_count().await, 2);
    owner.close().await;
    app.stop().await;
}

/// No PostgreSQL text can hold NUL: a string with `\u0000` anywhere in a body is a
/// 422 naming where it is, and nothing is appended.
#[tokio::test]
async fn a_string_with_a_nul_character_is_refused_and_appends_nothing() {
    let app = TestApp::spawn(&sluice_orders::SERVICE).await;
    let mut in_customer = order_body(Uuid::now_v7());
    in_customer["customer_id"] = json!("a\u{0}b");
    let mut in_sku = order_body(Uuid::now_v7());
    in_sku["lines"][1]["sku"] = json!("PEN\u{0}");
    for (body, path) in [(in_customer, "customer_id"), (in_sku, "lines[1].sku")] {
        let response = post_json(&app, "/orders", &body).await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{path}: must not contain the NUL"),
        )
        .await;
    }
    let id = Uuid::now_v7();
    place(&app, id).await;
    let cancel = post_json(
        &app,
        &format!("/orders/{id}/cancel"),
        &json!({ "reason": "\u{0}" }),
    )
    .await;
    assert_problem(
        cancel,
        StatusCode::UNPROCESSABLE_ENTITY,
        "reason: must not contain",
    )
    .await;
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}
