//! Running a write service: its own pool, its own migrations, its HTTP API.
//!
//! A write service crate describes itself with a [`WriteService`]; the binary runs
//! any of them the same way, alone (`sluice run orders`) or side by side
//! (`sluice up`), each with its own database, role and pool.

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;

use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::aggregate::{Aggregate, CommandContext, CommandHandler};
use crate::avro::{AvroError, SchemaCatalog, SchemaSource};
use crate::db::{self, DbError};
use crate::http::{with_platform_routes, CommandAccepted, Problem};
use crate::registry::{Component, Registry};
use crate::relay::RelayError;
use crate::store::{self, EventStore, StreamId};

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
    pub router: RouterFactory,
    /// The service's reactor, if it reacts to other services' events (the topics it
    /// consumes in the registry): turns events into its own commands.
    pub reactor: Option<ReactorFactory>,
}

/// Builds a write service's HTTP API; a bad setting is an error at start.
pub type RouterFactory = fn(&ServiceContext) -> Result<axum::Router, ServiceError>;

/// Builds a write service's reactor; a bad setting is an error at start.
pub type ReactorFactory =
    fn(&ServiceContext) -> Result<Box<dyn crate::consumer::EventHandler>, ServiceError>;

/// What a write service's router and reactor are built over: its own store, its
/// schemas and its registry entry.
#[derive(Clone)]
pub struct ServiceContext {
    /// The service's event store, as its app role.
    pub store: EventStore,
    /// The service's own schemas: new events are validated against them.
    pub schemas: SchemaCatalog,
    /// The service's entry in the registry (`sluice.toml`).
    pub component: Component,
}

impl ServiceContext {
    /// The topic the service's relay publishes to (the registry's `produces`): the
    /// topic of every consistency token its API answers with.
    pub fn topic(&self) -> Result<&str, ServiceError> {
        self.component
            .produces
            .first()
            .map(String::as_str)
            .ok_or_else(|| ServiceError::Setting {
                component: self.component.name.clone(),
                setting: "produces".to_owned(),
                reason: "a write service publishes to one topic, and none is named".to_owned(),
            })
    }
}

/// A write service's commands as its HTTP API runs them: the aggregate's
/// [`CommandHandler`] (its reads too, through `Deref`) and the topic whose
/// consistency tokens the answers carry.
#[derive(Debug)]
pub struct CommandApi<A> {
    commands: CommandHandler<A>,
    topic: Arc<str>,
}

impl<A: Aggregate> CommandApi<A> {
    /// Commands on the service's store, validated against its schemas, answered
    /// with tokens of the topic it publishes to.
    pub fn new(context: &ServiceContext) -> Result<Self, ServiceError> {
        Ok(CommandApi {
            commands: CommandHandler::with_schemas(context.store.clone(), context.schemas.clone()),
            topic: Arc::from(context.topic()?),
        })
    }

    /// Executes `command` on `stream` and answers as [`CommandAccepted::respond`]
    /// does; a refusal as its problem.
    pub async fn answer(
        &self,
        stream: &StreamId,
        command: &A::Command,
        ctx: &CommandContext,
    ) -> Result<Response, Problem> {
        let appended = self.commands.execute(stream, command, ctx).await?;
        Ok(CommandAccepted::respond(appended, &self.topic))
    }
}

impl<A> Clone for CommandApi<A> {
    fn clone(&self) -> Self {
        CommandApi {
            commands: self.commands.clone(),
            topic: Arc::clone(&self.topic),
        }
    }
}

impl<A> std::ops::Deref for CommandApi<A> {
    type Target = CommandHandler<A>;

    fn deref(&self) -> &CommandHandler<A> {
        &self.commands
    }
}

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The registry does not have the service, or cannot be read.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The service's database could not be reached or migrated.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A setting of the service (in `sluice.toml` or the variable that overrides
    /// it) is missing or invalid: the service does not start on a guess.
    #[error("`{component}`: {setting} {reason}")]
    Setting {
        component: String,
        setting: String,
        reason: String,
    },
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

    /// The service's migrations in order: the event store's, the consumer
    /// runtime's (for its reactor), then its own.
    pub fn migrators(&self) -> Vec<Migrator> {
        vec![
            store::migrator(),
            crate::consumer::migrator(),
            (self.migrator)(),
        ]
    }

    /// Migrates the service's database as its owner role.
    pub async fn migrate(&self, registry: &Registry) -> Result<(), ServiceError> {
        let component = registry.component(self.name)?;
        db::migrate(registry, component, self.migrators()).await?;
        Ok(())
    }

    /// What serving and relaying both start with: the service's component in
    /// `registry` and its schema catalog, once its database is migrated.
    async fn prepare<'r>(
        &self,
        registry: &'r Registry,
    ) -> Result<(&'r Component, SchemaCatalog), ServiceError> {
        let component = registry.component(self.name)?;
        let catalog = self.catalog()?;
        self.migrate(registry).await?;
        Ok((component, catalog))
    }

    /// Migrates, binds the registry port and serves until `shutdown`.
    pub async fn run(
        &self,
        registry: &Registry,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let (component, catalog) = self.prepare(registry).await?;
        let pool = db::app_pool(registry, component, db::PoolUse::Api).await?;
        let listener = bind(component).await?;
        tracing::info!(
            component = self.name,
            address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "write service listening"
        );
        let context = ServiceContext {
            store: EventStore::new(pool.clone()),
            schemas: catalog,
            component: component.clone(),
        };
        let router = with_platform_routes((self.router)(&context)?, self.name, Some(pool));
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
        let (component, catalog) = self.prepare(registry).await?;
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
        let handler = reactor(&ServiceContext {
            store: EventStore::new(pool.clone()),
            schemas: own,
            component: component.clone(),
        })?;
        let runtime = crate::consumer::ConsumerRuntime::new(
            &format!("{}_reactor", self.name),
            component.consumes.clone(),
            pool,
            bootstrap,
            catalog,
            handler,
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
