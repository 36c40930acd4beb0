//! A fresh, isolated database per test, provisioned exactly as `sluice db setup`
//! provisions a component (own owner and app roles, `CONNECT` revoked from
//! `PUBLIC`), and dropped with its roles when the test ends, passed or failed (ADR 8).

use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use super::unique_suffix;
use crate::provision::{drop_component, Plan};
use crate::registry::{Component, ComponentKind, DatabaseSpec};

/// The admin URL tests provision with.
pub fn admin_url() -> String {
    std::env::var("SLUICE_ADMIN_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A component database that exists for the duration of one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub spec: DatabaseSpec,
    admin_url: String,
}

impl TestDatabase {
    /// Provisions `t_<label>_<random>` with its owner and app roles, for a component
    /// of the given kind.
    pub async fn provision(label: &str, kind: ComponentKind) -> Self {
        let name = format!("t_{label}_{}", unique_suffix());
        let spec = DatabaseSpec {
            owner_role: format!("{name}_owner"),
            app_role: format!("{name}_app"),
            owner_password: "owner-test".to_owned(),
            app_password: "app-test".to_owned(),
            name: name.clone(),
        };
        let component = Component {
            name: label.to_owned(),
            kind,
            port: 0,
            database: Some(spec.clone()),
            produces: vec![],
            consumes: vec![],
            depends_on: vec![],
            layer: crate::registry::Layer::default_for(kind),
            extra_env: Default::default(),
        };
        Self::provision_spec(&component, spec).await
    }

    /// Provisions and migrates a database for write service `service`, as
    /// `sluice run` migrates it.
    pub async fn for_service(service: &crate::service::WriteService) -> Self {
        let db = Self::provision(service.name, ComponentKind::Service).await;
        db.migrate(service.migrators()).await;
        db
    }

    /// Provisions a registry component's database under a test-unique name.
    pub async fn provision_component(component: &Component) -> Self {
        let mut component = component.clone();
        let suffix = unique_suffix();
        let spec = component
            .database
            .as_mut()
            .expect("component has a database");
        spec.name = format!("t_{}_{suffix}", spec.name);
        spec.owner_role = format!("{}_owner", spec.name);
        spec.app_role = format!("{}_app", spec.name);
        let spec = spec.clone();
        Self::provision_spec(&component, spec).await
    }

    async fn provision_spec(component: &Component, spec: DatabaseSpec) -> Self {
        let admin_url = admin_url();
        Plan::for_component(component, &spec)
            .execute(&admin_url)
            .await
            .expect("provision test database");
        TestDatabase { spec, admin_url }
    }

    /// Connection options for `role` on this test's server, any database.
    pub fn options_for(&self, role: &str, password: &str, database: &str) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.admin_url)
            .expect("admin URL")
            .username(role)
            .password(password)
            .database(database)
    }

    /// The owner role's options (runs migrations).
    pub fn owner_options(&self) -> PgConnectOptions {
        self.options_for(
            &self.spec.owner_role,
            &self.spec.owner_password,
            &self.spec.name,
        )
    }

    /// The app role's options (the component's runtime).
    pub fn app_options(&self) -> PgConnectOptions {
        self.options_for(
            &self.spec.app_role,
            &self.spec.app_password,
            &self.spec.name,
        )
    }

    /// Runs migrations as the owner role.
    pub async fn migrate(&self, migrators: Vec<Migrator>) {
        crate::db::migrate_with(self.owner_options(), migrators)
            .await
            .expect("migrate test database");
    }

    /// A pool of the app role.
    pub async fn app_pool(&self) -> PgPool {
        crate::db::pool_with(self.app_options(), 20)
            .await
            .expect("connect as app role")
    }

    /// A URL of the app role (for child processes).
    pub fn app_url(&self) -> String {
        self.url_for(&self.spec.app_role, &self.spec.app_password)
    }

    /// A URL of the owner role (for child processes).
    pub fn owner_url(&self) -> String {
        self.url_for(&self.spec.owner_role, &self.spec.owner_password)
    }

    fn url_for(&self, role: &str, password: &str) -> String {
        let opts = PgConnectOptions::from_str(&self.admin_url).expect("admin URL");
        format!(
            "postgres://{role}:{password}@{}:{}/{}",
            opts.get_host(),
            opts.get_port(),
            self.spec.name
        )
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime (or while panicking): clean up on a thread of
        // its own with a runtime of its own.
        let admin_url = self.admin_url.clone();
        let spec = self.spec.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(drop_component(&admin_url, &spec))
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!(
                "warning: could not drop test database {}: {e}",
                self.spec.name
            );
        }
    }
}
