//! `sluice bench projection`: one order_view worker applying a pre-filled topic, and
//! command-to-visible latency through the whole path (HTTP command, event store,
//! relay, broker, consumer, read model) at a steady command rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use sluice_platform::broker::ensure_topics;
use sluice_platform::consumer::{ConsumerConfig, ConsumerRuntime};
use sluice_platform::provision::drop_component;
use sluice_platform::registry::{ComponentKind, Registry};
use sluice_platform::relay::{Relay, RelayConfig};
use sluice_platform::store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::relay::Broker;
use super::BenchDatabase;
use super::Figure;

const PARTITIONS: u32 = 3;
/// Concurrent appenders filling the outbox (untimed).
const FILLERS: u64 = 8;

pub async fn run(
    registry: &Registry,
    events: u64,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<()> {
    if events < 2 || rate == 0 {
        bail!("--events must be at least 2 and --rate at least 1");
    }
    let admin = &registry.platform.admin_database_url;
    let orders = BenchDatabase::create(admin, "_orders", ComponentKind::Service)
        .await
        .context("creating the benchmark's orders database")?;
    let view = match BenchDatabase::create(admin, "_view", ComponentKind::Projection).await {
        Ok(view) => view,
        Err(e) => {
            let _ = drop_component(admin, &orders.spec).await;
            return Err(e.context("creating the benchmark's order_view database"));
        }
    };
    let broker = match Broker::start(registry).await {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("error: {e:#}");
            None
        }
    };
    let result = match &broker {
        Some(broker) => phases(registry, &orders, &view, broker, events, rate, duration).await,
        None => Err(anyhow::anyhow!("no broker")),
    };
    if let Some(broker) = broker {
        broker.stop().await;
    }
    for db in [&orders, &view] {
        drop_component(admin, &db.spec)
            .await
            .context("dropping a benchmark database")?;
    }
    result
}

