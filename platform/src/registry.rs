//! The service registry (`sluice.toml`): every component of the platform, its kind,
//! port, database, roles, topics and dependencies.
//!
//! The registry is the single source of truth. Everything derived from it (database
//! and role names, connection URLs, the provisioning SQL, `docker-compose.yml`) is
//! computed here so that every consumer derives it the same way. Environment variables
//! override the file: `<NAME>_DATABASE_URL`, `<NAME>_OWNER_DATABASE_URL`,
//! `<NAME>_APP_PASSWORD`, `<NAME>_OWNER_PASSWORD`, `<NAME>_PORT`,
//! `SLUICE_ADMIN_DATABASE_URL`, `SLUICE_DATA_DIR`, `KAFKA_BROKERS`,
//! `SLUICE_TOPIC_PREFIX`, `SLUICE_TOPIC_REPLICATION_FACTOR`,
//! `SLUICE_TOPIC_MIN_INSYNC_REPLICAS`.
//!
//! Topics. Inside the platform a topic has its logical name (`orders.events`): in
//! the registry, consistency tokens, stored consumer positions and the warehouse.
//! On the broker it carries `[platform].topic_prefix` ([`TopicNames`]), so several
//! environments (or every test of a run) can share one Kafka cluster. What the
//! platform creates and checks on the broker is a [`TopicSpec`]: the registry's
//! partitions, `[platform]`'s replication, and [`EVENT_TOPIC_DEFAULTS`] under the
//! topic's own `config` entries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::broker::TopicSpec;

/// Errors raised while loading or validating the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry file could not be read (missing file, permissions).
    #[error("cannot read registry {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the registry's shape.
    #[error("invalid registry {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// The file parses but breaks a rule of the registry (duplicate port, unknown
    /// dependency, bad identifier, ...).
    #[error("invalid registry: {0}")]
    Invalid(String),
    /// A command named a component that the registry does not list.
    #[error("no component named `{name}` in the registry (known: {known})")]
    UnknownComponent { name: String, known: String },
}

/// What a component does; decides which privileges its runtime role gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// A write service: appends events to its own event store.
    Service,
    /// A read model fed by topics.
    Projection,
    /// A reactor (saga step) that turns events into commands.
    Reactor,
    /// The CDC sink into the analytics warehouse.
    Sink,
}

impl ComponentKind {
    /// Table privileges the runtime (app) role receives on every table its owner
    /// creates. Write services only ever append: their event store is immutable.
    pub fn app_table_privileges(self) -> &'static str {
        match self {
            ComponentKind::Service => "SELECT, INSERT",
            ComponentKind::Projection | ComponentKind::Reactor | ComponentKind::Sink => {
                "SELECT, INSERT, UPDATE, DELETE"
            }
        }
    }
}

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
    /// default. Logical names stay unprefixed everywhere else. See [`TopicNames`].
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

/// A Kafka topic (`[topics."<name>"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub partitions: u32,
    /// Topic-level Kafka settings (`"retention.ms" = "86400000"`), over
    /// [`EVENT_TOPIC_DEFAULTS`] and `[platform].min_insync_replicas`. Values may be
    /// written as strings, integers or booleans.
    #[serde(default, deserialize_with = "config_values")]
    pub config: BTreeMap<String, String>,
}

/// The topic-level settings every event topic gets unless its
/// `[topics."<name>"].config` says otherwise (`min.insync.replicas` comes from
/// `[platform].min_insync_replicas`):
///
/// - `retention.ms = -1`: the history is kept forever, so a read model or the
///   warehouse rebuilt from offset 0 never finds events expired by the broker's
///   default retention (7 days on Apache Kafka);
/// - `cleanup.policy = delete`: never compacted; every event of a stream stays.
pub const EVENT_TOPIC_DEFAULTS: [(&str, &str); 2] =
    [("retention.ms", "-1"), ("cleanup.policy", "delete")];

