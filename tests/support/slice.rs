//! A slice of the platform for end-to-end tests that run some components
//! themselves: an isolated registry (written to a file for child processes), the
//! databases of the named components provisioned, the orders store migrated, and the
//! registry's broker (the run's shared Kafka, or a tansu of its own) with every
//! registry topic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;
use sluice_platform::broker::{ensure_topics, LocalBroker};
use sluice_platform::provision::Plan;
use sluice_platform::registry::Registry;
use sluice_platform::relay::{Relay, RelayConfig};
use sluice_platform::store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use sluice_platform::testing::{
    broker_env, drop_registry_databases, isolated_registry, start_registry_broker, topic_size,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::wait::{millis, secs, until};

pub struct Slice {
    pub registry: Registry,
    pub registry_file: PathBuf,
    pub bootstrap: String,
    _broker: Option<LocalBroker>,
}

impl Slice {
    /// Provisions `components` (the orders service among them) and starts the broker.
    pub async fn start(components: &[&str]) -> Self {
        let base =
            Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sluice.toml")).unwrap();
        let (registry, text) = isolated_registry(&base);
        let registry_file =
            std::env::temp_dir().join(format!("sluice-slice-{}.toml", Uuid::now_v7()));
        std::fs::write(&registry_file, text).unwrap();
        for name in components {
            let c = registry.component(name).unwrap();
            Plan::for_component(c, c.database.as_ref().unwrap())
                .execute(&registry.platform.admin_database_url)
                .await
                .unwrap();
        }
        sluice_orders::SERVICE.migrate(&registry).await.unwrap();
        let broker = start_registry_broker(&registry).await;
        let bootstrap = registry.platform.kafka_brokers.clone();
        ensure_topics(&bootstrap, registry.topic_specs())
            .await
            .unwrap();
        Slice {
            registry,
            registry_file,
            bootstrap,
            _broker: broker,
        }
    }

    /// Starts `sluice --registry <the slice's> run <args>` as a child process.
    pub fn run(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--registry")
            .arg(&self.registry_file)
            .arg("run")
            .args(args)
            .envs(broker_env(&self.registry))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start sluice run")
    }

    /// A pool on the orders store.
    pub async fn orders_store(&self) -> EventStore {
        let orders = self.registry.component("orders").unwrap();
        let url = self.registry.app_database_url(orders).unwrap();
        EventStore::new(PgPool::connect(&url).await.unwrap())
    }

    /// Runs orders' relay on `store` in this process until `stop`.
    pub fn spawn_orders_relay(
        &self,
        store: &EventStore,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let relay = Relay::new(
            "orders",
            store.pool().clone(),
            &self.bootstrap,
            sluice::components::all_schemas().unwrap(),
            RelayConfig::for_registry(&self.registry),
        )
        .unwrap();
        tokio::spawn(async move { relay.run(stop).await.unwrap() })
    }

    /// Waits until the orders topic holds `n` records.
    pub async fn wait_published(&self, n: usize) {
        let topic = self.registry.topic_names().physical("orders.events");
        until(
            &format!("the relay publishing {n} records"),
            secs(300),
            millis(100),
            async || {
                let published = topic_size(&self.bootstrap, &topic).await;
                if published >= n as i64 {
                    Ok(())
                } else {
                    Err(published)
                }
            },
        )
        .await
    }

    /// A pool on order_view's database once the projection has migrated its
    /// tables; `None` before.
    pub async fn order_view_pool(&self) -> Option<PgPool> {
        let view = self.registry.component("order_view").unwrap();
        let pool = PgPool::connect(&self.registry.app_database_url(view).unwrap())
            .await
            .ok()?;
        let migrated = sqlx::query("SELECT 1 FROM order_view LIMIT 1")
            .execute(&pool)
            .await
            .is_ok();
        migrated.then_some(pool)
    }

    /// Drops the databases and removes the registry file and the data directory.
    pub async fn remove(self) {
        drop_registry_databases(&self.registry).await;
        let _ = std::fs::remove_file(&self.registry_file);
        let _ = std::fs::remove_dir_all(&self.registry.platform.data_dir);
    }
}

/// Places and confirms an order of `customer` in `store` (two events on a new order
/// stream); returns its id.
pub async fn place_confirmed_order(store: &EventStore, customer: &str) -> Uuid {
    let order_id = Uuid::now_v7();
    let events = vec![
        NewEvent {
            event_type: "OrderPlaced".into(),
            schema_version: 1,
            payload: json!({ "order_id": order_id, "customer_id": customer, "currency": "EUR",
                "lines": [{ "sku": "R-1", "quantity": 2, "unit_price_minor": 250 }], "total_minor": 500 }),
        },
        NewEvent {
            event_type: "OrderConfirmed".into(),
            schema_version: 1,
            payload: json!({ "order_id": order_id }),
        },
    ];
    store
        .append(Append {
            stream_id: &StreamId::from(order_id),
            stream_type: "order",
            expected: ExpectedVersion::NoStream,
            events,
            metadata: &Metadata::default(),
            idempotency: None,
        })
        .await
        .unwrap();
    order_id
}

/// Confirmed orders in an order_view database (0 while it cannot answer).
pub async fn confirmed(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM order_view WHERE order_status = 'confirmed'")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Waits until an order_view database shows `n` confirmed orders; `what` names the
/// moment in the failure.
pub async fn wait_confirmed(pool: &PgPool, n: usize, what: &str) {
    until(
        &format!("{what}: order_view showing {n} confirmed orders"),
        secs(300),
        millis(50),
        async || {
            let seen = confirmed(pool).await;
            if seen >= n as i64 {
                Ok(())
            } else {
                Err(seen)
            }
        },
    )
    .await
}

/// Appends `n` `OrderConfirmed` events (payloads valid for their schema) to
/// `stream` of `store`, in one append.
pub async fn append_confirmations(store: &EventStore, stream: &str, n: usize) {
    let events = (0..n)
        .map(|_| NewEvent {
            event_type: "OrderConfirmed".into(),
            schema_version: 1,
            payload: json!({ "order_id": Uuid::now_v7() }),
        })
        .collect();
    store
        .append(Append {
            stream_id: &StreamId::new(stream).unwrap(),
            stream_type: "order",
            expected: ExpectedVersion::Any,
            events,
            metadata: &Metadata::default(),
            idempotency: None,
        })
        .await
        .unwrap();
}
