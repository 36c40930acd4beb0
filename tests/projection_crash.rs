//! kill -9 of a real projection process while it applies events: after a restart
//! the read model equals a fresh rebuild from the topics — nothing lost, nothing
//! applied twice.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_platform::consumer::{ConsumerConfig, ConsumerRuntime};
use sluice_platform::registry::ComponentKind;
use sluice_platform::relay::{Relay, RelayConfig};
use sluice_platform::store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use sluice_platform::testing::{topic_size, TestDatabase};
use sqlx::PgPool;
use support::slice::Slice;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod support;

const ORDERS: usize = 2_000;

fn start_projection(registry_file: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--registry")
        .arg(registry_file)
        .args(["run", "order_view"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start sluice run order_view")
}

async fn rows(pool: &PgPool) -> Vec<Value> {
    sqlx::query_scalar("SELECT to_jsonb(v) FROM order_view v ORDER BY order_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn confirmed(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM order_view WHERE order_status = 'confirmed'")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

#[tokio::test]
async fn a_projection_killed_mid_batch_ends_equal_to_a_fresh_rebuild() {
    let slice = Slice::start(&["orders", "order_view"]).await;
    let (registry, registry_file, bootstrap) = (
        slice.registry.clone(),
        slice.registry_file.clone(),
        slice.bootstrap.clone(),
    );

    // Every order placed and confirmed: two events per order stream.
    let orders = registry.component("orders").unwrap();
    let store = EventStore::new(
        PgPool::connect(&registry.app_database_url(orders).unwrap())
            .await
            .unwrap(),
    );
    let meta = Metadata::default();
    for _ in 0..ORDERS {
        let order_id = Uuid::now_v7();
        let stream = StreamId::from(order_id);
        let events = vec![
            NewEvent {
                event_type: "OrderPlaced".into(),
                schema_version: 1,
                payload: json!({ "order_id": order_id, "customer_id": "crash", "currency": "EUR",
                    "lines": [{ "sku": "K-1", "quantity": 1, "unit_price_minor": 100 }], "total_minor": 100 }),
            },
            NewEvent {
                event_type: "OrderConfirmed".into(),
                schema_version: 1,
                payload: json!({ "order_id": order_id }),
            },
        ];
        store
            .append(Append {
                stream_id: &stream,
                stream_type: "order",
                expected: ExpectedVersion::NoStream,
                events,
                metadata: &meta,
                idempotency: None,
            })
            .await
            .unwrap();
    }
    let catalog = sluice::components::all_schemas().unwrap();
    let relay = Relay::new(
        "orders",
        store.pool().clone(),
        &bootstrap,
        catalog.clone(),
        RelayConfig::for_registry(&registry),
    )
    .unwrap();
    let relay_stop = CancellationToken::new();
    let relay_task = {
        let t = relay_stop.clone();
        tokio::spawn(async move { relay.run(t).await.unwrap() })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while topic_size(
        &bootstrap,
        &registry.topic_names().physical("orders.events"),
    )
    .await
        < (2 * ORDERS) as i64
    {
        assert!(
            Instant::now() < deadline,
            "the relay did not publish everything"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The projection process starts applying; kill -9 it part-way: once it has
    // applied past a point chosen at random in the first three quarters of the
    // orders (so runs crash at different points), judged by its own table, not by a
    // clock. The deadlines only guard against a hang.
    let kill_at = 1 + (Uuid::now_v7().as_u64_pair().1 % (ORDERS as u64 * 3 / 4)) as i64;
    let view = registry.component("order_view").unwrap();
    let mut child = start_projection(&registry_file);
    let deadline = Instant::now() + Duration::from_secs(300);
    let view_pool = loop {
        if let Ok(pool) = PgPool::connect(&registry.app_database_url(view).unwrap()).await {
            if sqlx::query("SELECT 1 FROM order_view LIMIT 1")
                .execute(&pool)
                .await
                .is_ok()
            {
                break pool;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "order_view exited on its own"
        );
        assert!(
            Instant::now() < deadline,
            "order_view never migrated its tables"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seen_at_kill = loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM order_view")
            .fetch_one(&view_pool)
            .await
            .unwrap();
        if n >= kill_at {
            break n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "order_view exited on its own"
        );
        assert!(
            Instant::now() < deadline,
            "order_view applied only {n} of {ORDERS} orders"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // What the dead process left: had it applied everything before the kill
    // landed, there would be no crash mid-way to recover from.
    let applied_at_kill = confirmed(&view_pool).await;
    assert!(
        (applied_at_kill as usize) < ORDERS,
        "killed after the end ({seen_at_kill} orders seen before the kill): no crash mid-way"
    );

    let mut child = start_projection(&registry_file);
    let deadline = Instant::now() + Duration::from_secs(300);
    while confirmed(&view_pool).await < ORDERS as i64 {
        assert!(
            Instant::now() < deadline,
            "order_view never caught up after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // A fresh rebuild from the topics into a new database.
    let fresh = TestDatabase::provision("order_view_rebuild", ComponentKind::Projection).await;
    fresh
        .migrate(vec![
            sluice_platform::consumer::migrator(),
            sluice_order_view::migrator(),
        ])
        .await;
    let fresh_pool = fresh.app_pool().await;
    let runtime = ConsumerRuntime::new(
        "order_view_rebuild",
        view.consumes.clone(),
        fresh_pool.clone(),
        &bootstrap,
        Arc::clone(&catalog),
        (sluice_order_view::PROJECTION.handler)(),
        ConsumerConfig::for_registry(&registry),
    );
    let stop = CancellationToken::new();
    let rebuild = {
        let t = stop.clone();
        tokio::spawn(async move { runtime.run(t).await.unwrap() })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while confirmed(&fresh_pool).await < ORDERS as i64 {
        assert!(Instant::now() < deadline, "the rebuild never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    rebuild.await.unwrap();

    let (survived, rebuilt) = (rows(&view_pool).await, rows(&fresh_pool).await);
    println!("killed at {kill_at}+ ({seen_at_kill} seen), after {applied_at_kill} of {ORDERS} orders confirmed; {} rows after restart, {} in the rebuild", survived.len(), rebuilt.len());
    assert_eq!(survived.len(), ORDERS);
    assert!(
        survived == rebuilt,
        "the read model differs from a fresh rebuild"
    );

    relay_stop.cancel();
    relay_task.await.unwrap();
    view_pool.close().await;
    slice.remove().await;
}
