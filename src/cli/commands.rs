//! The one-shot commands: generated-file and schema checks, `show`, `dlq`,
//! `projection rebuild`, `sql`, `health`.

use std::path::Path;

use anyhow::{bail, Context};
use sluice_platform::consumer::Replayed;
use sluice_platform::generate;
use sluice_platform::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::components::{self};

use super::args::*;
use super::up::cancel_on_signal;

/// A failure the command has already told the user about: `main` only sets the exit
/// status.
#[derive(Debug, thiserror::Error)]
#[error("already reported")]
pub(super) struct AlreadyReported;

pub(super) fn check_generated(registry: &Registry, root: &Path) -> anyhow::Result<()> {
    let mut drifted = Vec::new();
    for file in generate::all(registry) {
        let on_disk = std::fs::read_to_string(root.join(&file.path)).unwrap_or_default();
        if on_disk != file.content {
            drifted.push(file.path.display().to_string());
        }
    }
    if drifted.is_empty() {
        println!("generated files match the registry");
        Ok(())
    } else {
        bail!(
            "these files differ from what sluice.toml generates: {}; run `sluice registry generate`",
            drifted.join(", ")
        )
    }
}

/// `sluice schemas check`: the compatibility rule over the schemas this build embeds.
pub(super) fn check_schemas() -> anyhow::Result<()> {
    let mut breaches = Vec::new();
    for service in components::WRITE_SERVICES {
        let catalog = service.catalog()?;
        let found = sluice_platform::avro::check_compatibility(&catalog);
        for event_type in catalog.event_types() {
            let versions = catalog.versions(event_type);
            let (older, latest) = versions.split_at(versions.len().saturating_sub(1));
            let reads = if older.is_empty() {
                "(the only version)".to_owned()
            } else {
                let older: Vec<_> = older.iter().map(|v| format!("v{v}")).collect();
                format!("reads {}", older.join(", "))
            };
            let verdict = if found.iter().any(|i| i.event_type() == event_type) {
                "INCOMPATIBLE"
            } else {
                "ok"
            };
            println!(
                "{:<10} {:<20} v{} {reads}: {verdict}",
                service.name,
                event_type,
                latest.first().copied().unwrap_or_default()
            );
        }
        breaches.extend(found.iter().map(|i| format!("{}: {i}", service.name)));
    }
    if breaches.is_empty() {
        println!("every schema reads all its older versions");
        Ok(())
    } else {
        bail!(
            "schemas are not backward compatible:\n  {}",
            breaches.join("\n  ")
        )
    }
}

pub(super) fn show(registry: &Registry) {
    println!(
        "{:<18} {:<11} {:<9} {:>5}  {:<26} topics",
        "component", "kind", "layer", "port", "database"
    );
    for c in registry.components() {
        let db = c.database.as_ref().map_or("-", |d| d.name.as_str());
        let kind = format!("{:?}", c.kind).to_lowercase();
        let runnable = if components::runnable(c).is_some() {
            ""
        } else {
            " (not in this build)"
        };
        println!(
            "{:<18} {:<11} {:<9} {:>5}  {:<26} produces [{}] consumes [{}]{runnable}",
            c.name,
            kind,
            c.layer.as_str(),
            c.port,
            db,
            c.produces.join(", "),
            c.consumes.join(", ")
        );
    }
}

/// The handler a component's consumer applies events with, and its pool.
pub(super) async fn consumer_of(
    registry: &Registry,
    name: &str,
) -> anyhow::Result<(
    sqlx::PgPool,
    Box<dyn sluice_platform::consumer::EventHandler>,
)> {
    let component = registry.component(name)?;
    let pool =
        sluice_platform::db::app_pool(registry, component, sluice_platform::db::PoolUse::Tool)
            .await?;
    if let Some(projection) = components::projection(name) {
        return Ok((pool, (projection.handler)()));
    }
    match components::write_service(name) {
        Some(service) => match service.reactor {
            Some(reactor) => {
                let context = sluice_platform::service::ServiceContext {
                    store: sluice_platform::store::EventStore::new(pool.clone()),
                    schemas: service.catalog()?,
                    component: component.clone(),
                };
                let handler = reactor(&context)?;
                Ok((pool, handler))
            }
            None => bail!("`{name}` consumes nothing: it has no dead letters"),
        },
        None => bail!("`{name}` is not a consumer of this build (projections and write services with a reactor are)"),
    }
}

pub(super) async fn dlq(registry: &Registry, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { component, all } => {
            let (pool, _) = consumer_of(registry, &component).await?;
            let letters = sluice_platform::consumer::dead_letters(&pool, all).await?;
            if letters.is_empty() {
                println!("no dead letters in {component}");
            }
            for l in letters {
                println!(
                    "#{:<5} {}[{}]@{} stream {} {} attempts {} last failed {}{}\n       {}",
                    l.id,
                    l.topic,
                    l.partition,
                    l.offset,
                    l.stream_id,
                    l.event_type.as_deref().unwrap_or("(undecodable)"),
                    l.attempts,
                    l.last_failed_at.to_rfc3339(),
                    l.replayed_at
                        .map(|t| format!(", replayed {}", t.to_rfc3339()))
                        .unwrap_or_default(),
                    l.error
                );
            }
            Ok(())
        }
        DlqCommand::Replay { component, ids } => {
            let (pool, handler) = consumer_of(registry, &component).await?;
            let catalog = components::all_schemas()?;
            let ids = (!ids.is_empty()).then_some(ids);
            let report = sluice_platform::consumer::replay_dead_letters(
                &pool,
                &catalog,
                &handler,
                ids.as_deref(),
            )
            .await?;
            let mut failed = 0;
            for outcome in &report {
                match outcome {
                    Replayed::Applied(id) => println!("#{id} applied"),
                    Replayed::AlreadyApplied(id) => {
                        println!("#{id} already applied; marked replayed")
                    }
                    Replayed::Failed(id, error) => {
                        failed += 1;
                        println!("#{id} failed again: {error}");
                    }
                }
            }
            println!("{} replayed, {failed} still failing", report.len() - failed);
            if failed > 0 {
                bail!("{failed} dead letters still fail");
            }
            Ok(())
        }
    }
}

