//! `sluice bench e2e`: the whole platform in this process (orders API, event
//! store, relay, broker, one order_view worker, the analytics sink on a fresh
//! DuckDB file); PlaceOrder over HTTP at each steady rate, and the time until the
//! order is in order_view and until its OrderPlaced is in the warehouse.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_platform::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::broker::Broker;
use super::pipeline::{Databases, Pipeline};
use super::projection::{latency_recording, Latency};
use super::Figure;

/// Runs every rate of `rates` for `duration` each (see the module docs).
pub(super) async fn run(
    registry: &Registry,
    rates: &[u64],
    duration: Duration,
) -> anyhow::Result<()> {
    if rates.is_empty() || rates.contains(&0) {
        bail!("--rates must name at least one rate, each at least 1 per second");
    }
    let admin = &registry.platform.admin_database_url;
    let databases = Databases::create(admin, "_e2e").await?;
    let scratch = std::env::temp_dir().join(format!("sluice-bench-e2e-{}", std::process::id()));
    let result = match Broker::start(registry).await {
        Ok(broker) => {
            let result = phases(registry, &databases, &broker, &scratch, rates, duration).await;
            broker.stop().await;
            result
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    databases.drop(admin).await?;
    result
}

async fn phases(
    registry: &Registry,
    databases: &Databases,
    broker: &Broker,
    scratch: &std::path::Path,
    rates: &[u64],
    duration: Duration,
) -> anyhow::Result<()> {
    use sluice_analytics::sink::{repository_schemas_dir, Sink, SinkConfig};
    use sluice_analytics::warehouse::{Warehouse, WarehouseSettings};

    let pipeline = Pipeline::prepare(databases, broker, "bench_e2e_orders").await?;
    let (view_pool, topic) = (&pipeline.view_pool, &pipeline.topic);
    let stop = CancellationToken::new();
    let relay_task = pipeline.relay(broker, &stop)?;
    let worker = pipeline.worker(broker, "bench_e2e_order_view");
    let worker_task = {
        let t = stop.clone();
        tokio::spawn(async move { worker.run(t).await })
    };
    std::fs::create_dir_all(scratch)?;
    let warehouse = Arc::new(Warehouse::open(
        &scratch.join("e2e.duckdb"),
        &WarehouseSettings::default(),
    )?);
    let sink = Sink::prepare(
        &warehouse,
        SinkConfig {
            bootstrap: broker.bootstrap.clone(),
            schemas_dir: repository_schemas_dir(),
            ..SinkConfig::default()
        },
    )?
    .with_topic_names(broker.topics.clone());
    let sink_task = {
        let (t, w) = (stop.clone(), Arc::clone(&warehouse));
        tokio::spawn(async move { sink.run(w, t).await })
    };
    let (address, server) = pipeline.serve(registry, &stop).await?;

    let mut outcome = Ok(());
    let mut rows = Vec::new();
    // Warm-up at the lowest rate, not measured: the broker's JIT and every
    // connection pool are cold at first.
    let lowest = rates.iter().min().copied().unwrap_or(1);
    eprintln!("e2e: warm-up, {lowest} commands/s for 3 s …");
    if let Err(e) = both_latencies(
        &address,
        view_pool,
        &warehouse,
        topic,
        lowest,
        Duration::from_secs(3),
    )
    .await
    {
        outcome = Err(e);
    }
    for &rate in rates.iter().filter(|_| outcome.is_ok()) {
        eprintln!(
            "e2e: {rate} PlaceOrder commands/s for {} s …",
            duration.as_secs()
        );
        match both_latencies(&address, view_pool, &warehouse, topic, rate, duration).await {
            Ok(both) => rows.push((rate, both)),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    stop.cancel();
    let _ = server.await;
    worker_task.await?.context("the order_view worker failed")?;
    relay_task.await?.context("the relay failed")?;
    sink_task.await?.context("the sink failed")?;
    outcome?;

    println!(
        "{:>6} {:>9} {:>7} | {:>28} | {:>28}",
        "rate/s",
        "achieved",
        "failed",
        "order_view p50 / p95 / p99 ms",
        "warehouse p50 / p95 / p99 ms"
    );
    for (rate, (view, wh)) in &rows {
        println!(
            "{rate:>6} {:>9.0} {:>7} | {:>8.1} {:>9.1} {:>9.1} | {:>8.1} {:>9.1} {:>9.1}",
            view.sent as f64 / duration.as_secs_f64(),
            view.failed + view.unseen + wh.unseen,
            view.percentile(50.0),
            view.percentile(95.0),
            view.percentile(99.0),
            wh.percentile(50.0),
            wh.percentile(95.0),
            wh.percentile(99.0)
        );
        for (target, l) in [("order_view", view), ("warehouse", wh)] {
            for p in [50.0, 95.0, 99.0] {
                Figure::new(
                    "e2e",
                    format!("command to visible in {target} at {rate}/s, p{p:.0}"),
                    l.percentile(p),
                    "ms",
                )
                .record();
            }
        }
    }
    // The knee: the first rate whose p99 to order_view is over twice the lowest
    // rate's, or that lost commands.
    let base = rows.first().map(|(_, (v, _))| v.percentile(99.0));
    let knee = rows.iter().find(|(_, (v, w))| {
        base.is_some_and(|b| v.percentile(99.0) > 2.0 * b) || v.failed + v.unseen + w.unseen > 0
    });
    match knee {
        Some((rate, _)) => {
            println!("latency turns up at {rate} commands/s (p99 to order_view over twice that at the lowest rate, or commands lost)");
            Figure::new(
                "e2e",
                "rate where latency turns up",
                *rate as f64,
                "commands/s",
            )
            .record();
        }
        None => println!(
            "latency stays flat up to {} commands/s (no rate doubled the lowest rate's p99)",
            rates.iter().max().copied().unwrap_or(0)
        ),
    }
    println!("path: HTTP POST /orders → event store append → relay → broker → order_view worker (row committed),");
    println!(
        "      and → analytics sink (SinkConfig::default(), batch wait {} ms) → OrderPlaced in DuckDB; polled every 2 ms (order_view) and 20 ms (warehouse)",
        SinkConfig::default().batch_wait.as_millis()
    );
    pipeline.finish(broker).await;
    Ok(())
}

/// One steady-rate phase: latency to order_view (the projection) and to the
/// warehouse (the sink), for the same commands.
async fn both_latencies(
    address: &str,
    view: &PgPool,
    warehouse: &Arc<sluice_analytics::warehouse::Warehouse>,
    topic: &str,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<(Latency, Latency)> {
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let polling = Arc::new(AtomicBool::new(true));
    let warehouse_poller = {
        let (sent_at, polling, warehouse, topic) = (
            sent_at.clone(),
            polling.clone(),
            Arc::clone(warehouse),
            topic.to_owned(),
        );
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<f64>, u64)> {
            let conn = warehouse.connect()?;
            let mut seen = Vec::new();
            let mut found: std::collections::HashSet<String> = Default::default();
            loop {
                let stopping = !polling.load(Ordering::Relaxed);
                let pending: Vec<(String, Instant)> = sent_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .filter(|(id, _)| !found.contains(*id))
                    .map(|(id, at)| (id.clone(), *at))
                    .collect();
                if !pending.is_empty() {
                    let list = pending
                        .iter()
                        .map(|(id, _)| format!("'{id}'"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let mut statement = conn.prepare(&format!(
                        "SELECT stream_id FROM raw_events WHERE topic = ? \
                           AND event_type = 'OrderPlaced' AND stream_id IN ({list})"
                    ))?;
                    let visible: Vec<String> = statement
                        .query_map([&topic], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    let now = Instant::now();
                    let at: HashMap<&str, Instant> =
                        pending.iter().map(|(id, at)| (id.as_str(), *at)).collect();
                    for id in visible {
                        if let Some(sent) = at.get(id.as_str()) {
                            seen.push((now - *sent).as_secs_f64() * 1000.0);
                        }
                        found.insert(id);
                    }
                }
                if stopping {
                    let unseen = sent_at
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .len()
                        .saturating_sub(found.len());
                    return Ok((seen, unseen as u64));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let placed = || -> anyhow::Result<u64> {
        let conn = warehouse.connect()?;
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM raw_events WHERE topic = ? AND event_type = 'OrderPlaced'",
            [topic],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    };
    let before = placed()?;
    let (view_latency, accepted) =
        latency_recording(address, view, topic, rate, duration, sent_at.clone()).await?;
    // The warehouse gets 30 s to catch up, as order_view did.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && placed()? < before + accepted {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    polling.store(false, Ordering::Relaxed);
    let (mut millis, unseen) = warehouse_poller.await??;
    millis.sort_by(f64::total_cmp);
    sent_at
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    let warehouse_latency = Latency {
        millis,
        sent: view_latency.sent,
        failed: view_latency.failed,
        unseen,
    };
    Ok((view_latency, warehouse_latency))
}
