//! `sluice bench`: throughput measurements printed beside the same machine's raw
//! limit, measured in the same run. Nothing here asserts a target: the figures are
//! for people to read (and to paste into reports with the machine they ran on).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use sluice_analytics::sink::SinkConfig;
use sluice_platform::provision::{drop_component, Plan};
use sluice_platform::registry::{Component, ComponentKind, DatabaseSpec, Registry};
use sluice_platform::store::{
    Append, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId, StreamVersion,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use std::str::FromStr;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Event store appends against plain INSERT transactions on the same server.
    Append {
        /// Seconds per scenario.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent clients of the concurrent scenarios.
        #[arg(long, default_value_t = 16)]
        clients: usize,
    },
    /// The outbox relay against a raw rdkafka producer on the same broker, then
    /// append-to-consumer latency under steady load. Uses KAFKA_BROKERS when set,
    /// else a local Apache Kafka (`SLUICE_BENCH_BROKER=tansu`: tansu) in a temporary
    /// directory.
    Relay {
        /// Events pre-filled into the outbox (and records of the raw baseline).
        #[arg(long, default_value_t = 50_000)]
        events: u64,
        /// Single-event appends per second in the latency phase.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Seconds of the latency phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// One order_view worker applying a pre-filled topic (events/s), then
    /// command-to-visible latency: HTTP PlaceOrder to the row in order_view, at a
    /// steady rate. Uses KAFKA_BROKERS when set, else a local Apache Kafka.
    Projection {
        /// Events pre-filled into the topic (two per order: placed, confirmed).
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// PlaceOrder commands per second in the latency phase.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Seconds of the latency phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The analytics sink from pre-filled topics into a fresh DuckDB file against a
    /// raw consumer of the same topics; its write path (Loader::load) against raw
    /// appender rows into the same DuckDB; and an aggregate over order_facts.
    /// Uses KAFKA_BROKERS when set, else a local Apache Kafka.
    Sink {
        /// Events pre-filled into the topics (7 per order, over 3 topics).
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events of the write path (Loader::load from memory), generated batch
        /// by batch: 10000000 shows whether the rate stays flat as tables grow.
        #[arg(long, default_value_t = 1_000_000)]
        write_events: u64,
        /// Orders in the warehouse of the order_facts query.
        #[arg(long, default_value_t = 1_000_000)]
        orders: u64,
        /// Most records per load (the sink's batch size) end to end, on the write
        /// path and for the raw appender; default: the sink's.
        #[arg(long, default_value_t = SinkConfig::default().batch_size)]
        batch: usize,
    },
    /// Command to visible: HTTP PlaceOrder to the row in order_view and to the
    /// event in the warehouse (a sink in this process), p50/p95/p99 at each
    /// steady rate, and the rate where latency turns up.
    E2e {
        /// PlaceOrder commands per second, one phase each.
        #[arg(long, value_delimiter = ',', default_values_t = E2E_RATES)]
        rates: Vec<u64>,
        /// Seconds per rate.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Peers on the same machine (installed by bench/peers/install.sh, which this
    /// runs first): Python eventsourcing and postgres-es appends against Sluice's
    /// at the same concurrency, dlt loading events into DuckDB against the sink.
    Peers {
        /// Seconds per append scenario.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Every stage with its defaults: append, relay, projection, e2e, sink,
    /// peers. Writes the results files at the end, as every bench does.
    All,
}

/// Where the results files go unless `SLUICE_BENCH_RESULTS` names another
/// directory.
const RESULTS_DIR: &str = "bench/results";

pub async fn run(command: BenchCommand, registry_path: &Path) -> anyhow::Result<()> {
    let registry = Registry::load(registry_path)?.with_env_overrides();
    let outcome = match command {
        BenchCommand::Append { seconds, clients } => {
            append(&registry, Duration::from_secs(seconds), clients).await
        }
        BenchCommand::Relay {
            events,
            rate,
            seconds,
        } => relay::run(&registry, events, rate, Duration::from_secs(seconds)).await,
        BenchCommand::Projection {
            events,
            rate,
            seconds,
        } => projection::run(&registry, events, rate, Duration::from_secs(seconds)).await,
        BenchCommand::Sink {
            events,
            write_events,
            orders,
            batch,
        } => sink::run(&registry, events, write_events, orders, batch).await,
        BenchCommand::E2e { rates, seconds } => {
            projection::e2e(&registry, &rates, Duration::from_secs(seconds)).await
        }
        BenchCommand::Peers { seconds } => {
            peers::run(&registry, Duration::from_secs(seconds)).await
        }
        BenchCommand::All => all(&registry).await,
    };
    let dir = std::env::var_os("SLUICE_BENCH_RESULTS")
        .map_or_else(|| std::path::PathBuf::from(RESULTS_DIR), Into::into);
    let written = results::write(&dir).context("writing the results files");
    match &written {
        Ok((json, md)) => eprintln!("results: {} and {}", json.display(), md.display()),
        Err(e) => eprintln!("error: {e:#}"),
    }
    outcome.and(written.map(|_| ()))
}

/// Every stage with its default settings, one after another; a stage that fails
/// is reported and the others still run.
async fn all(registry: &Registry) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    let mut stage = |name: &'static str, outcome: anyhow::Result<()>| {
        if let Err(e) = outcome {
            eprintln!("error: bench {name}: {e:#}");
            failed.push(name);
        }
    };
    eprintln!("== bench append");
    stage("append", append(registry, Duration::from_secs(5), 16).await);
    eprintln!("== bench relay");
    stage(
        "relay",
        relay::run(registry, 50_000, 500, Duration::from_secs(10)).await,
    );
    eprintln!("== bench projection");
    stage(
        "projection",
        projection::run(registry, 100_000, 500, Duration::from_secs(10)).await,
    );
    eprintln!("== bench e2e");
    stage(
        "e2e",
        projection::e2e(registry, &E2E_RATES, Duration::from_secs(10)).await,
    );
    eprintln!("== bench sink");
    stage(
        "sink",
        sink::run(
            registry,
            200_000,
            1_000_000,
            1_000_000,
            SinkConfig::default().batch_size,
        )
        .await,
    );
    eprintln!("== bench peers");
    stage("peers", peers::run(registry, Duration::from_secs(5)).await);
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("these stages failed: {}", failed.join(", "))
    }
}

/// The steady command rates of `bench e2e`, per second.
const E2E_RATES: [u64; 4] = [100, 250, 500, 1000];

mod peers;
mod projection;
pub mod results;
mod sink;

use results::Figure;

/// Progress of a long stage on standard error: a bar on a terminal, a line every
/// tenth otherwise (logs of CI runs).
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: String,
    total: u64,
    /// The tenths printed so far (without a terminal).
    printed: AtomicU64,
}