/// Accepts `"text"`, integers and booleans as topic setting values.
fn config_values<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Integer(i64),
        Boolean(bool),
    }
    let raw = BTreeMap::<String, Value>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Text(t) => t,
                Value::Integer(i) => i.to_string(),
                Value::Boolean(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// The namespace of the platform's topics on the broker: `[platform].topic_prefix`
/// in front of every logical name. The one place where logical and broker (physical)
/// topic names meet: whatever names a topic to Kafka goes through
/// [`physical`](Self::physical), whatever reads a topic name from Kafka through
/// [`logical`](Self::logical).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    /// The namespace of `prefix` (empty: topics are named on the broker as they are).
    pub fn new(prefix: impl Into<String>) -> Self {
        TopicNames {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The broker's name of the logical topic `logical`.
    pub fn physical(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// The logical name of the broker's topic `physical`; `None` when it is not in
    /// this namespace (another environment's topic, or the bare prefix).
    pub fn logical<'a>(&self, physical: &'a str) -> Option<&'a str> {
        physical
            .strip_prefix(self.prefix.as_str())
            .filter(|logical| !logical.is_empty())
    }
}

/// Why a topic prefix cannot name topics: Kafka topic names are ASCII letters,
/// digits, `.`, `_` and `-`, at most 249 characters.
fn invalid_topic_prefix(prefix: &str) -> Option<String> {
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "topic_prefix `{prefix}` has `{c}`: Kafka topic names are ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    if prefix.len() > 200 {
        return Some(format!(
            "topic_prefix `{prefix}` is longer than 200 characters (topic names end at 249)"
        ));
    }
    None
}

/// Replication of every topic the platform creates (`[platform]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Replicas per partition.
    pub factor: u16,
    /// `min.insync.replicas`: replicas that must have a record before `acks=all`
    /// acknowledges it.
    pub min_insync: u16,
}

impl Default for Replication {
    /// One replica: a development broker.
    fn default() -> Self {
        Replication {
            factor: 1,
            min_insync: 1,
        }
    }
}

impl Replication {
    /// An event topic: `partitions` partitions, this replication,
    /// [`EVENT_TOPIC_DEFAULTS`] and then `config` over them.
    pub fn event_topic(
        &self,
        name: String,
        partitions: u32,
        config: &BTreeMap<String, String>,
    ) -> TopicSpec {
        let mut spec = TopicSpec::new(name, partitions)
            .with_replication_factor(self.factor)
            .with_config("min.insync.replicas", self.min_insync.to_string());
        for (key, value) in EVENT_TOPIC_DEFAULTS {
            spec = spec.with_config(key, value);
        }
        for (key, value) in config {
            spec = spec.with_config(key, value.clone());
        }
        spec
    }

    /// A dead-letter topic (`<component>.dlq`): one partition, this replication and
    /// `cleanup.policy = delete`. Its retention is the broker's: the dead-letter
    /// table in the consumer's database is the record of truth, the topic a
    /// notification.
    pub fn dead_letter_topic(&self, name: String) -> TopicSpec {
        TopicSpec::new(name, 1)
            .with_replication_factor(self.factor)
            .with_config("min.insync.replicas", self.min_insync.to_string())
            .with_config("cleanup.policy", "delete")
    }
}

/// One component as written in the file (`[components.<name>]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    kind: ComponentKind,
    port: u16,
    database: Option<String>,
    app_password: Option<String>,
    owner_password: Option<String>,
    #[serde(default)]
    produces: Vec<String>,
    #[serde(default)]
    consumes: Vec<String>,
    #[serde(default)]
    depends_on: Vec<String>,
    layer: Option<Layer>,
    #[serde(default)]
    extra_env: BTreeMap<String, String>,
}

/// Where a component sits, for start order and docs: the platform's own
/// components, read models shared across domains, and a domain's write services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Provided by the platform for everyone (the analytics sink).
    Platform,
    /// Read models that join several domains' events.
    Shared,
    /// A domain's own write service.
    Domain,
}

