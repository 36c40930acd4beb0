//! kill -9 of the real analytics process (`sluice run analytics`) in the middle of
//! loading, 20 times: after every kill the warehouse opens, holds no duplicate and
//! its positions cover exactly the rows it holds; a last run loads the rest, every
//! event once.
//!
//! The events reach the topic through orders' relay. Each run of the sink loads in
//! small batches (`[analytics] batch_size`), so that a kill lands between commits;
//! its progress is read through its own analyst endpoint, since nothing else may
//! open the warehouse while it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::path::Path;
use std::time::Instant;

use rand::Rng;
use sluice_analytics::warehouse::{Warehouse, WarehouseSettings};
use sluice_platform::testing::DEV_ANALYST_PASSWORD;
use support::slice::{append_confirmations, Slice};
use support::wait::{millis, secs, until_while_running};
use tokio_util::sync::CancellationToken;

/// Events loaded across the kills. The last kill point leaves at least half a 21st
/// of them (100, two and a half batches) unloaded: more than the sink loads
/// between a progress read and the kill.
const EVENTS: i64 = 4_200;
const KILLS: i64 = 20;
/// Rows per load batch of every run.
const BATCH: usize = 40;

/// Rows in `raw_events`, through the analyst endpoint on `sql_port`; `None` while
/// the endpoint does not answer yet.
async fn loaded_rows(sql_port: u16) -> Option<i64> {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={sql_port} user=analyst password={DEV_ANALYST_PASSWORD} \
             dbname=warehouse"
        ),
        tokio_postgres::NoTls,
    )
    .await
    .ok()?;
    let connection = tokio::spawn(connection);
    let rows = client
        .query_one("SELECT count(*) FROM raw_events", &[])
        .await
        .ok()
        .map(|row| row.get::<_, i64>(0));
    drop(client);
    let _ = connection.await;
    rows
}

/// (positions' sum of next offsets, rows, distinct event ids) of the warehouse at
/// `path`, opened as after a crash.
fn progress(path: &Path) -> (i64, i64, i64) {
    let warehouse = Warehouse::open(path, &WarehouseSettings::default())
        .expect("the warehouse opens after kill -9");
    let conn = warehouse.connect().expect("connect");
    let (positions, rows, distinct): (Option<i64>, i64, i64) = conn
        .query_row(
            "SELECT (SELECT CAST(sum(next_offset) AS BIGINT) FROM sluice_positions), \
                    count(*), count(DISTINCT event_id) FROM raw_events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("progress");
    (positions.unwrap_or(0), rows, distinct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analytics_process_killed_20_times_mid_load_loses_and_duplicates_nothing() {
    let slice = Slice::start(&["orders"]).await;
    // Small load batches for every run of the sink.
    let text = std::fs::read_to_string(&slice.registry_file).unwrap();
    let text = text.replacen(
        "[analytics]\n",
        &format!("[analytics]\nbatch_size = {BATCH}\nbatch_wait_ms = 5\n"),
        1,
    );
    assert!(
        text.contains("batch_size"),
        "the registry has no [analytics]"
    );
    std::fs::write(&slice.registry_file, text).unwrap();
    let analytics = slice.registry.analytics.clone().unwrap();
    let warehouse = slice.registry.warehouse_path().unwrap();

    // EVENTS confirmed orders' events on 42 streams, published by orders' relay.
    let store = slice.orders_store().await;
    for i in 0..EVENTS / 100 {
        append_confirmations(&store, &format!("sink-crash-{i}"), 100).await;
    }
    let relay_stop = CancellationToken::new();
    let relay = slice.spawn_orders_relay(&store, relay_stop.clone());
    slice.wait_published(EVENTS as usize).await;

    // Kill point k follows the sink's own progress: once it has committed past the
    // k-th of KILLS + 1 equal steps through the load (a little further at random,
    // so runs differ), and at least one row more than before the last kill.
    let step = EVENTS / (KILLS + 1);
    let mut after_kills: Vec<i64> = Vec::new();
    let mut timings = Vec::new();
    for k in 1..=KILLS {
        let before = after_kills.last().copied().unwrap_or(0);
        if before == EVENTS {
            break; // nothing left to kill a load of; the count below tells
        }
        let target = (k * step + rand::thread_rng().gen_range(0..step / 2))
            .max(before + 1)
            .min(EVENTS);
        let started = Instant::now();
        let mut child = slice.run(&["analytics"]);
        let seen = until_while_running(
            &mut child,
            &format!("the sink loading {target} rows"),
            secs(180),
            millis(2),
            async || match loaded_rows(analytics.sql_port).await {
                Some(rows) if rows >= target => Ok(rows),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        timings.push(format!("{:.1}", started.elapsed().as_secs_f64()));

        let (positions, rows, distinct) = progress(&warehouse);
        assert_eq!(rows, distinct, "no duplicate after a kill");
        assert_eq!(positions, rows, "positions match the rows they cover");
        assert!(
            rows >= seen,
            "{rows} rows after the kill, fewer than the {seen} seen committed"
        );
        after_kills.push(rows);
    }
    let killed_while_loading = after_kills.iter().filter(|rows| **rows < EVENTS).count();
    eprintln!(
        "rows after each kill: {after_kills:?}; killed while loading: \
         {killed_while_loading} of {KILLS}; seconds from start to the kill: {timings:?}"
    );
    assert!(
        killed_while_loading >= 15,
        "too few kills landed mid-load ({after_kills:?}); the test proves little"
    );

    // A last run loads the rest, then stops cleanly.
    let mut child = slice.run(&["analytics"]);
    until_while_running(
        &mut child,
        "the sink loading every event",
        secs(180),
        millis(50),
        async || match loaded_rows(analytics.sql_port).await {
            Some(rows) if rows == EVENTS => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    let stopped = support::terminate(&mut child, secs(30)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the sink did not stop within 30 s of SIGTERM")
    });
    assert!(stopped.success(), "the sink exited with {stopped}");
    let (positions, rows, distinct) = progress(&warehouse);
    assert_eq!((positions, rows, distinct), (EVENTS, EVENTS, EVENTS));
    let conn = Warehouse::open(&warehouse, &WarehouseSettings::default())
        .unwrap()
        .connect()
        .unwrap();
    let typed: i64 = conn
        .query_row("SELECT count(*) FROM order_confirmed", [], |r| r.get(0))
        .unwrap();
    assert_eq!(typed, EVENTS, "every event in its typed table too");

    relay_stop.cancel();
    relay.await.unwrap();
    store.pool().close().await;
    slice.remove().await;
}