async fn phases(
    registry: &Registry,
    orders_db: &BenchDatabase,
    view_db: &BenchDatabase,
    broker: &Broker,
    events: u64,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<()> {
    let (orders_pool, view_pool) = migrate_and_connect(orders_db, view_db).await?;
    let store = EventStore::new(orders_pool.clone());
    let catalog = sluice_orders::SERVICE.catalog()?;
    let service = "bench_orders";
    // Logical (stream positions, the worker) and as the broker names it.
    let topic = format!("{service}.events");
    let physical = broker.topics.physical(&topic);
    ensure_topics(&broker.bootstrap, &[(physical.clone(), PARTITIONS)])
        .await
        .context("creating the benchmark topic")?;

    // Phase 1: a pre-filled topic, applied by one worker from offset zero.
    eprintln!("filling {physical} with {events} events through the store and the relay …");
    fill(&store, events / 2).await?;
    let relay = Relay::new(
        service,
        orders_pool.clone(),
        &broker.bootstrap,
        Arc::new(catalog.clone()),
        RelayConfig {
            topic_names: broker.topics.clone(),
            ..RelayConfig::default()
        },
    )?;
    let relay_stop = CancellationToken::new();
    let relay_task = {
        let t = relay_stop.clone();
        tokio::spawn(async move { relay.run(t).await })
    };
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
    let worker = ConsumerRuntime::new(
        "bench_order_view",
        vec![topic.clone()],
        view_pool.clone(),
        &broker.bootstrap,
        Arc::new(catalog.clone()),
        (sluice_order_view::PROJECTION.handler)(),
        ConsumerConfig {
            topic_names: broker.topics.clone(),
            ..ConsumerConfig::default()
        },
    );
    eprintln!("one order_view worker applying {published} events …");
    let done = worker.catch_up(CancellationToken::new(), |_| {}).await?;
    let elapsed = done.started.elapsed();
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_view WHERE order_status = 'confirmed'")
            .fetch_one(&view_pool)
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
    let router = sluice_platform::http::with_platform_routes(
        (sluice_orders::SERVICE.router)(&orders_context(registry, &store, &catalog)?)?,
        "orders",
        Some(orders_pool.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let server = tokio::spawn(sluice_platform::http::serve(listener, router, stop.clone()));
    let consumer = {
        let t = stop.clone();
        tokio::spawn(async move { worker.run(t).await })
    };
    eprintln!(
        "latency: {rate} PlaceOrder commands/s for {} s …",
        duration.as_secs()
    );
    let latency = latency(&address, &view_pool, &topic, rate, duration).await;
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
    super::results::machine("broker", broker.description.trim_start_matches("broker: "));
    super::print_machine(&view_pool, &broker.description).await;
    orders_pool.close().await;
    view_pool.close().await;
    Ok(())
}

/// Migrates the orders store and the order_view database; their app pools.
/// What the orders API is built over: the benchmark's store, as the registry's
/// orders service.
fn orders_context(
    registry: &Registry,
    store: &EventStore,
    catalog: &sluice_platform::avro::SchemaCatalog,
) -> anyhow::Result<sluice_platform::service::ServiceContext> {
    Ok(sluice_platform::service::ServiceContext {
        store: store.clone(),
        schemas: catalog.clone(),
        component: registry.component("orders")?.clone(),
    })
}

async fn migrate_and_connect(
    orders_db: &BenchDatabase,
    view_db: &BenchDatabase,
) -> anyhow::Result<(PgPool, PgPool)> {
    let owner = |db: &BenchDatabase| db.options(&db.spec.owner_role, &db.spec.owner_password);
    let app = |db: &BenchDatabase| db.options(&db.spec.app_role, &db.spec.app_password);
    sluice_platform::db::migrate_with(
        owner(orders_db)?,
        vec![
            sluice_platform::store::migrator(),
            (sluice_orders::SERVICE.migrator)(),
        ],
    )
    .await?;
    sluice_platform::db::migrate_with(
        owner(view_db)?,
        vec![
            sluice_platform::consumer::migrator(),
            sluice_order_view::migrator(),
        ],
    )
    .await?;
    let orders_pool = sluice_platform::db::pool_with(app(orders_db)?, 16).await?;
    let view_pool = sluice_platform::db::pool_with(app(view_db)?, 8).await?;
    Ok((orders_pool, view_pool))
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
                store
                    .append(Append {
                        stream_id: &StreamId::from(order_id),
                        stream_type: "order",
                        expected: ExpectedVersion::NoStream,
                        events: vec![
                            NewEvent {
                                event_type: "OrderPlaced".into(),
                                schema_version: 1,
                                payload: order_placed(order_id),
                            },
                            NewEvent {
                                event_type: "OrderConfirmed".into(),
                                schema_version: 1,
                                payload: json!({ "order_id": order_id }),
                            },
                        ],
                        metadata: &meta,
                        idempotency: None,
                    })
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

struct Latency {
    /// Milliseconds from sending the command to the row being visible, sorted.
    millis: Vec<f64>,
    sent: u64,
    failed: u64,
    unseen: u64,
}

impl Latency {
    fn percentile(&self, p: f64) -> f64 {
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
async fn latency_recording(
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

/// `sluice bench e2e`: the whole platform in this process (orders API, event
/// store, relay, broker, one order_view worker, the analytics sink on a fresh
/// DuckDB file); PlaceOrder over HTTP at each steady rate, and the time until the
/// order is in order_view and until its OrderPlaced is in the warehouse.
pub async fn e2e(registry: &Registry, rates: &[u64], duration: Duration) -> anyhow::Result<()> {
    if rates.is_empty() || rates.contains(&0) {
        bail!("--rates must name at least one rate, each at least 1 per second");
    }
    let admin = &registry.platform.admin_database_url;
    let orders = BenchDatabase::create(admin, "_e2e_orders", ComponentKind::Service)
        .await
        .context("creating the benchmark's orders database")?;
    let view = match BenchDatabase::create(admin, "_e2e_view", ComponentKind::Projection).await {
        Ok(view) => view,
        Err(e) => {
            let _ = drop_component(admin, &orders.spec).await;
            return Err(e.context("creating the benchmark's order_view database"));
        }
    };
    let scratch = std::env::temp_dir().join(format!("sluice-bench-e2e-{}", std::process::id()));
    let result = match Broker::start(registry).await {
        Ok(broker) => {
            let result =
                e2e_phases(registry, &orders, &view, &broker, &scratch, rates, duration).await;
            broker.stop().await;
            result
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    for db in [&orders, &view] {
        drop_component(admin, &db.spec)
            .await
            .context("dropping a benchmark database")?;
    }
    result
}

async fn e2e_phases(
    registry: &Registry,
    orders_db: &BenchDatabase,
    view_db: &BenchDatabase,
    broker: &Broker,
    scratch: &std::path::Path,
    rates: &[u64],
    duration: Duration,
) -> anyhow::Result<()> {
    use sluice_analytics::sink::{repository_schemas_dir, Sink, SinkConfig};
    use sluice_analytics::warehouse::{Warehouse, WarehouseSettings};

    let (orders_pool, view_pool) = migrate_and_connect(orders_db, view_db).await?;
    let store = EventStore::new(orders_pool.clone());
    let catalog = sluice_orders::SERVICE.catalog()?;
    let service = "bench_e2e_orders";
    let topic = format!("{service}.events");
    ensure_topics(
        &broker.bootstrap,
        &[(broker.topics.physical(&topic), PARTITIONS)],
    )
    .await
    .context("creating the benchmark topic")?;

    let stop = CancellationToken::new();
    let relay = Relay::new(
        service,
        orders_pool.clone(),
        &broker.bootstrap,
        Arc::new(catalog.clone()),
        RelayConfig {
            topic_names: broker.topics.clone(),
            ..RelayConfig::default()
        },
    )?;
    let relay_task = {
        let t = stop.clone();
        tokio::spawn(async move { relay.run(t).await })
    };
    let worker = ConsumerRuntime::new(
        "bench_e2e_order_view",
        vec![topic.clone()],
        view_pool.clone(),
        &broker.bootstrap,
        Arc::new(catalog.clone()),
        (sluice_order_view::PROJECTION.handler)(),
        ConsumerConfig {
            topic_names: broker.topics.clone(),
            ..ConsumerConfig::default()
        },
    );
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
    let router = sluice_platform::http::with_platform_routes(
        (sluice_orders::SERVICE.router)(&orders_context(registry, &store, &catalog)?)?,
        "orders",
        Some(orders_pool.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(sluice_platform::http::serve(listener, router, stop.clone()));

    let mut outcome = Ok(());
    let mut rows = Vec::new();
    // Warm-up at the lowest rate, not measured: the broker's JIT and every
    // connection pool are cold at first.
    let lowest = rates.iter().min().copied().unwrap_or(1);
    eprintln!("e2e: warm-up, {lowest} commands/s for 3 s …");
    if let Err(e) = both_latencies(
        &address,
        &view_pool,
        &warehouse,
        &topic,
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
        match both_latencies(&address, &view_pool, &warehouse, &topic, rate, duration).await {
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
    super::results::machine("broker", broker.description.trim_start_matches("broker: "));
    super::print_machine(&view_pool, &broker.description).await;
    orders_pool.close().await;
    view_pool.close().await;
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
