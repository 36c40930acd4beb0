//! Registries for tests: the repository's `sluice.toml`, and isolated copies of it
//! (unique database names, free ports, a fresh data directory, a topic prefix).

use super::{admin_url, registry_broker_address, unique_suffix};
use crate::provision::drop_component;
use crate::registry::Registry;

/// A copy of `registry` for one test: every database carries a test-unique prefix,
/// every component and the broker a free port, and the data directory is a fresh
/// temporary one. Returns the registry and its TOML text (for a
/// child process's `--registry`).
pub fn isolated_registry(registry: &Registry) -> (Registry, String) {
    let text = registry_text_with_prefix(registry, &unique_suffix(), None);
    (Registry::parse(&text).expect("isolated registry"), text)
}

/// [`isolated_registry`] on a broker of the test's own (`kafka_brokers`), rather
/// than the run's shared one.
pub fn isolated_registry_on(registry: &Registry, kafka_brokers: &str) -> (Registry, String) {
    let text = registry_text_with_prefix(registry, &unique_suffix(), Some(kafka_brokers));
    (Registry::parse(&text).expect("isolated registry"), text)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Drops every database and role of a registry (test clean-up).
pub async fn drop_registry_databases(registry: &Registry) {
    for (_, db) in registry.stateful() {
        if let Err(e) = drop_component(&admin_url(), db).await {
            eprintln!("warning: could not drop test database {}: {e}", db.name);
        }
    }
}

/// Ports that were free a moment ago, all different: each stays bound until all are
/// chosen, so the system cannot hand the same one out twice.
struct DistinctPorts(Vec<std::net::TcpListener>);

impl DistinctPorts {
    fn next(&mut self) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = listener.local_addr().expect("local address").port();
        self.0.push(listener);
        port
    }
}

fn registry_text_with_prefix(registry: &Registry, suffix: &str, brokers: Option<&str>) -> String {
    let mut ports = DistinctPorts(Vec::new());
    let broker_port = ports.next();
    let brokers = brokers.map_or_else(|| registry_broker_address(broker_port), str::to_owned);
    // Topics under a test-unique prefix: tests sharing a broker never see each
    // other's events.
    let mut text = format!(
        "[platform]\ndatabase_host = {:?}\ndatabase_port = {}\nadmin_database_url = {:?}\ndata_dir = {:?}\nkafka_brokers = {:?}\n\
         topic_prefix = \"t_{suffix}.\"\nreplication_factor = {}\nmin_insync_replicas = {}\n",
        registry.platform.database_host,
        registry.platform.database_port,
        admin_url(),
        std::env::temp_dir()
            .join(format!("sluice-data-{suffix}"))
            .display()
            .to_string(),
        brokers,
        registry.platform.replication_factor,
        registry.platform.min_insync_replicas,
    );
    for (name, topic) in &registry.topics {
        let config: Vec<String> = topic
            .config
            .iter()
            .map(|(k, v)| format!("{k:?} = {v:?}"))
            .collect();
        text.push_str(&format!(
            "[topics.{name:?}]\npartitions = {}\nconfig = {{ {} }}\n",
            topic.partitions,
            config.join(", ")
        ));
    }
    for c in registry.components() {
        text.push_str(&format!(
            "[components.{}]\nkind = {:?}\nport = {}\nproduces = {:?}\nconsumes = {:?}\ndepends_on = {:?}\nlayer = {:?}\n",
            c.name,
            format!("{:?}", c.kind).to_lowercase(),
            ports.next(),
            c.produces,
            c.consumes,
            c.depends_on,
            c.layer.as_str()
        ));
        if !c.extra_env.is_empty() {
            let env: Vec<String> = c
                .extra_env
                .iter()
                .map(|(k, v)| format!("{k} = {v:?}"))
                .collect();
            text.push_str(&format!("extra_env = {{ {} }}\n", env.join(", ")));
        }
        if let Some(db) = &c.database {
            text.push_str(&format!(
                "database = \"t_{suffix}_{}\"\napp_password = {:?}\nowner_password = {:?}\n",
                db.name.trim_start_matches("sluice_"),
                db.app_password,
                db.owner_password
            ));
        }
    }
    if let Some(a) = &registry.analytics {
        text.push_str(&format!(
            "[analytics]\nwarehouse = {:?}\nsql_port = {}\nstatement_timeout_seconds = {}\nrow_limit = {}\nmemory_limit = {:?}\n[analytics.analysts]\n",
            a.warehouse.display().to_string(),
            ports.next(),
            a.statement_timeout_seconds,
            a.row_limit,
            a.memory_limit
        ));
        for (user, verifier) in &a.analysts {
            text.push_str(&format!("{user:?} = {verifier:?}\n"));
        }
    }
    text
}

/// The password of the development analyst in `sluice.toml` (which stores only
/// its SCRAM verifier), for tests that connect to the analyst endpoint.
pub const DEV_ANALYST_PASSWORD: &str = "analyst-dev";

/// A write service running on a random port over its own fresh database.
/// The repository's `sluice.toml`: the registry every component is tested with.
pub fn repository_registry() -> Registry {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sluice.toml");
    Registry::load(&path).expect("the repository's sluice.toml")
}

/// What `service`'s router and reactor are built over in a test: `store`, the
/// service's schemas and its entry in [`repository_registry`].
pub fn service_context(
    service: &crate::service::WriteService,
    store: &crate::store::EventStore,
) -> crate::service::ServiceContext {
    crate::service::ServiceContext {
        store: store.clone(),
        schemas: service.catalog().expect("the service's schemas"),
        component: repository_registry()
            .component(service.name)
            .expect("the service is in sluice.toml")
            .clone(),
    }
}
