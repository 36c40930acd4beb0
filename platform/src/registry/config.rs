//! The platform-wide sections of the registry: `[platform]` and `[analytics]`, with
//! their defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Platform-wide settings (`[platform]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    pub database_host: String,
    pub database_port: u16,
    pub admin_database_url: String,
    pub data_dir: PathBuf,
    pub kafka_brokers: String,
    /// Prepended to every topic name on the broker (`SLUICE_TOPIC_PREFIX`); empty by
    /// default. Logical names stay unprefixed everywhere else. See [`TopicNames`](super::TopicNames).
    #[serde(default)]
    pub topic_prefix: String,
    /// Replicas of every topic the platform creates (`SLUICE_TOPIC_REPLICATION_FACTOR`);
    /// 1 in development, 3 in production.
    #[serde(default = "default_replicas")]
    pub replication_factor: u16,
    /// `min.insync.replicas` of every topic the platform creates
    /// (`SLUICE_TOPIC_MIN_INSYNC_REPLICAS`); 1 in development, 2 in production.
    #[serde(default = "default_replicas")]
    pub min_insync_replicas: u16,
}

fn default_replicas() -> u16 {
    1
}

/// The analytics component's settings (`[analytics]`): the DuckDB warehouse the
/// sink loads and the analyst SQL endpoint serves.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// The DuckDB file; relative paths are under `[platform].data_dir`.
    #[serde(default = "default_warehouse")]
    pub warehouse: PathBuf,
    /// Port of the PostgreSQL-protocol analyst endpoint.
    pub sql_port: u16,
    /// A query running longer is cancelled (SQLSTATE 57014).
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_seconds: u64,
    /// A query answering more rows fails (SQLSTATE 54000) rather than truncate.
    #[serde(default = "default_row_limit")]
    pub row_limit: usize,
    /// An analyst session that sends nothing for this long is closed.
    #[serde(default = "default_idle_session_timeout")]
    pub idle_session_timeout_seconds: u64,
    /// DuckDB's memory limit for the whole warehouse instance.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: String,
    /// Sessions beyond this are turned away (SQLSTATE 53300).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// One analyst's sessions beyond this are turned away (SQLSTATE 53300).
    #[serde(default = "default_max_sessions_per_analyst")]
    pub max_sessions_per_analyst: usize,
    /// Events per load batch of the sink; unset, a Parquet row group's worth
    /// (the fastest bulk load). Smaller batches commit sooner and more often.
    #[serde(default)]
    pub batch_size: Option<std::num::NonZeroUsize>,
    /// How long the sink waits for a batch to fill before it loads what it has, in
    /// milliseconds; unset, the sink's default (200).
    #[serde(default)]
    pub batch_wait_ms: Option<u64>,
    /// TLS for the analyst endpoint: a PEM certificate (chain, leaf first) and
    /// its PEM private key. Both or neither; relative paths are from the
    /// working directory.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Analysts who may connect: user name → SCRAM-SHA-256 verifier
    /// (`sluice analyst add <name>` writes one; never a plain password).
    #[serde(default)]
    pub analysts: BTreeMap<String, String>,
}

impl std::fmt::Debug for AnalyticsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsConfig")
            .field("warehouse", &self.warehouse)
            .field("sql_port", &self.sql_port)
            .field("statement_timeout_seconds", &self.statement_timeout_seconds)
            .field("row_limit", &self.row_limit)
            .field(
                "idle_session_timeout_seconds",
                &self.idle_session_timeout_seconds,
            )
            .field("memory_limit", &self.memory_limit)
            .field("max_sessions", &self.max_sessions)
            .field("max_sessions_per_analyst", &self.max_sessions_per_analyst)
            .field("batch_size", &self.batch_size)
            .field("batch_wait_ms", &self.batch_wait_ms)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("analysts", &self.analysts.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn default_warehouse() -> PathBuf {
    PathBuf::from("warehouse.duckdb")
}
fn default_statement_timeout() -> u64 {
    30
}
fn default_idle_session_timeout() -> u64 {
    600
}
fn default_row_limit() -> usize {
    1_000_000
}
fn default_memory_limit() -> String {
    "2GB".to_owned()
}
fn default_max_sessions() -> usize {
    64
}
fn default_max_sessions_per_analyst() -> usize {
    16
}
