//! `sluice backup` and `sluice restore`, one component at a time, while the rest
//! of `sluice up` keeps running: a store restored from an older backup is behind
//! its topic, its relay publishes nothing, `sluice verify` names exactly the events
//! the store lost, and `sluice reappend` brings verify back to clean; a projection
//! restored from an older backup catches up by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;
use sluice_platform::registry::Registry;
use sluice_platform::testing::drop_registry_databases;
use support::platform::Platform;
use support::wait::{millis, secs, until, until_some};
use uuid::Uuid;

async fn place_order(client: &reqwest::Client, platform: &Platform) -> Uuid {
    let id = Uuid::now_v7();
    let order = support::order(id, "c-restore", "R-1", 2, 450);
    platform.place_order(client, &order).await;
    id
}

async fn event_ids(registry: &Registry, component: &str) -> BTreeSet<Uuid> {
    let c = registry.component(component).unwrap();
    let pool = sqlx::PgPool::connect(&registry.app_database_url(c).unwrap())
        .await
        .unwrap();
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    ids.into_iter().collect()
}

/// Waits until every order's saga has run (placed, confirmed, paid, shipped: four
/// events each, across the three stores); the deadline only guards against a hang.
async fn wait_for_sagas(registry: &Registry, orders: usize) {
    until(
        &format!("{} saga events", orders * 4),
        secs(180),
        millis(200),
        async || {
            let mut n = 0;
            for service in ["orders", "payments", "shipping"] {
                n += event_ids(registry, service).await.len();
            }
            if n >= orders * 4 {
                Ok(())
            } else {
                Err(n)
            }
        },
    )
    .await
}

fn ok(output: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `sluice verify` until it passes (components catch up after a restore);
/// the deadline only guards against a hang.
async fn wait_for_clean_verify(platform: &Platform) {
    until("verify passing", secs(120), secs(2), async || {
        let out = platform.sluice(&["verify"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_store_is_mended_from_its_topic_and_a_restored_projection_catches_up() {
    let (mut platform, client) = Platform::start_ready().await;
    for _ in 0..4 {
        place_order(&client, &platform).await;
    }
    wait_for_sagas(&platform.registry, 4).await;

    let dir = std::env::temp_dir().join(format!("sluice-backups-{}", Uuid::now_v7()));
    let orders_file = dir.join("orders.dump");
    let view_file = dir.join("order_view.dump");
    ok(
        &platform.sluice(&["backup", "orders", "-o", orders_file.to_str().unwrap()]),
        "backup orders",
    );
    ok(
        &platform.sluice(&["backup", "order_view", "-o", view_file.to_str().unwrap()]),
        "backup order_view",
    );
    let backed_up = event_ids(&platform.registry, "orders").await;

    let later: Vec<Uuid> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(place_order(&client, &platform).await);
        }
        ids
    };
    wait_for_sagas(&platform.registry, 7).await;
    let all = event_ids(&platform.registry, "orders").await;
    let lost: Vec<Uuid> = all.difference(&backed_up).copied().collect();
    assert_eq!(lost.len(), 6, "placed and confirmed, three times");

    // Bad input changes nothing: another component's backup is refused.
    let refused = platform.sluice(&[
        "restore",
        "payments",
        orders_file.to_str().unwrap(),
        "--yes",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not of payments"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The store goes back to the backup while everything else keeps running.
    ok(
        &platform.sluice(&[
            "restore",
            "orders",
            orders_file.to_str().unwrap(),
            "--no-reappend",
            "--yes",
        ]),
        "restore orders",
    );
    assert_eq!(event_ids(&platform.registry, "orders").await, backed_up);
    // Its relay sees the topic's last events missing and publishes nothing.
    let metrics_url = platform.url("orders", "/metrics");
    until_some(
        "the relay noticing the restored store",
        secs(120),
        millis(200),
        async || {
            let metrics = client.get(&metrics_url).send().await.unwrap();
            let metrics = metrics.text().await.unwrap();
            let behind = metrics
                .lines()
                .find(|l| {
                    l.starts_with("sluice_relay_store_behind_topic_events{service=\"orders\"}")
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            (behind > 0.0).then_some(())
        },
    )
    .await;
    let verified = platform.sluice(&["verify"]);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(!verified.status.success(), "{stdout}");
    assert!(
        stdout.contains("6 events on orders.events that are not in the store"),
        "{stdout}"
    );
    for id in &lost {
        assert!(
            stdout.contains(&id.to_string()),
            "{id} not named:\n{stdout}"
        );
    }

    // The documented recovery: copy them back from the topic.
    let copied = ok(&platform.sluice(&["reappend", "orders"]), "reappend");
    assert!(copied.contains("6 events copied back"), "{copied}");
    assert_eq!(event_ids(&platform.registry, "orders").await, all);
    wait_for_clean_verify(&platform).await;

    // A projection restored from before the later orders catches up by itself.
    ok(
        &platform.sluice(&[
            "restore",
            "order_view",
            view_file.to_str().unwrap(),
            "--yes",
        ]),
        "restore order_view",
    );
    for id in &later {
        let url = platform.url("order_view", &format!("/orders/{id}"));
        until_some(
            &format!("order_view catching up on {id}"),
            secs(120),
            millis(200),
            async || {
                let r = client.get(&url).send().await.ok()?;
                if r.status() != StatusCode::OK {
                    return None;
                }
                let view: Value = r.json().await.unwrap();
                view["shipment_id"].is_string().then_some(())
            },
        )
        .await;
    }
    wait_for_clean_verify(&platform).await;

    let status = platform.stop();
    assert!(status.success(), "sluice up exited with {status}");
    drop_registry_databases(&platform.registry).await;
    let _ = std::fs::remove_dir_all(&dir);
}
