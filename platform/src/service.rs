//! Running a write service: its own pool, its own migrations, its HTTP API.
//!
//! A write service crate describes itself with a [`WriteService`]; the binary runs
//! any of them the same way, alone (`sluice run orders`) or side by side
//! (`sluice up`), each with its own database, role and pool.

use std::time::Duration;

use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::avro::{AvroError, SchemaCatalog, SchemaSource};
use crate::db::{self, DbError};
use crate::http::with_platform_routes;
use crate::registry::{Component, Registry};
use crate::relay::RelayError;
use crate::store::{self, EventStore};

/// What the platform needs to know to run a write service.
#[derive(Clone, Copy)]
pub struct WriteService {
    /// The registry name (`orders`).
    pub name: &'static str,
    /// The service's own migrations, run after the event store's.
    pub migrator: fn() -> Migrator,
    /// The Avro schemas of the service's events, embedded in the binary.
    pub schemas: fn() -> Vec<SchemaSource>,
    /// The service's HTTP API over its event store, validating new events against
    /// the service's schemas.
    pub router: fn(EventStore, SchemaCatalog) -> axum::Router,
    /// The service's reactor, if it reacts to other services' events (the topics it
    /// consumes in the registry): turns events into its own commands.
    pub reactor: Option<ReactorFactory>,
}

/// Builds a write service's reactor over its own store and schemas.
pub type ReactorFactory = fn(EventStore, SchemaCatalog) -> Box<dyn crate::consumer::EventHandler>;

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// One of the service's embedded schemas is invalid (a build that tests catch).
    #[error("`{component}` has an invalid schema catalog")]
    Schemas {
        component: String,
        source: AvroError,
    },
    /// The HTTP port is taken or not bindable.
    #[error("`{component}` cannot listen on {address}")]
    Bind {
        component: String,
        address: String,
        source: std::io::Error,
    },
    /// The broker could not be reached, the service's topic not created, or the
    /// topic on the broker differs from the registry.
    #[error("`{component}` relay cannot prepare its topic")]
    Broker {
        component: String,
        source: crate::broker::TopicError,
    },
    /// The relay stopped with an error.
    #[error("`{component}` relay failed")]
    Relay {
        component: String,
        source: crate::relay::RelayError,
    },
    /// A consumer (reactor or projection) stopped with an error.
    #[error("`{component}` consumer failed")]
    Consumer {
        component: String,
        source: crate::consumer::ConsumerError,
    },
    /// The HTTP server failed.
    #[error("`{component}` HTTP server failed")]
    Serve {
        component: String,
        source: std::io::Error,
    },
}

impl WriteService {
    /// The catalog of the service's schemas.
    pub fn catalog(&self) -> Result<SchemaCatalog, ServiceError> {
        SchemaCatalog::new((self.schemas)()).map_err(|source| ServiceError::Schemas {
            component: self.name.to_owned(),
            source,
        })
    }

    /// Migrates the service's database as its owner role.
    pub async fn migrate(&self, registry: &Registry) -> Result<(), ServiceError> {
        let component = registry.component(self.name)?;
        db::migrate(
            registry,
            component,
            vec![
                store::migrator(),
                crate::consumer::migrator(),
                (self.migrator)(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Migrates, binds the registry port and serves until `shutdown`.
    pub async fn run(
        &self,
        registry: &Registry,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let component = registry.component(self.name)?;
        let catalog = self.catalog()?;
        self.migrate(registry).await?;
        let pool = db::app_pool(registry, component, db::PoolUse::Api).await?;
        let listener = bind(component).await?;
        tracing::info!(
            component = self.name,
            address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "write service listening"
        );
        let router = with_platform_routes(
            (self.router)(EventStore::new(pool.clone()), catalog),
            self.name,
            Some(pool),
        );
        crate::http::serve(listener, router, shutdown)
            .await
            .map_err(|source| ServiceError::Serve {
                component: self.name.to_owned(),
                source,
            })
    }
}

impl WriteService {
    /// Runs the service's outbox relay until `shutdown`: migrates (so a relay can
    /// start before its service), makes sure the service's topic exists as the
    /// registry says (created, or checked: partitions, replication, settings), and
    /// publishes as the service's app role.
    pub async fn run_relay(
        &self,
        registry: &Registry,
        bootstrap: &str,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let component = registry.component(self.name)?;
        let catalog = self.catalog()?;
        self.migrate(registry).await?;
        let topics: Vec<crate::broker::TopicSpec> = component
            .produces
            .iter()
            .filter_map(|t| registry.topic_spec(t))
            .collect();
        crate::broker::ensure_topics(bootstrap, topics)
            .await
            .map_err(|source| ServiceError::Broker {
                component: self.name.to_owned(),
                source,
            })?;
        let pool = db::app_pool(registry, component, db::PoolUse::Relay).await?;
        let relay = crate::relay::Relay::new(
            self.name,
            pool,
            bootstrap,
            std::sync::Arc::new(catalog),
            crate::relay::RelayConfig::for_registry(registry),
        )
        .map_err(|source| ServiceError::Relay {
            component: self.name.to_owned(),
            source,
        })?;
        // A lost lock session or an unreachable store (a restart, a restore, a
        // network cut) sends the relay back to standby: it waits for the lock again
        // and resumes from the highest checkpoint.
        let mut backoff = Duration::from_secs(1);
        loop {
            match relay.run(shutdown.clone()).await {
                Ok(()) => return Ok(()),
                Err(e @ (RelayError::LockLost(_) | RelayError::Database(_)))
                    if !shutdown.is_cancelled() =>
                {
                    tracing::warn!(service = self.name, error = %format!("{e:#}"), backoff_s = backoff.as_secs(), "relay interrupted; standing by again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(source) => {
                    return Err(ServiceError::Relay {
                        component: self.name.to_owned(),
                        source,
                    })
                }
            }
        }
    }
}

impl WriteService {
    /// Runs the service's reactor until `shutdown`: consumes the registry's topics for
    /// this service into commands on its own store, keeping positions in its own
    /// database. `catalog` holds the schemas of every topic it reads.
    pub async fn run_reactor(
        &self,
        registry: &Registry,
        bootstrap: &str,
        catalog: std::sync::Arc<SchemaCatalog>,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let Some(reactor) = self.reactor else {
            return Ok(());
        };
        let component = registry.component(self.name)?;
        let own = self.catalog()?;
        self.migrate(registry).await?;
        let pool = db::app_pool(registry, component, db::PoolUse::Reactor).await?;
        let runtime = crate::consumer::ConsumerRuntime::new(
            &format!("{}_reactor", self.name),
            component.consumes.clone(),
            pool.clone(),
            bootstrap,
            catalog,
            reactor(EventStore::new(pool), own),
            crate::consumer::ConsumerConfig::for_registry(registry),
        );
        runtime
            .run(shutdown)
            .await
            .map_err(|source| ServiceError::Consumer {
                component: self.name.to_owned(),
                source,
            })
    }
}

/// The host components listen on: `SLUICE_HTTP_HOST`, default `127.0.0.1`.
pub fn listen_host() -> String {
    std::env::var("SLUICE_HTTP_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned())
}

/// Binds the component's HTTP port on [`listen_host`].
pub async fn bind(component: &Component) -> Result<TcpListener, ServiceError> {
    let address = format!("{}:{}", listen_host(), component.port);
    TcpListener::bind(&address)
        .await
        .map_err(|source| ServiceError::Bind {
            component: component.name.clone(),
            address,
            source,
        })
}
