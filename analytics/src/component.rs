//! The `analytics` component as `sluice run analytics` and `sluice up` run it: one
//! warehouse instance, the sink loading into it, the analyst endpoint serving it,
//! and the HTTP health and metrics endpoints.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_platform::registry::{AnalyticsConfig, Component, ComponentKind, Registry, TopicNames};
use tokio_util::sync::CancellationToken;

use crate::analyst::auth::{Verifier, VerifierError};
use crate::analyst::{self, AnalystConfig, AnalystError, TlsFiles};
use crate::sink::{Sink, SinkConfig, SinkError};
use crate::warehouse::{Warehouse, WarehouseError, WarehouseSettings};

/// Why the analytics component could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The registry could not be read or has no such component.
    #[error(transparent)]
    Registry(#[from] sluice_platform::registry::RegistryError),
    /// The component named is not of kind `sink`.
    #[error("`{0}` is not the analytics component (kind = \"sink\")")]
    NotAnalytics(String),
    /// The registry has no `[analytics]` section.
    #[error("sluice.toml has no [analytics] section (warehouse, sql_port, analysts)")]
    NotConfigured,
    /// The event schemas the sink types its tables by are not where they should be.
    #[error("the schemas directory {0} does not exist: run from the repository root or set SLUICE_SCHEMAS_DIR")]
    NoSchemas(PathBuf),
    /// The DuckDB warehouse could not be opened or prepared.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// The sink could not be prepared, or stopped with an error.
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    /// The analyst SQL endpoint could not start, or stopped with an error.
    #[error("analyst endpoint: {0}")]
    Analyst(#[from] AnalystError),
    /// An analyst's stored credential is not a SCRAM-SHA-256 verifier.
    #[error("[analytics.analysts] `{user}` {source}")]
    Credential { user: String, source: VerifierError },
    /// TLS is half configured.
    #[error("[analytics] sets only one of tls_cert and tls_key: TLS needs both")]
    HalfTls,
    /// The health and metrics port could not be bound.
    #[error(transparent)]
    Listen(#[from] sluice_platform::service::ServiceError),
    /// `SLUICE_HTTP_HOST` is not an address.
    #[error("SLUICE_HTTP_HOST `{0}` is not an IP address")]
    Host(String),
    /// The health and metrics server failed.
    #[error("cannot serve health and metrics on port {port}: {source}")]
    Http { port: u16, source: std::io::Error },
    /// Preparing the warehouse on its blocking thread panicked or was cancelled.
    #[error("preparing the warehouse failed on its thread: {0}")]
    Preparation(String),
}

/// What a started analytics component tells its caller.
#[derive(Debug, Clone)]
pub struct Started {
    pub warehouse: PathBuf,
    pub sql: SocketAddr,
}

/// The analytics component of `registry` named `name`, ready to run.
pub struct Analytics {
    component: Component,
    config: AnalyticsConfig,
    verifiers: BTreeMap<String, Verifier>,
    tls: Option<TlsFiles>,
    warehouse_path: PathBuf,
    schemas_dir: PathBuf,
    /// The registry's topic namespace: what the sink discovers and loads.
    topic_names: TopicNames,
}

impl Analytics {
    pub fn new(registry: &Registry, name: &str) -> Result<Self, AnalyticsError> {
        let component = registry.component(name)?.clone();
        if component.kind != ComponentKind::Sink {
            return Err(AnalyticsError::NotAnalytics(name.to_owned()));
        }
        let config = registry
            .analytics
            .clone()
            .ok_or(AnalyticsError::NotConfigured)?;
        let warehouse_path = registry
            .warehouse_path()
            .ok_or(AnalyticsError::NotConfigured)?;
        let schemas_dir = std::env::var_os("SLUICE_SCHEMAS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("schemas"));
        if !schemas_dir.is_dir() {
            return Err(AnalyticsError::NoSchemas(schemas_dir));
        }
        let verifiers = config
            .analysts
            .iter()
            .map(|(user, credential)| {
                let verifier = credential.parse::<Verifier>().map_err(|source| {
                    AnalyticsError::Credential {
                        user: user.clone(),
                        source,
                    }
                })?;
                Ok((user.clone(), verifier))
            })
            .collect::<Result<_, AnalyticsError>>()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => return Err(AnalyticsError::HalfTls),
        };
        Ok(Analytics {
            component,
            config,
            verifiers,
            tls,
            warehouse_path,
            schemas_dir,
            topic_names: registry.topic_names(),
        })
    }

    /// Where SQL clients connect.
    pub fn sql_address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.config.sql_port))
    }

    /// A psql command line for the first configured analyst.
    pub fn psql_hint(&self) -> String {
        let user = self
            .config
            .analysts
            .keys()
            .next()
            .map_or("<analyst>", String::as_str);
        let ssl = if self.tls.is_some() {
            " sslmode=require"
        } else {
            ""
        };
        format!(
            "psql \"host=127.0.0.1 port={} user={user} dbname=warehouse{ssl}\"",
            self.config.sql_port
        )
    }

    /// Opens the warehouse, prepares the sink's tables and views, locks the
    /// configuration, then loads, serves analysts and answers health checks until
    /// `shutdown`. `started` is called once everything listens.
    pub async fn run(
        self,
        bootstrap: &str,
        shutdown: CancellationToken,
        started: impl FnOnce(Started),
    ) -> Result<(), AnalyticsError> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let settings = WarehouseSettings {
            memory_limit: self.config.memory_limit.clone(),
            threads,
            ..WarehouseSettings::default()
        };
        let path = self.warehouse_path.clone();
        let defaults = SinkConfig::default();
        let sink_config = SinkConfig {
            bootstrap: bootstrap.to_owned(),
            schemas_dir: self.schemas_dir.clone(),
            batch_size: self
                .config
                .batch_size
                .map_or(defaults.batch_size, std::num::NonZeroUsize::get),
            batch_wait: self
                .config
                .batch_wait_ms
                .map_or(defaults.batch_wait, std::time::Duration::from_millis),
            ..defaults
        };
        let (warehouse, sink) = {
            let topic_names = self.topic_names.clone();
            tokio::task::spawn_blocking(move || -> Result<_, AnalyticsError> {
                let warehouse = Warehouse::open(&path, &settings)?;
                let sink = Sink::prepare(&warehouse, sink_config)?.with_topic_names(topic_names);
                warehouse.lock_configuration()?;
                Ok((Arc::new(warehouse), sink))
            })
            .await
            .map_err(|e| AnalyticsError::Preparation(e.to_string()))??
        };
        // The same host as every component's HTTP port (SLUICE_HTTP_HOST).
        let host = sluice_platform::service::listen_host();
        let ip: std::net::IpAddr = host.parse().map_err(|_| AnalyticsError::Host(host))?;
        let analyst_config = AnalystConfig {
            listen: SocketAddr::new(ip, self.config.sql_port),
            analysts: self.verifiers.clone(),
            statement_timeout: Duration::from_secs(self.config.statement_timeout_seconds),
            row_limit: self.config.row_limit,
            max_sessions: self.config.max_sessions,
            max_sessions_per_analyst: self.config.max_sessions_per_analyst,
            tls: self.tls.clone(),
            startup_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(self.config.idle_session_timeout_seconds),
        };
        let listener = analyst::bind(&analyst_config).await?;
        let port = self.component.port;
        let http = sluice_platform::service::bind(&self.component).await?;
        let router = sluice_platform::http::with_platform_routes(
            axum::Router::new(),
            &self.component.name,
            None,
        );
        started(Started {
            warehouse: self.warehouse_path.clone(),
            sql: self.sql_address(),
        });
        let stop_all = |r| {
            shutdown.cancel();
            r
        };
        let (loaded, served, health) = tokio::join!(
            async {
                stop_all(
                    sink.run(warehouse.clone(), shutdown.clone())
                        .await
                        .map_err(AnalyticsError::from),
                )
            },
            async {
                stop_all(
                    analyst::serve(
                        warehouse.clone(),
                        analyst_config,
                        listener,
                        shutdown.clone(),
                    )
                    .await
                    .map_err(AnalyticsError::from),
                )
            },
            async {
                stop_all(
                    sluice_platform::http::serve(http, router, shutdown.clone())
                        .await
                        .map_err(|source| AnalyticsError::Http { port, source }),
                )
            },
        );
        loaded.and(served).and(health)
    }
}
