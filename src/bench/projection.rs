//! `sluice bench projection`: one order_view worker applying a pre-filled topic, and
//! command-to-visible latency through the whole path (HTTP command, event store,
//! relay, broker, consumer, read model) at a steady command rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use sluice_platform::consumer::ConsumerConfig;
use sluice_platform::registry::Registry;
use sluice_platform::store::{EventStore, ExpectedVersion, Metadata, StreamId};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::broker::Broker;
use super::pipeline::{Databases, Pipeline, PARTITIONS};
use super::{append_v1, Figure, Phases};

/// Concurrent appenders filling the outbox (untimed).
const FILLERS: u64 = 8;

pub(super) async fn run(registry: &Registry, phases: Phases) -> anyhow::Result<()> {
    if phases.events < 2 || phases.rate == 0 {
        bail!("--events must be at least 2 and --rate at least 1");
    }
    let admin = &registry.platform.admin_database_url;
    let databases = Databases::create(admin, "").await?;
    let broker = match Broker::start(registry).await {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("error: {e:#}");
            None
        }
    };
    let result = match &broker {
        Some(broker) => match Pipeline::prepare(&databases, broker, "bench_orders").await {
            Ok(pipeline) => measure(registry, broker, pipeline, phases).await,
            Err(e) => Err(e),
        },
        None => Err(anyhow::anyhow!("no broker")),
    };
    if let Some(broker) = broker {
        broker.stop().await;
    }
    databases.drop(admin).await?;
    result
}

