//! Connections to a component's own database: the app role's pool for the runtime,
//! the owner role for migrations. Nothing here can reach another component's
//! database: each call is given one component and uses only its URLs.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::provision::redact;
use crate::registry::{Component, Registry};

/// Errors connecting to or migrating a component's database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The component is stateless: it has no database.
    #[error("component `{0}` has no database")]
    Stateless(String),
    /// The URL is malformed.
    #[error("invalid database URL for `{component}` ({url})")]
    Url {
        component: String,
        url: String,
        source: sqlx::Error,
    },
    /// The database refused or could not be reached.
    #[error("cannot connect to the `{component}` database ({url}); has `sluice db setup` run?")]
    Connect {
        component: String,
        url: String,
        source: sqlx::Error,
    },
    /// A migration failed; the database is left at the last successful one.
    #[error("migrating `{component}`")]
    Migrate {
        component: String,
        source: sqlx::migrate::MigrateError,
    },
}

/// What a pool serves, which decides its default size (`<NAME>_DATABASE_POOL_SIZE`
/// overrides it for every pool of the component).
///
/// Under `sluice up` every part of every component connects to one PostgreSQL
/// server, whose `max_connections` is 100 by default, 97 of them for roles that are
/// not superusers. A pool grows to its size under load and keeps its connections, so
/// the sizes must add up to well below that: the reference domain's parts (three
/// services of an API, a relay and a reactor; three projections) take 69 at most,
/// leaving the rest to `sluice status`, `psql` sessions and the other tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolUse {
    /// A write service's HTTP API: one connection per command in flight.
    Api,
    /// An outbox relay: one query at a time (its lease has a connection of its own,
    /// outside the pool).
    Relay,
    /// A reactor's consumer runtime and the commands it appends.
    Reactor,
    /// A projection: its consumer runtime and its query API share the pool.
    Projection,
    /// A one-off command (`sluice dlq`, a rebuild's reads).
    Tool,
}

impl PoolUse {
    /// Connections a pool of this use holds at most, unless overridden.
    pub const fn default_size(self) -> u32 {
        match self {
            PoolUse::Api => 10,
            PoolUse::Relay => 4,
            PoolUse::Reactor => 4,
            PoolUse::Projection => 6,
            PoolUse::Tool => 2,
        }
    }
}

/// The size of `component`'s pool for `used_for`: `<NAME>_DATABASE_POOL_SIZE` where
/// set, else the use's default.
pub fn pool_size(component: &Component, used_for: PoolUse) -> u32 {
    std::env::var(format!("{}_DATABASE_POOL_SIZE", component.env_prefix()))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(used_for.default_size())
}

/// Opens the component's runtime pool (its app role, `<NAME>_DATABASE_URL`) for
/// `used_for`.
pub async fn app_pool(
    registry: &Registry,
    component: &Component,
    used_for: PoolUse,
) -> Result<PgPool, DbError> {
    let url = registry
        .app_database_url(component)
        .ok_or_else(|| DbError::Stateless(component.name.clone()))?;
    let size = pool_size(component, used_for);
    let options = parse(&component.name, &url)?;
    pool_with(options, size)
        .await
        .map_err(|source| DbError::Connect {
            component: component.name.clone(),
            url: redact(&url),
            source,
        })
}

/// A pool over given options (tests use it with their own databases).
pub async fn pool_with(options: PgConnectOptions, size: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(
            options.log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1)),
        )
        .await
}

/// Runs the component's migrations as its owner role (`<NAME>_OWNER_DATABASE_URL`),
/// in order; each migrator ignores the others' entries in the shared history table.
pub async fn migrate(
    registry: &Registry,
    component: &Component,
    migrators: Vec<Migrator>,
) -> Result<(), DbError> {
    let url = registry
        .owner_database_url(component)
        .ok_or_else(|| DbError::Stateless(component.name.clone()))?;
    let options = parse(&component.name, &url)?;
    migrate_with(options, migrators).await.map_err(|e| match e {
        MigrateFailure::Connect(source) => DbError::Connect {
            component: component.name.clone(),
            url: redact(&url),
            source,
        },
        MigrateFailure::Migrate(source) => DbError::Migrate {
            component: component.name.clone(),
            source,
        },
    })
}

/// Why [`migrate_with`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateFailure {
    #[error(transparent)]
    Connect(sqlx::Error),
    #[error(transparent)]
    Migrate(sqlx::migrate::MigrateError),
}

/// Runs migrators over one connection made with `options` (an owner role).
pub async fn migrate_with(
    options: PgConnectOptions,
    migrators: Vec<Migrator>,
) -> Result<(), MigrateFailure> {
    // A one-connection pool rather than a bare connection: `Migrator::run` over
    // `&mut PgConnection` yields a future that is not `Send` for every lifetime,
    // which would keep callers from spawning it.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(MigrateFailure::Connect)?;
    for mut migrator in migrators {
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await.map_err(MigrateFailure::Migrate)?;
    }
    pool.close().await;
    Ok(())
}

fn parse(component: &str, url: &str) -> Result<PgConnectOptions, DbError> {
    PgConnectOptions::from_str(url).map_err(|source| DbError::Url {
        component: component.to_owned(),
        url: redact(url),
        source,
    })
}