/// `sluice projection rebuild <name>`, with progress about once a second.
pub(super) async fn rebuild(registry: &Registry, name: &str) -> anyhow::Result<()> {
    registry.component(name)?;
    let Some(projection) = components::projection(name) else {
        bail!("`{name}` is not a projection of this build");
    };
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut last = std::time::Instant::now();
    let rebuilt = projection
        .rebuild(
            registry,
            &registry.platform.kafka_brokers,
            components::all_schemas()?,
            shutdown,
            |p| {
                if last.elapsed().as_secs() >= 1 || p.remaining == 0 {
                    last = std::time::Instant::now();
                    let rate = p.applied as f64 / p.started.elapsed().as_secs_f64().max(1e-3);
                    eprintln!(
                        "{name}: replayed {} events, {} to go ({rate:.0} events/s)",
                        p.applied, p.remaining
                    );
                }
            },
        )
        .await?;
    println!(
        "{name} rebuilt from {} events in {:.1} s and swapped in",
        rebuilt.replayed,
        rebuilt.elapsed.as_secs_f64()
    );
    if let Some(schema) = rebuilt.left_behind {
        println!("the old generation ({schema}) was still in use; the next rebuild drops it");
    }
    Ok(())
}

/// `sluice sql`: connects to the analyst endpoint with the registry's defaults.
pub(super) async fn sql(
    registry: &Registry,
    command: Option<String>,
    user: Option<String>,
    password: Option<String>,
    host: String,
    port: Option<u16>,
) -> anyhow::Result<()> {
    let analytics = registry.analytics.as_ref();
    let Some(user) = user.or_else(|| analytics.and_then(|a| a.analysts.keys().next().cloned()))
    else {
        bail!("no analyst to connect as: pass --user or add one under [analytics.analysts]");
    };
    let Some(password) = password else {
        bail!("no password for analyst `{user}`: set PGPASSWORD or pass --password (the registry keeps only its SCRAM verifier)");
    };
    let Some(port) = port.or(analytics.map(|a| a.sql_port)) else {
        bail!("no port: pass --port or set [analytics].sql_port");
    };
    let options = sluice_analytics::shell::ConnectOptions {
        host,
        port,
        user,
        password,
        database: "warehouse".to_owned(),
    };
    match sluice_analytics::shell::run(&options, command).await {
        Ok(()) => Ok(()),
        // Already printed with its SQLSTATE; only the exit status is left to set.
        Err(sluice_analytics::shell::ShellError::Query { .. }) => Err(AlreadyReported.into()),
        Err(e) => Err(e.into()),
    }
}

/// `sluice health`: a component's `/health/ready` on this host, or for a relay or
/// reactor its database (as its app role) and its topics on `KAFKA_BROKERS`.
pub(super) async fn health(
    registry: &Registry,
    name: &str,
    service: Option<&str>,
) -> anyhow::Result<()> {
    let (component, topics) = match (name, service) {
        (kind @ ("relay" | "reactor"), Some(service)) => {
            let c = registry.component(service)?;
            (
                c,
                if kind == "relay" {
                    &c.produces
                } else {
                    &c.consumes
                },
            )
        }
        (kind @ ("relay" | "reactor"), None) => {
            bail!("name the write service: `sluice health {kind} orders`")
        }
        (_, Some(extra)) => bail!("unexpected argument `{extra}`"),
        (name, None) => {
            let port = registry.component(name)?.port;
            let host = match sluice_platform::service::listen_host().as_str() {
                "0.0.0.0" | "::" => "127.0.0.1".to_owned(),
                h if h.contains(':') => format!("[{h}]"),
                h => h.to_owned(),
            };
            let url = format!("http://{host}:{port}/health/ready");
            let response = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?
                .get(&url)
                .send()
                .await
                .with_context(|| format!("{url} does not answer"))?;
            let status = response.status();
            if !status.is_success() {
                bail!(
                    "{url}: {status} {}",
                    response.text().await.unwrap_or_default()
                );
            }
            return Ok(());
        }
    };
    let pool =
        sluice_platform::db::app_pool(registry, component, sluice_platform::db::PoolUse::Tool)
            .await?;
    sqlx::query("SELECT 1").execute(&pool).await?;
    let names = registry.topic_names();
    let (bootstrap, topics): (String, Vec<String>) = (
        registry.platform.kafka_brokers.clone(),
        topics.iter().map(|t| names.physical(t)).collect(),
    );
    let missing = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        use rdkafka::consumer::BaseConsumer;
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "3")
            .create()?;
        let mut missing = Vec::new();
        for topic in topics {
            let timeout = std::time::Duration::from_secs(5);
            if sluice_platform::broker::topic_partitions(&consumer, &topic, timeout)?.is_empty() {
                missing.push(topic);
            }
        }
        Ok(missing)
    })
    .await??;
    if !missing.is_empty() {
        bail!("not on the brokers yet: {}", missing.join(", "));
    }
    Ok(())
}