impl Layer {
    /// The layer a component of `kind` has unless the registry says otherwise.
    pub fn default_for(kind: ComponentKind) -> Self {
        match kind {
            ComponentKind::Service | ComponentKind::Reactor => Layer::Domain,
            ComponentKind::Projection => Layer::Shared,
            ComponentKind::Sink => Layer::Platform,
        }
    }

    /// `platform`, `shared` or `domain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Platform => "platform",
            Layer::Shared => "shared",
            Layer::Domain => "domain",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    platform: PlatformConfig,
    #[serde(default)]
    topics: BTreeMap<String, TopicConfig>,
    components: BTreeMap<String, RawComponent>,
    analytics: Option<AnalyticsConfig>,
}

/// A component's database and the two roles that may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    /// Database name; also the prefix of both role names.
    pub name: String,
    /// Owns the database and its schema; runs migrations.
    pub owner_role: String,
    pub owner_password: String,
    /// What the component runs as; privileges depend on the component kind.
    pub app_role: String,
    pub app_password: String,
}

/// A component with everything derived from the registry resolved.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub kind: ComponentKind,
    pub port: u16,
    /// `None` for a stateless component.
    pub database: Option<DatabaseSpec>,
    pub produces: Vec<String>,
    pub consumes: Vec<String>,
    pub depends_on: Vec<String>,
    /// `platform`, `shared` or `domain` (default by kind).
    pub layer: Layer,
    /// Environment the component runs with: passed to its containers by the
    /// generated compose file, and set by `sluice run`/`sluice up` for each variable
    /// the environment does not set already.
    pub extra_env: BTreeMap<String, String>,
}

impl Component {
    /// Prefix of this component's environment variables: `order_view` → `ORDER_VIEW`.
    pub fn env_prefix(&self) -> String {
        env_prefix(&self.name)
    }
}

