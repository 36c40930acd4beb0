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
mod relay;
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
            // A constant template: it parses, or no benchmark would show progress.
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg:>24} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
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