impl Progress {
    pub(crate) fn new(label: &str, total: u64) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>24} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(label.to_owned());
            bar
        });
        Progress {
            bar,
            label: label.to_owned(),
            total,
            printed: AtomicU64::new(0),
        }
    }

    pub(crate) fn set(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                let tenth = done * 10 / self.total.max(1);
                if tenth > self.printed.swap(tenth, Ordering::Relaxed) {
                    eprintln!("  {}: {done}/{}", self.label, self.total);
                }
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The raw baseline of a consuming benchmark: a plain rdkafka consumer (no
/// decoding, no database) with the fetch wait of the consumer under test, reading
/// `partitions` partitions of each topic from the beginning until `records` records
/// arrived; records/s.
async fn raw_consume(
    bootstrap: &str,
    topics: &[String],
    partitions: u32,
    fetch_wait_ms: u32,
    records: u64,
) -> anyhow::Result<f64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let (bootstrap, topics) = (bootstrap.to_owned(), topics.to_vec());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set(
                "group.id",
                format!("sluice-bench-raw-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
            .set("log_level", "3")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for topic in &topics {
            for p in 0..partitions as i32 {
                assignment.add_partition_offset(topic, p, Offset::Beginning)?;
            }
        }
        consumer.assign(&assignment)?;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(600);
        let (mut count, mut bytes) = (0u64, 0usize);
        while count < records {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the raw consumer read {count} of {records} records within 10 minutes"
            );
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                bytes += message?.payload_len();
                count += 1;
            }
        }
        std::hint::black_box(bytes);
        Ok(records as f64 / start.elapsed().as_secs_f64())
    })
    .await?
}

/// A throwaway database provisioned like a write service's, dropped afterwards.
struct BenchDatabase {
    admin_url: String,
    spec: DatabaseSpec,
}

impl BenchDatabase {
    /// `sluice_bench_<pid><suffix>`, provisioned as a component of `kind`.
    async fn create(admin_url: &str, suffix: &str, kind: ComponentKind) -> anyhow::Result<Self> {
        let name = format!("sluice_bench_{}{suffix}", std::process::id());
        let spec = DatabaseSpec {
            owner_role: format!("{name}_owner"),
            app_role: format!("{name}_app"),
            owner_password: "bench-owner".into(),
            app_password: "bench-app".into(),
            name,
        };
        let component = Component {
            name: "bench".into(),
            kind,
            port: 0,
            database: Some(spec.clone()),
            produces: vec![],
            consumes: vec![],
            depends_on: vec![],
            layer: sluice_platform::registry::Layer::default_for(kind),
            extra_env: Default::default(),
        };
        Plan::for_component(&component, &spec)
            .execute(admin_url)
            .await?;
        Ok(BenchDatabase {
            admin_url: admin_url.to_owned(),
            spec,
        })
    }

    fn options(&self, role: &str, password: &str) -> anyhow::Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(&self.admin_url)?
            .username(role)
            .password(password)
            .database(&self.spec.name))
    }
}

/// Runs `op` from `clients` tasks for `duration`; each call returns the events it
/// wrote. Returns events per second and the events written.
async fn measure<F, Fut>(clients: usize, duration: Duration, op: F) -> anyhow::Result<(f64, u64)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
{
    let op = Arc::new(op);
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (op, total) = (op.clone(), total.clone());
        tasks.spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                total.fetch_add(op(client, i).await?, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let total = total.load(Ordering::Relaxed);
    Ok((total as f64 / start.elapsed().as_secs_f64(), total))
}

/// What the server's backends of one measured run did: the share of
/// `pg_stat_activity` samples (every 10 ms, this database's other sessions) in
/// each state or wait event, and the WAL written per event.
struct ServerProfile {
    samples: BTreeMap<String, u64>,
    wal_bytes_per_event: f64,
}

impl std::fmt::Display for ServerProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: u64 = self.samples.values().sum();
        let mut shares: Vec<(&String, &u64)> = self.samples.iter().collect();
        shares.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (i, (what, n)) in shares.iter().take(5).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(
                f,
                "{sep}{what} {:.0} %",
                100.0 * **n as f64 / total.max(1) as f64
            )?;
        }
        write!(
            f,
            "; {:.0} bytes of WAL per event",
            self.wal_bytes_per_event
        )
    }
}

