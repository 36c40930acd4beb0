//! `sluice up` and `sluice run`: the platform, or one component of it, in this
//! process under the supervisor, with its broker.

use anyhow::{bail, Context};
use sluice_platform::broker::{ensure_topics, BrokerKind, LocalBroker};
use sluice_platform::provision;
use sluice_platform::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::components::{self, Runnable};
use crate::supervisor::{Backoff, Supervisor};

/// Cancels `token` on Ctrl-C or SIGTERM.
pub(super) fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}

pub(super) async fn run_one(
    registry: &Registry,
    name: &str,
    service: Option<&str>,
) -> anyhow::Result<()> {
    let runnable = match (name, service) {
        (kind @ ("relay" | "reactor"), Some(service)) => {
            registry.component(service)?;
            let Some(s) = components::write_service(service) else {
                bail!("`{service}` is not a write service of this build: only write services have a {kind}");
            };
            if kind == "relay" {
                Runnable::Relay(s)
            } else if s.reactor.is_some() {
                Runnable::Reactor(s)
            } else {
                bail!("`{service}` reacts to no other service's events: it has no reactor");
            }
        }
        (kind @ ("relay" | "reactor"), None) => {
            bail!("name the write service: `sluice run {kind} orders`")
        }
        (_, Some(extra)) => bail!(
            "unexpected argument `{extra}`: only `sluice run relay|reactor <service>` takes two"
        ),
        (name, None) => {
            let component = registry.component(name)?;
            components::runnable(component).ok_or_else(|| {
                anyhow::anyhow!("component `{name}` is in the registry but this build has no implementation for it yet")
            })?
        }
    };
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let bootstrap = registry.platform.kafka_brokers.clone();
    // A consumer checks the topics it reads against the registry (creating those no
    // relay has created yet); a relay prepares its own in `run_relay`.
    let reads = match &runnable {
        Runnable::Reactor(s) => registry.component(s.name)?.consumes.clone(),
        Runnable::Projection(p) => registry.component(p.name)?.consumes.clone(),
        _ => Vec::new(),
    };
    let specs: Vec<_> = reads
        .iter()
        .filter_map(|t| registry.topic_spec(t))
        .collect();
    ensure_topics(&bootstrap, specs)
        .await
        .context("preparing the topics it reads")?;
    run_component(registry, runnable, &bootstrap, shutdown).await
}

pub(super) async fn run_component(
    registry: &Registry,
    runnable: Runnable,
    bootstrap: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let name = runnable.name();
    let result: anyhow::Result<()> = match runnable {
        Runnable::Service(service) => Ok(service.run(registry, shutdown).await?),
        Runnable::Relay(service) => Ok(service.run_relay(registry, bootstrap, shutdown).await?),
        Runnable::Reactor(service) => Ok(service
            .run_reactor(registry, bootstrap, components::all_schemas()?, shutdown)
            .await?),
        Runnable::Projection(projection) => Ok(projection
            .run(registry, bootstrap, components::all_schemas()?, shutdown)
            .await?),
        Runnable::Analytics(component) => {
            let analytics = sluice_analytics::component::Analytics::new(registry, &component)?;
            Ok(analytics
                .run(bootstrap, shutdown, |started| {
                    tracing::info!(warehouse = %started.warehouse.display(), sql = %started.sql, "analytics ready");
                })
                .await?)
        }
    };
    result.with_context(|| format!("`{name}`"))
}

