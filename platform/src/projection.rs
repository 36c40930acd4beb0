//! Running a projection: a read model in its own database, fed by the consumer
//! runtime from the topics the registry says it consumes, queried over HTTP.
//!
//! A projection crate describes itself with a [`ProjectionService`]; the binary runs
//! it alone (`sluice run order_view`) or inside `sluice up`. Rebuilding its read
//! model without downtime ([`ProjectionService::rebuild`]) and folding it afresh for
//! `sluice verify` ([`ProjectionService::fold`]) live in the `rebuild` module.

mod query;
mod rebuild;

use std::sync::Arc;

use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use query::{page_limit, query_api, PageLimitError};
pub use rebuild::{create_generation_schema, drop_fold, swap_generation, RebuildError, Rebuilt};

use crate::avro::SchemaCatalog;
use crate::consumer::{ConsumerConfig, ConsumerRuntime, EventHandler};
use crate::db;
use crate::http::with_platform_routes;
use crate::registry::{Component, Registry};
use crate::service::ServiceError;

/// What the platform needs to know to run a projection.
#[derive(Clone, Copy)]
pub struct ProjectionService {
    /// The registry name (`order_view`).
    pub name: &'static str,
    /// The read model's migrations, run after the consumer runtime's.
    pub migrator: fn() -> Migrator,
    /// Applies events to the read model.
    pub handler: fn() -> Box<dyn EventHandler>,
    /// The query API over the read model.
    pub router: fn(PgPool) -> axum::Router,
}

/// A [`ProjectionService::handler`] for a stateless handler type: its default value,
/// boxed (`handler: default_handler::<handlers::OrderViewHandler>`).
pub fn default_handler<H: EventHandler + Default>() -> Box<dyn EventHandler> {
    Box::new(H::default())
}

impl EventHandler for Box<dyn EventHandler> {
    fn apply<'a>(
        &'a self,
        tx: &'a mut sqlx::PgConnection,
        event: &'a crate::consumer::ConsumedEvent,
    ) -> futures::future::BoxFuture<'a, Result<(), crate::consumer::HandlerError>> {
        (**self).apply(tx, event)
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut sqlx::PgConnection,
        events: &'a [&'a crate::consumer::ConsumedEvent],
    ) -> futures::future::BoxFuture<'a, Result<(), crate::consumer::HandlerError>> {
        (**self).apply_batch(tx, events)
    }
}

impl ProjectionService {
    /// Migrates the read model's database as its owner role; returns the
    /// projection's registry entry.
    pub async fn migrate<'r>(&self, registry: &'r Registry) -> Result<&'r Component, ServiceError> {
        let component = registry.component(self.name)?;
        db::migrate(registry, component, self.migrators()).await?;
        Ok(component)
    }

    /// Migrates, then consumes the registry's topics and serves queries until
    /// `shutdown`. `catalog` holds the schemas of every topic it reads.
    pub async fn run(
        &self,
        registry: &Registry,
        bootstrap: &str,
        catalog: Arc<SchemaCatalog>,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let component = self.migrate(registry).await?;
        let pool = db::app_pool(registry, component, db::PoolUse::Projection).await?;
        let runtime = self.runtime(
            component.consumes.clone(),
            pool.clone(),
            bootstrap,
            catalog,
            ConsumerConfig::for_registry(registry),
        );
        let listener = crate::service::bind(component).await?;
        let queries = (self.router)(pool.clone()).layer(axum::middleware::from_fn_with_state(
            pool.clone(),
            crate::consistency::wait_for_token,
        ));
        let router = with_platform_routes(queries, self.name, Some(pool));
        let name = self.name;
        let consume = async {
            runtime
                .run(shutdown.clone())
                .await
                .map_err(|source| ServiceError::Consumer {
                    component: name.to_owned(),
                    source,
                })
        };
        let serve = async {
            crate::http::serve(listener, router, shutdown.clone())
                .await
                .map_err(|source| ServiceError::Serve {
                    component: name.to_owned(),
                    source,
                })
        };
        // Either half failing stops the other.
        let result = tokio::try_join!(
            async {
                let r = consume.await;
                shutdown.cancel();
                r
            },
            async {
                let r = serve.await;
                shutdown.cancel();
                r
            }
        );
        result.map(|_| ())
    }

    fn migrators(&self) -> Vec<Migrator> {
        vec![crate::consumer::migrator(), (self.migrator)()]
    }

    /// A consumer runtime applying the projection's handler to `topics`, writing
    /// through `pool`: the live read model's, or a generation's being built.
    fn runtime(
        &self,
        topics: Vec<String>,
        pool: PgPool,
        bootstrap: &str,
        catalog: Arc<SchemaCatalog>,
        config: ConsumerConfig,
    ) -> ConsumerRuntime<Box<dyn EventHandler>> {
        ConsumerRuntime::new(
            self.name,
            topics,
            pool,
            bootstrap,
            catalog,
            (self.handler)(),
            config,
        )
    }
}