/// `measure`, with the server's side of it sampled (see `ServerProfile`).
async fn profiled<F, Fut>(
    pool: &PgPool,
    clients: usize,
    duration: Duration,
    op: F,
) -> anyhow::Result<(f64, ServerProfile)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
{
    let mut sampler = pool.acquire().await?.detach();
    let wal_before: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut sampler)
        .await?;
    let stop = CancellationToken::new();
    let sampling = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = BTreeMap::<String, u64>::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.is_cancelled() {
                tick.tick().await;
                let states: Vec<String> = sqlx::query_scalar(
                    "SELECT CASE WHEN state = 'active' \
                                 THEN coalesce(wait_event_type || ':' || wait_event, 'running (CPU)') \
                                 ELSE 'waiting for the client' END \
                       FROM pg_stat_activity \
                      WHERE datname = current_database() AND pid <> pg_backend_pid() \
                        AND backend_type = 'client backend'",
                )
                .fetch_all(&mut sampler)
                .await?;
                for state in states {
                    *samples.entry(state).or_default() += 1;
                }
            }
            anyhow::Ok((samples, sampler))
        })
    };
    let measured = measure(clients, duration, op).await;
    stop.cancel();
    let (samples, mut sampler) = sampling.await??;
    let (rate, events) = measured?;
    let wal: f64 = sqlx::query_scalar(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8",
    )
    .bind(wal_before)
    .fetch_one(&mut sampler)
    .await?;
    let _ = sqlx::Connection::close(sampler).await;
    Ok((
        rate,
        ServerProfile {
            samples,
            wal_bytes_per_event: wal / events.max(1) as f64,
        },
    ))
}

fn payload(i: u64) -> serde_json::Value {
    json!({ "order_id": format!("{i:016x}"), "sku": "BENCH-1", "quantity": 1, "unit_price_minor": 1250 })
}

async fn raw_insert(pool: &PgPool, client: usize, i: u64, rows: usize) -> anyhow::Result<u64> {
    let payloads: Vec<serde_json::Value> =
        (0..rows as u64).map(|k| payload(i * 1000 + k)).collect();
    sqlx::query(
        "INSERT INTO bench_raw (event_id, stream_id, stream_type, stream_version, event_type, \
                                schema_version, payload, metadata) \
         SELECT gen_random_uuid(), $1, 'bench', $3 + ord, 'BenchEvent', 1, p, '{}' \
           FROM UNNEST($2::jsonb[]) WITH ORDINALITY AS u(p, ord)",
    )
    .bind(format!("raw-{client}"))
    .bind(&payloads)
    .bind(i as i64 * rows as i64)
    .execute(pool)
    .await?;
    Ok(rows as u64)
}

async fn store_append(
    store: &EventStore,
    scenario: usize,
    client: usize,
    i: u64,
    n: usize,
) -> anyhow::Result<u64> {
    // One stream per client and scenario, appended to at its exact next version.
    let stream = StreamId::new(format!("bench-{scenario}-{client}"))?;
    let expected = match i {
        0 => ExpectedVersion::NoStream,
        _ => ExpectedVersion::Exact(StreamVersion::new(i as i64 * n as i64)?),
    };
    let events = (0..n as u64)
        .map(|k| NewEvent {
            event_type: "BenchEvent".into(),
            schema_version: 1,
            payload: payload(i * 1000 + k),
        })
        .collect();
    store
        .append(Append {
            stream_id: &stream,
            stream_type: "bench",
            expected,
            events,
            metadata: &Metadata::default(),
            idempotency: None,
        })
        .await?;
    Ok(n as u64)
}

async fn append(registry: &Registry, duration: Duration, clients: usize) -> anyhow::Result<()> {
    let db = BenchDatabase::create(
        &registry.platform.admin_database_url,
        "",
        ComponentKind::Service,
    )
    .await
    .context("creating the benchmark database")?;
    let result = append_scenarios(&db, duration, clients).await;
    drop_component(&db.admin_url, &db.spec)
        .await
        .context("dropping the benchmark database")?;
    result
}