/// The broker `sluice up` uses: `KAFKA_BROKERS` when set, else a local broker of
/// `kind` on the registry's broker port with its data under the data directory
/// (`broker/` for tansu, `kafka/` for Apache Kafka).
pub(super) async fn kafka_for_up(
    registry: &Registry,
    kind: BrokerKind,
) -> anyhow::Result<(String, Option<LocalBroker>)> {
    if std::env::var_os("KAFKA_BROKERS").is_some() {
        let brokers = registry.platform.kafka_brokers.clone();
        tracing::info!(%brokers, "using the external Kafka brokers of KAFKA_BROKERS");
        return Ok((brokers, None));
    }
    let port = crate::preflight::local_broker_port(registry).with_context(|| {
        format!(
            "kafka_brokers `{}` in the registry must be host:port",
            registry.platform.kafka_brokers
        )
    })?;
    let data_dir = registry.platform.data_dir.join(match kind {
        BrokerKind::Tansu => "broker",
        BrokerKind::Kafka => "kafka",
    });
    let broker = LocalBroker::start(kind, &data_dir, port)
        .await
        .with_context(|| {
            format!("starting the local broker ({kind}; set KAFKA_BROKERS to use an external Kafka instead)")
        })?;
    let bootstrap = broker.bootstrap_servers();
    tracing::info!(%bootstrap, data = %data_dir.display(), broker = %kind, "local broker ready");
    Ok((bootstrap, Some(broker)))
}