/// Turns a component name into its environment variable prefix.
pub fn env_prefix(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The whole registry, validated.
#[derive(Debug, Clone)]
pub struct Registry {
    pub platform: PlatformConfig,
    pub topics: BTreeMap<String, TopicConfig>,
    components: Vec<Component>,
    /// `[analytics]`, when the registry has an analytics component.
    pub analytics: Option<AnalyticsConfig>,
}

impl Registry {
    /// Reads and validates a registry file.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            RegistryError::Parse { message, .. } => RegistryError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates registry text.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let raw: RawRegistry = toml::from_str(text).map_err(|e| RegistryError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        let components = raw
            .components
            .into_iter()
            .map(|(name, c)| resolve_component(name, c))
            .collect::<Result<Vec<_>, _>>()?;
        let registry = Registry {
            platform: raw.platform,
            topics: raw.topics,
            components,
            analytics: raw.analytics,
        };
        registry.validate()?;
        Ok(registry)
    }

    /// Applies the platform-wide environment overrides (`SLUICE_ADMIN_DATABASE_URL`,
    /// `SLUICE_DATA_DIR`, `KAFKA_BROKERS`) and the per-component password and port
    /// overrides.
    pub fn with_env_overrides(mut self) -> Self {
        if let Ok(url) = std::env::var("SLUICE_ADMIN_DATABASE_URL") {
            self.platform.admin_database_url = url;
        }
        if let Ok(dir) = std::env::var("SLUICE_DATA_DIR") {
            self.platform.data_dir = PathBuf::from(dir);
        }
        if let Ok(brokers) = std::env::var("KAFKA_BROKERS") {
            self.platform.kafka_brokers = brokers;
        }
        if let Ok(prefix) = std::env::var("SLUICE_TOPIC_PREFIX") {
            if let Some(problem) = invalid_topic_prefix(&prefix) {
                // Kept as it is: the broker refuses the topics by name, loudly,
                // rather than the platform falling back to another namespace.
                tracing::warn!("SLUICE_TOPIC_PREFIX: {problem}");
            }
            self.platform.topic_prefix = prefix;
        }
        for (var, setting) in [
            (
                "SLUICE_TOPIC_REPLICATION_FACTOR",
                &mut self.platform.replication_factor,
            ),
            (
                "SLUICE_TOPIC_MIN_INSYNC_REPLICAS",
                &mut self.platform.min_insync_replicas,
            ),
        ] {
            if let Ok(value) = std::env::var(var) {
                match value.parse::<u16>() {
                    Ok(n) if n > 0 => *setting = n,
                    _ => tracing::warn!(
                        "{var}=`{value}` is not a positive number; keeping the registry's {setting}"
                    ),
                }
            }
        }
        if self.platform.min_insync_replicas > self.platform.replication_factor {
            tracing::warn!(
                replication_factor = self.platform.replication_factor,
                min_insync_replicas = self.platform.min_insync_replicas,
                "min_insync_replicas exceeds the replication factor: every acks=all write will fail"
            );
        }
        if let Some(analytics) = &mut self.analytics {
            // `SLUICE_ANALYSTS="alice=SCRAM-SHA-256$…,bob=SCRAM-SHA-256$…"` replaces
            // the file's analysts (a verifier holds no `,`; its base64 may hold `=`,
            // so each pair splits at its first `=`).
            if let Ok(list) = std::env::var("SLUICE_ANALYSTS") {
                analytics.analysts = list
                    .split(',')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(user, password)| (user.trim().to_owned(), password.to_owned()))
                    .filter(|(user, _)| !user.is_empty())
                    .collect();
            }
            if let Some(port) = std::env::var("SLUICE_SQL_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
            {
                analytics.sql_port = port;
            }
        }
        for c in &mut self.components {
            let prefix = env_prefix(&c.name);
            if let Some(port) = std::env::var(format!("{prefix}_PORT"))
                .ok()
                .and_then(|p| p.parse().ok())
            {
                c.port = port;
            }
            if let Some(db) = &mut c.database {
                if let Ok(pw) = std::env::var(format!("{prefix}_APP_PASSWORD")) {
                    db.app_password = pw;
                }
                if let Ok(pw) = std::env::var(format!("{prefix}_OWNER_PASSWORD")) {
                    db.owner_password = pw;
                }
            }
        }
        self
    }

    /// The warehouse file: `[analytics].warehouse` under the data directory unless
    /// absolute.
    pub fn warehouse_path(&self) -> Option<PathBuf> {
        self.analytics
            .as_ref()
            .map(|a| self.platform.data_dir.join(&a.warehouse))
    }

    /// The namespace of the platform's topics on the broker.
    pub fn topic_names(&self) -> TopicNames {
        TopicNames::new(self.platform.topic_prefix.clone())
    }

    /// Replication of every topic the platform creates.
    pub fn replication(&self) -> Replication {
        Replication {
            factor: self.platform.replication_factor,
            min_insync: self.platform.min_insync_replicas,
        }
    }

    /// The registry topic `logical` as it must be on the broker (its physical name,
    /// partitions, replication and settings); `None` when the registry has no such
    /// topic.
    pub fn topic_spec(&self, logical: &str) -> Option<TopicSpec> {
        let topic = self.topics.get(logical)?;
        Some(self.replication().event_topic(
            self.topic_names().physical(logical),
            topic.partitions,
            &topic.config,
        ))
    }

    /// Every registry topic as it must be on the broker.
    pub fn topic_specs(&self) -> Vec<TopicSpec> {
        self.topics
            .keys()
            .filter_map(|name| self.topic_spec(name))
            .collect()
    }

    /// The dead-letter topic of the consumer `consumer` (`<consumer>.dlq`) as it must
    /// be on the broker.
    pub fn dead_letter_topic(&self, consumer: &str) -> TopicSpec {
        self.replication()
            .dead_letter_topic(self.topic_names().physical(&format!("{consumer}.dlq")))
    }

    /// All components, sorted by name.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Looks a component up by name.
    pub fn component(&self, name: &str) -> Result<&Component, RegistryError> {
        self.components
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| RegistryError::UnknownComponent {
                name: name.to_owned(),
                known: self
                    .components
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Components that own a database.
    pub fn stateful(&self) -> impl Iterator<Item = (&Component, &DatabaseSpec)> {
        self.components
            .iter()
            .filter_map(|c| c.database.as_ref().map(|db| (c, db)))
    }

    /// The runtime (app role) URL of a component: `<NAME>_DATABASE_URL`, or derived.
    pub fn app_database_url(&self, component: &Component) -> Option<String> {
        let db = component.database.as_ref()?;
        Some(
            std::env::var(format!("{}_DATABASE_URL", component.env_prefix()))
                .unwrap_or_else(|_| self.derived_url(&db.app_role, &db.app_password, &db.name)),
        )
    }

    /// The migration (owner role) URL of a component: `<NAME>_OWNER_DATABASE_URL`,
    /// or derived.
    pub fn owner_database_url(&self, component: &Component) -> Option<String> {
        let db = component.database.as_ref()?;
        Some(
            std::env::var(format!("{}_OWNER_DATABASE_URL", component.env_prefix()))
                .unwrap_or_else(|_| self.derived_url(&db.owner_role, &db.owner_password, &db.name)),
        )
    }

    fn derived_url(&self, role: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{role}:{password}@{host}:{port}/{database}",
            password = url_encode(password),
            host = self.platform.database_host,
            port = self.platform.database_port,
        )
    }

    /// A chain of `depends_on` that comes back to where it started, if any.
    fn dependency_cycle(&self) -> Option<Vec<String>> {
        fn visit<'a>(
            registry: &'a Registry,
            name: &'a str,
            path: &mut Vec<&'a str>,
            done: &mut std::collections::BTreeSet<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| *p == name) {
                let mut cycle: Vec<String> = path[at..].iter().map(|s| (*s).to_owned()).collect();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            if !done.insert(name) {
                return None;
            }
            path.push(name);
            let component = registry.components.iter().find(|c| c.name == name)?;
            for dep in &component.depends_on {
                if let Some(cycle) = visit(registry, dep, path, done) {
                    return Some(cycle);
                }
            }
            path.pop();
            None
        }
        let mut done = std::collections::BTreeSet::new();
        self.components
            .iter()
            .find_map(|c| visit(self, &c.name, &mut Vec::new(), &mut done))
    }

    fn validate(&self) -> Result<(), RegistryError> {
        let mut ports = BTreeMap::new();
        let mut databases = BTreeMap::new();
        for c in &self.components {
            if let Some(other) = ports.insert(c.port, &c.name) {
                return Err(RegistryError::Invalid(format!(
                    "components `{other}` and `{}` both use port {}",
                    c.name, c.port
                )));
            }
            if let Some(db) = &c.database {
                if let Some(other) = databases.insert(db.name.clone(), &c.name) {
                    return Err(RegistryError::Invalid(format!(
                        "components `{other}` and `{}` share database `{}`: every component needs its own",
                        c.name, db.name
                    )));
                }
            }
            for dep in &c.depends_on {
                if !self.components.iter().any(|o| &o.name == dep) {
                    return Err(RegistryError::Invalid(format!(
                        "component `{}` depends on unknown component `{dep}`",
                        c.name
                    )));
                }
            }
            for topic in c.produces.iter().chain(&c.consumes) {
                if !self.topics.contains_key(topic) {
                    return Err(RegistryError::Invalid(format!(
                        "component `{}` names topic `{topic}`, which has no [topics.\"{topic}\"] entry",
                        c.name
                    )));
                }
            }
            if c.kind == ComponentKind::Service {
                let own = format!("{}.events", c.name);
                if c.produces != [own.clone()] {
                    return Err(RegistryError::Invalid(format!(
                        "service `{}` must produce exactly its own topic `{own}`",
                        c.name
                    )));
                }
                if c.database.is_none() {
                    return Err(RegistryError::Invalid(format!(
                        "service `{}` needs a database for its event store",
                        c.name
                    )));
                }
            }
        }
        for (name, topic) in &self.topics {
            if topic.partitions == 0 {
                return Err(RegistryError::Invalid(format!(
                    "topic `{name}` needs at least one partition"
                )));
            }
            if i32::try_from(topic.partitions).is_err() {
                return Err(RegistryError::Invalid(format!(
                    "topic `{name}` has more partitions than Kafka allows"
                )));
            }
        }
        if let Some(cycle) = self.dependency_cycle() {
            return Err(RegistryError::Invalid(format!(
                "components depend on each other in a cycle: {}; `depends_on` orders the start, so one of them must go",
                cycle.join(" → ")
            )));
        }
        if let Some(problem) = invalid_topic_prefix(&self.platform.topic_prefix) {
            return Err(RegistryError::Invalid(problem));
        }
        let platform = &self.platform;
        if platform.replication_factor == 0 || platform.min_insync_replicas == 0 {
            return Err(RegistryError::Invalid(
                "replication_factor and min_insync_replicas must be at least 1".into(),
            ));
        }
        if platform.min_insync_replicas > platform.replication_factor {
            return Err(RegistryError::Invalid(format!(
                "min_insync_replicas ({}) exceeds replication_factor ({}): no write with acks=all could succeed",
                platform.min_insync_replicas, platform.replication_factor
            )));
        }
        Ok(())
    }
}