async fn append_scenarios(
    db: &BenchDatabase,
    duration: Duration,
    clients: usize,
) -> anyhow::Result<()> {
    sluice_platform::db::migrate_with(
        db.options(&db.spec.owner_role, &db.spec.owner_password)?,
        vec![sluice_platform::store::migrator()],
    )
    .await?;
    let owner = sluice_platform::db::pool_with(
        db.options(&db.spec.owner_role, &db.spec.owner_password)?,
        1,
    )
    .await?;
    // The raw baseline: the same row shape minus the store's invariants.
    sqlx::raw_sql(
        "CREATE TABLE bench_raw (position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         event_id UUID NOT NULL UNIQUE, stream_id TEXT NOT NULL, stream_type TEXT NOT NULL, \
         stream_version BIGINT NOT NULL, event_type TEXT NOT NULL, schema_version INTEGER NOT NULL, \
         payload JSONB NOT NULL, metadata JSONB NOT NULL, \
         recorded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    )
    .execute(&owner)
    .await?;
    owner.close().await;
    let pool = sluice_platform::db::pool_with(
        db.options(&db.spec.app_role, &db.spec.app_password)?,
        clients as u32 + 2,
    )
    .await?;
    let store = EventStore::new(pool.clone());
    print_machine(&pool, "same server for both columns").await;
    println!(
        "{:<34} {:>8} {:>14} {:>14} {:>7}",
        "scenario", "clients", "store ev/s", "raw ev/s", "ratio"
    );
    let scenarios = [
        ("1-event appends", 1usize, 1usize),
        ("1-event appends", 1, clients),
        ("100-event appends", 100, 1),
        ("100-event appends", 100, clients),
    ];
    let mut profiles = Vec::new();
    for (scenario, (label, n, c)) in scenarios.into_iter().enumerate() {
        let raw_pool = pool.clone();
        let (raw, raw_profile) = profiled(&pool, c, duration, move |client, i| {
            let pool = raw_pool.clone();
            async move { raw_insert(&pool, client, i, n).await }
        })
        .await?;
        let store = store.clone();
        let (sluice, store_profile) = profiled(&pool, c, duration, move |client, i| {
            let store = store.clone();
            async move { store_append(&store, scenario, client, i, n).await }
        })
        .await?;
        println!(
            "{label:<34} {c:>8} {sluice:>14.0} {raw:>14.0} {:>6.0}%",
            100.0 * sluice / raw
        );
        let profile = format!("store: {store_profile}; raw: {raw_profile}");
        profiles.push(format!("{label}, {c} clients: {profile}"));
        let figure = Figure::new(
            "append",
            format!("{label}, {c} clients"),
            sluice,
            "events/s",
        )
        .raw(raw, "INSERT of the same rows, one autocommit statement");
        // The goal is for the many-client one-event case.
        let figure = if n == 1 && c > 1 {
            figure.goal_ratio(0.8).profile(profile)
        } else {
            figure
        };
        figure.record();
    }
    println!("where the server's backends spent the runs (pg_stat_activity sampled every 10 ms):");
    for profile in profiles {
        println!("  {profile}");
    }
    println!(
        "store: EventStore::append, one autocommit statement: read the stream version, check it,"
    );
    println!("       insert the events and their outbox rows");
    println!(
        "raw:   one autocommit INSERT of the same envelope rows into a table with a primary key"
    );
    println!("       and a unique event id, no triggers, no outbox");
    pool.close().await;
    Ok(())
}

async fn print_machine(pool: &PgPool, note: &str) {
    let cpu =
        results::proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pool)
        .await
        .unwrap_or_default();
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(pool)
        .await
        .unwrap_or_default();
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(pool)
        .await
        .unwrap_or_default();
    println!("machine: {cpu}, {cores} cores; PostgreSQL {version} (synchronous_commit={sync}, fsync={fsync}), {note}");
    results::machine(
        "postgresql",
        format!("{version} (synchronous_commit={sync}, fsync={fsync})"),
    );
}

