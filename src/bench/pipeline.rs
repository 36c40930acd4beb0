//! The orders side of the projection benches, in this process: two throwaway
//! databases (the orders store and order_view), the orders API over the store,
//! its relay, and order_view workers on its topic.

use std::sync::Arc;

use anyhow::Context;
use sluice_platform::avro::SchemaCatalog;
use sluice_platform::broker::ensure_topics;
use sluice_platform::consumer::{ConsumerConfig, ConsumerRuntime, EventHandler};
use sluice_platform::provision::drop_component;
use sluice_platform::registry::{ComponentKind, Registry};
use sluice_platform::store::EventStore;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::broker::{record_machine, Broker};
use super::relay::{start_relay, RelayTask};
use super::BenchDatabase;

/// Partitions of the orders topic.
pub(super) const PARTITIONS: u32 = 3;

/// The two databases of a projection bench, provisioned as the orders service's
/// and the order_view projection's: `sluice_bench_<pid><prefix>_orders` and
/// `…_view`.
pub(super) struct Databases {
    orders: BenchDatabase,
    view: BenchDatabase,
}

impl Databases {
    /// Both databases, or neither (the first is dropped when the second fails).
    pub(super) async fn create(admin: &str, prefix: &str) -> anyhow::Result<Self> {
        let orders = format!("{prefix}_orders");
        let orders = BenchDatabase::create(admin, &orders, ComponentKind::Service)
            .await
            .context("creating the benchmark's orders database")?;
        let view = format!("{prefix}_view");
        let view = match BenchDatabase::create(admin, &view, ComponentKind::Projection).await {
            Ok(view) => view,
            Err(e) => {
                let _ = drop_component(admin, &orders.spec).await;
                return Err(e.context("creating the benchmark's order_view database"));
            }
        };
        Ok(Databases { orders, view })
    }

    pub(super) async fn drop(&self, admin: &str) -> anyhow::Result<()> {
        for db in [&self.orders, &self.view] {
            drop_component(admin, &db.spec)
                .await
                .context("dropping a benchmark database")?;
        }
        Ok(())
    }

    /// Migrates the orders store and the order_view database; their app pools.
    async fn migrate_and_connect(&self) -> anyhow::Result<(PgPool, PgPool)> {
        let orders_migrations = vec![
            sluice_platform::store::migrator(),
            (sluice_orders::SERVICE.migrator)(),
        ];
        self.orders.migrate(orders_migrations).await?;
        let view_migrations = vec![
            sluice_platform::consumer::migrator(),
            sluice_order_view::migrator(),
        ];
        self.view.migrate(view_migrations).await?;
        let orders_pool = self.orders.app_pool(16).await?;
        let view_pool = self.view.app_pool(8).await?;
        Ok((orders_pool, view_pool))
    }
}

/// What both projection benches run in this process over their databases and
/// broker: the orders service (its store, API and relay) and order_view workers
/// on its topic.
pub(super) struct Pipeline {
    orders_pool: PgPool,
    pub(super) view_pool: PgPool,
    pub(super) store: EventStore,
    catalog: SchemaCatalog,
    service: &'static str,
    /// The logical name (stream positions, the worker): `<service>.events`.
    pub(super) topic: String,
}

impl Pipeline {
    /// Migrates and connects to both databases, and creates the topic of
    /// `service` on the broker.
    pub(super) async fn prepare(
        databases: &Databases,
        broker: &Broker,
        service: &'static str,
    ) -> anyhow::Result<Self> {
        let (orders_pool, view_pool) = databases.migrate_and_connect().await?;
        let store = EventStore::new(orders_pool.clone());
        let catalog = sluice_orders::SERVICE.catalog()?;
        let topic = format!("{service}.events");
        ensure_topics(
            &broker.bootstrap,
            &[(broker.topics.physical(&topic), PARTITIONS)],
        )
        .await
        .context("creating the benchmark topic")?;
        Ok(Pipeline {
            orders_pool,
            view_pool,
            store,
            catalog,
            service,
            topic,
        })
    }

    /// The orders relay, publishing until `stop`.
    pub(super) fn relay(
        &self,
        broker: &Broker,
        stop: &CancellationToken,
    ) -> anyhow::Result<RelayTask> {
        let catalog = Arc::new(self.catalog.clone());
        let (task, _) = start_relay(&self.orders_pool, broker, self.service, catalog, stop)?;
        Ok(task)
    }

    /// An order_view worker named `component` on the topic, from its positions.
    pub(super) fn worker(
        &self,
        broker: &Broker,
        component: &str,
    ) -> ConsumerRuntime<Box<dyn EventHandler>> {
        ConsumerRuntime::new(
            component,
            vec![self.topic.clone()],
            self.view_pool.clone(),
            &broker.bootstrap,
            Arc::new(self.catalog.clone()),
            (sluice_order_view::PROJECTION.handler)(),
            ConsumerConfig {
                topic_names: broker.topics.clone(),
                ..ConsumerConfig::default()
            },
        )
    }

    /// The orders API (with the platform's routes) on a free local port until
    /// `stop`: its address and the server's task.
    pub(super) async fn serve(
        &self,
        registry: &Registry,
        stop: &CancellationToken,
    ) -> anyhow::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
        let context = orders_context(registry, &self.store, &self.catalog)?;
        let router = sluice_platform::http::with_platform_routes(
            (sluice_orders::SERVICE.router)(&context)?,
            "orders",
            Some(self.orders_pool.clone()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let server = sluice_platform::http::serve(listener, router, stop.clone());
        Ok((address, tokio::spawn(server)))
    }

    /// Records and prints the machine the bench ran on, and closes the pools.
    pub(super) async fn finish(self, broker: &Broker) {
        record_machine(broker);
        super::print_machine(&self.view_pool, &broker.description).await;
        self.orders_pool.close().await;
        self.view_pool.close().await;
    }
}

/// What the orders API is built over: the benchmark's store, as the registry's
/// orders service.
fn orders_context(
    registry: &Registry,
    store: &EventStore,
    catalog: &SchemaCatalog,
) -> anyhow::Result<sluice_platform::service::ServiceContext> {
    Ok(sluice_platform::service::ServiceContext {
        store: store.clone(),
        schemas: catalog.clone(),
        component: registry.component("orders")?.clone(),
    })
}
