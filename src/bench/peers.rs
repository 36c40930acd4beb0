//! `sluice bench peers`: other projects doing the same work on the same machine,
//! beside Sluice in the same run (see `bench/peers/README.md`):
//!
//! - Python `eventsourcing` and `postgres-es` (cqrs-es) saving one-event
//!   aggregates, against `EventStore::append` of one-event streams, each at 1 and 16
//!   concurrent clients, each in a fresh database of the same PostgreSQL;
//! - `dlt` loading events into DuckDB, against the sink's `Loader::load` of the
//!   same events.
//!
//! The peers are installed by `bench/peers/install.sh` (run first; it does nothing
//! when they are installed already), never vendored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use sluice_platform::provision::drop_component;
use sluice_platform::registry::{ComponentKind, Registry};
use sluice_platform::store::EventStore;

use super::append::store_append;
use super::{measure, results::Figure, BenchDatabase};

/// Client counts of the append comparisons.
const CLIENTS: [usize; 2] = [1, 16];
/// Events of the dlt comparison.
const DLT_EVENTS: u64 = 100_000;

pub async fn run(registry: &Registry, duration: Duration) -> anyhow::Result<()> {
    let peers = install()?;
    let admin = &registry.platform.admin_database_url;
    let mut outcome = Ok(());
    // Sluice's appends in a store database of their own; each peer in an empty one
    // where it creates its own tables.
    let sluice = BenchDatabase::create(admin, "_peer_sluice", ComponentKind::Service)
        .await
        .context("creating the Sluice database")?;
    for (peer, suffix) in [("eventsourcing", "_peer_es"), ("postgres-es", "_peer_cqrs")] {
        let db = match BenchDatabase::create(admin, suffix, ComponentKind::Service).await {
            Ok(db) => db,
            Err(e) => {
                outcome = Err(e.context(format!("creating the {peer} database")));
                continue;
            }
        };
        let result = appends(&peers, peer, &db, &sluice, duration).await;
        drop_component(admin, &db.spec)
            .await
            .context("dropping a benchmark database")?;
        if let Err(e) = result {
            eprintln!("error: peer {peer}: {e:#}");
            outcome = Err(e);
        }
    }
    drop_component(admin, &sluice.spec)
        .await
        .context("dropping a benchmark database")?;
    if let Err(e) = dlt(&peers) {
        eprintln!("error: peer dlt: {e:#}");
        outcome = Err(e);
    }
    outcome
}

/// Where install.sh put the peers.
struct Peers {
    python: PathBuf,
    postgres_es: PathBuf,
    dir: PathBuf,
}

fn install() -> anyhow::Result<Peers> {
    let dir = PathBuf::from("bench/peers");
    let script = dir.join("install.sh");
    if !script.exists() {
        bail!(
            "{} not found: run `sluice bench peers` from the repository's root",
            script.display()
        );
    }
    eprintln!("installing the peers (bench/peers/install.sh; nothing to do when installed) …");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .context("running bench/peers/install.sh")?;
    if !status.success() {
        bail!("bench/peers/install.sh failed ({status})");
    }
    let cache = std::env::var_os("SLUICE_CACHE")
        .map_or_else(|| home().join(".cache/sluice"), PathBuf::from);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| home().join(".cache/sluice-target"), PathBuf::from);
    Ok(Peers {
        python: cache.join("peers/venv/bin/python"),
        postgres_es: target.join("release/postgres-es-append"),
        dir,
    })
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// Runs a peer and parses the one JSON line it prints.
fn run_peer(program: &Path, args: &[String]) -> anyhow::Result<Value> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            program.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{} printed no JSON line", program.display()))?;
    Ok(serde_json::from_str(line)?)
}

fn number(report: &Value, key: &str) -> anyhow::Result<f64> {
    report[key]
        .as_f64()
        .with_context(|| format!("the peer's report has no `{key}`: {report}"))
}

