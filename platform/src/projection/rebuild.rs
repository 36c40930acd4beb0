//! Rebuilding a read model without downtime, and folding it afresh for `sluice
//! verify`: each builds a generation of the read model in a schema of its own beside
//! `public`, with the projection's migrations and handler.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use super::ProjectionService;
use crate::avro::SchemaCatalog;
use crate::consumer::{CatchUp, ConsumerConfig, ConsumerError, ConsumerRuntime, EventHandler};
use crate::db;
use crate::registry::{Component, DatabaseSpec, Registry};

/// Why a rebuild stopped. The live read model is untouched by every one of them.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The registry could not be read or has no such component.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The read model's database could not be reached or migrated.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The component named is not a projection.
    #[error("`{0}` is not a projection")]
    NotAProjection(String),
    /// Another rebuild holds the rebuild lock; one at a time.
    #[error("another rebuild of `{0}` is running")]
    AlreadyRunning(String),
    /// A statement of the rebuild failed; the live read model is unchanged.
    #[error("rebuilding `{component}`: {source}")]
    Database {
        component: String,
        source: sqlx::Error,
    },
    /// The new generation's schema could not be migrated.
    #[error("migrating the new generation of `{component}`: {source}")]
    Migrate {
        component: String,
        source: db::MigrateFailure,
    },
    /// Filling the new generation from the topics failed.
    #[error("replaying the topics into the new generation of `{component}`")]
    Consumer {
        component: String,
        source: ConsumerError,
    },
    /// Stopped before the swap; the new generation is dropped.
    #[error("rebuild of `{0}` interrupted before the switch; the live read model is unchanged")]
    Interrupted(String),
}

/// What a finished rebuild did.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    /// Records replayed into the new generation.
    pub replayed: u64,
    pub elapsed: Duration,
    /// The retired generation's schema, when it could not be dropped at once (held
    /// by a long query); the next rebuild drops it.
    pub left_behind: Option<String>,
}

/// Schemas of rebuilds in progress and of retired generations carry these prefixes.
const REBUILD_PREFIX: &str = "sluice_rebuild_";
/// Schemas of `sluice verify`'s folds; each verify drops its own.
const VERIFY_PREFIX: &str = "sluice_verify_";
const RETIRED_PREFIX: &str = "sluice_retired_";

