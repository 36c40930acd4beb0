//! kill -9 of a real projection process while it applies events: after a restart
//! the read model equals a fresh rebuild from the topics — nothing lost, nothing
//! applied twice.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

use std::sync::Arc;

use serde_json::Value;
use sluice_platform::consumer::{ConsumerConfig, ConsumerRuntime};
use sluice_platform::registry::ComponentKind;
use sluice_platform::testing::TestDatabase;
use sqlx::PgPool;
use support::slice::{confirmed, place_confirmed_order, wait_confirmed, Slice};
use support::wait::{millis, secs, until_while_running};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod support;

const ORDERS: usize = 2_000;

async fn rows(pool: &PgPool) -> Vec<Value> {
    sqlx::query_scalar("SELECT to_jsonb(v) FROM order_view v ORDER BY order_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_projection_killed_mid_batch_ends_equal_to_a_fresh_rebuild() {
    let slice = Slice::start(&["orders", "order_view"]).await;
    let (registry, bootstrap) = (slice.registry.clone(), slice.bootstrap.clone());

    // Every order placed and confirmed: two events per order stream.
    let store = slice.orders_store().await;
    for _ in 0..ORDERS {
        place_confirmed_order(&store, "crash").await;
    }
    let catalog = sluice::components::all_schemas().unwrap();
    let relay_stop = CancellationToken::new();
    let relay_task = slice.spawn_orders_relay(&store, relay_stop.clone());
    slice.wait_published(2 * ORDERS).await;

    // The projection process starts applying; kill -9 it part-way: once it has
    // applied past a point chosen at random in the first three quarters of the
    // orders (so runs crash at different points), judged by its own table, not by a
    // clock. The deadlines only guard against a hang.
    let kill_at = 1 + (Uuid::now_v7().as_u64_pair().1 % (ORDERS as u64 * 3 / 4)) as i64;
    let view = registry.component("order_view").unwrap();
    let mut child = slice.run(&["order_view"]);
    let view_pool = until_while_running(
        &mut child,
        "order_view migrating its tables",
        secs(300),
        millis(20),
        async || slice.order_view_pool().await.ok_or("not migrated"),
    )
    .await;
    let seen_at_kill = until_while_running(
        &mut child,
        &format!("order_view applying {kill_at} orders"),
        secs(300),
        millis(5),
        async || {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM order_view")
                .fetch_one(&view_pool)
                .await
                .unwrap();
            if n >= kill_at {
                Ok(n)
            } else {
                Err(n)
            }
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    // What the dead process left: had it applied everything before the kill
    // landed, there would be no crash mid-way to recover from.
    let applied_at_kill = confirmed(&view_pool).await;
    assert!(
        (applied_at_kill as usize) < ORDERS,
        "killed after the end ({seen_at_kill} orders seen before the kill): no crash mid-way"
    );

    let mut child = slice.run(&["order_view"]);
    wait_confirmed(&view_pool, ORDERS, "after the restart").await;
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
    wait_confirmed(&fresh_pool, ORDERS, "the rebuild").await;
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
