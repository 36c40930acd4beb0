//! `docker-compose.yml`: the production-like platform, every component with its
//! own PostgreSQL server, on a three-node Kafka cluster.

use std::fmt::Write as _;

use super::HEADER;
use crate::registry::{ComponentKind, Registry};

/// The Kafka image of `docker-compose.yml`: the version local brokers and tests run.
pub const KAFKA_IMAGE: &str = "apache/kafka:4.1.1";

/// KRaft nodes of `docker-compose.yml`, each a combined controller and broker.
pub const KAFKA_NODES: u32 = 3;

/// The KRaft cluster id of `docker-compose.yml` (the same on every node): the URL-safe
/// base64 of the 16 bytes `sluice-kafka-001`.
const KAFKA_CLUSTER_ID: &str = "c2x1aWNlLWthZmthLTAwMQ";

/// Replication of the event topics under `docker-compose.yml`, and the replicas that
/// must acknowledge a write (`min.insync.replicas`): one node may be lost.
const TOPIC_REPLICATION_FACTOR: u32 = 3;
const TOPIC_MIN_INSYNC_REPLICAS: u32 = 2;

/// A compose service name: `order_view` → `order-view`.
fn compose_name(component: &str) -> String {
    component.replace('_', "-")
}

/// The compose service of a component's dedicated PostgreSQL server.
fn postgres_service(component: &str) -> String {
    format!("postgres-{}", compose_name(component))
}

/// One process of the platform under compose: a container running `sluice <command>`.
struct Process {
    /// The compose service name.
    service: String,
    command: Vec<String>,
    /// Published ports (host = container).
    ports: Vec<u16>,
    environment: Vec<(String, String)>,
    /// `sluice health ...`: what the container's health check runs.
    health: Vec<String>,
    volume: Option<String>,
    depends_on: Vec<String>,
}

impl Process {
    /// The compose service `service` running `sluice run <args>`, which
    /// `sluice health <args>` checks; it publishes `ports` and keeps no volume.
    fn sluice_run(
        service: String,
        args: &[&str],
        ports: Vec<u16>,
        environment: Vec<(String, String)>,
        depends_on: Vec<String>,
    ) -> Self {
        let with = |first: &str| {
            std::iter::once(first)
                .chain(args.iter().copied())
                .map(str::to_owned)
                .collect()
        };
        Process {
            service,
            command: with("run"),
            ports,
            environment,
            health: with("health"),
            volume: None,
            depends_on,
        }
    }
}

