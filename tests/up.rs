//! `sluice up` end to end: the real binary provisions every database, starts the
//! embedded broker, migrates and serves all write services and their relays in one
//! process, each on its own database; commands reach each of them, their events
//! reach the topics, and a foreign Avro decoder (fastavro) reads what the relays
//! published; SIGTERM stops it cleanly.

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_platform::registry::Registry;
use sluice_platform::testing::{consume, drop_registry_databases};
use support::platform::Platform;
use uuid::Uuid;

async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let response = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{url}");
    response.json().await.unwrap()
}

/// GETs `url` until it answers 200 (the saga's reactors create what it names
/// asynchronously); the deadline only guards against a hang.
async fn get_when_there(client: &reqwest::Client, url: String) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let response = client.get(&url).send().await.unwrap();
        if response.status() == StatusCode::OK {
            return response.json().await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} still answers {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sluice_up_runs_every_write_service_on_its_own_database() {
    let mut platform = Platform::start();
    let client = reqwest::Client::new();
    for service in ["orders", "payments", "shipping"] {
        platform.wait_ready(&client, service).await;
    }
    let order_id = Uuid::now_v7();
    let placed = post(
        &client,
        platform.url("orders", "/orders"),
        json!({ "order_id": order_id, "customer_id": "c-up", "currency": "EUR",
                "lines": [{ "sku": "UP-1", "quantity": 3, "unit_price_minor": 700 }] }),
    )
    .await;
    assert_eq!(placed["stream_version"], 1);
    // The saga authorizes the order's payment and, once the order is confirmed,
    // creates its shipment, each in its own service.
    let payment_id = sluice_platform::saga::payment_id_for_order(order_id);
    let payment = get_when_there(
        &client,
        platform.url("payments", &format!("/payments/{payment_id}")),
    )
    .await;
    assert_eq!(payment["status"], "authorized");
    assert_eq!(payment["authorized_minor"], 2100);
    let payment = json!({ "stream_id": payment_id.to_string() });
    let shipment_id = sluice_platform::saga::shipment_id_for_order(order_id);
    let shipment = get_when_there(
        &client,
        platform.url("shipping", &format!("/shipments/{shipment_id}")),
    )
    .await;
    assert_eq!(shipment["order_id"], order_id.to_string());
    let shipment = json!({ "stream_id": shipment_id.to_string() });

    // Each event landed in its own service's store, and only there.
    for (service, stream) in [
        ("orders", placed["stream_id"].as_str().unwrap()),
        ("payments", payment["stream_id"].as_str().unwrap()),
        ("shipping", shipment["stream_id"].as_str().unwrap()),
    ] {
        let noun = match service {
            "orders" => "orders",
            "payments" => "payments",
            _ => "shipments",
        };
        let audit: Value = client
            .get(platform.url(service, &format!("/{noun}/{stream}/events")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The saga's reactors may have appended to the order since (its confirmation).
        assert!(!audit["events"].as_array().unwrap().is_empty(), "{service}");
        for other in ["orders", "payments", "shipping"]
            .iter()
            .filter(|o| **o != service)
        {
            let other_db = platform
                .registry
                .component(other)
                .unwrap()
                .database
                .clone()
                .unwrap();
            let count: i64 = count_events(&platform.registry, other, stream).await;
            assert_eq!(count, 0, "{service}'s stream found in {}", other_db.name);
        }
    }

    // Each service's relay published its event: key = stream id, Avro single-object
    // value that fastavro decodes from the committed .avsc to the stored payload.
    let bootstrap = platform.registry.platform.kafka_brokers.clone();
    let mut cases = Vec::new();
    for (service, stream, noun) in [
        ("orders", placed["stream_id"].as_str().unwrap(), "orders"),
        (
            "payments",
            payment["stream_id"].as_str().unwrap(),
            "payments",
        ),
        (
            "shipping",
            shipment["stream_id"].as_str().unwrap(),
            "shipments",
        ),
    ] {
        let topic = platform
            .registry
            .topic_names()
            .physical(&format!("{service}.events"));
        // Other records may be there too (the saga's reactions): take this stream's first.
        let records = consume(&bootstrap, &topic, 1, Duration::from_secs(30)).await;
        let ours: Vec<_> = records
            .iter()
            .filter(|r| r.key == stream && r.header("stream_version") == "1")
            .collect();
        assert_eq!(ours.len(), 1, "{topic}: {records:?}");
        let record = ours[0];
        let audit: Value = client
            .get(platform.url(service, &format!("/{noun}/{stream}/events")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let stored = &audit["events"][0];
        assert_eq!(
            record.header("event_id"),
            stored["event_id"].as_str().unwrap()
        );
        let event_type = record.header("event_type");
        cases.push(json!({
            "event_type": event_type,
            "avsc": Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schemas").join(service).join(event_type)
                .join(format!("v{}.avsc", record.header("schema_version"))),
            "bytes": record.payload.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "expected": stored["payload"],
        }));
    }
    support::fastavro::assert_fastavro_decodes(&cases);

    let status = platform.stop();
    assert!(status.success(), "sluice up exited with {status}");
    drop_registry_databases(&platform.registry).await;
}

/// Events of `stream` in `component`'s store, read as that component's own app role.
async fn count_events(registry: &Registry, component: &str, stream: &str) -> i64 {
    let c = registry.component(component).unwrap();
    let url = registry.app_database_url(c).unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let n = sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = $1")
        .bind(stream)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}
