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
//! platform creates and checks on the broker is a [`TopicSpec`](crate::broker::TopicSpec): the registry's
//! partitions, `[platform]`'s replication, and [`EVENT_TOPIC_DEFAULTS`] under the
//! topic's own `config` entries.
//!
//! By job: `config` (the `[platform]` and `[analytics]` sections), `topics` (topic
//! names, settings and replication) and `validate` (the registry's rules).

mod config;
#[cfg(test)]
mod tests;
mod topics;
mod validate;

pub use config::{AnalyticsConfig, PlatformConfig};
pub use topics::{Replication, TopicConfig, TopicNames, EVENT_TOPIC_DEFAULTS};

use topics::invalid_topic_prefix;
use validate::resolve_component;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
