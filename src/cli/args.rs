//! The command line: every command and option of `sluice`, as clap parses them.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sluice_platform::broker::BrokerKind;

/// Sluice: event-sourced write services, a transactional outbox to Kafka,
/// projections and a DuckDB analytics sink.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub(crate) struct Cli {
    /// The service registry.
    #[arg(
        long,
        global = true,
        env = "SLUICE_REGISTRY",
        default_value = "sluice.toml"
    )]
    pub(crate) registry: PathBuf,
    /// Log lines as text (`key=value`) or one JSON object per line (for a log
    /// collector). The level is RUST_LOG's (default: `info`, `warn` for `sluice up`).
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    pub(crate) log_format: LogFormat,
    /// Export spans over OpenTelemetry (OTLP/HTTP, protobuf) to this collector, e.g.
    /// `http://127.0.0.1:4318`: one order's trace then shows every hop (HTTP command,
    /// append, relay, each consumer, the sink) with its latency.
    #[arg(long, global = true, env = "SLUICE_OTLP_ENDPOINT")]
    pub(crate) otlp: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
pub(crate) enum SchemasCommand {
    /// Check every service's schemas: the latest version of each event type reads
    /// data written with every older one, and versions run 1, 2, …, N.
    /// Exits 1 naming each incompatible pair.
    Check,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
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
pub(crate) enum ProjectionCommand {
    /// Replay the projection's topics from the beginning into fresh tables while the
    /// live read model keeps serving, then swap the new tables in atomically. A
    /// running projection picks the new tables up by itself.
    Rebuild {
        /// The projection's registry name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
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
pub(crate) enum AnalystCommand {
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
pub(crate) enum RegistryCommand {
    /// Write deploy/init-databases.sql, deploy/postgres/*.sql and docker-compose.yml.
    Generate {
        /// Only check that the committed files match the registry; exit 1 on drift.
        #[arg(long)]
        check: bool,
    },
    /// List the components.
    Show,
}
