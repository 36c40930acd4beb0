//! `sluice bench`: throughput measurements printed beside the same machine's raw
//! limit, measured in the same run. Nothing here asserts a target: the figures are
//! for people to read (and to paste into reports with the machine they ran on).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use sluice_platform::provision::{drop_component, Plan};
use sluice_platform::registry::{Component, ComponentKind, DatabaseSpec, Registry};
use sluice_platform::store::{
    Append, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId, StreamVersion,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use std::str::FromStr;

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
}

pub async fn run(command: BenchCommand, registry_path: &Path) -> anyhow::Result<()> {
    match command {
        BenchCommand::Append { seconds, clients } => {
            let registry = Registry::load(registry_path)?.with_env_overrides();
            append(&registry, Duration::from_secs(seconds), clients).await
        }
    }
}

/// A throwaway database provisioned like a write service's, dropped afterwards.
struct BenchDatabase {
    admin_url: String,
    spec: DatabaseSpec,
}

impl BenchDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("sluice_bench_{}", std::process::id());
        let spec = DatabaseSpec {
            owner_role: format!("{name}_owner"),
            app_role: format!("{name}_app"),
            owner_password: "bench-owner".into(),
            app_password: "bench-app".into(),
            name,
        };
        let component = Component {
            name: "bench".into(),
            kind: ComponentKind::Service,
            port: 0,
            database: Some(spec.clone()),
            produces: vec![],
            consumes: vec![],
            depends_on: vec![],
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
/// wrote. Returns events per second.
async fn measure<F, Fut>(clients: usize, duration: Duration, op: F) -> anyhow::Result<f64>
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
    Ok(total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
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
    let db = BenchDatabase::create(&registry.platform.admin_database_url)
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
    print_machine(&pool).await;
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
    for (scenario, (label, n, c)) in scenarios.into_iter().enumerate() {
        let raw_pool = pool.clone();
        let raw = measure(c, duration, move |client, i| {
            let pool = raw_pool.clone();
            async move { raw_insert(&pool, client, i, n).await }
        })
        .await?;
        let store = store.clone();
        let sluice = measure(c, duration, move |client, i| {
            let store = store.clone();
            async move { store_append(&store, scenario, client, i, n).await }
        })
        .await?;
        println!(
            "{label:<34} {c:>8} {sluice:>14.0} {raw:>14.0} {:>6.0}%",
            100.0 * sluice / raw
        );
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

async fn print_machine(pool: &PgPool) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
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
    println!("machine: {cpu}, {cores} cores; PostgreSQL {version} (synchronous_commit={sync}, fsync={fsync}), same server for both columns");
}