/// Both phases over `pipeline`, then the figures.
async fn measure(
    registry: &Registry,
    broker: &Broker,
    pipeline: Pipeline,
    phases: Phases,
) -> anyhow::Result<()> {
    let (events, rate, duration) = (phases.events, phases.rate, phases.duration);
    let physical = broker.topics.physical(&pipeline.topic);

    // Phase 1: a pre-filled topic, applied by one worker from offset zero.
    eprintln!("filling {physical} with {events} events through the store and the relay …");
    fill(&pipeline.store, events / 2).await?;
    let relay_stop = CancellationToken::new();
    let relay_task = pipeline.relay(broker, &relay_stop)?;
    let published = (events / 2) * 2;
    let deadline = Instant::now() + Duration::from_secs(600);
    while sluice_platform::broker::topic_size(&broker.bootstrap, &physical).await?
        < published as i64
    {
        if Instant::now() > deadline {
            bail!("the relay did not publish {published} events within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("raw consumer reading {published} records of {physical} …");
    let raw = super::raw_consume(
        &broker.bootstrap,
        std::slice::from_ref(&physical),
        PARTITIONS,
        10,
        published,
    )
    .await?;
    let worker = pipeline.worker(broker, "bench_order_view");
    eprintln!("one order_view worker applying {published} events …");
    let done = worker.catch_up(CancellationToken::new(), |_| {}).await?;
    let elapsed = done.started.elapsed();
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_view WHERE order_status = 'confirmed'")
            .fetch_one(&pipeline.view_pool)
            .await?;
    if rows as u64 != events / 2 {
        bail!(
            "order_view holds {rows} confirmed orders, expected {}",
            events / 2
        );
    }
    let throughput = done.applied as f64 / elapsed.as_secs_f64();

    // Phase 2: commands over HTTP at a steady rate; latency until the order's row
    // is in order_view (its stream position commits with the row).
    let stop = CancellationToken::new();
    let (address, server) = pipeline.serve(registry, &stop).await?;
    let consumer = {
        let t = stop.clone();
        tokio::spawn(async move { worker.run(t).await })
    };
    eprintln!(
        "latency: {rate} PlaceOrder commands/s for {} s …",
        duration.as_secs()
    );
    let latency = latency(
        &address,
        &pipeline.view_pool,
        &pipeline.topic,
        rate,
        duration,
    )
    .await;
    stop.cancel();
    relay_stop.cancel();
    let _ = server.await;
    consumer.await?.context("the order_view worker failed")?;
    relay_task.await?.context("the relay failed")?;
    let latency = latency?;

    println!("{:<44} {:>9} {:>12}", "scenario", "events", "events/s");
    println!(
        "{:<44} {:>9} {throughput:>12.0}",
        "one order_view worker, pre-filled topic", done.applied
    );
    println!(
        "{:<44} {:>9} {raw:>12.0}   (the broker's fetch rate: the worker's ceiling here)",
        "raw rdkafka consumer, same topic", published
    );
    println!(
        "worker: ConsumerRuntime (batch {}) with the order_view handler from offset 0 until caught up,",
        ConsumerConfig::default().batch_size
    );
    println!("        {PARTITIONS} partitions, OrderPlaced (2 lines) + OrderConfirmed per order, one transaction per batch");
    latency.print(rate, duration);
    Figure::new(
        "projection",
        format!(
            "one order_view worker, pre-filled topic, {} events",
            done.applied
        ),
        throughput,
        "events/s",
    )
    .raw(raw, "raw rdkafka consumer of the same topic")
    .record();
    for p in [50.0, 95.0, 99.0] {
        Figure::new(
            "projection",
            format!("command to visible in order_view at {rate}/s, p{p:.0}"),
            latency.percentile(p),
            "ms",
        )
        .record();
    }
    pipeline.finish(broker).await;
    Ok(())
}

fn order_placed(order_id: Uuid) -> serde_json::Value {
    json!({ "order_id": order_id, "customer_id": format!("bench-{}", order_id.as_u128() % 1000),
        "currency": "EUR", "total_minor": 2800,
        "lines": [{ "sku": "BOOK-1", "quantity": 2, "unit_price_minor": 1250 },
                  { "sku": "PEN-9", "quantity": 1, "unit_price_minor": 300 }] })
}

/// Appends `orders` orders, each placed and confirmed in one append, untimed.
async fn fill(store: &EventStore, orders: u64) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for filler in 0..FILLERS {
        let store = store.clone();
        tasks.spawn(async move {
            let meta = Metadata::default();
            let mut i = filler;
            while i < orders {
                let order_id = Uuid::now_v7();
                let placed = ("OrderPlaced", order_placed(order_id));
                let confirmed = ("OrderConfirmed", json!({ "order_id": order_id }));
                append_v1(
                    &store,
                    &StreamId::from(order_id),
                    "order",
                    ExpectedVersion::NoStream,
                    [placed, confirmed],
                    &meta,
                )
                .await?;
                i += FILLERS;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(())
}

/// Command-to-visible latency of one steady-rate phase.
pub(super) struct Latency {
    /// Milliseconds from sending the command to the row being visible, sorted.
    pub(super) millis: Vec<f64>,
    pub(super) sent: u64,
    pub(super) failed: u64,
    pub(super) unseen: u64,
}

impl Latency {
    pub(super) fn percentile(&self, p: f64) -> f64 {
        if self.millis.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (self.millis.len() - 1) as f64).round() as usize;
        self.millis[i]
    }

    fn print(&self, rate: u64, duration: Duration) {
        println!(
            "command to visible in order_view at {rate} commands/s for {} s: {} sent, {} measured, {} failed, {} never seen",
            duration.as_secs(),
            self.sent,
            self.millis.len(),
            self.failed,
            self.unseen
        );
        println!(
            "  p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.millis.last().copied().unwrap_or(f64::NAN)
        );
        println!("  path: HTTP POST /orders (orders API in this process) → event store append → relay → broker");
        println!("        → order_view worker → row committed; seen by polling its stream position every 2 ms");
    }
}

/// PlaceOrder over HTTP at `rate` for `duration`, then waits (bounded) for every
/// order to become visible.
async fn latency(
    address: &str,
    view: &PgPool,
    topic: &str,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Latency> {
    Ok(
        latency_recording(address, view, topic, rate, duration, Arc::default())
            .await?
            .0,
    )
}

/// [`latency`], noting in `accepted` when each accepted command was sent (by
/// order id); also returns how many were accepted.
pub(super) async fn latency_recording(
    address: &str,
    view: &PgPool,
    topic: &str,
    rate: u64,
    duration: Duration,
    accepted: Arc<Mutex<HashMap<String, Instant>>>,
) -> anyhow::Result<(Latency, u64)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let pending: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<Vec<f64>>> = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    let polling = Arc::new(AtomicBool::new(true));
    let poller = {
        let (pending, seen, polling, view, topic) = (
            pending.clone(),
            seen.clone(),
            polling.clone(),
            view.clone(),
            topic.to_owned(),
        );
        tokio::spawn(async move {
            while polling.load(Ordering::Relaxed) {
                let ids: Vec<String> = pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .keys()
                    .cloned()
                    .collect();
                if !ids.is_empty() {
                    let visible: Vec<String> = sqlx::query_scalar(
                        "SELECT stream_id FROM stream_positions WHERE topic = $1 AND stream_id = ANY($2)",
                    )
                    .bind(&topic)
                    .bind(&ids)
                    .fetch_all(&view)
                    .await?;
                    let now = Instant::now();
                    let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
                    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    for id in visible {
                        if let Some(sent) = pending.remove(&id) {
                            seen.push((now - sent).as_secs_f64() * 1000.0);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(())
        })
    };
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + duration;
    let mut sent = 0u64;
    let mut commands = tokio::task::JoinSet::new();
    while Instant::now() < end {
        ticks.tick().await;
        let order_id = Uuid::now_v7();
        let (client, url, pending, failed, accepted) = (
            client.clone(),
            format!("{address}/orders"),
            pending.clone(),
            failed.clone(),
            accepted.clone(),
        );
        sent += 1;
        commands.spawn(async move {
            let at = Instant::now();
            pending.lock().unwrap_or_else(PoisonError::into_inner).insert(order_id.to_string(), at);
            let body = json!({ "order_id": order_id, "customer_id": "bench-latency", "currency": "EUR",
                "lines": [{ "sku": "BOOK-1", "quantity": 1, "unit_price_minor": 1250 }] });
            let ok = matches!(client.post(&url).json(&body).send().await, Ok(r) if r.status().is_success());
            if ok {
                accepted.lock().unwrap_or_else(PoisonError::into_inner).insert(order_id.to_string(), at);
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
                pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&order_id.to_string());
            }
        });
        while commands.try_join_next().is_some() {}
    }
    while commands.join_next().await.is_some() {}
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    polling.store(false, Ordering::Relaxed);
    poller.await??;
    let mut millis = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    millis.sort_by(f64::total_cmp);
    let unseen = pending.lock().unwrap_or_else(PoisonError::into_inner).len() as u64;
    let failed = failed.load(Ordering::Relaxed);
    Ok((
        Latency {
            millis,
            sent,
            failed,
            unseen,
        },
        sent - failed,
    ))
}