/// Every process the registry's components need: per write service its HTTP API,
/// its outbox relay and (when it consumes topics) its reactor; each projection; the
/// analytics sink. In name order of the components.
fn processes(registry: &Registry) -> Vec<Process> {
    let brokers: Vec<String> = (1..=KAFKA_NODES)
        .map(|n| format!("kafka-{n}:9092"))
        .collect();
    let kafka_services: Vec<String> = (1..=KAFKA_NODES).map(|n| format!("kafka-{n}")).collect();
    let write_services: Vec<&str> = registry
        .components()
        .iter()
        .filter(|c| c.kind == ComponentKind::Service)
        .map(|c| c.name.as_str())
        .collect();
    let mut out = Vec::new();
    for component in registry.components() {
        let name = &component.name;
        let prefix = component.env_prefix();
        let base_env = || {
            let mut env = vec![
                ("KAFKA_BROKERS".to_owned(), brokers.join(",")),
                (
                    "SLUICE_TOPIC_REPLICATION_FACTOR".to_owned(),
                    format!("\"{TOPIC_REPLICATION_FACTOR}\""),
                ),
                (
                    "SLUICE_TOPIC_MIN_INSYNC_REPLICAS".to_owned(),
                    format!("\"{TOPIC_MIN_INSYNC_REPLICAS}\""),
                ),
            ];
            // The registry's own settings for this component (the authorization
            // limit, …); the operator's environment still decides in the end.
            for (key, value) in &component.extra_env {
                env.push((
                    key.clone(),
                    format!(
                        "\"${{{key}:-{}}}\"",
                        value.replace('"', "\\\"").replace('$', "$$")
                    ),
                ));
            }
            if let Some(db) = &component.database {
                let server = postgres_service(name);
                env.push((
                    format!("{prefix}_DATABASE_URL"),
                    format!(
                        "postgres://{}:${{{prefix}_APP_PASSWORD:?set {prefix}_APP_PASSWORD}}@{server}:5432/{}",
                        db.app_role, db.name
                    ),
                ));
                env.push((
                    format!("{prefix}_OWNER_DATABASE_URL"),
                    format!(
                        "postgres://{}:${{{prefix}_OWNER_PASSWORD:?set {prefix}_OWNER_PASSWORD}}@{server}:5432/{}",
                        db.owner_role, db.name
                    ),
                ));
            }
            env
        };
        let http_env = || {
            let mut env = base_env();
            env.push(("SLUICE_HTTP_HOST".to_owned(), "0.0.0.0".to_owned()));
            env.push((format!("{prefix}_PORT"), format!("\"{}\"", component.port)));
            env
        };
        // Its own server and the Kafka nodes, then what it waits for: the components
        // the registry says it depends on, and the relay of every write service whose
        // events it reads (the relay creates the topic).
        let mut base_depends = kafka_services.clone();
        if component.database.is_some() {
            base_depends.push(postgres_service(name));
        }
        let producers: Vec<&str> = component
            .consumes
            .iter()
            .filter_map(|topic| {
                registry
                    .components()
                    .iter()
                    .find(|c| c.kind == ComponentKind::Service && c.produces.contains(topic))
                    .map(|c| c.name.as_str())
            })
            .collect();
        let mut consumer_depends = base_depends.clone();
        for dep in &component.depends_on {
            consumer_depends.push(compose_name(dep));
        }
        for service in write_services.iter().filter(|s| {
            **s != name.as_str()
                && (producers.contains(s) || component.depends_on.iter().any(|d| d == *s))
        }) {
            consumer_depends.push(format!("{}-relay", compose_name(service)));
        }
        dedup(&mut consumer_depends);
        let service = compose_name(name);
        match component.kind {
            ComponentKind::Service => {
                let mut api_depends = base_depends.clone();
                api_depends.extend(component.depends_on.iter().map(|d| compose_name(d)));
                dedup(&mut api_depends);
                out.push(Process::sluice_run(
                    service.clone(),
                    &[name.as_str()],
                    vec![component.port],
                    http_env(),
                    api_depends,
                ));
                out.push(Process::sluice_run(
                    format!("{service}-relay"),
                    &["relay", name.as_str()],
                    vec![],
                    base_env(),
                    base_depends.clone(),
                ));
                if !component.consumes.is_empty() {
                    out.push(Process::sluice_run(
                        format!("{service}-reactor"),
                        &["reactor", name.as_str()],
                        vec![],
                        base_env(),
                        consumer_depends,
                    ));
                }
            }
            ComponentKind::Projection | ComponentKind::Reactor => out.push(Process::sluice_run(
                service,
                &[name.as_str()],
                vec![component.port],
                http_env(),
                consumer_depends,
            )),
            ComponentKind::Sink => {
                let mut environment = http_env();
                let mut ports = vec![component.port];
                environment.push(("SLUICE_DATA_DIR".to_owned(), "/var/lib/sluice".to_owned()));
                if let Some(analytics) = &registry.analytics {
                    ports.push(analytics.sql_port);
                    environment.push((
                        "SLUICE_SQL_PORT".to_owned(),
                        format!("\"{}\"", analytics.sql_port),
                    ));
                    // Who may use the analyst SQL endpoint.
                    environment.push((
                        "SLUICE_ANALYSTS".to_owned(),
                        "${SLUICE_ANALYSTS:?set SLUICE_ANALYSTS=user=verifier,... (sluice analyst add NAME --print)}".to_owned(),
                    ));
                }
                out.push(Process {
                    volume: Some(format!("{name}-data")),
                    ..Process::sluice_run(
                        service,
                        &[name.as_str()],
                        ports,
                        environment,
                        consumer_depends,
                    )
                });
            }
        }
    }
    out
}

/// Removes repeated entries, keeping the first of each.
fn dedup(items: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    items.retain(|i| seen.insert(i.clone()));
}

