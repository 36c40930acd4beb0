//! `sluice verify` against a running `sluice up`: it passes while orders keep
//! arriving (a consistent cut), and names the event when the topic holds one the
//! store does not.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use sluice_platform::testing::drop_registry_databases;
use sqlx::Connection;
use support::platform::Platform;
use support::wait::{millis, secs, until};
use uuid::Uuid;

/// `sluice verify` against `platform`, off the runtime's threads.
async fn verify(platform: &Arc<Platform>) -> std::process::Output {
    let platform = platform.clone();
    tokio::task::spawn_blocking(move || platform.sluice(&["verify"]))
        .await
        .unwrap()
}

/// `sluice verify`, which must fail; returns what it printed.
async fn verify_fails(platform: &Arc<Platform>) -> String {
    let verified = verify(platform).await;
    let stdout = String::from_utf8_lossy(&verified.stdout).into_owned();
    println!("{stdout}");
    assert!(!verified.status.success(), "verify passed:\n{stdout}");
    stdout
}

async fn place_order(client: &reqwest::Client, platform: &Platform, n: usize) {
    let order = json!({ "customer_id": format!("c-verify-{}", n % 7), "currency": "EUR",
                        "lines": [{ "sku": "V-1", "quantity": 1 + n % 3, "unit_price_minor": 500 }] });
    platform.place_order(client, &order).await;
}

/// Waits until the warehouse holds at least `n` events (through the analyst
/// endpoint); the deadline only guards against a hang.
async fn wait_for_warehouse(platform: &Platform, n: i64) {
    until(
        &format!("the warehouse holding {n} events"),
        secs(180),
        millis(500),
        async || {
            let out = platform.sluice(&["sql", "-c", "SELECT count(*) AS n FROM raw_events"]);
            let text = String::from_utf8_lossy(&out.stdout);
            let loaded = text
                .lines()
                .filter_map(|l| l.trim().parse::<i64>().ok())
                .next()
                .unwrap_or(0);
            if loaded >= n {
                Ok(())
            } else {
                Err(loaded)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_under_traffic_and_names_an_event_missing_from_its_store() {
    let (platform, client) = Platform::start_ready().await;
    for n in 0..20 {
        place_order(&client, &platform, n).await;
    }
    // Each order's saga runs: OrderPlaced, PaymentAuthorized, OrderConfirmed,
    // ShipmentCreated at least.
    wait_for_warehouse(&platform, 80).await;

    // Orders keep arriving while verify runs.
    let stop = Arc::new(AtomicBool::new(false));
    let placed = Arc::new(AtomicUsize::new(0));
    let platform = Arc::new(platform);
    let traffic = {
        let (stop, placed, platform, client) = (
            stop.clone(),
            placed.clone(),
            platform.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut n = 100;
            while !stop.load(Ordering::Relaxed) {
                place_order(&client, &platform, n).await;
                placed.fetch_add(1, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let verified = verify(&platform).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let stdout = String::from_utf8_lossy(&verified.stdout);
    let stderr = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success(),
        "verify failed under traffic:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    assert!(
        placed.load(Ordering::Relaxed) > 0,
        "no traffic during verify"
    );
    for line in [
        "orders             ok",
        "payments           ok",
        "shipping           ok",
        "order_view         ok",
        "customer_summary   ok",
        "sku_sales          ok",
        "analytics          ok",
        "verify: every check agrees",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }

    // An event on the orders topic that the orders store never held (as after a
    // store was restored from an older backup).
    let stray = Uuid::now_v7();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set(
            "bootstrap.servers",
            &platform.registry.platform.kafka_brokers,
        )
        .create()
        .unwrap();
    let topic = platform.registry.topic_names().physical("orders.events");
    let key = Uuid::now_v7().to_string();
    let (event_id, version) = (stray.to_string(), "1".to_owned());
    producer
        .send(
            FutureRecord::to(&topic)
                .key(&key)
                .payload(b"not avro".as_slice())
                .headers(
                    OwnedHeaders::new()
                        .insert(Header {
                            key: "event_id",
                            value: Some(&event_id),
                        })
                        .insert(Header {
                            key: "stream_version",
                            value: Some(&version),
                        }),
                ),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let stdout = verify_fails(&platform).await;
    assert!(stdout.contains("orders             DIFFERS"), "{stdout}");
    assert!(
        stdout.contains("1 events on orders.events that are not in the store"),
        "{stdout}"
    );
    assert!(stdout.contains(&event_id), "{stdout}");

    // A read model's row changed behind its consumer's back: it no longer equals
    // a fresh fold of its topics.
    let summary = platform.registry.component("customer_summary").unwrap();
    let owner = platform.registry.owner_database_url(summary).unwrap();
    let mut conn = sqlx::PgConnection::connect(&owner).await.unwrap();
    let changed = sqlx::query(
        "UPDATE customers SET orders_placed = orders_placed + 1 WHERE customer_id = 'c-verify-3'",
    )
    .execute(&mut conn)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(changed, 1);
    let stdout = verify_fails(&platform).await;
    assert!(stdout.contains("customer_summary   DIFFERS"), "{stdout}");
    assert!(
        stdout.contains("2 rows that differ from a fresh fold of the topics"),
        "{stdout}"
    );
    assert!(
        stdout.contains("customers: in the read model, not in a fresh fold"),
        "{stdout}"
    );
    assert!(stdout.contains("order_view         ok"), "{stdout}");

    let mut platform = Arc::try_unwrap(platform).ok().expect("one owner");
    let status = platform.stop();
    assert!(status.success(), "sluice up exited with {status}");
    drop_registry_databases(&platform.registry).await;
}

/// A component that was provisioned but never ran has no tables yet: verify names it
/// and says how to migrate it, instead of a bare SQL error.
#[tokio::test]
async fn verify_names_a_component_that_never_ran() {
    let platform = Platform::prepare();
    let setup = platform.sluice(&["db", "setup"]);
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let out = platform.sluice(&["verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "verify passed on unmigrated databases"
    );
    assert!(
        stderr.contains("orders: its tables cannot be read; has it ever run?"),
        "{stderr}"
    );
    assert!(stderr.contains("sluice run orders"), "{stderr}");
    drop_registry_databases(&platform.registry).await;
}
