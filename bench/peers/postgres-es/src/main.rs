//! `postgres-es-append`: the postgres-es peer of `sluice bench all`.
//!
//! Appends one-event aggregates through cqrs-es and its PostgreSQL event store,
//! the way a cqrs-es user writes a service: an `Aggregate` whose one command emits
//! one event, a `CqrsFramework` from `postgres_es::postgres_cqrs`, and
//! `cqrs.execute(id, command)` on a fresh aggregate id per command. Each execute
//! loads the (empty) aggregate, handles the command and commits its event, as in
//! production.
//!
//! N tasks run commands back to back for S seconds; commands still in flight at
//! the deadline finish and are counted, and the rate is taken over the time until
//! the last one finished. Prints one JSON line on stdout:
//!
//! ```text
//! {"peer":"postgres-es","version":"0.5.0","clients":N,"seconds":S,"events":K,"events_per_second":X}
//! ```
//!
//! The `events` table is created from postgres-es's `db/init.sql` if missing (the
//! `snapshots` table there is only for snapshotting, which this does not use).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use postgres_es::{postgres_cqrs, PostgresCqrs};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;

/// The postgres-es version this binary is built with; `Cargo.toml` pins it exactly.
const POSTGRES_ES_VERSION: &str = "0.5.0";

/// postgres-es's `events` table, as its `db/init.sql` gives it.
const CREATE_EVENTS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
)";

#[derive(Parser, Debug)]
#[command(name = "postgres-es-append", about = "Append one-event aggregates through cqrs-es + postgres-es")]
struct Args {
    /// PostgreSQL URL of an existing database, e.g. postgresql://user:pass@127.0.0.1:5432/db
    #[arg(long)]
    dsn: String,
    /// Concurrent clients (tasks), each executing commands back to back.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
}

/// A minimal aggregate: created by one command, which records one event.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Widget {
    name: Option<String>,
}

#[derive(Debug)]
enum WidgetCommand {
    Create { name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum WidgetEvent {
    Created { name: String },
}

impl DomainEvent for WidgetEvent {
    fn event_type(&self) -> String {
        match self {
            WidgetEvent::Created { .. } => "WidgetCreated".to_string(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Debug)]
struct WidgetError(String);

impl fmt::Display for WidgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WidgetError {}

impl Aggregate for Widget {
    const TYPE: &'static str = "Widget";
    type Command = WidgetCommand;
    type Event = WidgetEvent;
    type Error = WidgetError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            WidgetCommand::Create { name } => {
                if self.name.is_some() {
                    return Err(WidgetError("widget already exists".to_string()));
                }
                sink.write(WidgetEvent::Created { name }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WidgetEvent::Created { name } => self.name = Some(name),
        }
    }
}

/// The one JSON line printed on success, keys in this order.
#[derive(Serialize)]
struct Report {
    peer: &'static str,
    version: &'static str,
    clients: u32,
    seconds: u64,
    events: u64,
    events_per_second: f64,
}

/// One client: executes `Create` on fresh aggregate ids until `deadline`, and
/// returns how many commands (= events) it committed.
async fn client(
    cqrs: Arc<PostgresCqrs<Widget>>,
    run_id: String,
    client: u32,
    deadline: Instant,
) -> Result<u64, String> {
    let mut events = 0u64;
    while Instant::now() < deadline {
        // Unique across clients and across runs against the same database.
        let id = format!("{run_id}-{client}-{events}");
        cqrs.execute(&id, WidgetCommand::Create { name: "widget".to_string() })
            .await
            .map_err(|e| format!("execute on aggregate {id}: {e}"))?;
        events += 1;
    }
    Ok(events)
}

async fn run(args: Args) -> Result<(), String> {
    // One connection per client, so that every client can have a command in
    // flight (postgres-es's `default_postgress_pool` would cap them at 10).
    let pool = PgPoolOptions::new()
        .max_connections(args.clients)
        .connect(&args.dsn)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    sqlx::query(CREATE_EVENTS_TABLE)
        .execute(&pool)
        .await
        .map_err(|e| format!("create events table: {e}"))?;

    let cqrs = Arc::new(postgres_cqrs::<Widget>(pool.clone(), vec![], ()));
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos()
        .to_string();

    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..args.clients)
        .map(|n| tokio::spawn(client(cqrs.clone(), run_id.clone(), n, deadline)))
        .collect();
    let mut events = 0u64;
    for task in tasks {
        events += task.await.map_err(|e| format!("client task: {e}"))??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    pool.close().await;

    let report = Report {
        peer: "postgres-es",
        version: POSTGRES_ES_VERSION,
        clients: args.clients,
        seconds: args.seconds,
        events,
        events_per_second: (events as f64 / elapsed * 10.0).round() / 10.0,
    };
    println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("postgres-es-append: {e}");
        std::process::exit(1);
    }
}