/// Swaps the generation built in `schema` in for the live one, in one transaction
/// of the database's owner: it takes the live generation row FOR UPDATE (waiting for
/// the live consumer's batch in flight, which holds it FOR SHARE), marks it retired,
/// renames `public` to `retired` and `schema` to `public`. A live consumer that
/// waited sees its generation retired and resumes from the new one's positions.
pub async fn swap_generation(
    owner: &mut PgConnection,
    schema: &str,
    retired: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = owner.begin().await?;
    sqlx::raw_sql(&format!(
        "SET LOCAL lock_timeout = '30s';\n\
         SELECT generation FROM public.consumer_generation FOR UPDATE;\n\
         UPDATE public.consumer_generation SET retired = true;\n\
         ALTER SCHEMA public RENAME TO {retired};\n\
         ALTER SCHEMA {schema} RENAME TO public;"
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A projection's registry entry and its database, with how to connect to it as its
/// owner and as its app role: what a rebuild and a fold start from.
struct Target<'r> {
    component: &'r Component,
    database: &'r DatabaseSpec,
    owner: PgConnectOptions,
    app: PgConnectOptions,
}

impl ProjectionService {
    /// Rebuilds the read model from the beginning of its topics without downtime.
    ///
    /// The new generation is built in a schema of its own beside `public` (where the
    /// live one keeps serving): same migrations, same handler, a consumer of its own
    /// from offset zero. Once it has caught up, one transaction swaps the two: it
    /// takes the live generation row FOR UPDATE (waiting for the live consumer's
    /// batch in flight), marks it retired, renames `public` away and the new schema
    /// to `public`. Queries resolve their tables anew after the rename (PostgreSQL
    /// invalidates cached plans on a schema change), so they see either the old
    /// model or the new one, whole; the live consumer sees its generation retired
    /// and resumes from the new generation's positions. The old schema is dropped.
    pub async fn rebuild(
        &self,
        registry: &Registry,
        bootstrap: &str,
        catalog: Arc<SchemaCatalog>,
        shutdown: CancellationToken,
        progress: impl FnMut(&CatchUp),
    ) -> Result<Rebuilt, RebuildError> {
        let target = self.target(registry)?;
        let name = self.name.to_owned();
        let sql = self.database_error();
        // The live generation first: it must have the generation row to retire.
        db::migrate(registry, target.component, self.migrators()).await?;
        let mut owner = PgConnection::connect_with(&target.owner)
            .await
            .map_err(sql)?;

        // One rebuild at a time; the lock goes with the session.
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('sluice.rebuild'))")
                .fetch_one(&mut owner)
                .await
                .map_err(sql)?;
        if !locked {
            return Err(RebuildError::AlreadyRunning(name));
        }
        // Leftovers of an interrupted rebuild or of a retired generation still held
        // by a query when it was swapped out.
        let leftovers: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 OR nspname LIKE $2",
        )
        .bind(format!("{REBUILD_PREFIX}%"))
        .bind(format!("{RETIRED_PREFIX}%"))
        .fetch_all(&mut owner)
        .await
        .map_err(sql)?;
        for schema in leftovers {
            tracing::info!(%schema, "dropping the leftover of an earlier rebuild");
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut owner)
                .await
                .map_err(sql)?;
        }

        let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
        let schema = format!("{REBUILD_PREFIX}{stamp}");
        create_generation_schema(&mut owner, &schema, target.component, target.database)
            .await
            .map_err(sql)?;
        let result = self
            .fill(
                &schema,
                &target,
                bootstrap,
                ConsumerConfig::for_registry(registry),
                catalog,
                shutdown,
                progress,
            )
            .await;
        let (replayed, started) = match result {
            Ok(done) => (done.applied, done.started),
            Err(e) => {
                // Nothing was swapped: the half-built generation goes.
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut owner)
                    .await;
                return Err(e);
            }
        };

        let retired = format!("{RETIRED_PREFIX}{stamp}");
        swap_generation(&mut owner, &schema, &retired)
            .await
            .map_err(sql)?;
        tracing::info!(component = %name, replayed, "switched to the rebuilt generation");

        // Queries still reading the old tables hold the drop back; past the bound the
        // schema stays for the next rebuild to drop.
        let dropped = sqlx::raw_sql(&format!(
            "SET lock_timeout = '10s'; DROP SCHEMA {retired} CASCADE; RESET lock_timeout;"
        ))
        .execute(&mut owner)
        .await;
        let left_behind = match dropped {
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(schema = %retired, error = %e, "retired generation not dropped yet");
                Some(retired)
            }
        };
        let _ = owner.close().await;
        Ok(Rebuilt {
            replayed,
            elapsed: started.elapsed(),
            left_behind,
        })
    }

    /// Folds the projection's topics from offset zero into a fresh schema of its
    /// database, up to `until` (per topic and partition, the first offset not to
    /// apply), without announcing dead letters; returns the schema. The caller
    /// compares it with the live read model and drops it ([`drop_fold`]).
    /// `sluice verify` uses it.
    pub async fn fold(
        &self,
        registry: &Registry,
        bootstrap: &str,
        catalog: Arc<SchemaCatalog>,
        until: &BTreeMap<(String, i32), i64>,
        shutdown: CancellationToken,
    ) -> Result<String, RebuildError> {
        let target = self.target(registry)?;
        let sql = self.database_error();
        let mut owner = PgConnection::connect_with(&target.owner)
            .await
            .map_err(sql)?;
        let schema = format!("{VERIFY_PREFIX}{}", uuid::Uuid::now_v7().simple());
        create_generation_schema(&mut owner, &schema, target.component, target.database)
            .await
            .map_err(sql)?;
        let folded = async {
            let config = ConsumerConfig {
                announce_dead_letters: false,
                ..ConsumerConfig::for_registry(registry)
            };
            let (pool, runtime) = self
                .generation(&schema, &target, bootstrap, catalog, config)
                .await?;
            let done = runtime.catch_up_to(until, shutdown).await;
            pool.close().await;
            done.map_err(self.consumer_error())
        }
        .await;
        if let Err(e) = folded {
            let _ = drop_fold(&mut owner, &schema).await;
            return Err(e);
        }
        let _ = owner.close().await;
        Ok(schema)
    }

    /// The projection's registry entry and database, and how to connect to it: what
    /// a rebuild and a fold start from.
    fn target<'r>(&self, registry: &'r Registry) -> Result<Target<'r>, RebuildError> {
        let component = registry.component(self.name)?;
        let not_a_projection = || RebuildError::NotAProjection(self.name.to_owned());
        let database = component.database.as_ref().ok_or_else(not_a_projection)?;
        let options = |url: Option<String>| {
            PgConnectOptions::from_str(&url.ok_or_else(not_a_projection)?)
                .map_err(self.database_error())
        };
        Ok(Target {
            component,
            database,
            owner: options(registry.owner_database_url(component))?,
            app: options(registry.app_database_url(component))?,
        })
    }

    /// [`RebuildError::Database`] of this projection.
    fn database_error(&self) -> impl Fn(sqlx::Error) -> RebuildError + Copy + '_ {
        |source| RebuildError::Database {
            component: self.name.to_owned(),
            source,
        }
    }

    /// [`RebuildError::Consumer`] of this projection.
    fn consumer_error(&self) -> impl Fn(ConsumerError) -> RebuildError + '_ {
        |source| RebuildError::Consumer {
            component: self.name.to_owned(),
            source,
        }
    }

    /// Migrates the generation in `schema` as the owner and opens the app role's
    /// pool on it, with the consumer runtime that replays the projection's topics
    /// into it: what a rebuild and a fold fill a generation with.
    async fn generation(
        &self,
        schema: &str,
        target: &Target<'_>,
        bootstrap: &str,
        catalog: Arc<SchemaCatalog>,
        config: ConsumerConfig,
    ) -> Result<(PgPool, ConsumerRuntime<Box<dyn EventHandler>>), RebuildError> {
        let search_path = [("search_path", schema)];
        db::migrate_with(target.owner.clone().options(search_path), self.migrators())
            .await
            .map_err(|source| RebuildError::Migrate {
                component: self.name.to_owned(),
                source,
            })?;
        let pool = db::pool_with(target.app.clone().options(search_path), 4)
            .await
            .map_err(self.database_error())?;
        let runtime = self.runtime(
            target.component.consumes.clone(),
            pool.clone(),
            bootstrap,
            catalog,
            config,
        );
        Ok((pool, runtime))
    }

    /// Migrates `schema` and replays the topics into it until caught up.
    #[allow(clippy::too_many_arguments)]
    async fn fill(
        &self,
        schema: &str,
        target: &Target<'_>,
        bootstrap: &str,
        consumer: ConsumerConfig,
        catalog: Arc<SchemaCatalog>,
        shutdown: CancellationToken,
        progress: impl FnMut(&CatchUp),
    ) -> Result<CatchUp, RebuildError> {
        let (pool, runtime) = self
            .generation(schema, target, bootstrap, catalog, consumer)
            .await?;
        let done = runtime
            .catch_up(shutdown.clone(), progress)
            .await
            .map_err(self.consumer_error());
        pool.close().await;
        let done = done?;
        if shutdown.is_cancelled() {
            return Err(RebuildError::Interrupted(self.name.to_owned()));
        }
        Ok(done)
    }
}

/// Creates `schema` for a generation of `component`'s read model: its app role may
/// use it and gets the component's table privileges on what the owner creates in it.
pub async fn create_generation_schema(
    owner: &mut PgConnection,
    schema: &str,
    component: &Component,
    database: &DatabaseSpec,
) -> Result<(), sqlx::Error> {
    let (owner_role, app_role) = (&database.owner_role, &database.app_role);
    let privileges = component.kind.app_table_privileges();
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA {schema};\n\
         GRANT USAGE ON SCHEMA {schema} TO {app_role};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner_role} IN SCHEMA {schema} \
           GRANT {privileges} ON TABLES TO {app_role};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner_role} IN SCHEMA {schema} \
           GRANT USAGE, SELECT ON SEQUENCES TO {app_role};"
    ))
    .execute(owner)
    .await
    .map(|_| ())
}

/// Drops a schema [`ProjectionService::fold`] made (only those: the name must carry
/// the fold prefix).
pub async fn drop_fold(owner: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    if !schema.starts_with(VERIFY_PREFIX)
        || !schema[VERIFY_PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
    {
        return Err(sqlx::Error::Protocol(format!(
            "{schema} is not a fold schema"
        )));
    }
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(owner)
        .await
        .map(|_| ())
}