fn resolve_component(name: String, raw: RawComponent) -> Result<Component, RegistryError> {
    if !is_identifier(&name) {
        return Err(RegistryError::Invalid(format!(
            "component name `{name}` must be lowercase letters, digits and `_`, starting with a letter"
        )));
    }
    let database = match raw.database {
        None => {
            if raw.app_password.is_some() || raw.owner_password.is_some() {
                return Err(RegistryError::Invalid(format!(
                    "component `{name}` has passwords but no database"
                )));
            }
            None
        }
        Some(db) => {
            if !is_identifier(&db) || db.len() > 50 {
                return Err(RegistryError::Invalid(format!(
                    "database name `{db}` of `{name}` must be a lowercase identifier of at most 50 characters"
                )));
            }
            let missing = |what: &str| {
                RegistryError::Invalid(format!("component `{name}` has a database but no {what}"))
            };
            Some(DatabaseSpec {
                owner_role: format!("{db}_owner"),
                app_role: format!("{db}_app"),
                owner_password: raw
                    .owner_password
                    .ok_or_else(|| missing("owner_password"))?,
                app_password: raw.app_password.ok_or_else(|| missing("app_password"))?,
                name: db,
            })
        }
    };
    for key in raw.extra_env.keys() {
        let valid = key.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(RegistryError::Invalid(format!(
                "extra_env of `{name}`: `{key}` is not an environment variable name (A-Z, 0-9, _)"
            )));
        }
    }
    Ok(Component {
        name,
        kind: raw.kind,
        port: raw.port,
        database,
        produces: raw.produces,
        consumes: raw.consumes,
        depends_on: raw.depends_on,
        layer: raw.layer.unwrap_or(Layer::default_for(raw.kind)),
        extra_env: raw.extra_env,
    })
}

