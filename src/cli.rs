//! Command-line interface.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sluice_platform::broker::{ensure_topics, BrokerKind, LocalBroker};
use sluice_platform::consumer::Replayed;
use sluice_platform::registry::Registry;
use sluice_platform::{generate, provision};
use tokio_util::sync::CancellationToken;

use crate::components::{self, Runnable};
use crate::supervisor::{Backoff, Supervisor};

/// Sluice: event-sourced write services, a transactional outbox to Kafka,
/// projections and a DuckDB analytics sink.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    /// The service registry.
    #[arg(
        long,
        global = true,
        env = "SLUICE_REGISTRY",
        default_value = "sluice.toml"
    )]
    registry: PathBuf,
    /// Log lines as text (`key=value`) or one JSON object per line (for a log
    /// collector). The level is RUST_LOG's (default: `info`, `warn` for `sluice up`).
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Export spans over OpenTelemetry (OTLP/HTTP, protobuf) to this collector, e.g.
    /// `http://127.0.0.1:4318`: one order's trace then shows every hop (HTTP command,
    /// append, relay, each consumer, the sink) with its latency.
    #[arg(long, global = true, env = "SLUICE_OTLP_ENDPOINT")]
    otlp: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision databases and roles, then run every component in one process
    /// (each with its own database, role and pool).
    Up {
        /// Skip `db setup` (databases and roles already exist).
        #[arg(long)]
        no_setup: bool,
        /// The broker to run when `KAFKA_BROKERS` names none: `tansu` (no JVM, the
        /// default) or `kafka` (Apache Kafka, fetched once; needs Java 17+ and Maven).
        #[arg(long, env = "SLUICE_BROKER", default_value = "tansu")]
        broker: BrokerKind,
    },
    /// Run one component: `sluice run orders`, or a service's outbox relay:
    /// `sluice run relay orders` (publishes to KAFKA_BROKERS).
    Run {
        /// A component name from the registry, or `relay`.
        component: String,
        /// With `relay`: the write service whose outbox to publish.
        service: Option<String>,
    },
    /// Databases and roles.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// The service registry and the files generated from it.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Dead letters: events a consumer (projection or reactor) could not apply.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// SQL against the analytics warehouse, through the analyst endpoint: an
    /// interactive shell (statements end with `;`, `\q` quits), or one query with -c.
    Sql {
        /// Run this query, print its result and exit (non-zero if it fails).
        #[arg(short = 'c', long = "command")]
        command: Option<String>,
        /// Analyst user; default: the first analyst of `[analytics.analysts]`.
        #[arg(short = 'U', long, env = "PGUSER")]
        user: Option<String>,
        /// The analyst's password (the registry keeps only its SCRAM verifier).
        #[arg(long, env = "PGPASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Endpoint host.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Endpoint port; default: `[analytics].sql_port`.
        #[arg(short = 'p', long)]
        port: Option<u16>,
    },
    /// Who may connect to the analyst SQL endpoint: `sluice analyst add alice`
    /// asks for a password and stores its SCRAM-SHA-256 verifier in the registry.
    Analyst {
        #[command(subcommand)]
        command: AnalystCommand,
    },
    /// Read models (projections).
    Projection {
        #[command(subcommand)]
        command: ProjectionCommand,
    },
    /// One table of the running platform: each component's health, how far behind
    /// it is (events and seconds), its relay's unpublished events and what stalls it,
    /// held streams, dead letters, and the sink's watermark per topic. Exits 1 unless
    /// every component is ready.
    Status {
        /// Refresh the table in place every 2 s until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// One JSON object (per refresh with --watch), for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Drive realistic traffic through the write services of the platform running
    /// on this machine: orders with several lines, declines over the authorization
    /// limit, cancellations, captures, dispatches and deliveries, retries with
    /// idempotency keys. Shows a live bar; prints latencies, errors by kind and each
    /// consumer's lag and catch-up time. Bounded: loopback only, and it stops by
    /// itself.
    Load {
        /// Commands per second, at most.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// How long to start orders for (`30s`, `2m`); default 30s unless --orders.
        #[arg(long, value_parser = crate::load::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Start this many orders instead of running for a time.
        #[arg(long, conflicts_with = "duration")]
        orders: Option<u64>,
        /// Where the services listen: a loopback address.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Share of orders over the authorization limit (declined by the saga).
        #[arg(long, default_value_t = 0.1)]
        declined: f64,
        /// Share of orders the customer cancels.
        #[arg(long, default_value_t = 0.1)]
        cancelled: f64,
        /// Share of placements sent twice with the same Idempotency-Key.
        #[arg(long, default_value_t = 0.05)]
        retried: f64,
    },
    /// Measure throughput (prints figures; asserts nothing).
    Bench {
        #[command(subcommand)]
        command: crate::bench::BenchCommand,
    },
    /// The Avro contracts of the events (`schemas/`).
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
    /// Check the running platform against its promises, at a consistent cut while
    /// traffic runs: each store against its topic, each projection against the
    /// topics it consumes, the warehouse against the topics and its typed tables
    /// against `raw_events`. Prints a summary per component, names each difference,
    /// and exits 1 on any.
    Verify,
    /// Back up one component's database (`pg_dump --format=custom`), on its own.
    Backup {
        /// A service or projection of the registry.
        component: String,
        /// Default: `<data_dir>/backups/<component>-<time>.dump`.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Replace one component's database with a backup while the others keep
    /// running; a write service's store then gets back the events its topic holds
    /// and the backup lacks (unless --no-reappend).
    Restore {
        component: String,
        /// A file `sluice backup` wrote for this component.
        file: PathBuf,
        /// Leave the events the topic holds and the backup lacks out of the store
        /// (its relay then publishes nothing until `sluice reappend`).
        #[arg(long)]
        no_reappend: bool,
        /// Required: this replaces the component's data.
        #[arg(long)]
        yes: bool,
    },
    /// Copy the events a write service's topic holds and its store lacks back into
    /// the store (after restoring an older backup).
    Reappend {
        /// A write service.
        service: String,
    },
    /// Exit 0 when a component run with the same arguments and environment is
    /// healthy (container health checks): `sluice health orders` asks its
    /// `/health/ready`; `sluice health relay|reactor <service>` (no HTTP port) checks
    /// that its database answers and the topics it publishes or reads exist.
    Health {
        /// A component name from the registry, or `relay` / `reactor`.
        component: String,
        /// With `relay` or `reactor`: the write service.
        service: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Check every service's schemas: the latest version of each event type reads
    /// data written with every older one, and versions run 1, 2, …, N.
    /// Exits 1 naming each incompatible pair.
    Check,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List a component's dead letters (not yet replayed, unless --all).
    List {
        /// A projection, or a write service (its reactor's dead letters).
        component: String,
        /// Include dead letters already replayed.
        #[arg(long)]
        all: bool,
    },
    /// Apply dead letters again, in the order they failed (all, or the given ids).
    Replay {
        component: String,
        /// Only these dead letters.
        #[arg(long = "id")]
        ids: Vec<i64>,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionCommand {
    /// Replay the projection's topics from the beginning into fresh tables while the
    /// live read model keeps serving, then swap the new tables in atomically. A
    /// running projection picks the new tables up by itself.
    Rebuild {
        /// The projection's registry name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Create (idempotently) every component's database, owner role and app role,
    /// connecting with SLUICE_ADMIN_DATABASE_URL.
    Setup,
    /// Drop every component's database and roles: all events, read models and
    /// positions. To start a development platform over, drop them and the data
    /// directory (the broker's log and the warehouse) together.
    Drop {
        /// Required: this deletes data.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AnalystCommand {
    /// Add an analyst, or give one a new password: asks for it twice (or reads
    /// one line with --password-stdin) and writes its SCRAM-SHA-256 verifier
    /// under `[analytics.analysts]`.
    Add {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Print `name=verifier` (for SLUICE_ANALYSTS) instead of writing the registry.
        #[arg(long)]
        print: bool,
    },
    /// Remove an analyst from the registry.
    Remove { name: String },
    /// The registry's analysts.
    List,
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Write deploy/init-databases.sql, deploy/postgres/*.sql and docker-compose.yml.
    Generate {
        /// Only check that the committed files match the registry; exit 1 on drift.
        #[arg(long)]
        check: bool,
    },
    /// List the components.
    Show,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let provider = match init_tracing(cli.log_format, &cli.command, cli.otlp.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Before any thread starts: the registry's `extra_env` of what this command runs.
    if let Err(e) = apply_extra_env(&cli) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(dispatch(cli));
    // The spans still in the batch go out before the process ends.
    if let Some(provider) = provider {
        let _ = provider.shutdown();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (text or JSON) and, with `--otlp`, spans to a collector; the
/// tracer provider is returned to be flushed at exit.
fn init_tracing(
    format: LogFormat,
    command: &Command,
    otlp: Option<&str>,
) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    // `sluice up` is run by a person at a terminal: warnings (a component
    // restarting) and the table it prints once ready, not every component's start.
    let default = match command {
        Command::Up { .. } => "warn",
        _ => "info,sqlx=warn,tower_http=warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = match format {
        // Colours only for a person at a terminal: a log file or a collector gets
        // plain `key=value` text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    }
    .with_filter(filter);
    let Some(endpoint) = otlp else {
        tracing_subscriber::registry().with(logs).init();
        return Ok(None);
    };
    let provider = otlp_provider(endpoint)?;
    use opentelemetry::trace::TracerProvider as _;
    // Only the hops' spans (and the append below a command), whatever RUST_LOG says.
    let hops = tracing_subscriber::filter::Targets::new()
        .with_target("sluice::trace", tracing::Level::INFO)
        .with_target("sluice_platform::store", tracing::Level::INFO);
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("sluice"))
        .with_filter(hops);
    tracing_subscriber::registry().with(logs).with(spans).init();
    sluice_platform::trace::enable();
    Ok(Some(provider))
}

/// A tracer provider exporting in batches to `endpoint` (`/v1/traces` appended when
/// it names no path).
fn otlp_provider(endpoint: &str) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let url = endpoint.trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .with_context(|| format!("--otlp `{endpoint}` must be an http:// or https:// URL, e.g. http://127.0.0.1:4318"))?;
    let url = if rest.contains('/') {
        url.to_owned()
    } else {
        format!("{url}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .context("setting up the OTLP exporter")?;
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("sluice")
                .build(),
        )
        .build())
}

/// Sets each `extra_env` variable of the components `sluice up` or `sluice run`
/// runs, unless the environment sets it already (the operator decides). Two
/// components of one `sluice up` that want different values for one variable stop
/// the start: they share the process's environment.
fn apply_extra_env(cli: &Cli) -> anyhow::Result<()> {
    let names: Vec<String> = match &cli.command {
        Command::Up { .. } => Vec::new(),
        Command::Run { component, service } => {
            vec![service.clone().unwrap_or_else(|| component.clone())]
        }
        _ => return Ok(()),
    };
    let registry = load_registry(&cli.registry)?;
    let mut wanted: std::collections::BTreeMap<&str, (&str, &str)> = Default::default();
    for c in registry.components() {
        if !names.is_empty() && !names.contains(&c.name) {
            continue;
        }
        for (key, value) in &c.extra_env {
            if let Some((other, first)) = wanted.insert(key, (&c.name, value)) {
                if first != value {
                    bail!("`{other}` and `{}` set {key} to different values in extra_env; under `sluice up` they share one environment: run them apart with `sluice run`, or set {key} yourself", c.name);
                }
            }
        }
    }
    for (key, (_, value)) in wanted {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
    Ok(())
}

fn load_registry(path: &Path) -> anyhow::Result<Registry> {
    Ok(Registry::load(path)?.with_env_overrides())
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up { no_setup, broker } => {
            up(&load_registry(&cli.registry)?, no_setup, broker).await
        }
        Command::Run { component, service } => {
            run_one(
                &load_registry(&cli.registry)?,
                &component,
                service.as_deref(),
            )
            .await
        }
        Command::Db {
            command: DbCommand::Setup,
        } => {
            let registry = load_registry(&cli.registry)?;
            let done = provision::setup(&registry).await?;
            println!("provisioned {} databases: {}", done.len(), done.join(", "));
            Ok(())
        }
        Command::Db {
            command: DbCommand::Drop { yes },
        } => {
            let registry = load_registry(&cli.registry)?;
            let names: Vec<&str> = registry
                .stateful()
                .map(|(_, db)| db.name.as_str())
                .collect();
            if !yes {
                bail!(
                    "this drops {} and their roles, with every event in them; pass --yes to go ahead",
                    names.join(", ")
                );
            }
            for (_, db) in registry.stateful() {
                provision::drop_component(&registry.platform.admin_database_url, db)
                    .await
                    .with_context(|| format!("dropping {}", db.name))?;
                println!("dropped {}", db.name);
            }
            println!(
                "remove the data directory too ({}) before `sluice up`: the broker's log and the warehouse",
                registry.platform.data_dir.display()
            );
            Ok(())
        }
        Command::Registry { command } => {
            let registry = Registry::load(&cli.registry)?;
            let root = cli
                .registry
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            match command {
                RegistryCommand::Generate { check: false } => {
                    for path in generate::write_all(&registry, root)? {
                        println!("wrote {}", path.display());
                    }
                    Ok(())
                }
                RegistryCommand::Generate { check: true } => check_generated(&registry, root),
                RegistryCommand::Show => {
                    show(&registry);
                    Ok(())
                }
            }
        }
        Command::Dlq { command } => dlq(&load_registry(&cli.registry)?, command).await,
        Command::Sql {
            command,
            user,
            password,
            host,
            port,
        } => {
            sql(
                &load_registry(&cli.registry)?,
                command,
                user,
                password,
                host,
                port,
            )
            .await
        }
        Command::Analyst { command } => match command {
            AnalystCommand::Add {
                name,
                password_stdin,
                print,
            } => {
                let from = if password_stdin {
                    crate::analyst::PasswordFrom::Stdin
                } else {
                    crate::analyst::PasswordFrom::Prompt
                };
                crate::analyst::add(&cli.registry, &name, from, print)
            }
            AnalystCommand::Remove { name } => crate::analyst::remove(&cli.registry, &name),
            AnalystCommand::List => crate::analyst::list(&cli.registry),
        },
        Command::Projection {
            command: ProjectionCommand::Rebuild { name },
        } => rebuild(&load_registry(&cli.registry)?, &name).await,
        Command::Bench { command } => crate::bench::run(command, &cli.registry).await,
        Command::Status { watch, json } => {
            crate::status::run(&load_registry(&cli.registry)?, watch, json).await
        }
        Command::Load {
            rate,
            duration,
            orders,
            host,
            declined,
            cancelled,
            retried,
        } => {
            let plan = crate::load::LoadPlan {
                rate,
                duration: duration.or(orders.is_none().then(|| std::time::Duration::from_secs(30))),
                orders,
                host,
                declined,
                cancelled,
                retried,
                authorization_limit_minor: sluice_payments::config::authorization_limit()
                    .map_err(anyhow::Error::msg)?
                    .minor(),
            };
            crate::load::run(&load_registry(&cli.registry)?, plan).await
        }
        Command::Schemas {
            command: SchemasCommand::Check,
        } => check_schemas(),
        Command::Backup { component, output } => {
            let registry = load_registry(&cli.registry)?;
            let file = tokio::task::spawn_blocking(move || {
                crate::backup::backup(&registry, &component, output)
            })
            .await??;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            println!("{} ({size} bytes)", file.display());
            Ok(())
        }
        Command::Restore {
            component,
            file,
            no_reappend,
            yes,
        } => {
            if !yes {
                bail!(
                    "this replaces the database of `{component}` with {}; pass --yes to go ahead",
                    file.display()
                );
            }
            crate::backup::restore(
                &load_registry(&cli.registry)?,
                &component,
                &file,
                !no_reappend,
            )
            .await
        }
        Command::Reappend { service } => {
            let copied = crate::backup::reappend(&load_registry(&cli.registry)?, &service).await?;
            println!("{copied} events copied back into the store of {service}");
            Ok(())
        }
        Command::Verify => {
            if crate::verify::run(&load_registry(&cli.registry)?).await? {
                Ok(())
            } else {
                bail!("the platform differs from its promises (see above)")
            }
        }
        Command::Health { component, service } => {
            health(
                &load_registry(&cli.registry)?,
                &component,
                service.as_deref(),
            )
            .await
        }
    }
}

fn check_generated(registry: &Registry, root: &Path) -> anyhow::Result<()> {
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
fn check_schemas() -> anyhow::Result<()> {
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

fn show(registry: &Registry) {
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

/// Cancels `token` on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
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

async fn run_one(registry: &Registry, name: &str, service: Option<&str>) -> anyhow::Result<()> {
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

async fn run_component(
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
async fn kafka_for_up(
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
async fn connection_budget(registry: &Registry) {
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

async fn up(registry: &Registry, no_setup: bool, broker: BrokerKind) -> anyhow::Result<()> {
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
async fn wait_ready(
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
fn ready_table(
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

/// The handler a component's consumer applies events with, and its pool.
async fn consumer_of(
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
                let store = sluice_platform::store::EventStore::new(pool.clone());
                Ok((pool, reactor(store, service.catalog()?)))
            }
            None => bail!("`{name}` consumes nothing: it has no dead letters"),
        },
        None => bail!("`{name}` is not a consumer of this build (projections and write services with a reactor are)"),
    }
}

async fn dlq(registry: &Registry, command: DlqCommand) -> anyhow::Result<()> {
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
async fn rebuild(registry: &Registry, name: &str) -> anyhow::Result<()> {
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
async fn sql(
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
        Err(sluice_analytics::shell::ShellError::Query { .. }) => std::process::exit(1),
        Err(e) => Err(e.into()),
    }
}

/// `sluice health`: a component's `/health/ready` on this host, or for a relay or
/// reactor its database (as its app role) and its topics on `KAFKA_BROKERS`.
async fn health(registry: &Registry, name: &str, service: Option<&str>) -> anyhow::Result<()> {
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
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "3")
            .create()?;
        let mut missing = Vec::new();
        for topic in topics {
            let metadata =
                consumer.fetch_metadata(Some(&topic), std::time::Duration::from_secs(5))?;
            if !metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            {
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
