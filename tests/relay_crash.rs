//! kill -9 of a real relay process in the middle of publishing: after a restart every
//! event is on the topic at least once, and the duplicates are bounded by the batch
//! the relay had in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_platform::store::EventStore;
use sluice_platform::testing::{consume, topic_size};
use support::slice::{append_confirmations, Slice};
use support::wait::{millis, secs, until_while_running};
use uuid::Uuid;

/// The relay's default batch size (`RelayConfig::default().batch_size`).
const BATCH: usize = 1000;

#[tokio::test]
async fn a_relay_killed_mid_batch_loses_nothing_and_duplicates_at_most_one_batch() {
    let slice = Slice::start(&["orders"]).await;
    let registry = &slice.registry;
    let orders = registry.component("orders").unwrap();
    let bootstrap = slice.bootstrap.clone();
    let topic = &registry.topic_names().physical("orders.events");

    // 40 000 events in 100-event appends over 40 streams, payloads valid for their schema.
    let pool = sqlx::PgPool::connect(&registry.app_database_url(orders).unwrap())
        .await
        .unwrap();
    let store = EventStore::new(pool.clone());
    let total = 40_000usize;
    for i in 0..total / 100 {
        append_confirmations(&store, &format!("crash-{}", i % 40), 100).await;
    }

    // Start the relay; kill -9 it once it has published past a point chosen at random
    // in the first three quarters of the outbox (so runs crash at different points),
    // judged by what is on the topic, not by a clock. The deadline only guards
    // against a hang.
    let kill_at = (BATCH as u64 + Uuid::now_v7().as_u64_pair().1 % (total as u64 * 3 / 4)) as i64;
    let mut relay = slice.run(&["relay", "orders"]);
    let seen_at_kill = until_while_running(
        &mut relay,
        &format!("the relay publishing {kill_at} of {total}"),
        secs(300),
        millis(10),
        async || {
            let published = topic_size(&bootstrap, topic).await;
            if published >= kill_at {
                Ok(published)
            } else {
                Err(published)
            }
        },
    )
    .await;
    relay.kill().unwrap();
    relay.wait().unwrap();
    // What the dead relay left on the topic: had it got to the end before the kill
    // landed, there would be no crash mid-way to recover from.
    let at_kill = topic_size(&bootstrap, topic).await.max(seen_at_kill);
    assert!(
        (at_kill as usize) < total,
        "killed after everything was published ({seen_at_kill} seen before the kill): no crash mid-way"
    );

    // The restarted relay is done once its checkpoint covers the last event: every
    // record is acknowledged on the topic by then, so the read below gets them all
    // however slowly they came.
    let mut relay = slice.run(&["relay", "orders"]);
    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    until_while_running(
        &mut relay,
        &format!("the restarted relay's checkpoint reaching {last}"),
        secs(300),
        millis(100),
        async || {
            let checkpoint: Option<i64> = sqlx::query_scalar(
                "SELECT global_position FROM relay_checkpoints ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(&pool)
            .await
            .unwrap();
            match checkpoint {
                Some(c) if c >= last => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let published = topic_size(&bootstrap, topic).await as usize;
    let records = consume(
        &bootstrap,
        topic,
        published.max(total),
        Duration::from_secs(300),
    )
    .await;
    relay.kill().unwrap();
    relay.wait().unwrap();

    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        *copies.entry(r.header("event_id").to_owned()).or_default() += 1;
    }
    let duplicates = records.len() - copies.len();
    println!(
        "killed at {at_kill} of {total} published (aiming at {kill_at}); after restart {} records, {} distinct, {duplicates} duplicates",
        records.len(),
        copies.len()
    );
    assert_eq!(copies.len(), total, "every event reached the topic");
    assert!(
        duplicates <= BATCH,
        "{duplicates} duplicates: more than one batch was re-sent"
    );
    // Per stream, first deliveries keep version order.
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in &records {
        if !seen.insert(r.header("event_id").to_owned()) {
            continue;
        }
        let version: i64 = r.header("stream_version").parse().unwrap();
        let previous = last.insert(r.key.clone(), version).unwrap_or(0);
        assert_eq!(version, previous + 1, "stream {} out of order", r.key);
    }

    pool.close().await;
    slice.remove().await;
}