/// A YAML flow sequence of double-quoted strings.
fn flow_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A production-like topology: three Apache Kafka nodes (KRaft), one PostgreSQL
/// server per stateful component, and one container per process of the platform:
/// each write service's HTTP API, outbox relay and reactor, each projection, and
/// the analytics sink.
pub fn docker_compose(registry: &Registry) -> String {
    let voters: Vec<String> = (1..=KAFKA_NODES)
        .map(|n| format!("{n}@kafka-{n}:9093"))
        .collect();
    let mut out = format!(
        "# {HEADER}\n\
         # Production-like topology: three Apache Kafka nodes (KRaft, replication 3,\n\
         # min.insync.replicas 2), one PostgreSQL server per component, and one container\n\
         # per process: each write service's HTTP API (`sluice run <service>`), outbox relay\n\
         # (`sluice run relay <service>`) and reactor (`sluice run reactor <service>`), each\n\
         # projection, and analytics. Health checks run `sluice health` with the same\n\
         # arguments: an HTTP component's /health/ready; a relay or reactor (no HTTP port)\n\
         # is healthy when its database answers and its topics exist on the brokers.\n\
         # Before `docker compose up`, set POSTGRES_PASSWORD, SLUICE_ANALYSTS and every\n\
         # <NAME>_OWNER_PASSWORD / <NAME>_APP_PASSWORD (URL-safe: they go into URLs).\n\
         # SLUICE_ANALYSTS holds SCRAM verifiers, not passwords: `sluice analyst add NAME\n\
         # --print` prints `NAME=SCRAM-SHA-256$...`; in an .env file quote it in single\n\
         # quotes, so compose takes its `$` literally.\n\
         name: sluice\n\
         \n\
         x-sluice: &sluice\n  \
           build: .\n  \
           image: sluice:latest\n  \
           restart: unless-stopped\n\
         \n\
         services:\n"
    );
    let mut volumes = Vec::new();
    for n in 1..=KAFKA_NODES {
        volumes.push(format!("kafka-{n}-data"));
        let _ = write!(
            out,
            "  kafka-{n}:\n    \
               image: {KAFKA_IMAGE}\n    \
               hostname: kafka-{n}\n    \
               restart: unless-stopped\n    \
               environment:\n      \
                 CLUSTER_ID: {KAFKA_CLUSTER_ID}\n      \
                 KAFKA_NODE_ID: {n}\n      \
                 KAFKA_PROCESS_ROLES: broker,controller\n      \
                 KAFKA_LISTENERS: PLAINTEXT://:9092,CONTROLLER://:9093\n      \
                 KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka-{n}:9092\n      \
                 KAFKA_CONTROLLER_LISTENER_NAMES: CONTROLLER\n      \
                 KAFKA_INTER_BROKER_LISTENER_NAME: PLAINTEXT\n      \
                 KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n      \
                 KAFKA_CONTROLLER_QUORUM_VOTERS: {voters}\n      \
                 KAFKA_LOG_DIRS: /var/lib/kafka/data\n      \
                 KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: {TOPIC_REPLICATION_FACTOR}\n      \
                 KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: {TOPIC_REPLICATION_FACTOR}\n      \
                 KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: {TOPIC_MIN_INSYNC_REPLICAS}\n      \
                 KAFKA_MIN_INSYNC_REPLICAS: {TOPIC_MIN_INSYNC_REPLICAS}\n      \
                 KAFKA_DEFAULT_REPLICATION_FACTOR: {TOPIC_REPLICATION_FACTOR}\n      \
                 KAFKA_AUTO_CREATE_TOPICS_ENABLE: \"false\"\n    \
               volumes:\n      \
                 - kafka-{n}-data:/var/lib/kafka/data\n    \
               healthcheck:\n      \
                 test: [\"CMD-SHELL\", \"/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9092\"]\n      \
                 interval: 10s\n      \
                 timeout: 10s\n      \
                 retries: 12\n      \
                 start_period: 20s\n\n",
            voters = voters.join(","),
        );
    }
    for (component, _) in registry.stateful() {
        let name = &component.name;
        let prefix = component.env_prefix();
        let server = postgres_service(name);
        volumes.push(format!("{server}-data"));
        let _ = write!(
            out,
            "  {server}:\n    \
               image: postgres:16\n    \
               restart: unless-stopped\n    \
               environment:\n      \
                 POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}}\n      \
                 {prefix}_OWNER_PASSWORD: ${{{prefix}_OWNER_PASSWORD:?set {prefix}_OWNER_PASSWORD}}\n      \
                 {prefix}_APP_PASSWORD: ${{{prefix}_APP_PASSWORD:?set {prefix}_APP_PASSWORD}}\n    \
               volumes:\n      \
                 - {server}-data:/var/lib/postgresql/data\n      \
                 - ./deploy/postgres/{name}.sql:/docker-entrypoint-initdb.d/10-{name}.sql:ro\n    \
               healthcheck:\n      \
                 test: [\"CMD-SHELL\", \"pg_isready -U postgres\"]\n      \
                 interval: 5s\n      \
                 retries: 20\n\n"
        );
    }
    for process in processes(registry) {
        let _ = write!(
            out,
            "  {}:\n    <<: *sluice\n    command: {}\n",
            process.service,
            flow_list(&process.command)
        );
        if !process.ports.is_empty() {
            out.push_str("    ports:\n");
            for port in &process.ports {
                let _ = writeln!(out, "      - \"{port}:{port}\"");
            }
        }
        out.push_str("    environment:\n");
        for (key, value) in &process.environment {
            let _ = writeln!(out, "      {key}: {value}");
        }
        if let Some(volume) = &process.volume {
            let _ = writeln!(out, "    volumes:\n      - {volume}:/var/lib/sluice");
            volumes.push(volume.clone());
        }
        let mut health = vec!["CMD".to_owned(), "sluice".to_owned()];
        health.extend(process.health.iter().cloned());
        let _ = write!(
            out,
            "    healthcheck:\n      \
               test: {}\n      \
               interval: 5s\n      \
               timeout: 5s\n      \
               retries: 30\n      \
               start_period: 10s\n",
            flow_list(&health)
        );
        out.push_str("    depends_on:\n");
        for dep in &process.depends_on {
            let _ = writeln!(out, "      {dep}:\n        condition: service_healthy");
        }
        out.push('\n');
    }
    out.push_str("volumes:\n");
    for v in volumes {
        let _ = writeln!(out, "  {v}:");
    }
    out
}