/// One peer's appends (in `db`) beside Sluice's (in `sluice`), at each client
/// count.
async fn appends(
    peers: &Peers,
    peer: &str,
    db: &BenchDatabase,
    sluice: &BenchDatabase,
    duration: Duration,
) -> anyhow::Result<()> {
    let options = db.owner_options()?;
    let dsn = format!(
        "postgresql://{}:{}@{}:{}/{}",
        db.spec.owner_role,
        db.spec.owner_password,
        options.get_host(),
        options.get_port(),
        db.spec.name
    );
    sluice
        .migrate(vec![sluice_platform::store::migrator()])
        .await?;
    let most_clients = CLIENTS.iter().max().copied().unwrap_or(1);
    let pool = sluice.app_pool(most_clients as u32 + 2).await?;
    let store = EventStore::new(pool.clone());
    for (scenario, clients) in CLIENTS.into_iter().enumerate() {
        let seconds = duration.as_secs().max(1).to_string();
        let report = match peer {
            "eventsourcing" => run_peer(
                &peers.python,
                &[
                    peers
                        .dir
                        .join("eventsourcing_append.py")
                        .display()
                        .to_string(),
                    "--dsn".into(),
                    dsn.clone(),
                    "--threads".into(),
                    clients.to_string(),
                    "--seconds".into(),
                    seconds,
                ],
            )?,
            _ => run_peer(
                &peers.postgres_es,
                &[
                    "--dsn".into(),
                    dsn.clone(),
                    "--clients".into(),
                    clients.to_string(),
                    "--seconds".into(),
                    seconds,
                ],
            )?,
        };
        let theirs = number(&report, "events_per_second")?;
        let version = report["version"].as_str().unwrap_or("?").to_owned();
        let store = store.clone();
        // Streams of their own per peer and client count (`bench-<n>-<client>`).
        let streams = if peer == "eventsourcing" { 20 } else { 30 } + scenario;
        let (ours, _) = measure(clients, duration, move |client, i| {
            let store = store.clone();
            async move { store_append(&store, streams, client, i, 1).await }
        })
        .await?;
        println!(
            "{:<44} {clients:>3} clients: Sluice {ours:>8.0} ev/s, {peer} {version} {theirs:>8.0} ev/s ({:.1}×)",
            "one-event appends",
            ours / theirs
        );
        Figure::new(
            "peers",
            format!("one-event appends, {clients} clients, against {peer} {version}"),
            ours,
            "events/s",
        )
        .raw(theirs, format!("{peer} {version}"))
        .goal_ahead()
        .record();
    }
    pool.close().await;
    Ok(())
}

/// dlt loading the same events into DuckDB as the sink's write path.
fn dlt(peers: &Peers) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("sluice-bench-dlt-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = (|| {
        let jsonl = scratch.join("events.jsonl");
        eprintln!(
            "dlt: {DLT_EVENTS} events through Loader::load, then dlt (parquet loader files) …"
        );
        let ours = super::sink::loader_beside_dlt(&scratch, DLT_EVENTS, &jsonl)?;
        let report = run_peer(
            &peers.python,
            &[
                peers.dir.join("dlt_load.py").display().to_string(),
                "--input".into(),
                jsonl.display().to_string(),
                "--duckdb".into(),
                scratch.join("dlt.duckdb").display().to_string(),
                "--loader-file-format".into(),
                "parquet".into(),
            ],
        )?;
        let theirs = number(&report, "rows_per_second")?;
        let version = report["version"].as_str().unwrap_or("?").to_owned();
        println!(
            "{:<44} Sluice {ours:>8.0} ev/s, dlt {version} {theirs:>8.0} rows/s ({:.1}×)",
            format!("{DLT_EVENTS} events into DuckDB"),
            ours / theirs
        );
        Figure::new(
            "peers",
            format!("{DLT_EVENTS} events into DuckDB (Loader::load) against dlt {version}"),
            ours,
            "events/s",
        )
        .raw(theirs, format!("dlt {version}, parquet loader files"))
        .goal_ahead()
        .record();
        anyhow::Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