/// Warns when the components' pools could take more connections than the
/// PostgreSQL server has free for them: past that, under load, a component's new
/// connection (and `sluice status`, `psql`) is refused.
pub(super) async fn connection_budget(registry: &Registry) {
    let at_most = components::connections_at_most(registry);
    let admin = &registry.platform.admin_database_url;
    let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(admin).await else {
        return;
    };
    let free: Result<(i64,), _> = sqlx::query_as(
        "SELECT current_setting('max_connections')::int \
              - current_setting('superuser_reserved_connections')::int \
              - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = sqlx::Connection::close(conn).await;
    if let Ok((free,)) = free {
        if i64::from(at_most) > free {
            tracing::warn!(
                "the components' database pools can take {at_most} connections and PostgreSQL has {free} free: \
                 raise its max_connections, or set <NAME>_DATABASE_POOL_SIZE lower for some components"
            );
        }
    }
}

pub(super) async fn up(
    registry: &Registry,
    no_setup: bool,
    broker: BrokerKind,
) -> anyhow::Result<()> {
    let local_broker = std::env::var_os("KAFKA_BROKERS").is_none();
    crate::preflight::check(registry, local_broker)?;
    if !no_setup {
        let done = provision::setup(registry)
            .await
            .context("provisioning databases (set SLUICE_ADMIN_DATABASE_URL to a superuser URL, or pass --no-setup)")?;
        tracing::info!(databases = done.len(), "databases and roles ready");
    }
    connection_budget(registry).await;
    let (runnable, missing) = components::partition(registry);
    if !missing.is_empty() {
        tracing::warn!(
            components = %missing.join(", "),
            "registered components without an implementation in this build are not started"
        );
    }
    let (bootstrap, mut local) = kafka_for_up(registry, broker).await?;
    // Created as the registry says, or checked against it when they exist.
    ensure_topics(&bootstrap, registry.topic_specs())
        .await
        .context("preparing the registry's topics")?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut supervisor = Supervisor::new(shutdown.clone(), Backoff::default());
    let mut spawn = |component: &str, part: &'static str, r: Runnable| {
        let (registry, bootstrap) = (registry.clone(), bootstrap.clone());
        supervisor.spawn(component, part, move |token| {
            let (registry, bootstrap, r) = (registry.clone(), bootstrap.clone(), r.clone());
            async move { run_component(&registry, r, &bootstrap, token).await }
        });
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()?;
    // In the order of `depends_on`: a wave starts once the one before answers ready
    // (or after a bounded wait: a dependency that keeps failing is restarted by the
    // supervisor and must not keep the rest of the platform from starting).
    for wave in crate::supervisor::start_waves(registry) {
        let mut started = Vec::new();
        for name in &wave {
            let Some((component, r)) = runnable.iter().find(|(c, _)| &c.name == name) else {
                continue;
            };
            match r {
                Runnable::Service(service) => {
                    spawn(name, "api", r.clone());
                    spawn(name, "relay", Runnable::Relay(*service));
                    if service.reactor.is_some() {
                        spawn(name, "reactor", Runnable::Reactor(*service));
                    }
                }
                Runnable::Projection(_) => spawn(name, "projection", r.clone()),
                Runnable::Analytics(_) => spawn(name, "sink", r.clone()),
                Runnable::Relay(_) | Runnable::Reactor(_) => {}
            }
            started.push(*component);
        }
        tokio::select! {
            _ = wait_ready(&client, &started, std::time::Duration::from_secs(120)) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    if !shutdown.is_cancelled() {
        let kind = local.as_ref().map(|_| match broker {
            BrokerKind::Tansu => "tansu",
            BrokerKind::Kafka => "Apache Kafka",
        });
        print!("{}", ready_table(registry, &runnable, &bootstrap, kind));
    }
    supervisor.wait().await;
    if let Some(broker) = local.as_mut() {
        broker.shutdown().await;
    }
    Ok(())
}

/// Polls each component's `/health/ready` until all answer 200 or `limit` passes;
/// logs the ones that did not.
pub(super) async fn wait_ready(
    client: &reqwest::Client,
    components: &[&sluice_platform::registry::Component],
    limit: std::time::Duration,
) {
    let deadline = std::time::Instant::now() + limit;
    let mut waiting: Vec<_> = components.to_vec();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for c in waiting {
            let url = format!("http://127.0.0.1:{}/health/ready", c.port);
            let ready = matches!(client.get(&url).send().await, Ok(r) if r.status().is_success());
            if !ready {
                still.push(c);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let names: Vec<_> = waiting.iter().map(|c| c.name.as_str()).collect();
            tracing::warn!(
                components = %names.join(", "),
                "not ready yet; starting what depends on them anyway (`sluice status` shows why)"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// What `sluice up` prints once everything answers: addresses, the analyst's psql
/// line, the broker, the data directory, and a first command to paste.
pub(super) fn ready_table(
    registry: &Registry,
    runnable: &[(&sluice_platform::registry::Component, Runnable)],
    bootstrap: &str,
    broker: Option<&str>,
) -> String {
    use std::fmt::Write;
    let mut out = String::from("\nSluice is up. Ctrl-C stops it.\n\n");
    let mut runnable: Vec<_> = runnable.iter().collect();
    runnable.sort_by_key(|(c, _)| (crate::status::kind_order(c.kind), c.name.clone()));
    for (component, r) in runnable {
        let what = match r {
            Runnable::Service(_) => "write service",
            Runnable::Projection(_) => "read model",
            Runnable::Analytics(_) => "health and metrics",
            Runnable::Relay(_) | Runnable::Reactor(_) => continue,
        };
        let _ = writeln!(
            out,
            "  {:<18} http://127.0.0.1:{:<6} {what}",
            component.name, component.port
        );
        if let Runnable::Analytics(name) = r {
            if let Ok(analytics) = sluice_analytics::component::Analytics::new(registry, name) {
                let _ = writeln!(out, "  {:<18} {}", "warehouse (SQL)", analytics.psql_hint());
            }
        }
    }
    let broker = broker.map_or_else(|| "external, KAFKA_BROKERS".to_owned(), str::to_owned);
    let _ = writeln!(out, "  {:<18} {bootstrap} ({broker})", "broker");
    let _ = writeln!(
        out,
        "  {:<18} {}",
        "data directory",
        registry.platform.data_dir.display()
    );
    if let Ok(orders) = registry.component("orders") {
        let _ = write!(
            out,
            "\nPlace a first order:\n\n  curl -s localhost:{}/orders -H 'content-type: application/json' \\\n    -d '{{\"customer_id\": \"alice\", \"currency\": \"EUR\", \"lines\": [{{\"sku\": \"BOOK-1\", \"quantity\": 2, \"unit_price_minor\": 1250}}]}}'\n",
            orders.port
        );
    }
    out.push_str(
        "\n`sluice status` shows every component's health and lag; `sluice load` drives traffic.\n",
    );
    out
}
