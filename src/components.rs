//! The components this build can run, by registry name.

use std::sync::Arc;

use sluice_platform::avro::SchemaCatalog;
use sluice_platform::db::PoolUse;
use sluice_platform::projection::ProjectionService;
use sluice_platform::registry::{Component, ComponentKind, Registry};
use sluice_platform::service::WriteService;

/// Every write service of the reference domain.
pub const WRITE_SERVICES: [WriteService; 3] = [
    sluice_orders::SERVICE,
    sluice_payments::SERVICE,
    sluice_shipping::SERVICE,
];

/// Every projection of the reference domain.
pub const PROJECTIONS: &[ProjectionService] = &[
    sluice_order_view::PROJECTION,
    sluice_customer_summary::PROJECTION,
    sluice_sku_sales::PROJECTION,
];

/// A runnable component of this build.
#[derive(Clone)]
pub enum Runnable {
    /// A write service's HTTP API.
    Service(WriteService),
    /// A write service's outbox relay.
    Relay(WriteService),
    /// A write service's reactor (its part of the saga).
    Reactor(WriteService),
    /// A read model: its consumer and query API.
    Projection(ProjectionService),
    /// The analytics component: the CDC sink into DuckDB and the analyst SQL
    /// endpoint over it (one process: DuckDB has one writer per file).
    Analytics(String),
}

impl Runnable {
    pub fn name(&self) -> String {
        match self {
            Runnable::Service(s) => s.name.to_owned(),
            Runnable::Relay(s) => format!("relay {}", s.name),
            Runnable::Reactor(s) => format!("reactor {}", s.name),
            Runnable::Projection(p) => p.name.to_owned(),
            Runnable::Analytics(name) => name.clone(),
        }
    }
}

/// The write service named `name`, if this build has it.
pub fn write_service(name: &str) -> Option<WriteService> {
    WRITE_SERVICES.iter().find(|s| s.name == name).copied()
}

/// The projection named `name`, if this build has it.
pub fn projection(name: &str) -> Option<ProjectionService> {
    PROJECTIONS.iter().find(|p| p.name == name).copied()
}

/// What this build runs for a registry component, if anything.
pub fn runnable(component: &Component) -> Option<Runnable> {
    if component.kind == ComponentKind::Sink {
        return Some(Runnable::Analytics(component.name.clone()));
    }
    write_service(&component.name)
        .map(Runnable::Service)
        .or_else(|| projection(&component.name).map(Runnable::Projection))
}

/// The registry's components this build can run, and the names of those it cannot
/// (yet): registered components whose implementation is not part of this build.
pub fn partition(registry: &Registry) -> (Vec<(&Component, Runnable)>, Vec<&str>) {
    let mut run = Vec::new();
    let mut missing = Vec::new();
    for component in registry.components() {
        match runnable(component) {
            Some(r) => run.push((component, r)),
            None => missing.push(component.name.as_str()),
        }
    }
    (run, missing)
}

/// The pools of the component's own database that its parts open under `sluice up`.
pub fn pools(runnable: &Runnable) -> Vec<PoolUse> {
    match runnable {
        Runnable::Service(s) => {
            let mut pools = vec![PoolUse::Api, PoolUse::Relay];
            if s.reactor.is_some() {
                pools.push(PoolUse::Reactor);
            }
            pools
        }
        Runnable::Relay(_) => vec![PoolUse::Relay],
        Runnable::Reactor(_) => vec![PoolUse::Reactor],
        Runnable::Projection(_) => vec![PoolUse::Projection],
        Runnable::Analytics(_) => Vec::new(),
    }
}

/// Connections to PostgreSQL the registry's components hold at most under `sluice
/// up`: every part's pool at its size (`<NAME>_DATABASE_POOL_SIZE` where set), plus
/// each relay's lease connection.
pub fn connections_at_most(registry: &Registry) -> u32 {
    partition(registry)
        .0
        .iter()
        .map(|(component, r)| {
            pools(r)
                .into_iter()
                .map(|p| {
                    sluice_platform::db::pool_size(component, p) + u32::from(p == PoolUse::Relay)
                })
                .sum::<u32>()
        })
        .sum()
}

/// The schemas of every event on every topic of this build: what consumers decode
/// with.
pub fn all_schemas() -> Result<Arc<SchemaCatalog>, sluice_platform::avro::AvroError> {
    SchemaCatalog::new(WRITE_SERVICES.iter().flat_map(|s| (s.schemas)())).map(Arc::new)
}

/// The repository's own `sluice.toml`: the reference domain the unit tests check
/// this build against.
#[cfg(test)]
pub(crate) const REFERENCE_REGISTRY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sluice.toml");

/// [`REFERENCE_REGISTRY`], loaded.
#[cfg(test)]
pub(crate) fn reference_registry() -> Registry {
    Registry::load(std::path::Path::new(REFERENCE_REGISTRY)).unwrap()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// PostgreSQL's default `max_connections` (100) less its superuser reserve (3):
    /// what every component of one `sluice up` shares on a default server.
    const DEFAULT_SERVER_CONNECTIONS: u32 = 97;

    #[test]
    fn the_reference_domain_s_pools_leave_a_default_postgresql_room_for_tools() {
        let registry = reference_registry();
        let at_most = connections_at_most(&registry);
        // Room for `sluice status`, `sluice verify`, psql sessions and a rebuild.
        assert!(
            at_most + 20 <= DEFAULT_SERVER_CONNECTIONS,
            "the platform's pools take up to {at_most} of {DEFAULT_SERVER_CONNECTIONS} connections"
        );
        // Every database-backed part has a pool: three services of three parts, each
        // relay with its lease, and three projections.
        assert_eq!(at_most, 3 * (10 + 4 + 1 + 4) + 3 * 6);
    }

    /// The migrators of one database share its `_sqlx_migrations` table: a version
    /// used by two of them would make the second's migration look modified (or
    /// applied) and stop the component at start.
    fn assert_distinct(component: &str, migrators: Vec<(&str, sqlx::migrate::Migrator)>) {
        let mut seen: BTreeMap<i64, String> = BTreeMap::new();
        for (owner, migrator) in migrators {
            for m in migrator.iter() {
                let this = format!("{owner}: {}", m.description);
                if let Some(first) = seen.insert(m.version, this.clone()) {
                    panic!(
                        "{component}: migration version {} is both `{first}` and `{this}`",
                        m.version
                    );
                }
            }
        }
    }

    #[test]
    fn the_migrations_of_each_database_have_distinct_versions() {
        for service in WRITE_SERVICES {
            assert_distinct(
                service.name,
                vec![
                    ("event store", sluice_platform::store::migrator()),
                    ("consumer", sluice_platform::consumer::migrator()),
                    (service.name, (service.migrator)()),
                ],
            );
        }
        for projection in PROJECTIONS {
            assert_distinct(
                projection.name,
                vec![
                    ("consumer", sluice_platform::consumer::migrator()),
                    (projection.name, (projection.migrator)()),
                ],
            );
        }
    }
}