/// `sluice bench relay`: the outbox relay against a raw producer on the same broker,
/// and append-to-consumer latency under steady load.
mod relay {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context};
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
    use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
    use rdkafka::types::RDKafkaErrorCode;
    use rdkafka::{Offset, TopicPartitionList};
    use serde_json::json;
    use sluice_platform::avro::SchemaCatalog;
    use sluice_platform::broker::{ensure_topics, BrokerKind, LocalBroker};
    use sluice_platform::provision::drop_component;
    use sluice_platform::registry::{Registry, TopicNames};
    use sluice_platform::relay::{producer_config, Relay, RelayConfig, RelaySteps, RelayTimings};
    use sluice_platform::store::{
        Append, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId,
    };
    use sqlx::types::chrono::{DateTime, Utc};
    use sqlx::PgPool;
    use tokio_util::sync::CancellationToken;
    use uuid::Uuid;

    use super::{BenchDatabase, Figure};

    const PARTITIONS: u32 = 3;
    /// Events per append when pre-filling the outbox (and records per key in the
    /// raw baseline, so both spread over partitions alike).
    const PREFILL_APPEND: u64 = 100;
    /// The `actor` of the warm-up event of the latency phase (not measured).
    const WARMUP_ACTOR: &str = "bench-warmup";
    const ACTOR: &str = "bench";

    /// The broker under test: external (`KAFKA_BROKERS`), or a local one whose data
    /// directory is removed afterwards: Apache Kafka unless `SLUICE_BENCH_BROKER=tansu`.
    pub(super) struct Broker {
        pub(super) bootstrap: String,
        /// The namespace of the benchmark's topics: the registry's, and on a reused
        /// external broker one of this run's own inside it (`bench_<pid>.`), so runs
        /// never meet each other's topics.
        pub(super) topics: TopicNames,
        embedded: Option<(LocalBroker, PathBuf)>,
        pub(super) description: String,
    }

    impl Broker {
        pub(super) async fn start(registry: &Registry) -> anyhow::Result<Self> {
            if std::env::var_os("KAFKA_BROKERS").is_some() {
                let bootstrap = registry.platform.kafka_brokers.clone();
                return Ok(Broker {
                    description: format!("broker: KAFKA_BROKERS={bootstrap}"),
                    bootstrap,
                    topics: TopicNames::new(format!(
                        "{}bench_{}.",
                        registry.platform.topic_prefix,
                        std::process::id()
                    )),
                    embedded: None,
                });
            }
            let dir =
                std::env::temp_dir().join(format!("sluice-bench-broker-{}", std::process::id()));
            let kind = match std::env::var("SLUICE_BENCH_BROKER") {
                Ok(kind) if !kind.is_empty() => kind.parse::<BrokerKind>()?,
                _ => BrokerKind::Kafka,
            };
            let broker = match LocalBroker::start(kind, &dir, 0).await {
                Ok(broker) => broker,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(anyhow::Error::new(e).context(format!(
                        "starting the local broker ({kind}; set KAFKA_BROKERS to use another)"
                    )));
                }
            };
            let storage = match kind {
                BrokerKind::Tansu => "SQLite storage",
                BrokerKind::Kafka => "one KRaft node, log on local disk",
            };
            Ok(Broker {
                bootstrap: broker.bootstrap_servers(),
                topics: registry.topic_names(),
                embedded: Some((broker, dir)),
                description: format!("broker: {kind} on this machine ({storage})"),
            })
        }

        pub(super) async fn stop(self) {
            if let Some((mut broker, dir)) = self.embedded {
                broker.shutdown().await;
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    pub async fn run(
        registry: &Registry,
        events: u64,
        rate: u64,
        duration: Duration,
    ) -> anyhow::Result<()> {
        if events == 0 || rate == 0 {
            bail!("--events and --rate must be at least 1");
        }
        let broker = Broker::start(registry).await?;
        let result = match BenchDatabase::create(
            &registry.platform.admin_database_url,
            "",
            sluice_platform::registry::ComponentKind::Service,
        )
        .await
        .context("creating the benchmark database")
        {
            Ok(db) => {
                let result = scenarios(registry, &db, &broker, events, rate, duration).await;
                let dropped = drop_component(&db.admin_url, &db.spec)
                    .await
                    .context("dropping the benchmark database");
                result.and(dropped)
            }
            Err(e) => Err(e),
        };
        broker.stop().await;
        result
    }

    /// What every published record carries besides its key: the same value bytes,
    /// and 12 text headers of the relay's sizes.
    struct Shape {
        catalog: Arc<SchemaCatalog>,
        value: Vec<u8>,
        fingerprint: String,
    }

    fn order_placed(order_id: Uuid) -> serde_json::Value {
        json!({
            "order_id": order_id.to_string(),
            "customer_id": "bench-customer-0001",
            "currency": "EUR",
            "lines": [
                { "sku": "BENCH-SKU-1", "quantity": 2, "unit_price_minor": 1250 },
                { "sku": "BENCH-SKU-2", "quantity": 1, "unit_price_minor": 4990 },
                { "sku": "BENCH-SKU-3", "quantity": 3, "unit_price_minor": 399 },
            ],
            "total_minor": 2 * 1250 + 4990 + 3 * 399,
        })
    }

    fn metadata(actor: &str) -> Metadata {
        Metadata {
            correlation_id: Some(Uuid::now_v7()),
            causation_id: Some(Uuid::now_v7()),
            traceparent: Some(format!(
                "00-{}-{}-01",
                Uuid::now_v7().simple(),
                &Uuid::now_v7().simple().to_string()[..16]
            )),
            actor: Some(actor.to_owned()),
        }
    }

    /// `recorded_at` as the relay writes it (`to_rfc3339` of a microsecond
    /// PostgreSQL timestamp).
    fn rfc3339_micros(t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }

    /// The relay's 12 headers with values of the same lengths.
    fn raw_headers(shape: &Shape, i: u64, meta: &Metadata) -> OwnedHeaders {
        let text = [
            ("event_id", Uuid::now_v7().to_string()),
            ("event_type", "OrderPlaced".to_owned()),
            ("stream_type", "order".to_owned()),
            ("stream_version", (i % PREFILL_APPEND + 1).to_string()),
            ("global_position", (i + 1).to_string()),
            ("schema_version", "1".to_owned()),
            ("schema_fingerprint", shape.fingerprint.clone()),
            ("recorded_at", rfc3339_micros(Utc::now())),
            (
                "correlation_id",
                meta.correlation_id.unwrap_or_default().to_string(),
            ),
            (
                "causation_id",
                meta.causation_id.unwrap_or_default().to_string(),
            ),
            ("traceparent", meta.traceparent.clone().unwrap_or_default()),
            ("actor", meta.actor.clone().unwrap_or_default()),
        ];
        text.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        })
    }

    fn header_bytes(headers: &OwnedHeaders) -> usize {
        headers
            .iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum()
    }

    async fn scenarios(
        registry: &Registry,
        db: &BenchDatabase,
        broker: &Broker,
        events: u64,
        rate: u64,
        duration: Duration,
    ) -> anyhow::Result<()> {
        sluice_platform::db::migrate_with(
            db.options(&db.spec.owner_role, &db.spec.owner_password)?,
            vec![sluice_platform::store::migrator()],
        )
        .await?;
        let pool = sluice_platform::db::pool_with(
            db.options(&db.spec.app_role, &db.spec.app_password)?,
            4,
        )
        .await?;
        let result = scenarios_on(registry, &pool, broker, events, rate, duration).await;
        pool.close().await;
        result
    }

    async fn scenarios_on(
        registry: &Registry,
        pool: &PgPool,
        broker: &Broker,
        events: u64,
        rate: u64,
        duration: Duration,
    ) -> anyhow::Result<()> {
        let catalog = sluice_orders::SERVICE
            .catalog()
            .context("the orders schemas")?;
        let sample = order_placed(Uuid::now_v7());
        catalog
            .validate_latest("OrderPlaced", &sample)
            .context("the bench's OrderPlaced payload")?;
        let value = catalog.encode_single_object("OrderPlaced", 1, &sample)?;
        let fingerprint = catalog
            .fingerprint("OrderPlaced", 1)
            .context("OrderPlaced v1 fingerprint")?
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let shape = Shape {
            catalog: Arc::new(catalog),
            value,
            fingerprint,
        };

        let (relay_service, latency_service) = ("bench", "bench-latency");
        let names = &broker.topics;
        let raw_topic = names.physical("bench-raw.events");
        let relay_topic = names.physical(&format!("{relay_service}.events"));
        let latency_topic = names.physical(&format!("{latency_service}.events"));
        ensure_topics(
            &broker.bootstrap,
            &[
                (relay_topic.clone(), PARTITIONS),
                (raw_topic.clone(), PARTITIONS),
                (latency_topic.clone(), PARTITIONS),
            ],
        )
        .await
        .context("creating the bench topics")?;

        // An untimed warm-up first: a freshly started broker is still loading its
        // coordinators and compiling its hot paths, which would flatter the ratio.
        let warm_up = (events * 4).max(100_000);
        eprintln!("warm-up: {warm_up} records to {raw_topic}, untimed …");
        raw_producer(&broker.bootstrap, &raw_topic, &shape, warm_up)
            .await
            .context("warm-up")?;
        // The raw baseline runs before and after the relay: the broker slows a little
        // as its log grows, and the mean of the two brackets the relay's conditions.
        eprintln!("raw producer: {events} records to {raw_topic} …");
        let (raw_before, header_size) = raw_producer(&broker.bootstrap, &raw_topic, &shape, events)
            .await
            .context("raw producer phase")?;

        let store = EventStore::new(pool.clone());
        prefill(&store, events)
            .await
            .context("pre-filling the outbox")?;
        eprintln!("relay: publishing {events} outbox events to {relay_topic} …");
        let (relay_rate, relay_profile) = relay_throughput(
            pool,
            &broker.bootstrap,
            relay_service,
            names,
            &shape,
            events,
        )
        .await
        .context("relay phase")?;
        eprintln!("raw producer again: {events} records to {raw_topic} …");
        let (raw_after, _) = raw_producer(&broker.bootstrap, &raw_topic, &shape, events)
            .await
            .context("raw producer phase (after the relay)")?;
        let raw_rate = (raw_before + raw_after) / 2.0;

        eprintln!(
            "latency: {rate} appends/s for {} s, relay to {latency_topic} …",
            duration.as_secs()
        );
        let latency = latency(
            &store,
            &broker.bootstrap,
            latency_service,
            names,
            &shape,
            rate,
            duration,
        )
        .await
        .context("latency phase")?;

        println!(
            "{:<34} {:>8} {:>14} {:>14} {:>7}",
            "scenario", "events", "relay ev/s", "raw ev/s", "ratio"
        );
        println!(
            "{:<34} {events:>8} {relay_rate:>14.0} {raw_rate:>14.0} {:>6.0}%",
            "pre-filled outbox to broker",
            100.0 * relay_rate / raw_rate
        );
        println!(
            "record: key 36 bytes (a stream id), value {} bytes (OrderPlaced, 3 lines, Avro single-object), 12 text headers ({header_size} bytes)",
            shape.value.len()
        );
        println!(
            "relay: Relay::run (RelayConfig::default(), batch {}) from start until the {PARTITIONS} partitions' high watermarks sum to {events} (polled every 20 ms)",
            RelayConfig::default().batch_size
        );
        println!("raw:   one FutureProducer with the relay's producer_config, the same records, first enqueue to last acknowledgement;");
        println!("       mean of a run before the relay ({raw_before:.0}/s) and one after it ({raw_after:.0}/s)");
        println!("where the relay's time went, {relay_profile}");
        latency.print(rate, duration);
        Figure::new(
            "relay",
            format!("pre-filled outbox to broker, {events} events"),
            relay_rate,
            "events/s",
        )
        .raw(
            raw_rate,
            "raw FutureProducer, same records and producer settings",
        )
        .goal_ratio(0.9)
        .profile(relay_profile)
        .record();
        Figure::new(
            "relay",
            format!("append to consumer receipt at {rate}/s, p50"),
            latency.percentile(0.50),
            "ms",
        )
        .record();
        Figure::new(
            "relay",
            format!("append to consumer receipt at {rate}/s, p99"),
            latency.percentile(0.99),
            "ms",
        )
        .record();
        super::results::machine("broker", broker.description.trim_start_matches("broker: "));
        let same_clock = is_local(&registry.platform.admin_database_url);
        println!(
            "clock: recorded_at is PostgreSQL's clock_timestamp() at insert, receipt is this process's clock{}",
            if same_clock {
                "; PostgreSQL runs on this machine, so both read the same clock"
            } else {
                "; PostgreSQL runs elsewhere, so the figures include the clocks' skew"
            }
        );
        super::print_machine(pool, &broker.description).await;
        Ok(())
    }

    fn is_local(url: &str) -> bool {
        url.parse::<sqlx::postgres::PgConnectOptions>()
            .map(|o| {
                let host = o.get_host();
                host == "127.0.0.1" || host == "localhost" || host == "::1" || host.starts_with('/')
            })
            .unwrap_or(false)
    }

    /// Enqueues `record`, waiting while the producer queue is full.
    pub(super) async fn enqueue<'a>(
        producer: &FutureProducer,
        mut record: FutureRecord<'a, String, Vec<u8>>,
    ) -> anyhow::Result<DeliveryFuture> {
        loop {
            match producer.send_result(record) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Produces `events` records shaped like the relay's; returns records/s (first
    /// enqueue to last acknowledgement) and the headers' size.
    async fn raw_producer(
        bootstrap: &str,
        topic: &str,
        shape: &Shape,
        events: u64,
    ) -> anyhow::Result<(f64, usize)> {
        let producer: FutureProducer = producer_config(bootstrap).create()?;
        let mut header_size = 0;
        let mut key = String::new();
        let mut meta = Metadata::default();
        let mut deliveries = Vec::with_capacity(events as usize);
        let start = Instant::now();
        for i in 0..events {
            if i % PREFILL_APPEND == 0 {
                key = Uuid::now_v7().to_string();
                meta = metadata(ACTOR);
            }
            let headers = raw_headers(shape, i, &meta);
            header_size = header_bytes(&headers);
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&shape.value)
                .timestamp(Utc::now().timestamp_millis())
                .headers(headers);
            deliveries.push(enqueue(&producer, record).await?);
        }
        let mut failed = 0u64;
        let mut first_error = None;
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    failed += 1;
                    first_error.get_or_insert(e.to_string());
                }
                Err(_) => {
                    failed += 1;
                    first_error.get_or_insert("delivery canceled".to_owned());
                }
            }
        }
        let elapsed = start.elapsed();
        if failed > 0 {
            bail!(
                "{failed} of {events} records were not acknowledged (first: {})",
                first_error.unwrap_or_default()
            );
        }
        Ok((events as f64 / elapsed.as_secs_f64(), header_size))
    }

    /// Appends `events` OrderPlaced events in 100-event appends (one order stream
    /// each), untimed.
    async fn prefill(store: &EventStore, events: u64) -> anyhow::Result<()> {
        use std::io::IsTerminal;
        let progress = std::io::stderr().is_terminal();
        let mut done = 0;
        while done < events {
            let n = PREFILL_APPEND.min(events - done);
            let order_id = Uuid::now_v7();
            let stream = StreamId::from(order_id);
            let meta = metadata(ACTOR);
            let batch = (0..n)
                .map(|_| NewEvent {
                    event_type: "OrderPlaced".into(),
                    schema_version: 1,
                    payload: order_placed(order_id),
                })
                .collect();
            store
                .append(Append {
                    stream_id: &stream,
                    stream_type: "order",
                    expected: ExpectedVersion::Any,
                    events: batch,
                    metadata: &meta,
                    idempotency: None,
                })
                .await?;
            done += n;
            if progress && (done % 5_000 == 0 || done == events) {
                eprint!("\rpre-filling the outbox: {done}/{events} events");
            }
        }
        if progress {
            eprintln!();
        } else {
            eprintln!("pre-filled the outbox with {events} events");
        }
        Ok(())
    }

    /// A running relay's task.
    type RelayTask = tokio::task::JoinHandle<Result<(), sluice_platform::relay::RelayError>>;

    /// A relay of `service` publishing to `<service>.events` in the namespace `names`.
    fn start_relay(
        pool: &PgPool,
        bootstrap: &str,
        service: &str,
        names: &TopicNames,
        shape: &Shape,
    ) -> anyhow::Result<(CancellationToken, RelayTask, Arc<RelayTimings>)> {
        let relay = Relay::new(
            service,
            pool.clone(),
            bootstrap,
            shape.catalog.clone(),
            RelayConfig {
                topic_names: names.clone(),
                ..RelayConfig::default()
            },
        )?;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let timings = relay.timings();
        Ok((
            shutdown,
            tokio::spawn(async move { relay.run(token).await }),
            timings,
        ))
    }

    async fn stop_relay(
        shutdown: CancellationToken,
        handle: tokio::task::JoinHandle<Result<(), sluice_platform::relay::RelayError>>,
    ) -> anyhow::Result<()> {
        shutdown.cancel();
        handle.await?.context("the relay failed")
    }

    fn metadata_consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("log_level", "3")
            .create()?)
    }

    fn partitions(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let n = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len());
            if n > 0 {
                return Ok(n as i32);
            }
            if Instant::now() > deadline {
                bail!("topic {topic} has no partitions");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a relay over the pre-filled outbox; events/s from its start until the
    /// topic holds every event.
    async fn relay_throughput(
        pool: &PgPool,
        bootstrap: &str,
        service: &str,
        names: &TopicNames,
        shape: &Shape,
        events: u64,
    ) -> anyhow::Result<(f64, String)> {
        let topic = &names.physical(&format!("{service}.events"));
        let consumer = metadata_consumer(bootstrap)?;
        let parts = partitions(&consumer, topic)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (start, (shutdown, mut relay, timings)) = (
            Instant::now(),
            start_relay(pool, bootstrap, service, names, shape)?,
        );
        let topic_owned = topic.to_owned();
        let stop_poll = stop.clone();
        let mut watch = tokio::task::spawn_blocking(move || -> anyhow::Result<Instant> {
            loop {
                let mut sum = 0;
                for p in 0..parts {
                    sum += consumer
                        .fetch_watermarks(&topic_owned, p, Duration::from_secs(10))?
                        .1;
                }
                if sum >= events as i64 {
                    return Ok(Instant::now());
                }
                if stop_poll.load(Ordering::Relaxed) {
                    bail!("stopped at {sum} of {events} records");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let done = tokio::select! {
            done = &mut watch => done?,
            ended = &mut relay => {
                stop.store(true, Ordering::Relaxed);
                let _ = watch.await;
                match ended? {
                    Ok(()) => bail!("the relay stopped before publishing every event"),
                    Err(e) => return Err(anyhow::Error::new(e).context("the relay failed")),
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(600)) => {
                stop.store(true, Ordering::Relaxed);
                let _ = watch.await;
                Err(anyhow::anyhow!("the topic did not reach {events} records within 10 minutes"))
            }
        };
        let steps = timings.steps();
        stop_relay(shutdown, relay).await?;
        let done = done?;
        let wall = done - start;
        Ok((
            events as f64 / wall.as_secs_f64(),
            relay_profile(&steps, wall),
        ))
    }

    /// The relay's loop steps as shares of the timed run: where its time went.
    fn relay_profile(steps: &RelaySteps, wall: Duration) -> String {
        let share = |d: Duration| 100.0 * d.as_secs_f64() / wall.as_secs_f64();
        format!(
            "of the relay's {:.2} s: awaiting acknowledgements {:.0} % (reading the next batch meanwhile {:.0} %), \
             reading with nothing in flight {:.0} %, encoding and enqueueing {:.0} %, checkpoints {:.0} %, \
             backlog counts {:.0} %, idle {:.0} %",
            wall.as_secs_f64(),
            share(steps.await_acks),
            share(steps.overlapped_reads),
            share(steps.read),
            share(steps.encode_enqueue),
            share(steps.checkpoint),
            share(steps.backlog),
            share(steps.idle),
        )
    }

    struct Latency {
        appended: u64,
        achieved_rate: f64,
        /// Milliseconds from `recorded_at` to receipt, sorted.
        samples: Vec<f64>,
    }

    impl Latency {
        fn percentile(&self, p: f64) -> f64 {
            if self.samples.is_empty() {
                return f64::NAN;
            }
            let rank = (p * self.samples.len() as f64).ceil() as usize;
            self.samples[rank.clamp(1, self.samples.len()) - 1]
        }

        fn print(&self, rate: u64, duration: Duration) {
            println!(
                "latency: {} single-event appends over {} s ({:.0}/s achieved, {rate}/s asked), relay running; {} records received",
                self.appended,
                duration.as_secs(),
                self.achieved_rate,
                self.samples.len()
            );
            println!(
                "         append (recorded_at, at insert, just before commit) to consumer receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                self.percentile(0.50),
                self.percentile(0.99),
                self.samples.last().copied().unwrap_or(f64::NAN)
            );
        }
    }

    /// Consumes `topic` from its beginning until stopped; for each record the
    /// milliseconds from its `recorded_at` header to receipt. Sets `warm` when the
    /// warm-up record arrives (not measured).
    fn consume_latencies(
        bootstrap: &str,
        topic: &str,
        warm: &AtomicBool,
        appended: &AtomicU64,
        appender_done: &AtomicBool,
    ) -> anyhow::Result<Vec<f64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("sluice-bench-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .set("fetch.min.bytes", "1")
            .set("log_level", "3")
            .create()?;
        let parts = partitions(&consumer, topic)?;
        let mut assignment = TopicPartitionList::new();
        for p in 0..parts {
            assignment.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let mut samples = Vec::new();
        let mut drain_deadline = None;
        loop {
            if appender_done.load(Ordering::Acquire) {
                let deadline =
                    *drain_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
                if samples.len() as u64 >= appended.load(Ordering::Acquire)
                    || Instant::now() > deadline
                {
                    return Ok(samples);
                }
            }
            let Some(message) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            let received = Utc::now();
            let message = message?;
            let Some(headers) = message.headers() else {
                continue;
            };
            let header = |key: &str| {
                headers
                    .iter()
                    .find(|h| h.key == key)
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
            };
            if header("event_type") != Some("OrderConfirmed") {
                continue;
            }
            match header("actor") {
                Some(WARMUP_ACTOR) => warm.store(true, Ordering::Release),
                Some(ACTOR) => {
                    let recorded = header("recorded_at")
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .context("a record without a parsable recorded_at header")?;
                    let micros = (received - recorded.with_timezone(&Utc))
                        .num_microseconds()
                        .unwrap_or(i64::MAX);
                    samples.push(micros as f64 / 1000.0);
                }
                _ => {}
            }
        }
    }

    async fn confirm(store: &EventStore, actor: &str) -> anyhow::Result<()> {
        let order_id = Uuid::now_v7();
        store
            .append(Append {
                stream_id: &StreamId::from(order_id),
                stream_type: "order",
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_type: "OrderConfirmed".into(),
                    schema_version: 1,
                    payload: json!({ "order_id": order_id.to_string() }),
                }],
                metadata: &metadata(actor),
                idempotency: None,
            })
            .await?;
        Ok(())
    }

    /// Single-event appends at `rate` for `duration` with a relay running and a
    /// consumer on its topic.
    async fn latency(
        store: &EventStore,
        bootstrap: &str,
        service: &str,
        names: &TopicNames,
        shape: &Shape,
        rate: u64,
        duration: Duration,
    ) -> anyhow::Result<Latency> {
        let topic = &names.physical(&format!("{service}.events"));
        let warm = Arc::new(AtomicBool::new(false));
        let appended = Arc::new(AtomicU64::new(0));
        let appender_done = Arc::new(AtomicBool::new(false));
        let consumer = {
            let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
            let (warm, appended, appender_done) =
                (warm.clone(), appended.clone(), appender_done.clone());
            tokio::task::spawn_blocking(move || {
                consume_latencies(&bootstrap, &topic, &warm, &appended, &appender_done)
            })
        };
        let (shutdown, relay, _) = start_relay(store.pool(), bootstrap, service, names, shape)?;
        let appending = async {
            // One unmeasured event through relay, broker and consumer first.
            confirm(store, WARMUP_ACTOR).await?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !warm.load(Ordering::Acquire) {
                if Instant::now() > deadline || consumer.is_finished() || relay.is_finished() {
                    bail!("the warm-up event did not reach the consumer");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let start = Instant::now();
            while start.elapsed() < duration {
                ticks.tick().await;
                confirm(store, ACTOR).await?;
                appended.fetch_add(1, Ordering::Release);
            }
            Ok(start.elapsed())
        };
        let appending = appending.await;
        appender_done.store(true, Ordering::Release);
        let consumed = consumer.await;
        let stopped = stop_relay(shutdown, relay).await;
        let elapsed = appending?;
        let mut samples = consumed??;
        stopped?;
        samples.sort_by(f64::total_cmp);
        let appended = appended.load(Ordering::Acquire);
        if (samples.len() as u64) < appended {
            eprintln!(
                "warning: {} of {appended} appended events did not reach the consumer within 30 s",
                appended - samples.len() as u64
            );
        }
        Ok(Latency {
            appended,
            achieved_rate: appended as f64 / elapsed.as_secs_f64(),
            samples,
        })
    }
}
