//! `sluice bench`: throughput measurements printed beside the same machine's raw
//! limit, measured in the same run. Nothing here asserts a target: the figures are
//! for people to read (and to paste into reports with the machine they ran on).

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use sluice_analytics::sink::SinkConfig;
use sluice_platform::provision::Plan;
use sluice_platform::registry::{Component, ComponentKind, DatabaseSpec, Registry};
use sluice_platform::store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

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
            append::run(&registry, Duration::from_secs(seconds), clients).await
        }
        BenchCommand::Relay {
            events,
            rate,
            seconds,
        } => relay::run(&registry, Phases::new(events, rate, seconds)).await,
        BenchCommand::Projection {
            events,
            rate,
            seconds,
        } => projection::run(&registry, Phases::new(events, rate, seconds)).await,
        BenchCommand::Sink {
            events,
            write_events,
            orders,
            batch,
        } => sink::run(&registry, events, write_events, orders, batch).await,
        BenchCommand::E2e { rates, seconds } => {
            e2e::run(&registry, &rates, Duration::from_secs(seconds)).await
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
    stage(
        "append",
        append::run(registry, Duration::from_secs(5), 16).await,
    );
    eprintln!("== bench relay");
    stage(
        "relay",
        relay::run(registry, Phases::new(50_000, 500, 10)).await,
    );
    eprintln!("== bench projection");
    stage(
        "projection",
        projection::run(registry, Phases::new(100_000, 500, 10)).await,
    );
    eprintln!("== bench e2e");
    stage(
        "e2e",
        e2e::run(registry, &E2E_RATES, Duration::from_secs(10)).await,
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

/// The two phases of `bench relay` and `bench projection`: a backlog of `events`
/// worked off as fast as it goes, then a steady `rate` per second for `duration`
/// (the latency phase).
#[derive(Debug, Clone, Copy)]
struct Phases {
    events: u64,
    rate: u64,
    duration: Duration,
}

impl Phases {
    /// From the commands' arguments (`--events`, `--rate`, `--seconds`).
    fn new(events: u64, rate: u64, seconds: u64) -> Self {
        Phases {
            events,
            rate,
            duration: Duration::from_secs(seconds),
        }
    }
}

mod append;
mod broker;
mod e2e;
mod peers;
mod pipeline;
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

    /// Connection options of the owner role (migrations, DDL).
    fn owner_options(&self) -> anyhow::Result<PgConnectOptions> {
        self.options(&self.spec.owner_role, &self.spec.owner_password)
    }

    /// Runs `migrators` in order as the owner role, as `sluice run` migrates a
    /// component's database.
    async fn migrate(&self, migrators: Vec<sqlx::migrate::Migrator>) -> anyhow::Result<()> {
        sluice_platform::db::migrate_with(self.owner_options()?, migrators).await?;
        Ok(())
    }

    /// A pool of at most `size` connections as the app role, as the component
    /// under test connects.
    async fn app_pool(&self, size: u32) -> anyhow::Result<PgPool> {
        let options = self.options(&self.spec.app_role, &self.spec.app_password)?;
        Ok(sluice_platform::db::pool_with(options, size).await?)
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

/// Appends `events` (`(event_type, payload)`, each of schema version 1) to
/// `stream` in one append without an idempotency key: how every bench writes to
/// the store.
async fn append_v1(
    store: &EventStore,
    stream: &StreamId,
    stream_type: &str,
    expected: ExpectedVersion,
    events: impl IntoIterator<Item = (&str, serde_json::Value)>,
    metadata: &Metadata,
) -> anyhow::Result<()> {
    let events = events
        .into_iter()
        .map(|(event_type, payload)| NewEvent {
            event_type: event_type.to_owned(),
            schema_version: 1,
            payload,
        })
        .collect();
    store
        .append(Append {
            stream_id: stream,
            stream_type,
            expected,
            events,
            metadata,
            idempotency: None,
        })
        .await?;
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
