//! `sluice bench append`: event store appends against plain INSERT transactions of
//! the same rows on the same server, with where the server's backends spent the
//! runs.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sluice_platform::provision::drop_component;
use sluice_platform::registry::{ComponentKind, Registry};
use sluice_platform::store::{EventStore, ExpectedVersion, Metadata, StreamId, StreamVersion};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{append_v1, measure, print_machine, BenchDatabase, Figure};

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

pub(super) async fn store_append(
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
    let events = (0..n as u64).map(|k| ("BenchEvent", payload(i * 1000 + k)));
    append_v1(
        store,
        &stream,
        "bench",
        expected,
        events,
        &Metadata::default(),
    )
    .await?;
    Ok(n as u64)
}

pub(super) async fn run(
    registry: &Registry,
    duration: Duration,
    clients: usize,
) -> anyhow::Result<()> {
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
    db.migrate(vec![sluice_platform::store::migrator()]).await?;
    let owner = sluice_platform::db::pool_with(db.owner_options()?, 1).await?;
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
    let pool = db.app_pool(clients as u32 + 2).await?;
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
