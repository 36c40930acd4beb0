//! The choreography saga through the broker, end to end with `sluice up`: placing
//! an order makes payments authorize it, orders confirm it and shipping create its
//! shipment; an order above the authorization limit is declined and cancelled.
//! Stray payments for an order confirm and cancel nothing, and cancelling a confirmed
//! order voids its payment and calls off its shipment.
//! `order_view` shows each final state, and a query with the write's consistency
//! token reads the write. The analytics component loads the same events into DuckDB,
//! and `order_facts`, read over the PostgreSQL protocol, joins them across services.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::testing::drop_registry_databases;
use support::platform::Platform;
use support::wait::{millis, secs, until, until_some};
use uuid::Uuid;

/// Places an order; returns its id and the command's consistency token.
async fn place(
    client: &reqwest::Client,
    platform: &Platform,
    unit_price_minor: i64,
) -> (Uuid, String) {
    let order_id = Uuid::now_v7();
    let response = client
        .post(platform.url("orders", "/orders"))
        .json(&support::order(
            order_id,
            "saga-customer",
            "SAGA-1",
            2,
            unit_price_minor,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let token = response.headers()["x-consistency-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["consistency_token"], token.as_str());
    (order_id, token)
}

/// Polls `order_view` until the order's row satisfies `done`.
async fn wait_for_view(
    client: &reqwest::Client,
    platform: &Platform,
    order_id: Uuid,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let url = platform.url("order_view", &format!("/orders/{order_id}"));
    until(
        &format!("order {order_id} reaching the expected state"),
        secs(300),
        millis(200),
        async || {
            let response = client.get(&url).send().await.unwrap();
            if response.status() != StatusCode::OK {
                return Err(Value::Null);
            }
            let row: Value = response.json().await.unwrap();
            if done(&row) {
                Ok(row)
            } else {
                Err(row)
            }
        },
    )
    .await
}

/// Polls `order_facts` (the prepared `facts` query) until the order shows `status`
/// and `payment_status`; the deadline only guards against a hang.
async fn wait_for_facts(
    sql: &tokio_postgres::Client,
    facts: &tokio_postgres::Statement,
    order_id: Uuid,
    status: &str,
    payment_status: &str,
) {
    until(
        &format!("order_facts showing {order_id} as {status} / {payment_status}"),
        secs(300),
        millis(200),
        async || {
            let rows = sql.query(facts, &[&order_id.to_string()]).await.unwrap();
            assert!(rows.len() <= 1, "one row per order in order_facts");
            let seen = rows
                .first()
                .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)));
            match seen {
                Some((s, p)) if s == status && p == payment_status => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn an_order_is_paid_confirmed_and_shipped_or_declined_and_cancelled() {
    let (mut platform, client) = Platform::start_ready().await;

    // Read-your-writes: with the token, order_view answers only once it has applied
    // the write, so its first answer sees the order. How long the read model takes
    // to get there depends on the machine: within the wait bound the answer is the
    // order; past it, a 503 to retry after the time it names, never a 404 or stale
    // data.
    let (paid, token) = place(&client, &platform, 1_500).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    let first: Value = loop {
        let response = client
            .get(platform.url("order_view", &format!("/orders/{paid}")))
            .header("X-Consistency-Token", &token)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            break response.json().await.unwrap();
        }
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "with a token: the write or a 503 to retry"
        );
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            Instant::now() < deadline,
            "order_view never caught up with {token}"
        );
        tokio::time::sleep(Duration::from_secs(retry_after)).await;
    };
    assert_eq!(first["customer_id"], "saga-customer", "{first}");
    // A token the read model cannot reach within the bound is a 503 to retry, not
    // stale data.
    let ahead = format!("orders.events:{paid}:99");
    let response = client
        .get(platform.url("order_view", &format!("/orders/{paid}")))
        .header("X-Consistency-Token", &ahead)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let malformed = client
        .get(platform.url("order_view", &format!("/orders/{paid}")))
        .header("X-Consistency-Token", "nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

    let view = wait_for_view(&client, &platform, paid, |v| {
        v["order_status"] == "confirmed" && v["shipment_status"] == "created"
    })
    .await;
    assert_eq!(view["payment_status"], "authorized", "{view}");
    assert_eq!(view["authorized_minor"], 3_000, "{view}");
    assert_eq!(view["customer_id"], "saga-customer");

    // Above the default authorization limit (100 000 minor units): declined, cancelled.
    let (declined, _) = place(&client, &platform, 60_000).await;
    let view = wait_for_view(&client, &platform, declined, |v| {
        v["order_status"] == "cancelled"
    })
    .await;
    assert_eq!(view["payment_status"], "declined", "{view}");
    assert!(
        view["shipment_status"].is_null(),
        "a cancelled order is not shipped: {view}"
    );

    // The orders stream records who caused what: the confirmation's causation is the
    // payment event, and every event shares the placing command's correlation id.
    let audit: Value = support::get_json(
        &client,
        platform.url("orders", &format!("/orders/{paid}/events")),
    )
    .await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{audit}");
    assert_eq!(events[1]["event_type"], "OrderConfirmed");
    assert_eq!(
        events[0]["metadata"]["correlation_id"],
        events[1]["metadata"]["correlation_id"]
    );
    assert!(events[1]["metadata"]["causation_id"].is_string(), "{audit}");

    // The warehouse, through the analyst endpoint with a PostgreSQL client.
    let analytics = platform.registry.analytics.clone().unwrap();
    let user = analytics.analysts.keys().next().unwrap();
    let password = sluice_platform::testing::DEV_ANALYST_PASSWORD;
    let (sql, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=warehouse",
            analytics.sql_port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the analyst endpoint");
    tokio::spawn(connection);
    let facts = "SELECT status, payment_status, authorized_minor, shipment_id IS NOT NULL, \
                        time_to_confirm_seconds >= 0 \
                   FROM order_facts WHERE order_id = CAST($1 AS UUID)";
    let facts = sql
        .prepare_typed(facts, &[tokio_postgres::types::Type::TEXT])
        .await
        .unwrap();
    let row = until_some(
        "order_facts showing the shipped order",
        secs(300),
        millis(200),
        async || {
            let rows = sql.query(&facts, &[&paid.to_string()]).await.unwrap();
            rows.into_iter().next().filter(|r| r.get::<_, bool>(3))
        },
    )
    .await;
    assert_eq!(row.get::<_, String>(0), "confirmed");
    assert_eq!(row.get::<_, String>(1), "authorized");
    assert_eq!(row.get::<_, i64>(2), 3_000);
    assert!(row.get::<_, bool>(4), "time to confirm is measured");
    // The warehouse loads on its own time: the declined order's cancellation may
    // still be on its way.
    wait_for_facts(&sql, &facts, declined, "cancelled", "declined").await;
    let refused = sql
        .simple_query("DELETE FROM raw_events")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{refused}"
    );

    // Payments for an order that are not its saga's confirm and cancel nothing: one
    // over the order's total is refused, one within it is authorized and ignored,
    // and no one may take the saga's own payment or shipment id.
    let post = async |service: &str, path: &str, body: Value| {
        let response = client.post(platform.url(service, path)).json(&body).send();
        response.await.unwrap().status()
    };
    let saga_payment = sluice_platform::saga::payment_id_for_order(paid);
    for (service, path, body, expected) in [
        (
            "payments",
            "/payments",
            json!({ "order_id": paid, "amount_minor": 200_000, "currency": "EUR" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "payments",
            "/payments",
            json!({ "order_id": paid, "amount_minor": 1, "currency": "EUR" }),
            StatusCode::CREATED,
        ),
        (
            "payments",
            "/payments",
            json!({ "order_id": paid, "amount_minor": 1, "currency": "EUR",
                    "payment_id": saga_payment }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "shipping",
            "/shipments",
            json!({ "order_id": Uuid::now_v7() }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        assert_eq!(post(service, path, body.clone()).await, expected, "{body}");
    }

    // Cancelling the confirmed order compensates: its saga payment is voided and its
    // shipment, not yet dispatched, called off.
    let cancel = post(
        "orders",
        &format!("/orders/{paid}/cancel"),
        json!({ "reason": "changed my mind" }),
    )
    .await;
    assert_eq!(cancel, StatusCode::OK);
    let view = wait_for_view(&client, &platform, paid, |v| {
        v["order_status"] == "cancelled"
            && v["payment_status"] == "voided"
            && v["shipment_status"] == "cancelled"
    })
    .await;
    assert_eq!(
        view["payment_id"],
        sluice_platform::saga::payment_id_for_order(paid).to_string(),
        "the view follows the saga's payment, not the stray one: {view}"
    );
    wait_for_facts(&sql, &facts, paid, "cancelled", "voided").await;

    let status = platform.stop();
    assert!(status.success(), "sluice up exited with {status}");
    drop_registry_databases(&platform.registry).await;
}
