//! Command-line interface: `args` (what clap parses), `up` (the platform and its
//! components under the supervisor), `commands` (the one-shot commands); here the
//! entry point, logging and the dispatch.

mod args;
mod commands;
mod up;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use sluice_platform::registry::Registry;
use sluice_platform::{generate, provision};

use args::*;
use commands::*;
use up::*;

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
        Err(e) if e.is::<AlreadyReported>() => ExitCode::FAILURE,
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
            let registry = load_registry(&cli.registry)?;
            let plan = crate::load::LoadPlan {
                rate,
                duration: duration.or(orders.is_none().then(|| std::time::Duration::from_secs(30))),
                orders,
                host,
                declined,
                cancelled,
                retried,
                authorization_limit_minor: sluice_payments::config::authorization_limit(
                    registry.component("payments")?,
                )?
                .minor(),
            };
            crate::load::run(&registry, plan).await
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