/// Lowercase SQL-safe identifier: `[a-z][a-z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Percent-encodes the characters that would break a URL's userinfo part.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [platform]
        database_host = "127.0.0.1"
        database_port = 5432
        admin_database_url = "postgres://postgres@127.0.0.1/postgres"
        data_dir = ".sluice"
        kafka_brokers = "127.0.0.1:9092"
        [topics."orders.events"]
        partitions = 1
        [components.orders]
        kind = "service"
        port = 8101
        database = "sluice_orders"
        app_password = "a p@ss"
        owner_password = "o"
        produces = ["orders.events"]
    "#;

    #[test]
    fn derives_roles_and_urls_from_the_database_name() {
        let r = Registry::parse(MINIMAL).unwrap();
        let c = r.component("orders").unwrap();
        let db = c.database.as_ref().unwrap();
        assert_eq!(db.owner_role, "sluice_orders_owner");
        assert_eq!(db.app_role, "sluice_orders_app");
        assert_eq!(
            r.derived_url(&db.app_role, &db.app_password, &db.name),
            "postgres://sluice_orders_app:a%20p%40ss@127.0.0.1:5432/sluice_orders"
        );
    }

    #[test]
    fn duplicate_ports_are_rejected() {
        let text = format!("{MINIMAL}\n[components.payments]\nkind = \"sink\"\nport = 8101\n");
        let err = Registry::parse(&text).unwrap_err().to_string();
        assert!(err.contains("both use port 8101"), "{err}");
    }

    #[test]
    fn unknown_topic_is_rejected() {
        let text = MINIMAL.replace(
            "partitions = 1",
            "partitions = 1\n[topics.\"x\"]\npartitions = 1",
        )
            + "\n[components.sink]\nkind = \"sink\"\nport = 9000\nconsumes = [\"nope.events\"]\n";
        let err = Registry::parse(&text).unwrap_err().to_string();
        assert!(err.contains("nope.events"), "{err}");
    }

    #[test]
    fn layer_defaults_by_kind_and_extra_env_names_are_checked() {
        let r = Registry::parse(MINIMAL).unwrap();
        assert_eq!(r.component("orders").unwrap().layer, Layer::Domain);
        let text = MINIMAL.replace(
            "port = 8101",
            "port = 8101\nlayer = \"shared\"\nextra_env = { LIMIT_MINOR = \"5\" }",
        );
        let r = Registry::parse(&text).unwrap();
        let c = r.component("orders").unwrap();
        assert_eq!(c.layer, Layer::Shared);
        assert_eq!(c.extra_env["LIMIT_MINOR"], "5");
        let text = MINIMAL.replace(
            "port = 8101",
            "port = 8101\nextra_env = { \"bad-name\" = \"5\" }",
        );
        let err = Registry::parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("`bad-name` is not an environment variable name"),
            "{err}"
        );
        let text = MINIMAL.replace("port = 8101", "port = 8101\nlayer = \"core\"");
        assert!(Registry::parse(&text).is_err());
    }

    #[test]
    fn a_dependency_cycle_is_rejected_with_its_path() {
        let text = MINIMAL.replace("port = 8101", "port = 8101\ndepends_on = [\"sink\"]")
            + "\n[components.sink]\nkind = \"sink\"\nport = 9000\ndepends_on = [\"orders\"]\n";
        let err = Registry::parse(&text).unwrap_err().to_string();
        assert!(err.contains("orders → sink → orders"), "{err}");
        let text = MINIMAL.replace("port = 8101", "port = 8101\ndepends_on = [\"orders\"]");
        let err = Registry::parse(&text).unwrap_err().to_string();
        assert!(err.contains("orders → orders"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = MINIMAL.replace("port = 8101", "port = 8101\nprot = 1");
        let err = Registry::parse(&text).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn bad_database_names_are_rejected() {
        let text = MINIMAL.replace("\"sluice_orders\"", "\"Orders; DROP\"");
        assert!(matches!(
            Registry::parse(&text),
            Err(RegistryError::Invalid(_))
        ));
    }

    #[test]
    fn topic_names_carry_the_prefix_only_on_the_broker() {
        let names = TopicNames::new("t_1a2b.");
        assert_eq!(names.physical("orders.events"), "t_1a2b.orders.events");
        assert_eq!(names.logical("t_1a2b.orders.events"), Some("orders.events"));
        assert_eq!(names.logical(&names.physical("x.dlq")), Some("x.dlq"));
        // Another namespace's topics, and the bare prefix, are not ours.
        assert_eq!(names.logical("orders.events"), None);
        assert_eq!(names.logical("t_ffff.orders.events"), None);
        assert_eq!(names.logical("t_1a2b."), None);
        let none = TopicNames::default();
        assert_eq!(none.physical("orders.events"), "orders.events");
        assert_eq!(none.logical("orders.events"), Some("orders.events"));
    }

    #[test]
    fn topic_settings_default_to_one_replica_and_an_unprefixed_namespace() {
        let r = Registry::parse(MINIMAL).unwrap();
        assert_eq!(r.platform.topic_prefix, "");
        assert_eq!(r.replication(), Replication::default());
        let spec = r.topic_spec("orders.events").unwrap();
        assert_eq!(spec.name, "orders.events");
        assert_eq!(spec.partitions, 1);
        assert_eq!(spec.replication_factor, 1);
        assert_eq!(
            spec.config,
            BTreeMap::from([
                ("cleanup.policy".to_owned(), "delete".to_owned()),
                ("min.insync.replicas".to_owned(), "1".to_owned()),
                ("retention.ms".to_owned(), "-1".to_owned()),
            ])
        );
        assert!(r.topic_spec("nope.events").is_none());
    }

    #[test]
    fn topic_specs_carry_the_prefix_the_replication_and_the_topic_config() {
        let text = MINIMAL
            .replace(
                "kafka_brokers = \"127.0.0.1:9092\"",
                "kafka_brokers = \"127.0.0.1:9092\"\ntopic_prefix = \"staging.\"\n\
                 replication_factor = 3\nmin_insync_replicas = 2",
            )
            .replace(
                "partitions = 1",
                "partitions = 6\nconfig = { \"retention.ms\" = 86400000, \"compression.type\" = \"zstd\" }",
            );
        let r = Registry::parse(&text).unwrap();
        let spec = r.topic_spec("orders.events").unwrap();
        assert_eq!(spec.name, "staging.orders.events");
        assert_eq!((spec.partitions, spec.replication_factor), (6, 3));
        assert_eq!(spec.config["retention.ms"], "86400000");
        assert_eq!(spec.config["compression.type"], "zstd");
        assert_eq!(spec.config["min.insync.replicas"], "2");
        assert_eq!(spec.config["cleanup.policy"], "delete");
        assert_eq!(r.topic_specs(), vec![spec]);
        let dlq = r.dead_letter_topic("order_view");
        assert_eq!(dlq.name, "staging.order_view.dlq");
        assert_eq!((dlq.partitions, dlq.replication_factor), (1, 3));
        assert_eq!(dlq.config["min.insync.replicas"], "2");
        assert!(!dlq.config.contains_key("retention.ms"));
    }

    #[test]
    fn bad_topic_settings_are_rejected() {
        let with = |extra: &str| {
            MINIMAL.replace(
                "kafka_brokers = \"127.0.0.1:9092\"",
                &format!("kafka_brokers = \"127.0.0.1:9092\"\n{extra}"),
            )
        };
        let err = Registry::parse(&with("topic_prefix = \"a b/\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("topic_prefix"), "{err}");
        let err = Registry::parse(&with("min_insync_replicas = 2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("min_insync_replicas (2)"), "{err}");
        let err = Registry::parse(&with("replication_factor = 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 1"), "{err}");
    }

    #[test]
    fn unknown_component_lists_the_known_ones() {
        let r = Registry::parse(MINIMAL).unwrap();
        let err = r.component("billing").unwrap_err().to_string();
        assert!(err.contains("known: orders"), "{err}");
    }
}
