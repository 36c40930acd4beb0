//! A slice of the platform for end-to-end tests that run some components
//! themselves: an isolated registry (written to a file for child processes), the
//! databases of the named components provisioned, the orders store migrated, and the
//! registry's broker (the run's shared Kafka, or a tansu of its own) with every
//! registry topic.

use std::path::{Path, PathBuf};

use sluice_platform::broker::{ensure_topics, LocalBroker};
use sluice_platform::provision::Plan;
use sluice_platform::registry::Registry;
use sluice_platform::testing::{drop_registry_databases, isolated_registry, start_registry_broker};
use uuid::Uuid;

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

    /// Drops the databases and removes the registry file and the data directory.
    pub async fn remove(self) {
        drop_registry_databases(&self.registry).await;
        let _ = std::fs::remove_file(&self.registry_file);
        let _ = std::fs::remove_dir_all(&self.registry.platform.data_dir);
    }
}
